"""Deciding a family of paired comparisons: four outcomes per pair, with the family-wise error controlled, at a fixed
number of seeds or with seeds added until the pairs are decided.

A *pair* (A, B) is compared on the seeds both methods have: d_s = x_A,s - x_B,s (forgetting, or ACC, in [0, 1]).
Its outcome is one of

* ``less`` (A < B) or ``greater`` (A > B): the mean difference is not 0 (the difference test rejects);
* ``equivalent``: |mean difference| < margin, the margin of practical equivalence (:data:`DEFAULT_MARGINS`; two
  one-sided tests, TOST, each rejecting |mean| >= margin on its side);
* ``undecided``: neither, said with its interval and about how many more seeds would decide it.

**The family.** The pairs a verdict compares (one scenario and plasticity level, or one scenario's paired-vs-naive
table) are one family. Each kind of claim is adjusted over the family by Holm's step-down procedure (statsmodels'
``multipletests(method="holm")``): the difference claims, and the equivalence claims; so the probability of any false
"A < B" in a verdict is at most alpha, and likewise of any false "equivalent". (A pair's two null hypotheses, mean = 0
and |mean| >= margin, cannot both be true.) Each pair's interval is its family's simultaneous interval: level
1 - alpha / m over the m pairs tested (Bonferroni), so all intervals of a verdict hold together with probability at
least 1 - alpha; an "equivalent" pair's interval lies inside +/- margin. Pairs with fewer than :data:`MIN_PAIRED`
seeds are not tested (undecided) and not counted in m.

**Fixed seeds** (``method="fixed"``): the paired t-test (two-sided p), TOST's p = max of the one-sided t-tests'
p-values against -margin and +margin, and the Student t interval.

**Seeds added until decided** (``method="sequential"``): looking at the data after every round and stopping when
decided makes the fixed-n tests invalid (the chance of a false "A < B" grows with every look: about 0.2 instead of
0.05 over 18 looks; ``tests/core/test_decide.py`` simulates it). Instead every test and interval is *anytime valid*, valid
at whatever seed count the stopping rule ends on. The evidence against mean = mu0 after n seeds is the Bayes factor
of the one-sample t-test with a normal prior N(0, g) on the standardised effect (mean - mu0) / sigma and the
right-Haar prior 1 / sigma on the unknown spread (Rouder et al. 2009, eq. 1 with the prior fixed):

    E_n(mu0) = (1 + n g)^(-1/2) * [(1 + t^2 / nu) / (1 + t^2 / ((1 + n g) nu))]^((nu + 1) / 2),
    t = (mean - mu0) / (sd / sqrt(n)), nu = n - 1.

Under mean = mu0 it is a nonnegative martingale in n (for every sigma: Pérez-Ortiz, Lardy, de Heide and Grünwald,
"E-statistics, group invariance and anytime-valid testing", Ann. Statist. 2024; Lai 1976 built confidence sequences
from it), so by Ville's inequality P(E_n(mu0) >= 1 / alpha for some n) <= alpha. Hence:

* the anytime p-value of mean = 0 is min over n' <= n of 1 / E_n'(0);
* the confidence sequence at level 1 - alpha' is the running intersection over n' <= n of
  {mu0 : E_n'(mu0) < 1 / alpha'} (an interval: E grows with |t|), which covers the mean at every n at once;
* equivalence: the anytime p-value of |mean| >= margin is min over n' of max(1 / E_n'(-margin), 1 / E_n'(margin)),
  where the mean at n' is inside (-margin, margin) (else 1).

Holm's procedure needs only valid p-values, and these are valid at any stopping time: a verdict whose seeds were added
by :func:`forgetbench.benchmark.run.suite`'s rounds keeps its error rates. ``g`` = 1 (:data:`MIXTURE_G`) puts the
prior's scale at a standardised effect of 1; any fixed g is valid, and it only moves where the power is. confseq, the
reference implementation of confidence sequences, does not build from its sdist here (a C++ extension), so the
closed form above is computed here, checked against numerical integration of its defining integral in the tests.

Pure functions of arrays of differences; the reports and the sequential rounds call the same ones.
"""

from __future__ import annotations

import functools
import gc
import math
from dataclasses import dataclass, field, replace
from typing import Literal, Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy import special as _special

