"""The statistics of a decision (benchmark/core/decide.py): hand-computed Holm and TOST, the anytime-valid evidence
against its defining integral, and simulations showing the stated error rates under the adaptive (seeds added until
decided) and fixed rules, and that the recomputed t-test under the adaptive rule exceeds them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from forgetbench.benchmark.core import decide as D

ALPHA = 0.05
START, MAX = 3, 20  # the adaptive rule's first seeds and budget, as seeds: {start: 3, max: 20}
SIMS = 4000


def _upper(successes: int, trials: int, confidence: float = 0.999) -> float:
    """Clopper-Pearson one-sided upper bound of a binomial rate."""
    return 1.0 if successes == trials else float(stats.beta.ppf(confidence, successes + 1, trials - successes))


def _lower(successes: int, trials: int, confidence: float = 0.999) -> float:
    return 0.0 if successes == 0 else float(stats.beta.ppf(1 - confidence, successes, trials - successes + 1))


# --- hand-computed examples -------------------------------------------------------------------------------------


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    assert D.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # the compare_demo family: 10 pairs; 0.0013 and 0.0034 stand, 0.0447 does not
    p = [0.0013, 0.0034, 0.0447, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    adjusted = D.holm(p)
    assert adjusted[0] == pytest.approx(0.013) and adjusted[1] == pytest.approx(0.0306)
    assert adjusted[2] == pytest.approx(0.0447 * 8) and adjusted[2] > ALPHA


def test_fixed_tests_by_hand():
    d = np.array([0.2, -0.1, 0.1, 0.0])  # mean 0.05, sd sqrt(0.05 / 3), se = sd / 2
    mean, sd = 0.05, math.sqrt(0.05 / 3)
    se = sd / 2
    p_diff, p_eq = D.fixed_tests(d, margin=0.5)
    assert float(p_diff) == pytest.approx(2 * stats.t.sf(mean / se, 3))
    # TOST: the larger of P(T > (mean + 0.5) / se) and P(T > (0.5 - mean) / se)
    assert float(p_eq) == pytest.approx(max(stats.t.sf((mean + 0.5) / se, 3), stats.t.sf((0.5 - mean) / se, 3)))
    low, high = D.fixed_interval(d, 0.95)
    half = stats.t.ppf(0.975, 3) * se
    assert (float(low), float(high)) == pytest.approx((mean - half, mean + half))


@pytest.mark.slow  # two-dimensional quadrature: 8 s, for the full tier
def test_the_mixture_evidence_is_its_defining_integral():
    """E_n: the normal-prior t-test Bayes factor, checked against numerical integration over the effect and the
    right-Haar prior on the spread (the slow reference)."""
    from scipy import integrate

    rng = np.random.default_rng(1)
    g = D.MIXTURE_G
    for mu in (0.0, 0.4):
        x = rng.normal(mu, 1.3, size=6)
        n = x.size
        t = x.mean() / (x.std(ddof=1) / math.sqrt(n))

        def likelihood(mean: float, sigma: float, x: np.ndarray = x) -> float:
            return float(np.prod(stats.norm.pdf(x, mean, sigma)))

        alternative = integrate.dblquad(
            lambda delta, sigma, f=likelihood: f(delta * sigma, sigma) * stats.norm.pdf(delta, 0, math.sqrt(g)) / sigma,
            1e-3,
            30,
            -8,
            8,
        )[0]
        null = integrate.quad(lambda sigma, f=likelihood: f(0.0, sigma) / sigma, 1e-3, 30)[0]
        assert float(D.t_mixture_evidence(n, t)) == pytest.approx(alternative / null, rel=1e-5)


def test_decide_gives_four_outcomes_and_says_how_many_seeds():
    rng = np.random.default_rng(0)
    seeds = list(range(8))
    pairs = [
        D.evidence("wpl", "naive", seeds, rng.normal(-0.2, 0.02, 8), 0.01),  # clearly less
        D.evidence("naive", "si", seeds, rng.normal(0.2, 0.02, 8), 0.01),  # clearly greater
        D.evidence("ewc", "mas", seeds, rng.normal(0.0, 0.002, 8), 0.01),  # equivalent within one point
        D.evidence("ewc", "si", seeds, rng.normal(0.004, 0.03, 8), 0.01),  # undecided
        D.evidence("ewc", "l2", seeds[:2], [0.1, 0.2], 0.01),  # two seeds: not tested
    ]
    decisions = D.decide(pairs)
    assert [d.outcome for d in decisions] == ["less", "greater", "equivalent", "undecided", "undecided"]
    assert all(d.family == 4 for d in decisions)
    equivalent = decisions[2]
    assert -0.01 < equivalent.ci_low and equivalent.ci_high < 0.01  # its simultaneous interval inside the margin
    assert decisions[3].more_seeds is not None and decisions[3].more_seeds > 0
    assert decisions[4].note.startswith("2 paired seed(s)") and math.isnan(decisions[4].p_adjusted)
    assert decisions[0].p_adjusted == pytest.approx(D.holm([p.p_difference for p in pairs[:4]])[0])


# --- simulations: the error rates the decisions state --------------------------------------------------------------


def _run_rule(differences: np.ndarray, tests, margin: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The adaptive rule on each row of ``differences``: look after START seeds and after each further seed, stop at
    the first look that decides (difference or equivalence) or at MAX. Returns, per row, whether it ended "A != B",
    whether it ended "equivalent", and the seeds it used."""
    sims = differences.shape[0]
    decided = np.zeros(sims, bool)
    different, equivalent = np.zeros(sims, bool), np.zeros(sims, bool)
    used = np.full(sims, MAX)
    for n in range(START, MAX + 1):
        p_diff, p_eq = tests(differences[:, :n], margin)
        now_different = ~decided & (p_diff < ALPHA)
        now_equivalent = ~decided & ~now_different & (p_eq < ALPHA)
        different |= now_different
        equivalent |= now_equivalent
        used[now_different | now_equivalent] = n
        decided |= now_different | now_equivalent
    return different, equivalent, used


