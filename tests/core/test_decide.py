"""The statistics of a decision (benchmark/core/decide.py): the sign-flip tests and e-process by hand and against a
slow reference, one family's claims read off one interval, and a simulation battery on the shapes the tool
produces (the 1/450 grid, ties, t3 and skewed differences, real per-seed numbers, first seeds 100-102, families
of 10 pairs, 4 methods under the rounds). Every rate is checked at a 99.9% Clopper-Pearson bound over 4,000
sequences or more; each check fails when the rule is swapped for the fixed-n t-test recomputed at every look
(``test_the_battery_fails_the_recomputed_t_test`` shows it does, on the same draws)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from forgetbench.benchmark.core import decide as D
from forgetbench.benchmark.perf.measurements import decision_error_rates as M

ALPHA = 0.05
START, MAX = 3, 20  # the adaptive rule's first seeds and budget, as seeds: {start: 3, max: 20}
SIMS = 4000
MARGIN = 0.01
REAL = Path(__file__).parents[1] / "data" / "two_model_forgetting_40_seeds.csv"


def _upper(successes: int, trials: int, confidence: float = 0.999) -> float:
    """Clopper-Pearson one-sided upper bound of a binomial rate."""
    return 1.0 if successes == trials else float(stats.beta.ppf(confidence, successes + 1, trials - successes))


def _lower(successes: int, trials: int, confidence: float = 0.999) -> float:
    return 0.0 if successes == 0 else float(stats.beta.ppf(1 - confidence, successes, trials - successes + 1))


def _below_alpha(hits: np.ndarray) -> bool:
    """The rate is below alpha with 99.9% confidence (where the theory guarantees it: symmetric differences)."""
    return _upper(int(hits.sum()), hits.size) <= ALPHA


def _not_above_alpha(hits: np.ndarray) -> bool:
    """The rate is not shown above alpha at 99.9% (where the guarantee holds only approximately: skewed
    differences, outside the model)."""
    return _lower(int(hits.sum()), hits.size) <= ALPHA


# --- by hand ----------------------------------------------------------------------------------------------------------


def test_the_e_process_is_its_definition_written_out():
    """log E_k: the mean over the bets of the product of (1 + tanh(c z_s)), z_s = x_s / rms(x_1..x_s): the slow
    reference, one term at a time."""
    x = np.array([0.3, -0.1, 0.0, 0.5, 0.2, -0.4, 0.25])
    expected = []
    for k in range(1, x.size + 1):
        terms = []
        for c in [*D.BETS, *(-b for b in D.BETS)]:
            product = 1.0
            for s in range(k):
                rms = math.sqrt(sum(v * v for v in x[: s + 1]) / (s + 1))
                product *= 1 + math.tanh(c * x[s] / rms) if rms > 0 else 1.0
            terms.append(product)
        expected.append(math.log(sum(terms) / len(terms)))
    assert D.log_evidence(x) == pytest.approx(expected, rel=1e-12)


def test_the_e_process_is_a_martingale_under_symmetry():
    """E[E_k] = 1 under the null, for every k: the exact mean over all 2^n sign patterns of fixed sizes."""
    sizes = np.array([0.3, 0.1, 0.0, 0.5, 0.2, 0.4, 0.25, 0.05])
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=sizes.size)))
    evidence = np.exp(D.log_evidence(signs * sizes))
    assert evidence.mean(axis=0) == pytest.approx(np.ones(sizes.size), rel=1e-12)


def test_the_issues_tie_example_is_not_decided():
    """Two equal differences in a prefix gave the t-mixture sd 0, evidence infinity and "greater, p = 0": here a
    tie is no evidence."""
    pair = D.evidence("a", "b", range(5), [0.0022, 0.0022, 0.05, -0.04, 0.01], MARGIN, "sequential")
    decision = D.decide([pair])[0]
    assert decision.outcome == "undecided" and decision.p_value > 0.05
    assert not (decision.ci_low == decision.ci_high)


def test_four_outcomes_one_family_and_intervals_that_agree():
    rng = np.random.default_rng(0)
    seeds = list(range(20))
    for method in ("fixed", "sequential"):  # one rule: how the seeds came is said, the sets are the same
        pairs = [
            D.evidence("wpl", "naive", seeds, rng.normal(-0.2, 0.02, 20), MARGIN, method),
            D.evidence("naive", "si", seeds, rng.normal(0.2, 0.02, 20), MARGIN, method),
            D.evidence("ewc", "mas", seeds, rng.normal(0.0, 0.002, 20), MARGIN, method),
            D.evidence("ewc", "si", seeds, rng.normal(0.004, 0.03, 20), MARGIN, method),
            D.evidence("ewc", "l2", seeds[:2], [0.1, 0.2], MARGIN, method),
        ]
        decisions = D.decide(pairs)
        assert [d.outcome for d in decisions] == ["less", "greater", "equivalent", "undecided", "undecided"], method
        assert all(d.family == 5 for d in decisions)
        for d in decisions[:4]:  # every claim agrees with the interval printed beside it
            assert (d.outcome == "less") == (d.ci_high <= 0)
            assert (d.outcome == "greater") == (d.ci_low >= 0)
            if d.outcome == "equivalent":
                assert -MARGIN <= d.ci_low and d.ci_high <= MARGIN
            assert (d.p_adjusted <= ALPHA) == (d.outcome in ("less", "greater"))
        assert decisions[3].more_seeds is None or decisions[3].more_seeds > 0  # far off: out of reach, or a count
        assert decisions[4].note.startswith("2 paired seed(s)") and math.isnan(decisions[4].ci_low)


def test_more_seeds_says_about_where_the_set_would_decide():
    """The estimate continues the differences at the normal quantiles of their mean and spread; continued so to the
    estimated count, the production set decides there (and not a few seeds before)."""
    from scipy import special

    mean, sd, n = 0.01, 0.01, 4
    z = special.ndtri(D._van_der_corput(200))
    d = mean + sd * np.concatenate([[0.3, -0.3, 0.1, -0.1], z])  # 4 observed, then the continuation
    pair = D.evidence("a", "b", range(n), d[:n], MARGIN)
    more = D.more_seeds(pair, 3)
    assert more is not None and 3 <= more <= 40
    at = lambda k: D.decide([D.evidence("a", "b", range(k), d[:k], MARGIN)], family=3)[0].outcome  # noqa: E731
    assert at(n + more + 2) != "undecided" and at(n + more - 3) == "undecided"


def test_the_reach_is_the_fewest_seeds_that_can_decide():
    # k equal signs give at most 2^k; two-sided at alpha / m needs 2 m / alpha: 2^6 < 40 and 2^9 < 400
    assert D.reach(1, ALPHA) == 7 and D.reach(10, ALPHA) == 10
    for m in (1, 3, 10):
        n = D.reach(m, ALPHA)
        before = D.evidence("a", "b", range(n - 1), np.full(n - 1, 0.05), MARGIN)
        at = D.evidence("a", "b", range(n), np.full(n, 0.05), MARGIN)
        assert D.decide([before], family=m)[0].outcome == "undecided"
        assert D.decide([at], family=m)[0].outcome == "greater"


def test_the_pairs_seeds_are_in_the_order_they_were_run():
    pair = D.evidence("a", "b", [100, 101, 102, 0, 1], [1, 2, 3, 4, 5], MARGIN, "sequential", order=[0, 0, 0, 1, 2])
    assert pair.seeds == (100, 101, 102, 0, 1) and pair.differences == (1, 2, 3, 4, 5)
    assert D.evidence("a", "b", [3, 1, 2], [3, 1, 2], MARGIN).seeds == (1, 2, 3)  # no order: by seed number


def test_a_sequential_decision_stays_made_and_says_when():
    rng = np.random.default_rng(5)
    d = rng.normal(0.05, 0.02, 20)
    first = None
    for n in range(3, 21):
        decision = D.decide([D.evidence("a", "b", range(n), d[:n], MARGIN, "sequential")])[0]
        if decision.outcome == "greater" and first is None:
            first = n
        if first is not None:
            assert decision.outcome == "greater" and decision.decided_at == first
    assert first is not None


# --- the simulation battery -------------------------------------------------------------------------------------------

RNG_SEED = 20261127


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(RNG_SEED)


@pytest.mark.parametrize("sd_points", [0.3, 0.7, 2.0])
def test_no_difference_on_the_grid_keeps_alpha(sd_points, rng):
    d = M.on_grid(rng, 0.0, sd_points / 100, (SIMS, MAX))
    assert (d[:, :START] == d[:, 1 : START + 1]).any()  # ties are in the data
    false = M.excluded(d, 0.0, ALPHA, MAX)  # any look from 1 to 20 seeds: fixed seeds or rounds alike
    assert _below_alpha(false), false.mean()


def test_heavy_tails_and_skew_one_keep_alpha(rng):
    heavy = M.t3(rng, (SIMS, MAX))
    assert _below_alpha(M.excluded(heavy, 0.0, ALPHA, MAX))
    skew = M.skewed(rng, 1.0, (2 * SIMS, MAX))  # not symmetric: outside the model, the rate measured
    assert _not_above_alpha(M.excluded(skew, 0.0, ALPHA, MAX))


def test_a_null_of_real_per_seed_numbers_keeps_alpha(rng):
    real = pd.read_csv(REAL, comment="#")
    for method, group in real.groupby("method"):
        d = M.self_paired(rng, group.value.to_numpy(), (SIMS, MAX))
        assert _below_alpha(M.excluded(d, 0.0, ALPHA, MAX)), method


def test_equivalence_on_the_margin_keeps_alpha_and_the_interval_covers(rng):
    for mean in (MARGIN, -MARGIN):
        d = M.on_grid(rng, mean, 0.01, (SIMS, MAX))
        missed = M.excluded(d, mean, ALPHA, MAX)  # a false "equivalent" needs this
        assert _below_alpha(missed), missed.mean()
        assert _lower(int((~missed).sum()), SIMS) >= 1 - ALPHA  # coverage at every look, at once


def test_first_seeds_numbered_100_to_102_are_decided_in_run_order(rng):
    d = M.on_grid(rng, 0.0, 0.007, (SIMS, MAX))
    assert _below_alpha(M.excluded(d, 0.0, ALPHA, MAX))
    # seeds sorted by number instead: the looks no longer see prefixes of one sequence, and the rate climbs
    assert M.sorted_by_seed(d, 0.0, ALPHA, START, MAX).mean() > M.excluded(d, 0.0, ALPHA, MAX).mean()


def test_a_family_of_ten_pairs_keeps_one_alpha_for_every_claim(rng):
    """5 pairs with no difference and 5 on the equivalence margin: any false claim of either kind needs a pair's
    set to miss its mean; the family's sets are at 1 - alpha / 10."""
    means = np.array([0.0] * 5 + [MARGIN] * 5)
    d = M.on_grid(rng, 0.0, 0.01, (SIMS, 10, MAX)) + means[None, :, None]
    any_false = M.excluded(d, means[None, :], ALPHA / 10, MAX).any(axis=1)
    assert _below_alpha(any_false), any_false.mean()


