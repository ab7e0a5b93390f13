"""Hyperparameter grids and selection on a validation split held out from the training data."""

from __future__ import annotations

import json
import math

import pytest
import torch
from pydantic import BaseModel

from forgetbench.benchmark.core.config import ConfigError, resolve_config, strategy_variants
from forgetbench.benchmark.core.grid import combination_label, combinations, format_value, grid_axes
from forgetbench.benchmark.run.spec import expand_suite
from forgetbench.benchmark.run.assemble import build_scenario, hold_out_validation
from forgetbench.benchmark.run.selection import decide, metric_value, plan_sweeps
from helpers import make_record
from conftest import read_json, tiny_suite


class _Params(BaseModel):
    lam: float = 1.0
    mode: str = "a"
    per_exp: list[float] = [1.0]
    maybe_list: list[int] | None = None


def test_grid_axes_respect_list_typed_params():
    raw = {"lam": [1, 10], "mode": "b", "per_exp": [0.5, 2.0], "maybe_list": [[1], [2, 3]]}
    # per_exp is a list-typed param given one list: a value, not a grid; a list of lists is a grid
    assert grid_axes(_Params, raw) == {"lam": [1, 10], "maybe_list": [[1], [2, 3]]}
    assert grid_axes(_Params, {"per_exp": [[1.0], [2.0]]}) == {"per_exp": [[1.0], [2.0]]}
    assert grid_axes(_Params, {"lam": 3}) == {}


def test_combinations_are_the_cartesian_product_in_order():
    combos = combinations({"a": [1, 2], "b": ["x", "y", "z"]})
    assert len(combos) == 6
    assert combos[0] == {"a": 1, "b": "x"} and combos[1] == {"a": 1, "b": "y"} and combos[-1] == {"a": 2, "b": "z"}
    assert combinations({}) == [{}]


def test_labels_record_the_values_and_are_path_safe():
    assert combination_label("ewc", {"ewc_lambda": 10.0, "mode": "online"}) == "ewc[ewc_lambda=10,mode=online]"
    assert combination_label("ewc", {}) == "ewc"
    assert format_value([1, 2.5]) == "1_2.5" and format_value(1e-05) == "1e-05"
    assert "/" not in format_value("a/b")


def _suite(**strategy):
    return tiny_suite(seeds=[0, 1], strategies=[{"name": "naive"}, strategy])


def test_grid_expands_into_one_run_per_combination_and_seed():
    suite = resolve_config(_suite(name="ewc", params={"ewc_lambda": [1, 10, 100], "mode": ["separate", "online"]}))
    runs = expand_suite(suite)
    assert len(runs) == 2 + 3 * 2 * 2
    labels = {spec.strategy.display_name for spec in runs}
    assert "ewc[ewc_lambda=100,mode=online]" in labels
    online = next(s for s in runs if s.strategy.display_name == "ewc[ewc_lambda=1,mode=online]")
    assert online.strategy.params == {
        "ewc_lambda": 1.0,
        "mode": "online",
        "decay_factor": 1.0,
        "importance": "minibatch",
        "estimator": "empirical",
        "max_curvature": "auto",
        "importance_samples": None,
        "importance_norm": "none",
    }
    assert online.run_id == "split__ewc[ewc_lambda=1,mode=online]__seed0"


def test_every_grid_combination_is_validated():
    with pytest.raises(ConfigError) as exc:
        resolve_config(_suite(name="ewc", params={"ewc_lambda": [1, -5]}))
    assert "strategies[1].params (grid combination {'ewc_lambda': -5}).ewc_lambda" in str(exc.value)
    assert "greater than or equal to 0" in str(exc.value)


def test_selection_needs_a_grid_and_validation():
    with pytest.raises(ConfigError, match=r"strategies\[1\]\.selection: needs a grid"):
        resolve_config(_suite(name="ewc", params={"ewc_lambda": 1}, selection={"metric": "ACC"}))
    with pytest.raises(ConfigError, match=r"strategies\[1\]\.selection\.on: Input should be 'validation'"):
        resolve_config(_suite(name="ewc", params={"ewc_lambda": [1, 2]}, selection={"on": "test"}))
    with pytest.raises(ConfigError, match=r"selection\.metric: Input should be 'ACC', 'LA', 'forgetting' or 'BWT'"):
        resolve_config(_suite(name="ewc", params={"ewc_lambda": [1, 2]}, selection={"metric": "loss"}))


def test_validation_split_comes_from_training_data_only(tmp_path):
    suite = resolve_config(tiny_suite())
    spec = expand_suite(suite)[0]
    scenario = build_scenario(spec, tmp_path)
    original = [(t.train_x.clone(), t.test_x.clone()) for t in scenario.tasks]
    hold_out_validation(scenario, 0.25, seed=0)
    for (train_x, test_x), task in zip(original, scenario.tasks):
        n = len(train_x)
        assert len(task.test_x) == round(0.25 * n) and len(task.train_x) + len(task.test_x) == n
        rows = {tuple(r.flatten().tolist()) for r in train_x}
        held = {tuple(r.flatten().tolist()) for r in task.test_x}
        assert held <= rows  # validation rows are training rows...
        assert not held & {tuple(r.flatten().tolist()) for r in task.train_x}  # ...removed from training
        assert not held & {tuple(r.flatten().tolist()) for r in test_x}  # and never test rows
    again = build_scenario(spec, tmp_path)
    hold_out_validation(again, 0.25, seed=0)
    assert torch.equal(again.tasks[0].test_x, scenario.tasks[0].test_x)  # seeded