ALPHA = 0.05
MIN_PAIRED = 3  # fewer paired seeds: the pair is not tested (a t interval on 1 degree of freedom says nothing)
MIXTURE_G = 1.0  # the prior variance of the standardised effect in the anytime-valid tests
# margins of practical equivalence, in the metric's own unit (fractions: 0.01 is one accuracy point); see
# docs/guide/decisions.md for why one point
DEFAULT_MARGINS = {"forgetting": 0.01, "ACC": 0.01}
OUTCOMES = ("less", "greater", "equivalent", "undecided")
Method = Literal["fixed", "sequential"]
NAN = float("nan")


@dataclass(frozen=True)
class PairEvidence:
    """One pair's differences (first minus second, seed order) and its tests, before the family's adjustment."""

    first: str
    second: str
    seeds: tuple[int, ...]
    differences: tuple[float, ...]
    margin: float
    method: Method
    p_difference: float = NAN  # two-sided, H0: mean = 0
    p_equivalence: float = NAN  # H0: |mean| >= margin

    @property
    def n(self) -> int:
        return len(self.differences)

    @property
    def mean(self) -> float:
        return float(np.mean(self.differences)) if self.differences else NAN

    @property
    def tested(self) -> bool:
        return self.n >= MIN_PAIRED and math.isfinite(self.p_difference)


@dataclass(frozen=True)
class Decision:
    """A pair's outcome within its family."""

    first: str
    second: str
    outcome: str  # one of OUTCOMES (less: first < second)
    diff: float  # mean of first - second over the paired seeds
    ci_low: float  # the family's simultaneous interval (1 - alpha / m)
    ci_high: float
    p_value: float  # the difference test's p, unadjusted
    p_adjusted: float  # ... Holm-adjusted over the family
    p_equivalence_adjusted: float  # TOST's p, Holm-adjusted over the family
    n: int  # paired seeds
    seeds: tuple[int, ...]
    margin: float
    method: Method
    family: int  # pairs tested in the family (m)
    more_seeds: int | None = None  # undecided: about how many more paired seeds would decide it (None: out of reach)
    note: str = ""  # why it was not tested, where it was not
    extra: dict[str, object] = field(default_factory=dict)


@dataclass
class Undecided:
    """What a suite's verdict left open on a set of runs (the rounds of ``seeds: {start, max}`` read it): scenario ->
    its undecided pairs, and scenario -> every strategy (or method) its deciding families compare."""

    pairs: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    participants: dict[str, set[str]] = field(default_factory=dict)


# --- the tests (vectorised over leading axes: the last axis holds one pair's differences in seed order) ----------


def _t_sf(df: ArrayLike, t: ArrayLike) -> np.ndarray:
    return np.asarray(_special.stdtr(df, -np.asarray(t, dtype=float)))  # P(T_df > t)


