"""Deciding a family of paired comparisons: four outcomes per pair, one error rate for every claim of a verdict,
valid at any number of seeds, however they were added, and on the numbers the tool produces (accuracies on a grid
of 1/n_test, tied seeds, heavy-tailed and skewed differences).

A *pair* (A, B) is compared on the seeds both methods have, in the order those seeds were run:
d_s = x_A,s - x_B,s (forgetting, or ACC, in [0, 1]). Its outcome is one of

* ``less`` (A < B) or ``greater`` (A > B): the pair's interval lies below (above) 0;
* ``equivalent``: the pair's interval lies inside +/- margin, the margin of practical equivalence;
* ``undecided``: neither, said with its interval and about how many more seeds would decide it.

**The model.** d_s = theta + e_s, the e_s independent and each symmetric about 0 given the seeds before it (not
necessarily normal, identically distributed or continuous: ties and a grid of values are allowed). Under "no
difference" this is exactly the statement that A and B are exchangeable on a seed (swapping the two methods'
numbers on a seed changes nothing), so a difference claim needs no more than that. What is left assumed: the seeds
are independent, and for equivalence claims and the interval's ends the spread is symmetric about theta. A skewed
spread is outside the model: at skew 1 the measured rate of false claims stays under alpha, at skew 2 it is about
1.7 alpha (docs/guide/decisions.md).

**One family, one alpha.** The pairs a verdict compares (one scenario's strategies, or its methods at the matched
plasticity levels; which ones, the plan says) are one family of m pairs. Each pair gets a confidence set at level
1 - alpha / m, and every claim is read off it: A < B when the set lies below 0, equivalent when it lies inside
+/- margin. The m sets hold together with probability at least 1 - alpha (Bonferroni: no assumption on how the
pairs, which share methods and seeds, depend on each other), and a false claim of either kind needs a set that
misses its pair's theta, so **the probability of any false claim in a verdict is at most alpha**, difference and
equivalence claims together; and the printed interval never contradicts the outcome beside it. A claim's adjusted
p is the smallest family-wise alpha at which it would be made. (Holm's step-down procedure decides more pairs, but
no intervals agree with its decisions, and applied to each kind of claim separately it lets the two reach
2 alpha together.)

**The evidence.** After k seeds, against theta0, the sign-flip e-process

    E_k(theta0) = mean over bets c in +/- BETS of  prod_{s <= k} (1 + tanh(c z_s)),
    z_s = x_s / sqrt(mean_{j <= s} x_j^2),  x_s = d_s - theta0:

a bet on each seed's sign at odds set by its size relative to the seeds so far (the likelihood ratio of a sign
given its size under a normal shift, tanh(theta x / sigma^2), mixed over standardised effects). Given the sizes
|x_1..x_s| and the earlier signs, under theta0 the sign of x_s is a fair coin and z_s's size is known, so each
factor has mean 1: each product is a nonnegative martingale, and so is their mean. By Ville's inequality
P(E_k(theta0) >= m / alpha for some k) <= alpha / m, **whatever the stopping rule**: the same sets serve a suite
of fixed seeds (one look) and one whose seeds were added in rounds until decided (a look after every round; the
fixed-n t-test recomputed there stops on a false claim 22% of the time). The set is {theta0 : E_k(theta0) < m /
alpha for every k so far}, evaluated on a grid of theta0 with 0 and +/- margin on it (so it only shrinks as seeds
come, and a decision, once made, stays). A tie bets nothing (tanh 0 = 0); k seeds of one sign give at most 2^k, so
with m pairs nothing can be decided before :func:`reach` seeds (7 for one pair, 10 for ten: no test that assumes
only exchangeability can do better than 2^-k). Within 20 seeds it decides a difference of one standard deviation of
d 87% of the time (median 10 seeds), as the t-mixture it replaces did where that one was valid.

Pure functions of arrays of differences; the reports, the rounds and ``forgetbench decide`` call the same ones.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Literal, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy import special as _special

ALPHA = 0.05
MIN_PAIRED = 3  # fewer paired seeds: the pair is not tested, and no interval is printed
# margins of practical equivalence, in the metric's own unit (fractions: 0.01 is one accuracy point); see
# docs/guide/decisions.md for why one point
DEFAULT_MARGINS = {"forgetting": 0.01, "ACC": 0.01}
OUTCOMES = ("less", "greater", "equivalent", "undecided")
Method = Literal["fixed", "sequential"]  # how the seeds came: all at once, or in rounds until decided (said, not used)
NAN = float("nan")

BETS = (0.5, 1.0, 1.5, 3.0)  # the e-process's standardised bets c (each with its mirror -c)
GRID_POINTS = 256  # theta0 values a confidence sequence is evaluated at (0 and +/- margin besides)
PROJECTION_LIMIT = 1000  # more_seeds looks no further than this many paired seeds
_LOG2 = math.log(2.0)


# --- the sequential evidence (vectorised over leading axes: the last axis holds one pair's x in run order) ----------


def _log_one_plus_tanh(y: np.ndarray) -> np.ndarray:
    """log(1 + tanh(y)) = log 2 - log(1 + exp(-2y)), finite for every finite y."""
    return _LOG2 - np.logaddexp(0.0, -2.0 * y)


def log_evidence(x: ArrayLike) -> np.ndarray:
    """log E_k(theta0) for k = 1..n of the centred differences ``x`` = d - theta0 (module docstring), same shape."""
    x = np.asarray(x, dtype=float)
    k = np.arange(1, x.shape[-1] + 1, dtype=float)
    rms = np.sqrt(np.cumsum(x * x, axis=-1) / k)
    z = np.divide(x, rms, out=np.zeros_like(x), where=rms > 0)
    total = np.full(x.shape, -np.inf)
    for c in BETS:
        for signed in (c, -c):
            total = np.logaddexp(total, np.cumsum(_log_one_plus_tanh(signed * z), axis=-1))
    return total - math.log(2 * len(BETS))


@functools.lru_cache(maxsize=64)
def _tail_log_evidence(n: int) -> np.ndarray:
    """log E_k as theta0 -> -infinity (every x_s large, positive and alike: z_s = 1), k = 1..n; by symmetry also
    as theta0 -> +infinity. The evidence at values of theta0 beyond every difference tends to it."""
    return np.maximum.accumulate(log_evidence(np.ones(n)))


def reach(family: int, alpha: float = ALPHA, limit: int = 200) -> int | None:
    """The fewest paired seeds at which a family of ``family`` pairs can decide anything: with fewer, no set at level
    1 - alpha / family is bounded (k seeds of one sign give at most 2^k evidence)."""
    a = alpha / max(family, 1)
    tail = _tail_log_evidence(limit)
    hit = np.nonzero(tail >= math.log(1.0 / a))[0]
    return max(MIN_PAIRED, int(hit[0]) + 1) if hit.size else None


# --- one pair's set ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairSet:
    """What a pair's confidence set at level 1 - a says: its interval and, per claim, the smallest a at which it is
    made (the claim's p) and, for the sequential set, the seed count from which it holds."""

    low: float
    high: float
    p_zero: float  # the two-sided p of theta = 0 (unadjusted)
    p_less: float  # every theta0 >= 0 excluded at this a
    p_greater: float
    p_equivalent: float  # every |theta0| >= margin excluded at this a
    since: dict[str, int] = field(default_factory=dict)  # claim -> the fewest seeds from which it holds (sequential)
    empty: bool = False  # every theta0 excluded (probability at most a): no claim is read off it


def _grid(d: np.ndarray, margin: float) -> np.ndarray:
    spread = float(np.ptp(d))
    width = spread if spread > 0 else max(float(np.abs(d).max()), margin, 1e-12)
    low, high = float(d.min()) - 3 * width, float(d.max()) + 3 * width
    return np.unique(np.concatenate([np.linspace(low, high, GRID_POINTS), [0.0, -margin, margin], d]))


def sequential_set(d: ArrayLike, margin: float, a: float) -> PairSet:
    """The confidence sequence of ``d`` (run order) at level 1 - a after its last seed, on a grid of theta0 with its
    two limits (every theta0 beyond the differences)."""
    d = np.asarray(d, dtype=float)
    n = d.size
    grid = _grid(d, margin)
    running = np.maximum.accumulate(log_evidence(d[None, :] - grid[:, None]), axis=1)  # (grid, k)
    tail = _tail_log_evidence(n)
    threshold = math.log(1.0 / a)
    final = running[:, -1]
    accepted = final < threshold
    tail_accepted = bool(tail[-1] < threshold)
    p_at = np.minimum(1.0, np.exp(-final))
    p_tail = float(min(1.0, math.exp(-tail[-1])))

    def first_excluded(rows: np.ndarray, with_tail: bool) -> int:
        """The fewest seeds at which every theta0 of ``rows`` (and the tail) was excluded at a."""
        hits = running[rows] >= threshold
        times = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, n + 1)
        latest = int(times.max()) if times.size else 0
        if with_tail:
            tail_hits = np.nonzero(tail >= threshold)[0]
            latest = max(latest, int(tail_hits[0]) + 1 if tail_hits.size else n + 1)
        return latest

    def worst(rows: np.ndarray) -> float:
        return float(max(p_at[rows].max() if rows.any() else 0.0, p_tail))

    upper, lower, outer = grid >= 0, grid <= 0, np.abs(grid) >= margin
    since = {}
    if not accepted.any() and not tail_accepted:
        return PairSet(NAN, NAN, float(p_at[grid == 0][0]), 1.0, 1.0, 1.0, {}, empty=True)
    if tail_accepted:
        low, high = -math.inf, math.inf
    else:
        inside = np.nonzero(accepted)[0]
        low = float(grid[inside[0] - 1]) if inside[0] > 0 else float(grid[0])
        high = float(grid[inside[-1] + 1]) if inside[-1] + 1 < grid.size else float(grid[-1])
    for claim, rows in (("less", upper), ("greater", lower), ("equivalent", outer)):
        latest = first_excluded(rows, with_tail=True)
        if latest <= n:
            since[claim] = latest
    return PairSet(
        low=low,
        high=high,
        p_zero=float(p_at[grid == 0][0]),
        p_less=worst(upper),
        p_greater=worst(lower),
        p_equivalent=worst(outer),
        since=since,
    )