def _fake(R, status="ok"):
    return make_record({"status": status, "accuracy_matrix": R})


def test_decide_picks_best_mean_score_hand_computed():
    suite = resolve_config(_suite(name="ewc", params={"ewc_lambda": [1, 10]}, selection={"metric": "ACC"}))
    (sweep,) = plan_sweeps(suite)
    ids = {(spec.strategy.display_name, spec.seed): spec.run_id for _, spec in sweep.specs}
    records = {
        # lambda=1: ACC = mean(0.5, 0.7) = 0.6 on seed 0, mean(0.9, 0.9) = 0.9 on seed 1 -> 0.75
        ids["ewc[ewc_lambda=1]", 0]: _fake([[0.9, 0.1], [0.5, 0.7]]),
        ids["ewc[ewc_lambda=1]", 1]: _fake([[0.9, 0.1], [0.9, 0.9]]),
        # lambda=10: 0.8 on seed 0, seed 1 failed -> 0.8 (mean over ok seeds)
        ids["ewc[ewc_lambda=10]", 0]: _fake([[0.9, 0.1], [0.8, 0.8]]),
        ids["ewc[ewc_lambda=10]", 1]: _fake([], status="failed"),
    }
    decision = decide(sweep, records)
    assert decision["chosen"] == {"ewc_lambda": 10} and decision["chosen_label"] == "ewc[ewc_lambda=10]"
    scores = {row["label"]: row["score"] for row in decision["sweep"]}
    assert scores["ewc[ewc_lambda=1]"] == pytest.approx(0.75) and scores["ewc[ewc_lambda=10]"] == pytest.approx(0.8)
    assert decision["sweep"][1]["status"] == {"0": "ok", "1": "failed"}


def test_decide_minimises_forgetting_and_breaks_ties_by_grid_order():
    suite = resolve_config(_suite(name="ewc", params={"ewc_lambda": [1, 10, 100]}, selection={"metric": "forgetting"}))
    (sweep,) = plan_sweeps(suite)
    by = {(s.strategy.display_name, s.seed): s.run_id for _, s in sweep.specs}
    # forgetting of [[a, .], [b, .]] is a - b: lambda=1 -> 0.4; lambda=10 -> 0.1; lambda=100 -> 0.1
    mats = {"1": [[0.9, 0.5], [0.5, 0.9]], "10": [[0.9, 0.5], [0.8, 0.9]], "100": [[1.0, 0.5], [0.9, 0.9]]}
    records = {by[f"ewc[ewc_lambda={k}]", seed]: _fake(R) for k, R in mats.items() for seed in (0, 1)}
    decision = decide(sweep, records)
    assert decision["goal"] == "min" and decision["chosen_label"] == "ewc[ewc_lambda=10]"
    assert metric_value("forgetting", _fake(mats["1"])) == pytest.approx(0.4)
    assert math.isnan(metric_value("LA", _fake([[0.5, 0.5]])))  # rows != experiences: undefined


def test_selection_suite_end_to_end(write_suite, cli, tmp_path, capsys):
    out = tmp_path / "out"
    suite = tiny_suite(
        seeds=[0],
        # max_curvature null: Avalanche's uncapped penalty (the default cap would keep it stable)
        strategies=[
            {
                "name": "ewc",
                "params": {"ewc_lambda": [0, 10000000], "max_curvature": None},
                "selection": {"metric": "LA", "on": "validation", "fraction": 0.3},
            }
        ],
    )
    suite["training"]["lr"] = 0.5  # a huge lambda with a large lr makes the second task diverge
    # a sweep run diverged: an outcome of the selection, counted apart, not a failure of a run the suite asked for
    assert cli("run", write_suite(suite), "--out", out, "--quiet") == 0
    printed = capsys.readouterr().out
    assert "diverged=1" in printed
    selection = json.loads((out / "selection.json").read_text())["selections"][0]
    assert [row["label"] for row in selection["sweep"]] == ["ewc[ewc_lambda=0]", "ewc[ewc_lambda=10000000]"]
    assert selection["chosen_label"] == "ewc[ewc_lambda=0]"
    # the huge penalty diverges: the combination gets no score and cannot be chosen
    assert selection["sweep"][1]["score"] is None and selection["sweep"][1]["status"] == {"0": "diverged"}
    assert selection["sweep"][0]["score"] > 0.9
    sweep_record = read_json(out / "selection" / "runs" / "split__ewc[ewc_lambda=0]__seed0" / "result.json")
    assert sweep_record["evaluated_on"] == {"split": "validation", "fraction": 0.3}
    assert sweep_record["config"]["validation_fraction"] == 0.3
    final = read_json(out / "runs" / "split__ewc[ewc_lambda=0]__seed0" / "result.json")
    assert final["status"] == "ok" and "evaluated_on" not in final
    assert final["strategy"]["params"]["ewc_lambda"] == 0
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["split__ewc[ewc_lambda=0]__seed0"]
    assert "hyperparameter selection" in printed and "* ewc[ewc_lambda=0]" in printed
    # resume: nothing reruns, the same choice and the same count are printed again
    assert cli("run", write_suite(suite), "--out", out, "--quiet") == 0
    again = capsys.readouterr().out
    assert "0 run(s) executed, 3 skipped" in again and "diverged=1" in again


def test_strategy_variants_without_grid_keep_the_entry():
    suite = resolve_config(tiny_suite(strategies=[{"name": "si", "label": "si-strong", "params": {"si_lambda": 2}}]))
    ((choice, spec),) = strategy_variants(suite.strategies[0])
    assert choice == {} and spec.display_name == "si-strong"
