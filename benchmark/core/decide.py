"""Deciding a family of paired comparisons about their **mean** differences: four outcomes per pair, one error rate
for every claim of a verdict, the standard fixed-seed tests where the seeds were fixed, group-sequential ones where
they were added in rounds.

A *pair* (A, B) is compared on the seeds both methods have: d_s = x_A,s - x_B,s (forgetting, or ACC, in [0, 1]),
theta the mean of d over seeds, the quantity every sentence prints. Its outcome is one of

* ``less`` (A < B) or ``greater`` (A > B): theta is below (above) 0;
* ``equivalent``: |theta| < margin, the margin of practical equivalence;
* ``undecided``: neither, said with its interval and about how many more seeds would decide it.

**The tests.** Each look at a pair is a paired t-test of its mean, two-sided for a difference (H0: theta = 0, the
claim's direction the sign of the mean) and two one-sided tests for an equivalence (TOST: H0 theta >= margin and
theta <= -margin, both rejected; Schuirmann 1987). A suite of fixed seeds looks once, at all its seeds, in no order
(the order the seeds were run in changes nothing). A suite whose seeds came in rounds (``seeds: {start, max,
step}``) looks after every round, and each test is group-sequential: its level is spent over the looks by
:mod:`forgetbench.benchmark.core.sequential` (Lan-DeMets, Hwang-Shih-DeCani spending, the rounds' ``max`` the planned
information), so stopping a pair once it is decided keeps its error rate. The t statistic of a look goes to the
normal scale by its one-sided tail; a look where every difference is equal (spread 0) has no scale, and its
evidence is the exact sign-flip bound instead (all n of one sign: one-sided 2^-n).

**One family, one alpha.** The pairs a verdict compares (one scenario's strategies, or its methods at the matched
plasticity levels; which ones, the plan says) are one family of m pairs. Its alpha is split between the two kinds
of claim (Bonferroni): alpha_e = :data:`EQUIVALENCE_SHARE` x alpha to equivalence claims where a margin is set, the
rest, alpha_d, to difference claims (all of alpha where the margin is 0). Within each kind, Holm's step-down
procedure over the m pairs (Holm 1979: a closed test whose intersections are Bonferroni tests, valid however the
pairs, which share methods and seeds, depend on each other); under rounds, Holm on the sequential p-values, at every
look (Maurer and Bretz 2013). So **the chance of any false claim in a verdict is at most alpha**, differences and
equivalences together; a claim's adjusted p is the smallest alpha at which it would be made (Holm's adjusted p over
the kind's share of alpha).

**The interval** printed beside each pair is its t-interval (under rounds: the intersection of its repeated
confidence intervals over the looks; Jennison and Turnbull 1989) at the level its claim was tested at: a difference
decided at Holm level a, at 1 - a (it excludes 0); an equivalence at level a, the 1 - 2a interval of its two
one-sided tests (inside +/- margin); an undecided pair at the levels it was last tested at (it holds 0 and reaches
past a margin). Each interval agrees with the outcome beside it; the intervals of a family are not simultaneous (the
family-wise guarantee is on the claims).

**What is assumed**, and measured (docs/guide/decisions.md, ``forgetbench perf --only decision_error_rates``): the
seeds are independent, and their mean is close enough to normal for a t-test at the levels Holm uses. Families of
the tool's own per-seed numbers (centred, their real skew and ties kept) hold alpha at 5, 10 and 20 fixed seeds and
under rounds; a single pair with a bimodal spread (a third of its seeds far out on one side) at 5-10 seeds, or skew
2 at small levels, does not, and the guide says by how much.

Pure functions of arrays of differences; the reports, the rounds, ``forgetbench decide`` and the simulations call
the same ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from forgetbench.benchmark.core import sequential as Q

ALPHA = 0.05
MIN_PAIRED = 3  # fewer paired seeds: the pair is not tested, and no interval is printed
EQUIVALENCE_SHARE = 0.2  # of a family's alpha, for its equivalence claims (where a margin is set)
# margins of practical equivalence, in the metric's own unit (fractions: 0.01 is one accuracy point); see
# docs/guide/decisions.md for why one point
DEFAULT_MARGINS = {"forgetting": 0.01, "ACC": 0.01}
OUTCOMES = ("less", "greater", "equivalent", "undecided")
Method = Literal["fixed", "sequential"]  # how the seeds came: all at once (one look), or in rounds (a look each)
NAN = float("nan")
PROJECTION_LIMIT = 1000  # more_seeds looks no further than this many paired seeds


def shares(alpha: float, margin: float) -> tuple[float, float]:
    """(alpha for difference claims, alpha for equivalence claims): no equivalence claim without a margin."""
    if margin > 0:
        return alpha * (1.0 - EQUIVALENCE_SHARE), alpha * EQUIVALENCE_SHARE
    return alpha, 0.0


# --- the statistics of each look (vectorised: the last axis of ``d`` holds one pair's differences in run order) --------


@dataclass(frozen=True)
class Looks:
    """A pair's differences summarised at each look: the mean, standard error and skewness of the first n_k
    differences."""

    n: np.ndarray  # (K,) paired seeds at each look
    mean: np.ndarray  # (..., K)
    se: np.ndarray  # (..., K)
    skew: np.ndarray  # (..., K) mean cubed deviation over sd^3 (0 where the spread is 0)
    sequential: bool = False

    @property
    def df(self) -> np.ndarray:
        """The degrees of freedom each look's statistics are read on: n - 1 at one look; under rounds n - 2 (at least
        1), a correction for the t form of group-sequential boundaries, whose size exceeds its level by 10-20%
        with a look after every seed from 3 on normal data, and by 0-5% read so (docs/guide/decisions.md)."""
        return np.maximum(self.n - 2.0, 1.0) if self.sequential else self.n - 1.0


def looks_of(d: ArrayLike, at: Sequence[int], sequential: bool = False) -> Looks:
    """The moments of ``d`` (..., n) at the looks after ``at`` (increasing seed counts, the last at most n; under
    rounds: ``sequential``). The differences are scaled by their largest magnitude first, so any finite values
    (1e-300 or 1e300) keep their precision."""
    d = np.asarray(d, dtype=float)
    counts = np.asarray(at, dtype=int)
    scale = np.max(np.abs(d), axis=-1, keepdims=True) if d.size else np.ones(d.shape[:-1] + (1,))
    scale = np.where(scale > 0, scale, 1.0)
    x = d / scale
    origin = x[..., :1]  # sums about the first difference: equal differences give a spread of exactly 0
    y = x - origin
    idx = counts - 1
    mean = np.cumsum(y, axis=-1)[..., idx] / counts
    squares = np.cumsum(y * y, axis=-1)[..., idx]
    cubes = np.cumsum(y * y * y, axis=-1)[..., idx]
    centred = squares - counts * mean * mean  # the sum of squares about each look's mean
    # differences alike to 1e-10 of their size are one value (float subtraction leaves 1e-17 between tied
    # accuracies): no spread, the sign-flip rule's case
    size = np.maximum.accumulate(np.abs(x), axis=-1)[..., idx]
    flat = centred <= (1e-10 * size) ** 2 * np.maximum(counts - 1, 1)
    var = np.where(flat, 0.0, centred) / np.maximum(counts - 1, 1)
    third = (cubes - 3 * mean * squares + 2 * counts * mean**3) / counts
    with np.errstate(divide="ignore", invalid="ignore"):
        skew = np.where(flat, 0.0, third / var**1.5)
    return Looks(counts.astype(float), (mean + origin) * scale, np.sqrt(var / counts) * scale, skew, sequential)


def _hall(s: np.ndarray, skew: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Hall's (1992) transformation of the standardised mean s = (mean - theta0) / sd: sqrt(n) (s + g s^2 / 3 +
    g^2 s^3 / 27 + g / (6 n)), g the skewness, which removes the t statistic's first-order error under skew; it
    rises with s (its slope is (1 + g s / 3)^2)."""
    return np.sqrt(n) * (s + skew * s**2 / 3 + skew**2 * s**3 / 27 + skew / (6 * n))