@pytest.mark.parametrize("sd", [0.02, 0.2])
def test_adaptive_rule_keeps_its_false_difference_rate_below_alpha(sd):
    rng = np.random.default_rng(7)
    different, _, used = _run_rule(rng.normal(0.0, sd, (SIMS, MAX)), D.sequential_tests, 0.01)
    assert _upper(int(different.sum()), SIMS) <= ALPHA, different.mean()
    assert used.max() == MAX  # the rule looked at every count of seeds up to its budget


def test_adaptive_rule_keeps_its_false_equivalence_rate_below_alpha():
    rng = np.random.default_rng(8)  # the mean on the margin: "equivalent" is false, and as likely as it gets
    for mean in (0.01, -0.01):
        _, equivalent, _ = _run_rule(rng.normal(mean, 0.01, (SIMS, MAX)), D.sequential_tests, 0.01)
        assert _upper(int(equivalent.sum()), SIMS) <= ALPHA, equivalent.mean()


def test_the_anytime_interval_covers_the_mean_at_every_look():
    rng = np.random.default_rng(9)
    mean = 0.03
    x = rng.normal(mean, 0.05, (SIMS, MAX))
    covered = np.ones(SIMS, bool)
    for n in range(START, MAX + 1):
        low, high = D.sequential_interval(x[:, :n], 1 - ALPHA)
        covered &= (low <= mean) & (mean <= high)
    assert _lower(int(covered.sum()), SIMS) >= 1 - ALPHA, covered.mean()


def test_the_fixed_rule_at_its_one_look_keeps_alpha():
    rng = np.random.default_rng(10)
    x = rng.normal(0.0, 0.1, (SIMS, MAX))
    p_diff, _ = D.fixed_tests(x, 0.01)
    false = int((p_diff < ALPHA).sum())
    assert _lower(false, SIMS) <= ALPHA <= _upper(false, SIMS)  # at its nominal level: not above it
    low, high = D.fixed_interval(x, 1 - ALPHA)
    covered = int(((low <= 0) & (0 <= high)).sum())
    assert _upper(covered, SIMS) >= 1 - ALPHA


def test_the_recomputed_t_test_under_the_adaptive_rule_exceeds_alpha():
    """What the sequential tests replace: the fixed-n t-test recomputed after every round. Its false "A != B" and
    false "equivalent" rates are far above alpha, so the tests above can fail."""
    rng = np.random.default_rng(7)
    different, _, _ = _run_rule(rng.normal(0.0, 0.02, (SIMS, MAX)), D.fixed_tests, 0.01)
    assert _lower(int(different.sum()), SIMS) > ALPHA, different.mean()
    _, equivalent, _ = _run_rule(rng.normal(0.01, 0.01, (SIMS, MAX)), D.fixed_tests, 0.01)
    assert _lower(int(equivalent.sum()), SIMS) > ALPHA, equivalent.mean()


def test_the_adaptive_rule_decides_a_one_sd_difference_most_of_the_time():
    rng = np.random.default_rng(11)
    different, _, used = _run_rule(rng.normal(0.05, 0.05, (SIMS, MAX)), D.sequential_tests, 0.01)
    assert _lower(int(different.sum()), SIMS) > 0.75 and np.median(used[different]) < MAX


def test_holm_over_a_family_keeps_the_family_wise_rate_under_the_adaptive_rule():
    """Three pairs with no difference, decided together, seeds added until decided. The anytime p-values only fall
    as seeds come, and Holm's adjusted p-values fall with them, so a false "A != B" at any look is one at the last
    (MAX seeds): checking the last look bounds the rate of the whole rule."""
    rng = np.random.default_rng(12)
    sims, pairs = 1000, 3
    x = rng.normal(0.0, 0.1, (sims, pairs, MAX))
    p_diff, _ = D.sequential_tests(x, 0.01)  # every pair's anytime p after MAX seeds, (sims, pairs)
    any_false = np.array([(D.holm(row) < ALPHA).any() for row in p_diff])
    assert _upper(int(any_false.sum()), sims) <= ALPHA, any_false.mean()
    naive, _ = D.fixed_tests(x, 0.01)  # the same family at one fixed look, for scale: Holm keeps alpha there too
    assert _upper(int(np.array([(D.holm(row) < ALPHA).any() for row in naive]).sum()), sims) <= 2 * ALPHA
