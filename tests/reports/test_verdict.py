"""The verdict decides each pair (A < B, A > B, equivalent, undecided) about its mean difference as one family
(paired t-tests, Holm's step-down, one alpha for every claim), prints each pair's interval at the level its claim was
tested at, and names a winner only where it is decided lower than every other strategy (hand-built cases)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from forgetbench.reports.search_verdict import search_outcome
from forgetbench.reports.verdict import headline_metric, scenario_verdict

SEEDS = 12


def long_frame(forgetting: dict[str, list[float]], metric: str = "forgetting") -> pd.DataFrame:
    """runs_long-style rows: one value of ``metric`` per (strategy, seed)."""
    rows = [
        {"scenario": "s", "strategy": s, "strategy_name": s, "seed": seed, "metric": metric, "value": v}
        for s, values in forgetting.items()
        for seed, v in enumerate(values)
    ]
    return pd.DataFrame(rows)


def around(mean: float, spread: float, seed: int, n: int = SEEDS) -> list[float]:
    """``n`` values of ``mean`` plus noise of sd ``spread`` (seeded)."""
    return list(mean + spread * np.random.default_rng(seed).standard_normal(n))


def test_clear_winner_is_named_with_its_adjusted_p_values():
    # naive 20, ewc 10, wpl 1: wpl beats naive and ewc on every seed by a wide, steady margin
    long = long_frame({"naive": around(0.20, 0.01, 1), "ewc": around(0.10, 0.01, 2), "wpl": around(0.010, 0.001, 3)})
    headline, detail = scenario_verdict(long, "naive")
    assert headline.startswith("Forgets least: wpl (forgetting 1.0 points")
    assert "lower than every other strategy, adjusted p < 0.001" in headline
    assert "; every claim at family-wise 0.05 over the 3 pairs)" in headline
    assert detail.startswith("Decisions on forgetting (points; paired t-tests of each pair's mean difference")
    assert "Holm's step-down over the 3 pairs: differences at family-wise 0.04, equivalence" in detail
    # the better method first, the interval oriented as the claim reads, its level and the adjusted p named
    assert "wpl < naive by 19.2 (wpl - naive [-" in detail and "wpl < ewc by" in detail and f"{SEEDS} seeds" in detail
    assert "] at 98.7%; adjusted p < 0.001" in detail  # Holm's level for the third pair: 1 - 0.04 / 3


def test_two_regularizers_that_differ_by_noise_are_left_undecided_with_a_seed_estimate():
    # both far below naive; wpl vs si differ by noise of half a point: no winner between them
    long = long_frame({"naive": around(0.20, 0.01, 1), "si": around(0.015, 0.005, 2), "wpl": around(0.013, 0.005, 3)})
    headline, detail = scenario_verdict(long, "naive")
    assert "Forgets least" not in headline
    assert headline.startswith("Less forgetting than naive 20.")
    assert "not decided lower than si" in headline or "not decided lower than wpl" in headline
    assert "wpl vs si: undecided, wpl - si [" in detail or "si vs wpl: undecided, si - wpl [" in detail
    assert "more seed" in detail


def test_no_decided_difference_says_so_with_the_pairs_interval():
    long = long_frame({"naive": around(0.06, 0.03, 1), "ewc": around(0.05, 0.03, 2)})
    headline, _ = scenario_verdict(long, "naive")
    assert headline.startswith("No strategy forgets less than naive on this suite")
    assert "naive vs ewc: undecided, naive - ewc [" in headline


def test_a_pair_within_the_margin_is_called_equivalent():
    # ewc and mas within a tenth of a point of each other on every seed, both far below naive
    ewc = around(0.011, 0.001, 2, 16)
    long = long_frame(
        {"naive": around(0.20, 0.01, 1, 16), "ewc": ewc, "mas": list(np.array(ewc) + around(0.0, 0.0005, 3, 16))}
    )
    headline, detail = scenario_verdict(long, "naive")
    assert headline.startswith("Forget least, equivalent within +/- 1.0 points of each other: ")
    assert "ewc and mas: equivalent within +/- 1.0 points" in detail or "mas and ewc: equivalent" in detail


def test_three_seeds_far_apart_are_decided_and_three_close_ones_are_not():
    """The paired t-test decides a 10-point difference whose spread is a point on 3 seeds (and its skew-corrected
    form agrees); a 1-point difference with a 3-point spread stays undecided, with about how many more seeds."""
    far = long_frame({"naive": [0.20, 0.21, 0.19], "ewc": [0.10, 0.12, 0.09]})
    headline, detail = scenario_verdict(far, "naive")
    assert headline.startswith("Forgets least: ewc") and "ewc < naive by 9.7" in detail
    close = long_frame({"naive": [0.20, 0.16, 0.21], "ewc": [0.17, 0.19, 0.18]})
    headline, detail = scenario_verdict(close, "naive")
    assert "Forgets least" not in headline and "undecided" in headline and "more seed" in headline


def test_fewer_than_three_seeds_names_no_winner_and_flags_the_intervals():
    long = long_frame({"naive": [0.30, 0.31], "ewc": [0.01, 0.02]})
    (line,) = scenario_verdict(long, "naive")
    assert line.startswith("Too few seeds to name a winner: 2 seed(s)") and "not informative" in line


def test_references_are_not_contenders():
    long = long_frame({"naive": around(0.20, 0.01, 1), "ewc": around(0.10, 0.01, 2), "joint": [0.0] * SEEDS})
    headline, _ = scenario_verdict(long, "naive", {"joint"})
    assert headline.startswith("Forgets least: ewc")


def test_a_comparison_on_fewer_than_three_shared_seeds_is_never_decided():
    # naive has 3 seeds but ewc finished only 2 (one diverged): a p on 2 pairs must not count
    long = long_frame({"naive": [0.30, 0.20, 0.25], "ewc": [0.01, 0.02]})
    headline, detail = scenario_verdict(long, "naive")
    assert "Forgets least" not in headline and "undecided (2 paired seed(s): at least 3 are needed" in headline
    assert "1 pair not tested, on fewer than 3 paired seeds: naive vs ewc (2)" in detail


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
    assert "0.100 nats" in line and "points" not in line


def test_search_outcome_gives_each_paired_difference_against_naive_by_hand():
    long = pd.concat(
        [
            long_frame({"naive": [0.10, 0.00, 0.05], "wpl": [0.04, 0.00, 0.02]}, metric="regret"),  # diffs -6, 0, -3
            long_frame({"naive": [70.0, 72.0, 71.0], "wpl": [69.0, 73.0, 70.0]}, metric="derived_test_ppl"),
            long_frame({"naive": [0.2, 0.1, 0.3], "wpl": [0.2, 0.1, 0.3]}, metric="forgetting"),  # not an outcome
        ]
    )
    (line,) = search_outcome(long, "naive")
    # regret: diffs -6, 0, -3 points; ppl: diffs -1, +1, -1: three seeds this spread decide nothing (p is Holm's
    # adjusted p of the paired t-tests against naive)
    assert line.startswith("What the search ships, wpl vs naive on the same seeds: regret -3.0 points (p = ")
    assert "derived test ppl -0.33 (p = " in line and "3 seeds" in line
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
        _runs("naive", 0.973, around(0.16, 0.01, 1))
        + _runs("si[si_lambda=30]", 0.96, around(0.08, 0.01, 2))
        + _runs("si[si_lambda=3000]", 0.645, around(0.001, 0.0005, 3))
        + _runs("ewc[ewc_lambda=10]", 0.965, around(0.05, 0.008, 4))
        + _runs("ewc[ewc_lambda=1000]", 0.95, around(0.013, 0.004, 5))
    )
    lines = verdicts(records)["sweep"]
    assert lines[0].startswith(f"At matched plasticity (the suite's runs, {SEEDS} seed(s)")  # several strengths
    assert not any(
        "si[si_lambda=3000]" in line and ("Forgets least" in line or "owest forgetting" in line) for line in lines
    )
    assert any(line.startswith("Trades plasticity") and "si[si_lambda=3000] (LA 64.5" in line for line in lines)

    # one strength per method: the forgetting verdict heads, LA beside each figure, the trader named apart
    single = [r for r in records if r["strategy"]["label"] in ("naive", "si[si_lambda=3000]", "ewc[ewc_lambda=10]")]
    lines = verdicts(single)["sweep"]
    # the trader forgets least by far, and stays in the family (the plan compares it), but never heads the verdict
    assert lines[0].startswith("Of the strategies that act and keep plasticity, forgets least: ewc[ewc_lambda=10]")
    assert "every claim at family-wise 0.05 over the 3 pairs" in lines[0]
    assert "ewc[ewc_lambda=10] < naive by" in lines[1] and "si[si_lambda=3000] < naive by" in lines[1]
    assert lines[-1].startswith("Trades plasticity (LA more than 5 points below naive's on the same seeds)")
    assert "si[si_lambda=3000] (LA 64.5 vs naive's 97.3" in lines[-1]


def test_every_p_value_names_both_sides():
    """ "next best si 57.6, paired p = 0.008" read as against naive; it was against wpl: every decision names its
    pair."""
    long = long_frame({"naive": around(0.30, 0.01, 1), "wpl": around(0.02, 0.004, 2), "si": around(0.10, 0.01, 3)})
    _, detail = scenario_verdict(long, "naive")
    for pair in ("wpl < naive by", "si < naive by", "wpl < si by"):
        assert pair in detail
    assert detail.count("p = ") + detail.count("p < ") == 3
    assert "(wpl - naive [" in detail and "(si - naive [" in detail and "(wpl - si [" in detail


def test_a_choice_on_the_edge_of_its_range_is_flagged_in_the_verdict():
    from forgetbench.reports.search_verdict import EDGE_PREFIX, edge_lines
    from forgetbench.reports.verdict import verdicts

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


def test_a_strength_whose_penalty_does_not_act_is_named_alone_with_its_cut():
    """Each strength is judged on its own: si 0.3 (ratio 0.001: inert) is named with its cut against naive, si 3
    (ratio 0.02) is not, though half of si's runs at all strengths were inert (the method-level rule named both)."""
    from report_records import record

    from forgetbench.reports.verdict import IDLE_PREFIX, verdicts

    records = []
    for label, ratio, forgetting in (
        ("naive", None, 0.16),
        ("si[si_lambda=0.3]", 0.001, 0.158),
        ("si[si_lambda=3]", 0.02, 0.10),
    ):
        for seed, f in enumerate(around(forgetting, 0.01, seed=len(records))):
            extra = (
                {}
                if ratio is None
                else {"si_penalty_to_data_gradient": [None, ratio], "si_penalty_inert": [1] if ratio < 0.01 else []}
            )
            records.append(
                record("s", label, seed, [[0.95, 0.5], [0.95 - f, 0.95]], name=label.partition("[")[0], **extra)
            )
    (idle,) = [line for line in verdicts(records)["s"] if line.startswith(IDLE_PREFIX)]
    assert "si[si_lambda=0.3] (forgetting cut vs naive" in idle and "si[si_lambda=3]" not in idle
