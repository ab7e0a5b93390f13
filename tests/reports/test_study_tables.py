"""The docs' study tables (`forgetbench table KIND RESULTS`: reports/study_tables.py), each by hand."""

from __future__ import annotations

import pandas as pd
import pytest
from scipy import stats

from helpers import make_record


def _study_records() -> list:
    """naive forgets 0.1, 0.2, 0.3 of task 0 on seeds 0-2, wpl 0.0, 0.15, 0.15 (paired: -0.1, -0.05, -0.15); both end
    at 0.9 on task 1; naive trains 10, 12, 14 s, wpl 20, 24, 28 s; wpl's pass after experience 1 was skipped."""
    records = []
    for strategy, forgets, seconds in [
        ("naive", (0.1, 0.2, 0.3), (10, 12, 14)),
        ("wpl", (0.0, 0.15, 0.15), (20, 24, 28)),
    ]:
        for seed, (f, t) in enumerate(zip(forgets, seconds)):
            extra = {"wpl_importance_skipped": [1]} if strategy == "wpl" else {}
            records.append(
                make_record(
                    {
                        "status": "ok",
                        "seed": seed,
                        "strategy": {"label": strategy},
                        "accuracy_matrix": [[0.9, 0.1], [0.9 - f, 0.9]],
                        "timing": {"train_seconds": t, "eval_seconds": 1.0},
                        "config": {},
                        "experiences": ["task0", "task1"],
                        **extra,
                    }
                )
            )
    return records


def _paired_p(differences: list[float]) -> float:
    """The decision engine's p of no difference for these paired differences (benchmark/core/decide.py)."""
    from forgetbench.benchmark.core import decide as D

    return D.decide([D.evidence("wpl", "naive", range(len(differences)), differences, 0.0)])[0].p_value


def test_the_interval_table_writes_each_metric_in_its_unit_with_the_paired_difference_by_hand():
    """forgetting in points: naive 20.0 +- t(0.975, 2) 4.303 x 0.1 / sqrt 3 = 24.8, wpl 10.0 +- 4.303 x 0.0866 /
    sqrt 3 = 21.5 (each method's own mean, descriptive); wpl's paired difference -10.0 +- 4.303 x 5 / sqrt 3 =
    12.4 (the paired t-test's interval at 95%, the family of one pair against naive), with its p; seconds as seconds
    (12.0 +- 4.303 x 2 / sqrt 3 = 5.0)."""
    from forgetbench.reports.study_tables import interval_frame, markdown

    table = markdown(interval_frame(_study_records(), (), ("forgetting", "train_seconds"), "forgetting")).splitlines()
    p = _paired_p([-0.1, -0.05, -0.15])
    assert p == pytest.approx(stats.ttest_1samp([-0.1, -0.05, -0.15], 0.0).pvalue)  # symmetric: t and Hall agree
    assert table[0] == "| scenario | strategy | forgetting | train_seconds | forgetting vs naive (p) |"
    assert table[2] == "| s | naive | 20.0 [-4.8, 44.8] | 12.0 [7.0, 17.0] | - |"
    assert table[3] == f"| s | wpl | 10.0 [-11.5, 31.5] | 24.0 [14.1, 33.9] | -10.0 [-22.4, 2.4] ({p:.3f}) |"


def test_the_cost_table_puts_each_strategys_seconds_against_naives_by_hand():
    from forgetbench.reports.study_tables import cost_frame

    rows = cost_frame(_study_records()).set_index("strategy")
    assert rows.loc["naive", ["train s", "seeds", "/ naive", "passes skipped"]].tolist() == [
        "12.0",
        "10.0, 12.0, 14.0",
        "1.00",
        "-",
    ]
    assert rows.loc["wpl", ["train s", "/ naive", "forgetting", "passes skipped"]].tolist() == [
        "24.0",
        "2.00",
        "10.0 [-11.5, 31.5]",
        "[1]",
    ]


