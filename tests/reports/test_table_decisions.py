"""``forgetbench decide TABLE.csv`` / ``forgetbench.decide(frame)``: any per-seed table decided as the report
decides a results folder (reports/table_decisions.py), the same rows and numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import forgetbench
from forgetbench.reports import decisions as DC
from forgetbench.reports.summary import runs_long
from forgetbench.reports.verdict import decisions_frame
from report_records import record


def _folder_records(seeds: int = 16) -> list[dict]:
    """Three strategies on one scenario, seeds added in rounds (the first 3 in round 0, then one a round), with
    forgetting naive ~15, ewc ~2 points and mas within a tenth of a point of ewc on each seed (R = [[0.95, 0.5],
    [0.95 - f, 0.9]])."""
    rng = np.random.default_rng(2)
    ewc = 0.02 + 0.01 * rng.standard_normal(seeds)
    forgetting = {
        "naive": 0.15 + 0.01 * rng.standard_normal(seeds),
        "ewc": ewc,
        "mas": ewc + 0.0005 * rng.standard_normal(seeds),
    }
    out = []
    for strategy, values in forgetting.items():
        for seed, f in enumerate(values):
            r = record("s", strategy, seed, [[0.95, 0.5], [round(0.95 - f, 5), 0.9]])
            r["round"] = max(0, seed - 2)
            out.append(r)
    return out


def test_a_table_of_a_folders_per_seed_numbers_is_decided_as_its_report_decides():
    records = _folder_records()
    options = DC.DecisionOptions(method="sequential")
    report = decisions_frame(records, options=options)
    long = runs_long(records)
    table = long[long.metric == "forgetting"][["scenario", "strategy", "seed", "round", "value"]]
    table = table.rename(columns={"strategy": "method", "round": "order"})
    mine = forgetbench.decide(table, margin=0.01)
    assert len(mine) == len(report) == 3
    both = mine.merge(report, on=["scenario", "first", "second"], suffixes=("_table", "_report"))
    assert (both.outcome_table == both.outcome_report).all()
    assert set(both.outcome_report) >= {"greater", "equivalent"}  # naive > ewc, mas; ewc and mas within a point
    for column in ("p_adjusted", "p_equivalence_adjusted", "n", "decided_at"):
        assert np.allclose(both[f"{column}_table"].astype(float), both[f"{column}_report"].astype(float)), column
    # the report writes points, the table its own unit
    assert np.allclose(100 * both.ci_low_table, both.ci_low_report) and np.allclose(
        100 * both.diff_table, both.diff_report
    )


def test_the_order_column_decides_in_the_order_the_seeds_were_run():
    frame = pd.DataFrame(
        {"method": ["a"] * 4 + ["b"] * 4, "seed": [100, 101, 0, 1] * 2, "order": [0, 0, 1, 2] * 2, "value": range(8)}
    )
    (row,) = forgetbench.decide(frame).itertuples()
    assert list(row.seeds) == [100, 101, 0, 1] and row.method == "sequential"
    assert list(forgetbench.decide(frame.drop(columns="order")).seeds[0]) == [0, 1, 100, 101]


def test_direction_and_baseline_set_the_pairs_order_not_the_outcomes():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        [
            {"method": m, "seed": s, "value": v + 0.01 * rng.standard_normal()}
            for m, v in (("x", 0.9), ("naive", 0.5), ("y", 0.7))
            for s in range(12)
        ]
    )
    lower = forgetbench.decide(frame)
    higher = forgetbench.decide(frame, direction="higher")
    assert list(lower["first"]) == ["naive", "naive", "y"] and list(higher["second"])[:2] == ["x", "y"]

    def ranked(frame: pd.DataFrame) -> set[tuple[str, str]]:  # (lower, higher) per decided pair
        return {(r.first, r.second) if r.outcome == "less" else (r.second, r.first) for r in frame.itertuples()}

    assert ranked(lower) == ranked(higher) == {("naive", "y"), ("naive", "x"), ("y", "x")}
    # the words follow the direction: the better method first, the interval oriented as the claim reads
    from forgetbench.reports.table_decisions import sentences

    (said_lower,) = sentences(lower)
    (said_higher,) = sentences(higher, direction="higher")
    assert "naive < y by" in said_lower and "(naive - y [-" in said_lower
    assert "x > y by" in said_higher and "(x - y [0." in said_higher and "y < x" not in said_higher
    assert "margin 0: no equivalence claim possible" in said_lower  # the table's default margin, said


def test_a_table_in_rounds_is_planned_to_its_budget():
    """With an order column the rounds' budget (--max-seeds) is the planned information: a budget above the seeds
    the table has spends less of alpha by them, so its p is larger; one below them is refused."""
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        [
            {"method": m, "seed": s, "order": max(0, s - 2), "value": v + 0.01 * rng.standard_normal()}
            for m, v in (("a", 0.10), ("b", 0.09))
            for s in range(12)
        ]
    )
    own = forgetbench.decide(frame)
    wide = forgetbench.decide(frame, max_seeds=40)
    assert own.planned.iloc[0] == 12 and wide.planned.iloc[0] == 40
    assert wide.p_value.iloc[0] > own.p_value.iloc[0]
    with pytest.raises(ValueError, match="below the 12 seeds"):
        forgetbench.decide(frame, max_seeds=8)


def test_the_decide_command_takes_the_budget_and_says_the_design(tmp_path, cli, capsys):
    frame = pd.DataFrame(
        {"method": ["a"] * 6 + ["b"] * 6, "seed": list(range(6)) * 2, "order": [0, 0, 0, 1, 2, 3] * 2,
         "value": [0.1, 0.12, 0.11, 0.13, 0.1, 0.12, 0.2, 0.21, 0.19, 0.22, 0.2, 0.21]}
    )  # fmt: skip
    path = tmp_path / "table.csv"
    frame.to_csv(path, index=False)
    assert cli("decide", path, "--max-seeds", "20") == 0
    printed = capsys.readouterr().out
    assert "group-sequential paired t-tests" in printed and "up to the 20 seeds the rounds planned" in printed
    assert cli("decide", path, "--max-seeds", "4") == 2
    assert "max seeds: 4 is below the 6 seeds" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [{"alpha": 0.0}, {"direction": "up"}, {"margin": -1.0}])
def test_bad_options_are_named(bad):
    frame = pd.DataFrame({"method": ["a", "b"], "seed": [0, 0], "value": [0.1, 0.2]})
    with pytest.raises(ValueError, match=next(iter(bad))):
        forgetbench.decide(frame, **bad)


def test_a_blank_order_is_the_first_seeds_and_a_blank_value_is_refused():
    """Records written before the first seeds said round 0 export a blank order: round 0. A blank value was
    dropped, deciding the pair on fewer seeds unsaid: refused, naming the row."""
    frame = pd.DataFrame(
        {"method": ["a"] * 4 + ["b"] * 4, "seed": [0, 1, 2, 3] * 2, "order": [None, None, None, 1] * 2,
         "value": [0.1, 0.12, 0.11, 0.13, 0.2, 0.21, 0.19, 0.22]}
    )  # fmt: skip
    (row,) = forgetbench.decide(frame).itertuples()
    assert row.n == 4 and row.method == "sequential" and row.planned == 4
    frame.loc[5, "value"] = float("nan")
    with pytest.raises(ValueError, match=r"value: empty \(row 6\) is not a finite number"):
        forgetbench.decide(frame)


def test_the_reports_first_screen_says_each_scenarios_claims_in_words():
    """The answer box above the scenarios: a claim reads with the lower method first, whatever the pair's order in
    the frame; equivalences with their margin; the undecided pairs counted, not listed (the Decisions section
    lists them)."""
    import pandas as pd

    from forgetbench.reports.decisions import answer_view

    frame = pd.DataFrame(
        [
            ["s", "each strength alone", "points", "naive", "wpl", "greater", 17.04, 1.0],
            ["s", "each strength alone", "points", "ewc", "wpl", "undecided", 0.4, 1.0],
            ["s", "each strength alone", "points", "mas", "wpl", "equivalent", 0.2, 1.0],
            ["s", "each strength alone", "points", "ewc", "mas", "less", -3.0, 1.0],
            ["t", "naive's LA - 1 points", "points", "ewc", "si", "undecided", 0.1, 1.0],
        ],
        columns=["scenario", "level", "unit", "first", "second", "outcome", "diff", "margin"],
    )
    assert answer_view(frame) == [
        {
            "scenario": "s",
            "level": "each strength alone",
            "claims": [
                "wpl < naive by 17.0 points",
                "mas and wpl equivalent (within +/- 1 points)",
                "ewc < mas by 3.0 points",
            ],
            "undecided": 1,
            "pairs": 4,
        },
        {"scenario": "t", "level": "naive's LA - 1 points", "claims": [], "undecided": 1, "pairs": 1},
    ]