def _hall_inverse(value: np.ndarray, skew: np.ndarray, n: np.ndarray) -> np.ndarray:
    """The standardised mean s at which :func:`_hall` is ``value``: (1 + g s / 3)^3 = 1 + g u."""
    u = value / np.sqrt(n) - skew / (6 * n)
    with np.errstate(divide="ignore", invalid="ignore"):
        cubic = 3 * (np.cbrt(1 + skew * u) - 1) / skew
    return np.where(np.abs(skew) > 1e-9, cubic, u)


def evidence_of(looks: Looks, theta0: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each look's evidence that theta > theta0 and that theta < theta0, on the normal scale (by one-sided tails
    on ``looks.df`` degrees of freedom): for each side, the smaller of the paired t statistic's and of its skew
    corrected form's (:func:`_hall`), so a claim needs both; at a zero spread, the exact sign-flip tail 2^-n."""
    theta0 = np.asarray(theta0, dtype=float)
    if theta0.ndim:
        theta0 = theta0[..., None]
    gap = looks.mean - theta0
    df = np.broadcast_to(looks.df, gap.shape)
    n = np.broadcast_to(looks.n, gap.shape)
    spread = looks.se > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(spread, gap / looks.se, 0.0)
    corrected = _hall(t / np.sqrt(n), np.where(spread, looks.skew, 0.0), n)
    z_t, z_h = Q.normal_scale(t, df), Q.normal_scale(corrected, df)
    flat = np.sign(gap) * np.where(gap != 0, -special.ndtri(np.exp2(-n)), 0.0)  # all n of one sign, all alike
    up = np.where(spread, np.minimum(z_t, z_h), flat)
    down = np.where(spread, np.minimum(-z_t, -z_h), -flat)
    return up, down


