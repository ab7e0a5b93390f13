"""Hyperparameter grids, and choosing a grid's best point on a validation split held out from the training data
(``tune:`` with the grid sampler; the retired ``selection:`` is refused with its replacement)."""

from __future__ import annotations

import json

import pytest
import torch
from pydantic import BaseModel

from forgetbench.benchmark.core.config import ConfigError, resolve_config, strategy_variants
from forgetbench.benchmark.core.grid import combination_label, combinations, format_value, grid_axes
from forgetbench.benchmark.run.spec import expand_suite
from forgetbench.benchmark.run.assemble import build_scenario, hold_out_validation
from forgetbench.benchmark.run.tuning import objective
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


def test_selection_is_refused_with_the_tune_block_that_replaces_it():
    with pytest.raises(ConfigError) as exc:
        resolve_config(
            _suite(
                name="ewc", params={"ewc_lambda": [1, 10], "mode": ["separate", "online"]}, selection={"metric": "LA"}
            )
        )
    message = str(exc.value)
    assert message.startswith("strategies[1]") and "selection: was replaced by tune with the grid sampler" in message
    assert (
        "tune: {params: {ewc_lambda: {choices: [1, 10]}, mode: {choices: ['separate', 'online']}}, sampler: grid, "
        "trials: 4, objective: LA}" in message
    )
    assert "ewc_lambda and mode one value in params" in message
    # a resolved config written before the change says `selection: null`: it reads as it did
    old = resolve_config(_suite(name="ewc", params={"ewc_lambda": 1}, selection=None))
    assert old.strategies[1].params["ewc_lambda"] == 1.0


def test_a_grid_tune_runs_every_combination_once_by_default_and_refuses_more_trials():
    tune = {"params": {"ewc_lambda": {"choices": [1, 10, 100]}}, "sampler": "grid"}
    suite = resolve_config(_suite(name="ewc", tune=tune))
    assert suite.strategies[1].tune.trials == 3
    with pytest.raises(ConfigError, match=r"trials 4 > the grid's 3 combination\(s\): a point would run twice"):
        resolve_config(_suite(name="ewc", tune={**tune, "trials": 4}))


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


def test_a_trials_objective_is_the_mean_over_its_ok_seeds_hand_computed():
    # ACC = mean(0.5, 0.7) = 0.6 on seed 0, mean(0.9, 0.9) = 0.9 on seed 1 -> 0.75
    assert objective([_fake([[0.9, 0.1], [0.5, 0.7]]), _fake([[0.9, 0.1], [0.9, 0.9]])], "ACC") == pytest.approx(0.75)
    # 0.8 on seed 0, seed 1 failed -> 0.8 (the mean over ok seeds); no ok seed: no value (the trial fails)
    assert objective([_fake([[0.9, 0.1], [0.8, 0.8]]), _fake([], status="failed")], "ACC") == pytest.approx(0.8)
    assert objective([_fake([], status="diverged"), None], "ACC") is None
    # forgetting of [[a, .], [b, .]] is a - b
    assert objective([_fake([[0.9, 0.5], [0.5, 0.9]])], "forgetting") == pytest.approx(0.4)
    assert objective([_fake([[0.5, 0.5]])], "LA") is None  # rows != experiences: undefined, not a score


def test_grid_tune_end_to_end(write_suite, cli, tmp_path, capsys):
    out = tmp_path / "out"
    suite = tiny_suite(
        seeds=[0],
        # max_curvature null: Avalanche's uncapped penalty (the default cap would keep it stable)
        strategies=[
            {
                "name": "ewc",
                "params": {"max_curvature": None},
                "tune": {
                    "params": {"ewc_lambda": {"choices": [0, 10000000]}},
                    "sampler": "grid",
                    "objective": "LA",
                    "fraction": 0.3,
                    "neighbours": [],
                },
            }
        ],
    )
    suite["training"]["lr"] = 0.5  # a huge lambda with a large lr makes the second task diverge
    # a trial diverged: an outcome of the search, counted apart, not a failure of a run the suite asked for
    assert cli("run", "--no-report", write_suite(suite), "--out", out, "--quiet") == 0
    printed = capsys.readouterr().out
    assert "diverged=1" in printed
    study = json.loads((out / "tuning.json").read_text())["studies"][0]
    by_point = {t["params"]["ewc_lambda"]: t for t in study["trials"]}
    assert sorted(by_point) == [0, 10000000] and study["chosen"] == {"ewc_lambda": 0}
    # the huge penalty diverges: its trial gets no value and cannot be chosen
    assert by_point[10000000]["value"] is None and by_point[0]["value"] > 0.9
    trial_record = read_json(out / "tuning" / "runs" / by_point[0]["runs"][0] / "result.json")
    assert {k: v for k, v in trial_record["evaluated_on"].items() if k != "samples"} == {
        "split": "validation",
        "fraction": 0.3,
    }
    assert trial_record["config"]["validation_fraction"] == 0.3
    (final_folder,) = [p for p in (out / "runs").iterdir() if p.name.startswith("split__ewc")]
    final = read_json(final_folder / "result.json")
    assert final["status"] == "ok" and "evaluated_on" not in final
    assert final["strategy"]["params"]["ewc_lambda"] == 0
    # resume: nothing reruns, the same count is printed again
    assert cli("run", "--no-report", write_suite(suite), "--out", out, "--quiet") == 0
    again = capsys.readouterr().out
    assert "0 run(s) executed" in again and "diverged=1" in again


def test_strategy_variants_without_grid_keep_the_entry():
    suite = resolve_config(tiny_suite(strategies=[{"name": "si", "label": "si-strong", "params": {"si_lambda": 2}}]))
    ((choice, spec),) = strategy_variants(suite.strategies[0])
    assert choice == {} and spec.display_name == "si-strong"


def test_a_record_written_with_selection_null_is_still_complete_for_its_run():
    from forgetbench.benchmark.core.store import is_complete

    (spec,) = expand_suite(resolve_config(tiny_suite()))
    resolved = spec.resolved()
    before = {**resolved, "strategy": {**resolved["strategy"], "selection": None}}  # what records held until now
    record = make_record({"status": "ok", "accuracy_matrix": [[0.9, 0.1], [0.8, 0.9]], "config": before})
    assert is_complete(record, resolved)
    other = {**resolved, "strategy": {**resolved["strategy"], "selection": {"metric": "ACC"}}}
    assert not is_complete(
        make_record({"status": "ok", "accuracy_matrix": [[0.9, 0.1], [0.8, 0.9]], "config": other}), resolved
    )