# --- a pair and its family ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairEvidence:
    """One pair's differences (first minus second), in the order their seeds were run, before its family is known."""

    first: str
    second: str
    seeds: tuple[int, ...]
    differences: tuple[float, ...]
    margin: float
    method: Method

    @property
    def n(self) -> int:
        return len(self.differences)

    @property
    def mean(self) -> float:
        return float(np.mean(self.differences)) if self.differences else NAN

    @property
    def tested(self) -> bool:
        return self.n >= MIN_PAIRED


@dataclass(frozen=True)
class Decision:
    """A pair's outcome within its family."""

    first: str
    second: str
    outcome: str  # one of OUTCOMES (less: first < second)
    diff: float  # mean of first - second over the paired seeds
    ci_low: float  # the pair's set at level 1 - alpha / m (infinite where n seeds cannot bound it; NaN under 3)
    ci_high: float
    p_value: float  # the two-sided p of "no difference", unadjusted
    p_adjusted: float  # the smallest family-wise alpha at which it is decided A < B or A > B
    p_equivalence_adjusted: float  # ... decided equivalent
    n: int  # paired seeds
    seeds: tuple[int, ...]  # in the order they were run
    margin: float
    method: Method
    family: int  # the pairs of the family (m)
    more_seeds: int | None = None  # undecided: about how many more paired seeds would decide it (None: out of reach)
    note: str = ""  # why it was not tested, where it was not
    decided_at: int | None = None  # the paired seeds at which its outcome was first reached
    reach: int | None = None  # the fewest paired seeds at which its family can decide anything
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
) -> PairEvidence:
    """A pair's differences in the order their seeds were run: by ``order`` (each seed's round: 0 for the first
    seeds), then by seed number; by seed number where no order is given."""
    keys = [(0 if order is None else int(order[i]), int(s), i) for i, s in enumerate(seeds)]
    keys.sort()
    return PairEvidence(
        first,
        second,
        tuple(s for _, s, _ in keys),
        tuple(float(differences[i]) for _, _, i in keys),
        float(margin),
        method,
    )