def fixed_tests(d: ArrayLike, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """(two-sided paired t-test p of mean = 0, TOST p of |mean| >= margin) of the differences on ``d``'s last axis
    (n >= 2). Differences all equal: the mean is known exactly (p 0 or 1)."""
    d = np.asarray(d, dtype=float)
    n = d.shape[-1]
    mean, sd = d.mean(axis=-1), d.std(axis=-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = sd / math.sqrt(n)
        p_diff = np.minimum(1.0, 2 * _t_sf(n - 1, np.abs(mean) / se))
        p_eq = np.maximum(_t_sf(n - 1, (mean + margin) / se), _t_sf(n - 1, (margin - mean) / se))
    exact = sd == 0
    p_diff = np.where(exact, np.where(mean == 0, 1.0, 0.0), p_diff)
    p_eq = np.where(exact, np.where(np.abs(mean) < margin, 0.0, 1.0), p_eq)
    return p_diff, p_eq


def fixed_interval(d: ArrayLike, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Student's t interval of the mean at ``level`` over the last axis."""
    d = np.asarray(d, dtype=float)
    n = d.shape[-1]
    mean, sd = d.mean(axis=-1), d.std(axis=-1, ddof=1)
    half = float(_special.stdtrit(n - 1, 0.5 + level / 2)) * sd / math.sqrt(n)
    return mean - half, mean + half


def t_mixture_evidence(n: int, t: ArrayLike, g: float = MIXTURE_G) -> np.ndarray:
    """E_n: the t-test's Bayes factor with a N(0, g) prior on the standardised effect (module docstring), for t
    statistics ``t`` of n observations (n >= 2)."""
    nu = n - 1
    t2 = np.square(np.asarray(t, dtype=float))
    shrink = 1.0 + n * g
    return np.asarray(shrink**-0.5 * np.exp((nu + 1) / 2 * (np.log1p(t2 / nu) - np.log1p(t2 / (shrink * nu)))))


@functools.lru_cache(maxsize=4096)
def critical_t(n: int, alpha: float, g: float = MIXTURE_G) -> float:
    """|t| at which E_n reaches 1 / alpha (E_n grows with |t|): the confidence sequence's half-width in standard
    errors after n observations."""
    target = math.log(1 / alpha)
    low, high = 0.0, 1.0
    while math.log(float(t_mixture_evidence(n, high, g))) < target:
        high *= 2
        if high > 1e12:
            return math.inf
    for _ in range(100):
        mid = (low + high) / 2
        if math.log(float(t_mixture_evidence(n, mid, g))) < target:
            low = mid
        else:
            high = mid
    return high


def _prefixes(d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, mean, sd) of every prefix of two or more differences: n of shape (k,), mean and sd of shape (..., k)."""
    count = np.arange(1, d.shape[-1] + 1, dtype=float)
    total, squares = np.cumsum(d, axis=-1), np.cumsum(d * d, axis=-1)
    mean = total / count
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.maximum(squares - count * mean * mean, 0.0) / (count - 1)
    return count[1:].astype(int), mean[..., 1:], np.sqrt(var[..., 1:])


def _evidence(n: np.ndarray, mean: np.ndarray, sd: np.ndarray, mu0: float) -> np.ndarray:
    """E_n(mu0) for each prefix (infinite where the prefix's differences are all equal and not mu0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (mean - mu0) / (sd / np.sqrt(n))
    out = np.empty_like(mean)
    with np.errstate(invalid="ignore"):  # infinite t (no spread) gives NaN here: replaced below
        for j, k in enumerate(n):  # one n per column: E's shape depends on n only through scalars
            out[..., j] = t_mixture_evidence(int(k), t[..., j])
    exact = sd == 0
    return np.where(exact, np.where(mean != mu0, np.inf, 0.0), out)


def sequential_tests(d: ArrayLike, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Anytime-valid (p of mean = 0, p of |mean| >= margin) of the differences on ``d``'s last axis, in the order
    they came (module docstring)."""
    d = np.asarray(d, dtype=float)
    n, mean, sd = _prefixes(d)
    with np.errstate(divide="ignore"):
        p_diff = np.min(1.0 / _evidence(n, mean, sd, 0.0), axis=-1)
        worst = np.maximum(1.0 / _evidence(n, mean, sd, -margin), 1.0 / _evidence(n, mean, sd, margin))
    p_eq = np.min(np.where(np.abs(mean) < margin, worst, 1.0), axis=-1)
    return np.minimum(1.0, p_diff), np.minimum(1.0, p_eq)


def sequential_interval(d: ArrayLike, level: float) -> tuple[np.ndarray, np.ndarray]:
    """The running intersection, over every prefix of ``d``'s last axis, of the confidence sequence at ``level``."""
    d = np.asarray(d, dtype=float)
    n, mean, sd = _prefixes(d)
    critical = np.array([critical_t(int(k), 1 - level) for k in n])
    with np.errstate(invalid="ignore"):  # an infinite critical t over no spread: no width
        half = np.where(sd > 0, critical * sd / np.sqrt(n), 0.0)
    low, high = np.max(mean - half, axis=-1), np.min(mean + half, axis=-1)
    # where the running intersection closed (probability <= 1 - level), the last prefix's interval is the honest one
    closed = low > high
    return np.where(closed, mean[..., -1] - half[..., -1], low), np.where(closed, mean[..., -1] + half[..., -1], high)


def evidence(
    first: str,
    second: str,
    seeds: Sequence[int],
    differences: Sequence[float],
    margin: float,
    method: Method = "fixed",
) -> PairEvidence:
    """A pair's tests (not yet adjusted over its family)."""
    order = np.argsort(np.asarray(seeds), kind="stable")
    seeds_sorted = tuple(int(np.asarray(seeds)[i]) for i in order)
    d = np.asarray(differences, dtype=float)[order]
    base = PairEvidence(first, second, seeds_sorted, tuple(float(x) for x in d), float(margin), method)
    if d.size < MIN_PAIRED:
        return base
    p_diff, p_eq = fixed_tests(d, margin) if method == "fixed" else sequential_tests(d, margin)
    return replace(base, p_difference=float(p_diff), p_equivalence=float(p_eq))


# --- the family ---------------------------------------------------------------------------------------------------


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (statsmodels' ``multipletests(method="holm")``)."""
    p = np.asarray(p_values, dtype=float)
    if p.size == 0:
        return p
    from statsmodels.stats.multitest import multipletests  # 0.5 s of imports: only where a family is adjusted

    # multipletests ends with gc.collect(): over a report's records (or a test's heap) that is a full collection per
    # family; frozen, the objects already there are not traversed again
    frozen_here = gc.get_freeze_count() == 0  # a report drawing its figures has frozen its heap already
    if frozen_here:
        gc.freeze()
    try:
        return np.asarray(multipletests(p, method="holm")[1], dtype=float)
    finally:
        if frozen_here:
            gc.unfreeze()


def _interval(pair: PairEvidence, level: float) -> tuple[float, float]:
    d = np.asarray(pair.differences)
    if pair.n < 2:
        return NAN, NAN
    low, high = fixed_interval(d, level) if pair.method == "fixed" else sequential_interval(d, level)
    return float(low), float(high)


def more_seeds(pair: PairEvidence, family: int, alpha: float = ALPHA, limit: int = 1000) -> int | None:
    """About how many more paired seeds would decide ``pair``, if its mean difference and spread stayed as observed:
    the smallest n whose simultaneous interval half-width falls below the larger of |mean| (to tell the methods
    apart) and margin - |mean| (to call them equivalent). None when no n up to ``limit`` would."""
    if pair.n < 2:
        return None
    d = np.asarray(pair.differences)
    mean, sd = abs(float(d.mean())), float(d.std(ddof=1))
    target = max(mean, pair.margin - mean)
    if sd == 0.0:
        return 0 if target > 0 else None
    level_alpha = alpha / max(family, 1)
    for n in range(max(pair.n, MIN_PAIRED), limit + 1):
        if pair.method == "fixed":
            half = float(_special.stdtrit(n - 1, 1 - level_alpha / 2)) * sd / math.sqrt(n)
        else:
            half = critical_t(n, level_alpha) * sd / math.sqrt(n)
        if half < target:
            return n - pair.n
    return None


def decide(pairs: Sequence[PairEvidence], alpha: float = ALPHA) -> list[Decision]:
    """Every pair's outcome within the family ``pairs`` (module docstring), in the order given."""
    tested = [i for i, p in enumerate(pairs) if p.tested]
    m = len(tested)
    adjusted_diff = dict(zip(tested, holm([pairs[i].p_difference for i in tested])))
    adjusted_eq = dict(zip(tested, holm([pairs[i].p_equivalence for i in tested])))
    level = 1 - alpha / max(m, 1)
    out = []
    for i, pair in enumerate(pairs):
        low, high = _interval(pair, level) if pair.n >= MIN_PAIRED else (NAN, NAN)
        p_adj, p_eq_adj = adjusted_diff.get(i, NAN), adjusted_eq.get(i, NAN)
        if i not in adjusted_diff:
            outcome = "undecided"
        elif p_adj < alpha and pair.mean != 0:
            outcome = "less" if pair.mean < 0 else "greater"
        elif p_eq_adj < alpha:
            outcome = "equivalent"
        else:
            outcome = "undecided"
        note = "" if pair.tested else f"{pair.n} paired seed(s): at least {MIN_PAIRED} are needed to test"
        out.append(
            Decision(
                first=pair.first,
                second=pair.second,
                outcome=outcome,
                diff=pair.mean,
                ci_low=low,
                ci_high=high,
                p_value=pair.p_difference,
                p_adjusted=p_adj,
                p_equivalence_adjusted=p_eq_adj,
                n=pair.n,
                seeds=pair.seeds,
                margin=pair.margin,
                method=pair.method,
                family=m,
                more_seeds=more_seeds(pair, m, alpha) if outcome == "undecided" else None,
                note=note,
            )
        )
    return out
