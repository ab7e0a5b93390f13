"""The verdict decides each pair (A < B, A > B, equivalent, undecided) with Holm-adjusted p over the pairs it
compares, and names a winner only where it is decided lower than every other strategy on >= 3 seeds (hand-built
cases)."""

from __future__ import annotations

import pandas as pd

from forgetbench.reports.verdict import headline_metric, scenario_verdict, search_outcome


def long_frame(forgetting: dict[str, list[float]], metric: str = "forgetting") -> pd.DataFrame:
    """runs_long-style rows: one value of ``metric`` per (strategy, seed)."""
    rows = [
        {"scenario": "s", "strategy": s, "strategy_name": s, "seed": seed, "metric": metric, "value": v}
        for s, values in forgetting.items()
        for seed, v in enumerate(values)
    ]
    return pd.DataFrame(rows)


def test_clear_winner_is_named_with_its_adjusted_p_values():
    # naive 20+-1, wpl 1+-.1, ewc 10+-1: wpl beats naive and ewc on every seed by a wide, steady margin
    long = long_frame({"naive": [0.20, 0.21, 0.19], "ewc": [0.10, 0.12, 0.09], "wpl": [0.010, 0.011, 0.009]})
    headline, detail = scenario_verdict(long, "naive")
    assert headline.startswith("Forgets least: wpl (forgetting 1.0 points")
    assert "lower than every other strategy, p <= " in headline and "Holm-adjusted over the 3 pairs tested" in headline
    assert detail.startswith("Decisions on forgetting (points; each pair on the seeds both ran; p Holm-adjusted")
    assert "wpl < naive by 19.0" in detail and "wpl < ewc by 9.3" in detail and "3 seeds" in detail
    assert "not adjusted" not in headline + detail


def test_two_regularizers_that_differ_by_noise_are_left_undecided_with_a_seed_estimate():
    # both far below naive; wpl vs si differ by +-0.5 points in opposite directions: no winner between them
    long = long_frame({"naive": [0.20, 0.22, 0.18], "si": [0.015, 0.010, 0.020], "wpl": [0.010, 0.015, 0.012]})
    headline, detail = scenario_verdict(long, "naive")
    assert "Forgets least" not in headline
    assert headline.startswith("Less forgetting than naive 20.0 points (Holm-adjusted over the 3 pairs tested): ")
    assert "not decided lower than si" in headline
    assert "wpl vs si: undecided, interval [" in detail and "more seed" in detail


def test_no_decided_difference_says_so_with_the_pairs_interval():
    long = long_frame({"naive": [0.10, 0.02, 0.06], "ewc": [0.05, 0.04, 0.03]})  # diffs -5, +2, -3 points
    headline, _ = scenario_verdict(long, "naive")
    assert headline.startswith("No strategy forgets less than naive on this suite")
    assert "naive vs ewc: undecided, interval [" in headline


def test_a_pair_within_the_margin_is_called_equivalent():
    # ewc and mas within a tenth of a point of each other on every seed, both far below naive
    long = long_frame(
        {
            "naive": [0.20, 0.22, 0.18, 0.21],
            "ewc": [0.0100, 0.0120, 0.0110, 0.0105],
            "mas": [0.0101, 0.0121, 0.0109, 0.0106],
        }
    )
    headline, detail = scenario_verdict(long, "naive")
    assert headline.startswith("Forget least, equivalent within +/- 1.0 points of each other: ")
    assert "ewc and mas: equivalent within +/- 1.0 points" in detail or "mas and ewc: equivalent" in detail


def test_fewer_than_three_seeds_names_no_winner_and_flags_the_intervals():
    long = long_frame({"naive": [0.30, 0.31], "ewc": [0.01, 0.02]})
    (line,) = scenario_verdict(long, "naive")
    assert line.startswith("Too few seeds to name a winner: 2 seed(s)") and "not informative" in line


def test_references_are_not_contenders():
    long = long_frame({"naive": [0.20, 0.21, 0.19], "ewc": [0.10, 0.12, 0.09], "joint": [0.0, 0.0, 0.0]})
    headline, _ = scenario_verdict(long, "naive", {"joint"})
    assert headline.startswith("Forgets least: ewc")


def test_a_comparison_on_fewer_than_three_shared_seeds_is_never_decided():
    # naive has 3 seeds but ewc finished only 2 (one diverged): a p on 2 pairs must not count
    long = long_frame({"naive": [0.30, 0.20, 0.25], "ewc": [0.01, 0.02]})
    headline, _ = scenario_verdict(long, "naive")
    assert headline.startswith("No strategy forgets less than naive")
    assert "undecided (2 paired seed(s): at least 3 are needed to test)" in headline


def test_a_search_is_judged_on_its_forgetting_value_in_its_own_unit():
    def frame(values: dict[str, float]) -> pd.DataFrame:
        return pd.DataFrame({"metric": list(values), "value": list(values.values())})

    # a search keeps no row per task (forgetting NaN): its forgetting value; a sequential schedule: forgetting
    nan = float("nan")
    assert headline_metric(frame({"forgetting": nan, "forgetting_value_mean": 0.1})) == "forgetting_value_mean"
    assert headline_metric(frame({"forgetting": 0.2, "forgetting_value_mean": 0.1})) == "forgetting"
    assert headline_metric(frame({"forgetting": nan, "err_gap_mean": nan, "curve_max_drop": 0.3})) == "curve_max_drop"
    assert headline_metric(frame({"forgetting": nan})) is None
    long = long_frame({"naive": [0.10, 0.09, 0.11], "wpl": [0.10, 0.08, 0.12]}, metric="lm_forgetting_mean")
    line, *_ = scenario_verdict(long, "naive")
    assert "lowest wpl 0.100 vs naive 0.100 nats" in line and "points" not in line