def paired(
    first: str,
    second: str,
    a: Mapping[int, float],
    b: Mapping[int, float],
    margin: float,
    method: Method = "fixed",
    rounds: Mapping[str, Mapping[int, int]] | None = None,
) -> PairEvidence:
    """The pair (first, second) of per-seed values ``a`` and ``b`` on the seeds both have a finite value for, in the
    order they were run (``rounds``: label -> seed -> the round that ran it; a seed counts from the later of its two
    runs)."""
    rounds = rounds or {}
    seeds = sorted(s for s in a.keys() & b.keys() if math.isfinite(a[s]) and math.isfinite(b[s]))
    ran = [max(rounds.get(first, {}).get(s, 0), rounds.get(second, {}).get(s, 0)) for s in seeds]
    return evidence(first, second, seeds, [a[s] - b[s] for s in seeds], margin, method, order=ran)


def outcome_of(pair_set: PairSet, alpha: float, family: int) -> str:
    """The claim a set at level 1 - alpha / family makes (module docstring)."""
    if pair_set.empty:
        return "undecided"
    if family * pair_set.p_less <= alpha:
        return "less"
    if family * pair_set.p_greater <= alpha:
        return "greater"
    if family * pair_set.p_equivalent <= alpha:
        return "equivalent"
    return "undecided"


def _van_der_corput(count: int) -> np.ndarray:
    """The first ``count`` points of the base-2 van der Corput sequence in (0, 1): 1/2, 1/4, 3/4, 1/8, 5/8, ..."""
    k = np.arange(1, count + 1)
    out = np.zeros(count)
    scale = 0.5
    while k.any():
        out += scale * (k & 1)
        k >>= 1
        scale /= 2
    return out


