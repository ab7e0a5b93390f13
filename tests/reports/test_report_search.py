"""The report of search suites: the turn-length sweep and per-experience figures for hundreds of candidates."""

from __future__ import annotations

import numpy as np
import pandas as pd

from forgetbench.benchmark.core import store
from forgetbench.benchmark.core.config import ComponentSpec, TrainingConfig
from forgetbench.benchmark.run.spec import RunSpec
from forgetbench.benchmark.run.runner import run
from forgetbench.reports import frames as FR
from forgetbench.benchmark.core.record import RunRecord
from forgetbench.reports.html import build_report, write_report
from helpers import make_record

TRAINING = TrainingConfig(optimizer="sgd", lr=0.1, momentum=0.9, batch_size=32, eval_batch_size=512)


def search_record(
    scenario: str, steps: int, kind: str = "random", strategy: str = "naive", seed: int = 0, searched: bool = True
) -> RunRecord:
    return make_record(
        {
            "status": "ok",
            "scenario": {
                "name": "supernet_search",
                "label": scenario,
                "params": {"steps_per_turn": steps, "search": kind},
            },
            "strategy": {"name": strategy, "label": strategy},
            "seed": seed,
            "search": {"kind": kind} if searched else None,
            "accuracy_matrix": [[0.5, 0.5]],
        }
    )


def summary_rows(scenario: str, strategy: str, values: dict[str, float]) -> list[dict]:
    return [
        {
            "scenario": scenario,
            "strategy": strategy,
            "metric": m,
            "mean": v,
            "std": 0.0,
            "ci_low": v - 0.01,
            "ci_high": v + 0.01,
            "n_seeds": 3,
        }
        for m, v in values.items()
    ]


def test_sweep_frame_joins_each_scenarios_setting_to_its_summary_rows():
    table = pd.DataFrame(
        summary_rows("t1", "naive", {"forgetting_value_mean": 0.02, "search_tau": 0.3, "ACC": 0.9})
        + summary_rows("t150", "naive", {"forgetting_value_mean": 0.15, "regret": 0.04})
    )
    records = [search_record("t1", 1), search_record("t150", 150)]
    sweep = FR.search_sweep_frame(table, records)
    assert sorted(zip(sweep.scenario, sweep.metric, sweep.setting)) == [
        ("t1", "forgetting_value_mean", 1),
        ("t1", "search_tau", 1),
        ("t150", "forgetting_value_mean", 150),
        ("t150", "regret", 150),
    ]  # ACC is not a sweep metric
    assert set(sweep.series) == {"naive"}
    fv = sweep[sweep.metric == "forgetting_value_mean"].set_index("setting")["mean"]
    assert fv[1] == 0.02 and fv[150] == 0.15


def test_sweep_needs_two_settings_and_keeps_search_kinds_apart():
    table = pd.DataFrame(summary_rows("a", "naive", {"regret": 0.1}) + summary_rows("b", "naive", {"regret": 0.2}))
    same = [search_record("a", 20), search_record("b", 20, kind="controller")]
    assert FR.search_sweep_frame(table, same).empty  # nas_search.yaml: random vs controller at one turn length
    mixed = [search_record("a", 5), search_record("b", 20, kind="controller")]
    assert set(FR.search_sweep_frame(table, mixed).series) == {"naive · random", "naive · controller"}
    not_search = [search_record("a", 5, searched=False), search_record("b", 20, kind="controller", searched=False)]
    assert FR.search_sweep_frame(table, not_search).empty


def test_many_experiences_switches_at_the_threshold():
    def record(n: int) -> RunRecord:
        return make_record({"status": "ok", "scenario": {"label": "s"}, "accuracy_matrix": [[0.5] * n]})

    assert not FR.many_experiences([record(FR.MANY_EXPERIENCES)], "s")
    assert FR.many_experiences([record(FR.MANY_EXPERIENCES + 1)], "s")
    assert not FR.many_experiences([record(FR.MANY_EXPERIENCES + 1)], "other")


def test_report_of_a_turn_length_suite_draws_the_sweep_over_27_candidates(tmp_path):
    space = {
        "dataset": "digits",
        "layers": 3,
        "ops": 3,
        "width": 32,
        "epochs": 3,
        "validation_size": 200,
        "ground_truth_steps": 10,
        "max_test": 300,
    }
    out = tmp_path / "results"
    for steps, turns in ((4, 10), (20, 2)):
        for seed in (0, 1):
            params = space | {"steps_per_turn": steps, "turns_per_epoch": turns}
            spec = RunSpec(
                "sweep",
                ComponentSpec(name="supernet_search", label=f"turn_{steps}", params=params),
                ComponentSpec(name="naive", params={}),
                seed,
                TRAINING,
                "cpu",
            )
            record = run(spec, data_root=None)
            assert record.status == "ok", record.error
            assert len(record.search.ground_truth.architectures) == 27  # every candidate ranked
            store.write_result(out, record)
    html = write_report([out]).read_text()
    assert 'id="sweep-figure"' in html and html.index('id="sweep"') < html.index('id="s-turn-4"')
    assert "turn_4, turn_20" in html  # the caption names the swept scenarios
    report = build_report([out])
    assert set(report.summary.scenario) == {"turn_4", "turn_20"}


def test_27_architectures_in_rounds_are_summarised_not_drawn_one_by_one(tmp_path):
    params = {"dataset": "digits", "layers": 3, "ops": 3, "width": 16, "architectures": 27, "rounds": 2,
              "steps_per_turn": 4, "max_test": 300}  # fmt: skip
    out = tmp_path / "results"
    for seed in (0, 1):
        spec = RunSpec("many", ComponentSpec(name="supernet", params=params), ComponentSpec(name="naive"), seed,
                       TRAINING, "cpu")  # fmt: skip
        record = run(spec, data_root=None)
        assert record.status == "ok", record.error
        assert np.shape(record.accuracy_matrix) == (2, 27)
        store.write_result(out, record)
    html = write_report([out]).read_text()
    # 27 architectures: distributions, not 27 bar groups or a 27-column heatmap
    assert html.count("as a distribution per strategy") == 1 and html.count("summarised per row") == 1


def test_a_small_suite_keeps_bars_heatmaps_and_no_sweep(tmp_path):
    spec = RunSpec(
        "small",
        ComponentSpec(name="split", params={"dataset": "digits", "tasks": 2, "classes_per_task": 2, "widths": [16]}),
        ComponentSpec(name="naive", params={}),
        0,
        TRAINING,
        "cpu",
    )
    out = tmp_path / "results"
    store.write_result(out, run(spec, data_root=None))
    html = write_report([out]).read_text()
    assert 'id="sweep"' not in html and "as a distribution per strategy" not in html
    assert "bar = mean, whisker = min–max over seeds" in html and "R[i][j] in %, mean over seeds" in html
    assert np.isfinite(build_report([out]).summary["mean"].astype(float)).any()