@pytest.mark.slow  # the rounds with the production decisions at every look: about a minute
def test_four_methods_under_the_rounds_make_no_more_false_claims_than_alpha():
    """The suite's rule itself: 4 methods (two alike, one a point better, one much better), decided as one family
    by ``decide`` after every round, a seed added to every method still in an undecided pair, up to 20. Every
    false claim is counted (a "less" where the means are equal, an "equivalent" of the far pair, ...)."""
    rng = np.random.default_rng(4)
    means = {"a": 0.10, "b": 0.10, "c": 0.09, "d": 0.04}
    sims = 400
    false = np.zeros(sims, dtype=bool)
    for i in range(sims):
        values = {k: M.on_grid(rng, v, 0.01, (MAX,)) for k, v in means.items()}
        have = dict.fromkeys(means, START)
        while True:
            pairs = [
                D.evidence(
                    x,
                    y,
                    range(min(have[x], have[y])),
                    (values[x] - values[y])[: min(have[x], have[y])],
                    MARGIN,
                    "sequential",
                )
                for x, y in itertools.combinations(means, 2)
            ]
            decisions = D.decide(pairs, ALPHA, project=False)
            for d in decisions:
                truth = means[d.first] - means[d.second]
                wrong = {
                    "less": truth >= 0,
                    "greater": truth <= 0,
                    "equivalent": abs(truth) >= MARGIN,
                }.get(d.outcome, False)
                false[i] |= wrong
            open_ = {x for d in decisions if d.outcome == "undecided" for x in (d.first, d.second)}
            grow = [k for k in open_ if have[k] < MAX]
            if not grow:
                break
            for k in grow:
                have[k] += 1
    assert _upper(int(false.sum()), sims, 0.99) <= ALPHA, false.mean()


def test_the_battery_fails_the_recomputed_t_test(rng):
    """The same draws under the fixed-n t-test recomputed after every look: far above alpha, so each check above
    fails when the rule is swapped for it."""
    d = M.on_grid(rng, 0.0, 0.007, (SIMS, MAX))
    t = M.recomputed_t(d, 0.0, ALPHA, START, MAX)
    assert _lower(int(t.sum()), SIMS) > ALPHA, t.mean()
    skew = M.skewed(rng, 1.0, (SIMS, MAX))
    assert _lower(int(M.recomputed_t(skew, 0.0, ALPHA, START, MAX).sum()), SIMS) > ALPHA


def test_a_one_sd_difference_is_decided_within_20_seeds_most_of_the_time():
    rng = np.random.default_rng(11)
    d = rng.normal(0.01, 0.01, (SIMS, MAX))
    found = [D.sequential_set(row, MARGIN, ALPHA) for row in d]
    decided = np.array([D.outcome_of(f, ALPHA, 1) == "greater" for f in found])
    assert _lower(int(decided.sum()), SIMS) >= 0.80, decided.mean()