def more_seeds(pair: PairEvidence, family: int, alpha: float = ALPHA, limit: int = PROJECTION_LIMIT) -> int | None:
    """About how many more paired seeds would decide ``pair`` if its mean difference and spread stayed as observed:
    its differences continued by values at the normal quantiles of that mean and spread, in the van der Corput order
    (every prefix of the continuation spread evenly over the quantiles: no draw, the same answer for any ``limit``),
    and the fewest seeds at which the evidence excludes 0 (a difference) or both margins (an equivalence) at
    the family's level, the far values too (the reach). One pass over every prefix at those three values: an
    estimate, said as one. None when none up to ``limit`` would."""
    d = np.asarray(pair.differences, dtype=float)
    if d.size < 2 or not np.isfinite(d).all() or d.size >= limit:
        return None
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0.0:
        sd = max(abs(mean), pair.margin) * 1e-3 or 1e-12
    extra = limit - d.size
    full = np.concatenate([d, mean + sd * _special.ndtri(_van_der_corput(extra))])
    threshold = math.log(max(family, 1) / alpha)
    running = np.maximum.accumulate(
        log_evidence(full[None, :] - np.array([0.0, -pair.margin, pair.margin])[:, None]), axis=1
    )
    reached = _tail_log_evidence(limit) >= threshold
    differs = running[0] >= threshold
    equivalent = (running[1] >= threshold) & (running[2] >= threshold) if pair.margin > 0 else np.zeros(limit, bool)
    decided = np.nonzero(reached & (differs | equivalent))[0]
    decided = decided[decided >= d.size - 1]
    return int(decided[0]) + 1 - d.size if decided.size else None


def decide(
    pairs: Sequence[PairEvidence], alpha: float = ALPHA, family: int | None = None, project: bool = True
) -> list[Decision]:
    """Every pair's outcome within the family ``pairs`` (module docstring), in the order given. ``family``: the
    family's size m where it is larger than the pairs given (pairs the plan compares that have no seeds yet);
    ``project``: estimate the seeds an undecided pair needs (:func:`more_seeds`)."""
    m = max(family or 0, len(pairs), 1)
    a = alpha / m
    out = []
    for pair in pairs:
        found_reach = reach(m, alpha)
        if not pair.tested:
            out.append(
                Decision(
                    pair.first,
                    pair.second,
                    "undecided",
                    pair.mean,
                    NAN,
                    NAN,
                    NAN,
                    NAN,
                    NAN,
                    pair.n,
                    pair.seeds,
                    pair.margin,
                    pair.method,
                    m,
                    note=f"{pair.n} paired seed(s): at least {MIN_PAIRED} are needed to test",
                    reach=found_reach,
                )  # fmt: skip
            )
            continue
        found = sequential_set(pair.differences, pair.margin, a)
        outcome = outcome_of(found, alpha, m)
        p_difference = min(found.p_less, found.p_greater)
        note = "every value excluded (an event of probability at most alpha / m): no claim" if found.empty else ""
        out.append(
            Decision(
                first=pair.first,
                second=pair.second,
                outcome=outcome,
                diff=pair.mean,
                ci_low=found.low,
                ci_high=found.high,
                p_value=found.p_zero,
                p_adjusted=float(min(1.0, m * p_difference)),
                p_equivalence_adjusted=float(min(1.0, m * found.p_equivalent)),
                n=pair.n,
                seeds=pair.seeds,
                margin=pair.margin,
                method=pair.method,
                family=m,
                more_seeds=more_seeds(pair, m, alpha)
                if project and outcome == "undecided" and not found.empty
                else None,
                note=note,
                decided_at=found.since.get(outcome, pair.n) if outcome != "undecided" else None,
                reach=found_reach,
            )
        )
    return out


# --- the simulations' fast paths: the evidence at one theta0 per sequence ---------------------------------------------


def excluded_by(d: ArrayLike, theta0: ArrayLike, a: float) -> np.ndarray:
    """Per sequence of ``d`` (..., n), the fewest seeds by which its set at level 1 - a excluded ``theta0`` (n + 1:
    never). A false claim needs its pair's true theta excluded, so the share of sequences that exclude it by their
    last look bounds the rate of false claims of every kind (the simulations' check, exact and cheap)."""
    d = np.asarray(d, dtype=float)
    n = d.shape[-1]
    theta0 = np.broadcast_to(np.asarray(theta0, dtype=float), d.shape[:-1])
    hits = np.maximum.accumulate(log_evidence(d - theta0[..., None]), axis=-1) >= math.log(1.0 / a)
    return np.where(hits.any(axis=-1), hits.argmax(axis=-1) + 1, n + 1)