def test_the_cost_table_compares_a_batched_share_only_with_a_batched_share():
    """A batched record's time is its 1/K share of the batch's wall: against a run alone it is no cost ratio (a
    batched si read 0.6x a naive whose seeds ran alone). The table says how each ran and compares like with like."""
    from forgetbench.benchmark.core.record import SeedBatch
    from forgetbench.reports.study_tables import cost_frame

    records = _study_records()
    for record in records:
        if record.strategy.label == "wpl":
            record.batch = SeedBatch(seeds=[0, 1, 2], train_seconds=3 * record.timing.train_seconds)
    rows = cost_frame(records).set_index("strategy")
    assert rows.loc["naive", ["ran", "/ naive"]].tolist() == ["alone", "1.00"]
    assert rows.loc["wpl", ["ran", "/ naive"]].tolist() == ["batches of 3", "- (naive: alone)"]
    for record in records:  # naive batched too: shares against shares
        record.batch = record.batch or SeedBatch(seeds=[0, 1, 2], train_seconds=3 * record.timing.train_seconds)
    assert cost_frame(records).set_index("strategy").loc["wpl", "/ naive"] == "2.00"
    records[0].batch = None  # one naive seed alone, two batched: neither one quantity
    rows = cost_frame(records).set_index("strategy")
    assert rows.loc["naive", "ran"] == "mixed" and rows.loc["wpl", "/ naive"] == "- (naive: mixed)"


def test_no_paired_test_of_time_between_a_batched_share_and_a_run_alone():
    """The paired train-time rows ('train time -3.1 s, p < 0.001') compared a batch's 1/K share with naive's runs
    alone: now a strategy that trained otherwise than naive has no row of seconds; its other metrics keep theirs."""
    from forgetbench.benchmark.core.record import SeedBatch
    from forgetbench.reports.summary import comparisons_table, runs_long, time_unlike_naive

    records = _study_records()
    long = runs_long(records)
    assert time_unlike_naive(records) == set()
    both = comparisons_table(long, unlike=time_unlike_naive(records))
    assert "train_seconds" in set(both[both.strategy == "wpl"].metric)
    for record in records:
        if record.strategy.label == "wpl":
            record.batch = SeedBatch(seeds=[0, 1, 2], train_seconds=3 * record.timing.train_seconds)
    assert time_unlike_naive(records) == {("s", "wpl")}
    apart = comparisons_table(long, unlike=time_unlike_naive(records))
    mine = set(apart[apart.strategy == "wpl"].metric)
    assert "train_seconds" not in mine and "forgetting" in mine


def test_the_table_command_prints_markdown_and_refuses_an_unknown_metric(tmp_path, cli, capsys):
    from forgetbench.benchmark.core.store import atomic_write_json

    for run in _study_records():
        atomic_write_json(tmp_path / "runs" / run.run_id / "result.json", run.to_dict())
    assert cli("table", "interval", tmp_path, "--metrics", "forgetting") == 0
    p = _paired_p([-0.1, -0.05, -0.15])
    assert f"| s | wpl | 10.0 [-11.5, 31.5] | -10.0 [-22.4, 2.4] ({p:.3f}) |" in capsys.readouterr().out
    assert cli("table", "interval", tmp_path, "--compare", "forgeting") == 2
    assert "--compare: unknown metric(s) forgeting; allowed: ACC" in capsys.readouterr().err


def _two_task_run(strategy: str, seed: int, a_after_b: float, **extra) -> object:
    """A two-task run: A learnt to 90%, B to 80%; A at ``a_after_b`` after B (forgetting 0.9 - a_after_b)."""
    return make_record(
        scenario={"label": "t"},
        strategy={"label": strategy},
        seed=seed,
        status="ok",
        accuracy_matrix=[[0.9, 0.1], [a_after_b, 0.8]],
        **extra,
    )


def test_the_plm_table_by_hand():
    """``forgetbench table plm``: naive forgets 30 and 40 points on seeds 0 / 1, olora 10 and 10: paired -20 and -30,
    mean -25; two seeds are not tested (no p).
    olora's adapters train 100 then 300 entries (mean 200); the later adapter overlaps 0.25 and 0.75 (mean 0.5)."""

    from forgetbench.reports.table_kinds import study_table

    def adapters(overlap: float) -> dict:
        return {"per_task": [{"trainable_params": 100, "overlap": None}, {"trainable_params": 300, "overlap": overlap}]}

    records = [
        _two_task_run("naive", 0, 0.6),
        _two_task_run("naive", 1, 0.5),
        _two_task_run("olora", 0, 0.8, adapters=adapters(0.25)),
        _two_task_run("olora", 1, 0.8, adapters=adapters(0.75)),
    ]
    lines = study_table("plm", records).splitlines()
    assert lines[0] == (
        "| scenario | strategy | runs ok | ACC (pts) | forgetting (pts) | LA (pts) | train s | forgetting vs naive (p) | "
        "adapter params / task | max overlap |"
    )
    assert lines[2] == "| t | naive | 2/2 | 67.5 ± 3.5 | 35.0 ± 7.1 | 85.0 ± 0.0 | 0.0 | - | - | - |"
    assert lines[3] == "| t | olora | 2/2 | 80.0 ± 0.0 | 10.0 ± 0.0 | 85.0 ± 0.0 | 0.0 | -25.0 (p = –) | 200 | 0.500 |"