def test_search_outcome_gives_each_paired_difference_against_naive_by_hand():
    long = pd.concat(
        [
            long_frame({"naive": [0.10, 0.00, 0.05], "wpl": [0.04, 0.00, 0.02]}, metric="regret"),  # diffs -6, 0, -3
            long_frame({"naive": [70.0, 72.0, 71.0], "wpl": [69.0, 73.0, 70.0]}, metric="derived_test_ppl"),
            long_frame({"naive": [0.2, 0.1, 0.3], "wpl": [0.2, 0.1, 0.3]}, metric="forgetting"),  # not an outcome
        ]
    )
    (line,) = search_outcome(long, "naive")
    # regret: diffs -6, 0, -3 points: t = -3 / (3 / sqrt 3) = -1.732, two-sided p (2 df) = 0.225;
    # ppl: diffs -1, +1, -1: t = -0.333 / (1.155 / sqrt 3) = -0.5, p = 0.667
    assert line == (
        "What the search ships, wpl vs naive on the same seeds: regret -3.0 points (p = 0.225); "
        "derived test ppl -0.33 (p = 0.667)."
    )
    assert search_outcome(long[long.metric == "forgetting"], "naive") == []
    assert search_outcome(long, None) == []


def _runs(strategy: str, la: float, forgetting: list[float], name: str | None = None) -> list[dict]:
    """Hand records on seeds 0.. of one scenario: R = [[la, .5], [la - f, la]], so LA = la and forgetting = f."""
    from report_records import record

    return [
        record("sweep", strategy, seed, [[la, 0.5], [la - f, la]], name=name or strategy.partition("[")[0])
        for seed, f in enumerate(forgetting)
    ]


def test_a_strength_that_crushes_plasticity_never_heads_the_verdict_as_lowest_forgetting():
    """The headline named "lowest forgetting si[si_lambda=3000]" whose LA was 64.5 against naive's 97.3."""
    from forgetbench.reports.verdict import verdicts

    records = (
        _runs("naive", 0.973, [0.16, 0.15, 0.17, 0.16])
        + _runs("si[si_lambda=30]", 0.96, [0.08, 0.07, 0.09, 0.08])
        + _runs("si[si_lambda=3000]", 0.645, [0.001, 0.0, 0.002, 0.001])
        + _runs("ewc[ewc_lambda=10]", 0.965, [0.05, 0.06, 0.05, 0.04])
        + _runs("ewc[ewc_lambda=1000]", 0.95, [0.01, 0.02, 0.01, 0.015])
    )
    lines = verdicts(records)["sweep"]
    assert lines[0].startswith("At matched plasticity (the suite's runs, 4 seed(s)")  # several strengths: matched
    assert not any(
        "si[si_lambda=3000]" in line and ("Forgets least" in line or "owest forgetting" in line) for line in lines
    )
    assert any(line.startswith("Trades plasticity") and "si[si_lambda=3000] (LA 64.5" in line for line in lines)

    # one strength per method: the forgetting verdict heads, LA beside each figure, the trader named apart
    single = [r for r in records if r["strategy"]["label"] in ("naive", "si[si_lambda=3000]", "ewc[ewc_lambda=10]")]
    lines = verdicts(single)["sweep"]
    assert lines[0].startswith(
        "Forgets least: ewc[ewc_lambda=10] (forgetting 5.0 points at LA 96.5 vs naive 16.0 points at LA 97.3, a 69% cut"
    )
    assert "p <= <0.001 Holm-adjusted over the 1 pair tested" in lines[0]
    assert "ewc[ewc_lambda=10] < naive by 11.0" in lines[1]  # the one pair: the trader is no contender
    assert lines[-1].startswith("Trades plasticity (LA more than 5 points below naive's 97.3)")


def test_every_p_value_names_both_sides():
    """ "next best si 57.6, paired p = 0.008" read as against naive; it was against wpl: every decision names its
    pair."""
    long = long_frame(
        {"naive": [0.30, 0.32, 0.31, 0.29], "wpl": [0.02, 0.03, 0.02, 0.025], "si": [0.10, 0.12, 0.11, 0.09]}
    )
    _, detail = scenario_verdict(long, "naive")
    for pair in ("wpl < naive by", "si < naive by", "wpl < si by"):
        assert pair in detail
    assert detail.count("p = ") == 3


def test_a_choice_on_the_edge_of_its_range_is_flagged_in_the_verdict():
    from forgetbench.reports.verdict import EDGE_PREFIX, edge_lines, verdicts

    study = {
        "scenario": "sweep",
        "strategy": "ewc",
        "chosen": {"ewc_lambda": 10.22},
        "chosen_on_edge": {"ewc_lambda": "low"},
        "search_range": {"ewc_lambda": [10.0, 100000.0]},
    }
    inside = {**study, "strategy": "si", "chosen": {"si_lambda": 20.0}, "chosen_on_edge": {}}
    assert edge_lines([study, inside]) == {
        "sweep": [
            f"{EDGE_PREFIX} (the best strength may lie beyond it): ewc, ewc_lambda 10.22 at the low end of 10 to 100000."
        ]
    }
    records = _runs("naive", 0.97, [0.16, 0.15, 0.17]) + _runs("ewc", 0.96, [0.01, 0.02, 0.01])
    assert verdicts(records, tuning=[study])["sweep"][-1].startswith(EDGE_PREFIX)