def z_values(looks: Looks, theta0: float | np.ndarray) -> np.ndarray:
    """Each look's evidence on the normal scale, signed: positive that theta > theta0, negative that theta <
    theta0 (:func:`evidence_of`; the larger side, where neither is positive the nearer to 0)."""
    up, down = evidence_of(looks, theta0)
    return np.where(up >= down, up, -down)


def crossing_looks(z: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Per leading index and level, the first look at which ``z`` (..., K) reached its boundary ``bounds`` (L, K); K
    where it never did."""
    hit = z[..., None, :] >= bounds
    return np.where(hit.any(axis=-1), hit.argmax(axis=-1), z.shape[-1])


def holm_rounds(times: np.ndarray, rounds: int, family: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down procedure at every round. ``times`` (..., pairs, family): the round at which pair i's
    evidence reached level alpha / j (column j - 1), ``rounds`` or more where it never did; ``family``: the pairs
    the family counts (more than those given where some have no values). Returns, per pair, the first round it is
    decided at (``rounds``: never) and the divisor j of the level it was decided at (0: never)."""
    *batch, pairs, levels = times.shape
    m = family or levels
    decided = np.full((*batch, pairs), rounds)
    divisor = np.zeros((*batch, pairs), dtype=int)
    rejected = np.zeros((*batch, pairs), dtype=bool)
    for r in range(rounds):
        while True:
            k = m - rejected.sum(axis=-1)  # the level alpha / k Holm tests the next pair at
            column = np.clip(k - 1, 0, m - 1)[..., None, None]
            reached = np.take_along_axis(times, np.broadcast_to(column, (*batch, pairs, 1)), axis=-1)[..., 0] <= r
            new = reached & ~rejected & (k > 0)[..., None]
            if not new.any():
                break
            rejected |= new
            decided = np.where(new, r, decided)
            divisor = np.where(new, np.broadcast_to(k[..., None], new.shape), divisor)
    return decided, divisor


def holm_adjusted(p: np.ndarray) -> np.ndarray:
    """Holm's adjusted p-values over the last axis (the smallest family-wise level at which each is rejected)."""
    p = np.asarray(p, dtype=float)
    m = p.shape[-1]
    order = np.argsort(p, axis=-1, kind="stable")
    ranked = np.take_along_axis(p, order, axis=-1) * (m - np.arange(m))
    ranked = np.minimum(np.maximum.accumulate(ranked, axis=-1), 1.0)
    out = np.empty_like(ranked)
    np.put_along_axis(out, order, ranked, axis=-1)
    return out


# --- one pair and its family ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairEvidence:
    """One pair's differences (first minus second) in the order their seeds were run, and its looks: the paired
    seed counts after each round that added to it (fixed seeds: one look, at all of them), out of the ``planned``
    most the rounds could reach."""

    first: str
    second: str
    seeds: tuple[int, ...]
    differences: tuple[float, ...]
    margin: float
    method: Method
    looks: tuple[int, ...] = ()
    planned: int = 0
    rounds: tuple[int, ...] = ()  # the round of each look (its order value)

    @property
    def n(self) -> int:
        return len(self.differences)

    @property
    def mean(self) -> float:
        return float(np.mean(self.differences)) if self.differences else NAN

    @property
    def tested(self) -> bool:
        return self.n >= MIN_PAIRED

    @property
    def tested_looks(self) -> tuple[int, ...]:
        """The looks at which the pair is tested: those with at least :data:`MIN_PAIRED` paired seeds."""
        return tuple(k for k in (self.looks or (self.n,)) if k >= MIN_PAIRED)

    @property
    def fractions(self) -> tuple[float, ...]:
        planned = max(self.planned, self.n)
        return tuple(k / planned for k in self.tested_looks)


@dataclass(frozen=True)
class Decision:
    """A pair's outcome within its family."""

    first: str
    second: str
    outcome: str  # one of OUTCOMES (less: first < second)
    diff: float  # mean of first - second over the paired seeds
    ci_low: float  # the pair's interval at ci_level (module docstring); NaN under 3 seeds, inf where unbounded
    ci_high: float
    p_value: float  # the two-sided p of "no difference", unadjusted (sequential under rounds)
    p_adjusted: float  # the smallest family-wise alpha at which it is decided A < B or A > B
    p_equivalence_adjusted: float  # ... decided equivalent (1 where no margin is set)
    n: int  # paired seeds
    seeds: tuple[int, ...]  # in the order they were run
    margin: float
    method: Method
    family: int  # the pairs of the family (m)
    more_seeds: int | None = None  # undecided: about how many more paired seeds would decide it (None: out of reach)
    note: str = ""  # why it was not tested, where it was not
    decided_at: int | None = None  # the paired seeds at which its outcome was first reached
    ci_level: float = NAN  # the confidence level of [ci_low, ci_high]
    planned: int | None = None  # under rounds: the most paired seeds the rounds could reach (the planned information)
    extra: dict[str, object] = field(default_factory=dict)


@dataclass
class Undecided:
    """What a suite's verdict left open on a set of runs (the rounds of ``seeds: {start, max}`` read it): scenario ->
    its undecided pairs, and scenario -> every strategy (or method) its deciding families compare."""

    pairs: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    participants: dict[str, set[str]] = field(default_factory=dict)
    # scenario -> participant -> the paired seeds at which the last of its decided pairs was decided
    decided_at: dict[str, dict[str, int]] = field(default_factory=dict)


def evidence(
    first: str,
    second: str,
    seeds: Sequence[int],
    differences: Sequence[float],
    margin: float,
    method: Method = "fixed",
    order: Sequence[int] | None = None,
    planned: int | None = None,
) -> PairEvidence:
    """A pair's differences in the order their seeds were run (by ``order``, each seed's round, then seed number)
    and its looks: one at the end of each round under ``sequential`` (``planned``: the rounds' most seeds, the
    last look's count where not given), one at all the seeds for ``fixed``."""
    keys = sorted((0 if order is None else int(order[i]), int(s), i) for i, s in enumerate(seeds))
    if method == "sequential":
        ends = [j + 1 for j in range(len(keys)) if j + 1 == len(keys) or keys[j + 1][0] != keys[j][0]]
        rounds = tuple(keys[j - 1][0] for j in ends)
    else:  # one look at every seed, whatever order they came in
        ends, rounds = [len(keys)], (0,)
    return PairEvidence(
        first,
        second,
        tuple(s for _, s, _ in keys),
        tuple(float(differences[i]) for _, _, i in keys),
        float(margin),
        method,
        tuple(ends) if keys else (),
        max(int(planned or 0), len(keys)),
        rounds if keys else (),
    )


def paired(
    first: str,
    second: str,
    a: Mapping[int, float],
    b: Mapping[int, float],
    margin: float,
    method: Method = "fixed",
    rounds: Mapping[str, Mapping[int, int]] | None = None,
    planned: int | None = None,
) -> PairEvidence:
    """The pair (first, second) of per-seed values ``a`` and ``b`` on the seeds both have a finite value for
    (``rounds``: label -> seed -> the round that ran it; a seed counts from the later of its two runs)."""
    rounds = rounds or {}
    seeds = sorted(s for s in a.keys() & b.keys() if math.isfinite(a[s]) and math.isfinite(b[s]))
    ran = [max(rounds.get(first, {}).get(s, 0), rounds.get(second, {}).get(s, 0)) for s in seeds]
    return evidence(first, second, seeds, [a[s] - b[s] for s in seeds], margin, method, ran, planned)


@dataclass
class _Tested:
    """One tested pair's looks and its evidence, before the family's Holm procedure."""

    pair: PairEvidence
    looks: Looks
    difference: np.ndarray  # (K,) |z| of theta = 0
    sign: np.ndarray  # (K,) the sign of each look's mean
    above: np.ndarray  # (K,) z of theta > -margin
    below: np.ndarray  # (K,) z of theta < margin


def _tested(pair: PairEvidence) -> _Tested:
    at = pair.tested_looks
    d = np.asarray(pair.differences, dtype=float)
    looks = looks_of(d, at, pair.method == "sequential")
    up, down = evidence_of(looks, 0.0)
    return _Tested(
        pair,
        looks,
        np.maximum(up, down),
        np.where(up >= down, 1.0, -1.0),
        evidence_of(looks, -pair.margin)[0],
        evidence_of(looks, pair.margin)[1],
    )


def _first_crossing(z: np.ndarray, fractions: tuple[float, ...], levels: np.ndarray, sides: int) -> np.ndarray:
    """Per level, the first look at which ``z`` reached its boundary (K: never)."""
    if not levels.size:
        return np.zeros(0, dtype=int)
    bounds = Q.boundaries(fractions, tuple(float(v) for v in levels), sides)
    return np.asarray(crossing_looks(z, bounds))


def interval(t: _Tested, level: float, sides: int) -> tuple[float, float]:
    """The pair's interval at ``level``: every theta0 that neither side's test rejects at that level (two-sided,
    ``sides`` 2: the difference's; one-sided each way, ``sides`` 1: an equivalence test's, a 1 - 2 level interval);
    a test rejects when the t statistic and its skew corrected form both do, so it is the hull of the t interval
    and Hall's; under rounds, the intersection over the pair's looks."""
    if level <= 0:
        return -math.inf, math.inf
    looks = t.looks
    bounds = Q.boundaries(t.pair.fractions, (float(level),), sides)[0]
    quantile = Q.t_scale(bounds, looks.df)  # the t-scale boundary of each look
    sd = looks.se * np.sqrt(looks.n)
    with np.errstate(invalid="ignore", over="ignore"):
        low_t, high_t = looks.mean - quantile * looks.se, looks.mean + quantile * looks.se
        low_h = looks.mean - sd * _hall_inverse(quantile, looks.skew, looks.n)
        high_h = looks.mean - sd * _hall_inverse(-quantile, looks.skew, looks.n)
        low = np.where(np.isfinite(quantile), np.fmin(low_t, low_h), -np.inf)
        high = np.where(np.isfinite(quantile), np.fmax(high_t, high_h), np.inf)
    flat = looks.se <= 0  # zero spread: every other theta0 excluded once the sign-flip bound reaches the boundary
    reached = bounds <= -special.ndtri(np.exp2(-looks.n))
    low = np.where(flat, np.where(reached, looks.mean, -np.inf), low)
    high = np.where(flat, np.where(reached, looks.mean, np.inf), high)
    return float(np.max(low)), float(np.min(high))


def _sequential_p(z: np.ndarray, fractions: tuple[float, ...], sides: int) -> float:
    return float(Q.sequential_p(z[None, :], fractions, sides)[0])


def more_seeds(
    pair: PairEvidence, level_difference: float, level_equivalence: float, limit: int = PROJECTION_LIMIT
) -> int | None:
    """About how many more paired seeds would decide ``pair`` if its mean difference and spread stayed as observed:
    the fewest n at which the t statistic of that mean and spread reaches the fixed-n critical value of the level
    Holm would test it at now (a difference), or both one-sided ones (an equivalence). An estimate, said as one (under
    rounds the boundaries before the planned maximum are higher). None when none up to ``limit`` would."""
    d = np.asarray(pair.differences, dtype=float)
    if d.size < 2 or not np.isfinite(d).all() or d.size >= limit:
        return None
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0.0:
        sd = max(abs(mean), pair.margin) * 1e-3 or 1e-12
    n = np.arange(d.size + 1, limit + 1, dtype=float)
    se = sd / np.sqrt(n)
    found = np.zeros(n.size, dtype=bool)
    if level_difference > 0:
        found |= abs(mean) / se >= -special.stdtrit(n - 1, level_difference / 2)
    if level_equivalence > 0 and pair.margin > abs(mean):
        found |= (pair.margin - abs(mean)) / se >= -special.stdtrit(n - 1, level_equivalence)
    hit = np.nonzero(found)[0]
    return int(n[hit[0]]) - d.size if hit.size else None


def _untested(pair: PairEvidence, m: int) -> Decision:
    return Decision(
        pair.first, pair.second, "undecided", pair.mean, NAN, NAN, NAN, NAN, NAN, pair.n, pair.seeds, pair.margin,
        pair.method, m, note=f"{pair.n} paired seed(s): at least {MIN_PAIRED} are needed to test",
        planned=pair.planned if pair.method == "sequential" else None,
    )  # fmt: skip


@dataclass
class _Family:
    """A family's Holm procedures, run over its rounds: per pair (index into the pairs given) the round it was
    decided in and the divisor k of the level alpha / k it was decided at, for each kind of claim."""

    m: int
    alpha_d: float
    alpha_e: float
    rounds: dict[int, int]  # a round's order value -> its index
    first_difference: dict[int, np.ndarray]  # pair -> per divisor, the first look its difference evidence reached
    decided_d: np.ndarray
    step_d: np.ndarray
    decided_e: np.ndarray
    step_e: np.ndarray

    @property
    def open_d(self) -> int:
        """k of the level alpha_d / k the undecided were last tested at."""
        return self.m - int((self.step_d > 0).sum())

    @property
    def open_e(self) -> int:
        return self.m - int((self.step_e > 0).sum())

    def own_rounds(self, pair: PairEvidence) -> list[int]:
        """The family's round index of each of the pair's tested looks."""
        return [self.rounds[r] for r in pair.rounds[-len(pair.tested_looks) :]]


def _holm_over_rounds(tested: list[tuple[int, _Tested]], size: int, m: int, alpha_d: float, alpha_e: float) -> _Family:
    """Holm's step-down for each kind of claim at every round of the family (its pairs' looks, in order)."""
    rounds = {r: j for j, r in enumerate(sorted({r for _, t in tested for r in t.pair.rounds}))}
    R = len(rounds)
    divisors = np.arange(1, m + 1, dtype=float)
    times_d, times_e = np.full((size, m), R), np.full((size, m), R)
    first: dict[int, np.ndarray] = {}
    family = _Family(m, alpha_d, alpha_e, rounds, first, *(np.zeros(size, dtype=int),) * 4)
    for i, t in tested:
        own = np.asarray(family.own_rounds(t.pair) + [R])  # look index -> round index (K: never)
        first[i] = _first_crossing(t.difference, t.pair.fractions, alpha_d / divisors, 2)
        times_d[i] = own[first[i]]
        if alpha_e > 0 and t.pair.margin > 0:
            up = _first_crossing(t.above, t.pair.fractions, alpha_e / divisors, 1)
            down = _first_crossing(t.below, t.pair.fractions, alpha_e / divisors, 1)
            times_e[i] = np.maximum(own[up], own[down])
    family.decided_d, family.step_d = holm_rounds(times_d, R, m)
    family.decided_e, family.step_e = (
        holm_rounds(times_e, R, m) if alpha_e > 0 else (np.full(size, R), np.zeros(size, int))
    )
    return family


def _adjusted(tested: list[tuple[int, _Tested]], size: int, family: _Family, alpha: float) -> tuple[np.ndarray, ...]:
    """Per pair: the sequential p of no difference, and each kind's Holm-adjusted p over its share of alpha (pairs
    the plan compares with no values yet count as p = 1)."""
    p_difference, p_equivalence = np.ones(size), np.ones(size)
    for i, t in tested:
        p_difference[i] = _sequential_p(t.difference, t.pair.fractions, 2)
        if family.alpha_e > 0 and t.pair.margin > 0:
            p_equivalence[i] = max(
                _sequential_p(t.above, t.pair.fractions, 1), _sequential_p(t.below, t.pair.fractions, 1)
            )
    rest = np.ones(family.m - size)
    adjusted_d = holm_adjusted(np.concatenate([p_difference, rest]))[:size] * alpha / family.alpha_d
    adjusted_e = (
        holm_adjusted(np.concatenate([p_equivalence, rest]))[:size] * alpha / family.alpha_e
        if family.alpha_e > 0
        else np.ones(size)
    )
    return p_difference, np.minimum(adjusted_d, 1.0), np.minimum(adjusted_e, 1.0)


def _claim(i: int, t: _Tested, family: _Family) -> tuple[str, tuple[float, float], float, int | None]:
    """A tested pair's outcome, its interval at the level its claim was tested at, that interval's confidence
    level, and the round it was decided in (None: undecided)."""
    if family.step_d[i] > 0:
        level = family.alpha_d / family.step_d[i]
        look = int(family.first_difference[i][int(family.step_d[i]) - 1])
        outcome = "less" if t.sign[look] < 0 else "greater"
        return outcome, interval(t, level, 2), 1 - level, int(family.decided_d[i])
    if family.step_e[i] > 0:
        level = family.alpha_e / family.step_e[i]
        return "equivalent", interval(t, level, 1), 1 - 2 * level, int(family.decided_e[i])
    low, high = interval(t, family.alpha_d / family.open_d, 2)
    confidence = 1 - family.alpha_d / family.open_d
    if family.alpha_e > 0 and t.pair.margin > 0:  # wide enough to hold 0 and to reach past a margin
        eq_low, eq_high = interval(t, family.alpha_e / family.open_e, 1)
        low, high = min(low, eq_low), max(high, eq_high)
        confidence = max(confidence, 1 - 2 * family.alpha_e / family.open_e)
    return "undecided", (low, high), confidence, None


def decide(
    pairs: Sequence[PairEvidence], alpha: float = ALPHA, family: int | None = None, project: bool = True
) -> list[Decision]:
    """Every pair's outcome within the family ``pairs`` (module docstring), in the order given. ``family``: the
    family's size m where it is larger than the pairs given (pairs the plan compares that have no seeds yet);
    ``project``: estimate the seeds an undecided pair needs (:func:`more_seeds`)."""
    m = max(family or 0, len(pairs), 1)
    alpha_d, alpha_e = shares(alpha, max((p.margin for p in pairs), default=0.0))
    tested = [(i, _tested(p)) for i, p in enumerate(pairs) if p.tested]
    holm = _holm_over_rounds(tested, len(pairs), m, alpha_d, alpha_e)
    p_difference, adjusted_d, adjusted_e = _adjusted(tested, len(pairs), holm, alpha)
    states = dict(tested)
    out: list[Decision] = []
    for i, pair in enumerate(pairs):
        if i not in states:
            out.append(_untested(pair, m))
            continue
        outcome, (low, high), confidence, at = _claim(i, states[i], holm)
        decided_at = None
        if at is not None:  # the pair's seeds at the round it was decided in (its last look by then)
            decided_at = max(k for k, r in zip(pair.tested_looks, holm.own_rounds(pair)) if r <= at)
        undecided = project and outcome == "undecided"
        out.append(
            Decision(
                first=pair.first,
                second=pair.second,
                outcome=outcome,
                diff=pair.mean,
                ci_low=low,
                ci_high=high,
                p_value=float(p_difference[i]),
                p_adjusted=float(adjusted_d[i]),
                p_equivalence_adjusted=float(adjusted_e[i]),
                n=pair.n,
                seeds=pair.seeds,
                margin=pair.margin,
                method=pair.method,
                family=m,
                more_seeds=more_seeds(pair, alpha_d / holm.open_d, alpha_e / holm.open_e if alpha_e > 0 else 0.0)
                if undecided
                else None,
                decided_at=decided_at,
                ci_level=float(confidence),
                planned=pair.planned if pair.method == "sequential" else None,
            )
        )
    return out