def test_the_attribution_table_by_hand():
    """``forgetbench table attribution``: naive's points observe 0.2 and 0.4 nats, predict 0.1 and 0.3 (explained
    0.4 / 0.6 = 66.7%), first-order 0.02 and 0.04 (10% of the observed); wpl's observe 0.1, predict 0.1. A after its
    training 90% on both of naive's seeds; forgetting: naive 35, wpl 10 points, a cut of 71%."""
    from forgetbench.reports.table_kinds import study_table

    def points(*rows):
        return [
            {"turn": 1, "iteration": None, "model": 0, "observed": o, "predicted": p, "first_order": f, "layers": []}
            for o, p, f in rows
        ]

    records = [
        _two_task_run("naive", 0, 0.6, attribution=points((0.2, 0.1, 0.02))),
        _two_task_run("naive", 1, 0.5, attribution=points((0.4, 0.3, 0.04))),
        _two_task_run("wpl", 0, 0.8, attribution=points((0.1, 0.1, 0.0))),
        _two_task_run("wpl", 1, 0.8, attribution=points((0.1, 0.1, 0.0))),
    ]
    lines = study_table("attribution", records).splitlines()
    assert lines[0] == "## t: model A's accuracy after its training 90.0% (seeds 90.0, 90.0)"
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in lines if line.startswith("| ")}
    assert rows["naive"][1:7] == ["2", "0.3000", "0.2000", "0.0300", "66.7", "nan"]  # two points: no rank correlation
    assert rows["naive"][7] == "10 |"
    assert rows["wpl"][1:6] == ["2", "0.1000", "0.1000", "0.0000", "100.0"]
    assert "forgetting: naive 35.0, wpl 10.0 points: cut 71%" in lines


def test_the_frontier_table_reads_forgetting_off_each_front_by_hand(tmp_path):
    """The frontier table (``forgetbench table frontier``) on frontier points written here, two identical seeds: naive at LA 96 forgets 10;
    ewc's front (95, 4), (90, 1) gives 4 at LA 95, 3.4 at 94 (linear between its points), 1.6 at 91; l2's front
    ends at LA 93, so LA 95 and 94 are not reached and 91 gives 0.2 + 11/13 * 0.3 = 0.45; si's reaches 95 on seed 0
    only."""
    import io

    from forgetbench.reports.study_tables import matched_sections, render

    rows = ["scenario,method,setting,value,seed,plasticity,forgetting,on_front,axes,plasticity_metric"]
    for seed in (0, 1):
        for method, setting, la, forgetting in [
            ("naive", "", 96, 10),
            ("ewc", "ewc_lambda=10", 95, 4),
            ("ewc", "ewc_lambda=100", 90, 1),
            ("l2", "l2_lambda=1", 93, 0.5),
            ("l2", "l2_lambda=10", 80, 0.2),
            *([("si", "si_lambda=1", 95.5, 2), ("si", "si_lambda=10", 90, 1)] if seed == 0 else []),
            *([("si", "si_lambda=1", 93, 1), ("si", "si_lambda=10", 85, 0.5)] if seed == 1 else []),
        ]:
            rows.append(f"s,{method},{setting},,{seed},{la},{forgetting},True,tasks,LA")
    lines = render(matched_sections(pd.read_csv(io.StringIO("\n".join(rows) + "\n")))).splitlines()
    assert lines[0] == "## s (naive forgets 10.0)"
    assert lines[2] == "| method | naive LA - 1 | naive LA - 2 | naive LA - 5 |"
    assert lines[4] == "| ewc | 4.0 [4.0, 4.0] (2/2) | 3.4 [3.4, 3.4] (2/2) | 1.6 [1.6, 1.6] (2/2) |"
    assert lines[5] == "| l2 | not reached | not reached | 0.5 [0.5, 0.5] (2/2) |"
    # si reaches LA 95 and 94 on seed 0 only (1 + 5 / 5.5 and 1 + 4 / 5.5): a mean of one seed, no interval
    assert lines[6].startswith("| si | 1.9 (1/2) | 1.7 (1/2) | ")
    # naive, last: its own point is more plastic than every level, so its value there is its forgetting
    assert lines[7] == "| naive | 10.0 [10.0, 10.0] (2/2) | 10.0 [10.0, 10.0] (2/2) | 10.0 [10.0, 10.0] (2/2) |"
    assert any(line.startswith("At naive's LA - 5 points") for line in lines)
