"""The error rates of a verdict's decisions (:mod:`forgetbench.benchmark.core.decide`), by simulation on the shapes
the tool produces: paired differences on the 1/450 grid of the demo's test sets, heavy-tailed (t3) and skewed ones,
nulls made of real per-seed numbers, families of 10 pairs, and the same cases under the fixed-n t-test recomputed
at every look (what the sign-flip tests replace).

    forgetbench perf --only decision_error_rates [--set sequences=4000]

A false claim of any kind (A < B, A > B or equivalent) needs its pair's set to miss the pair's true difference, so
the share of sequences whose set excluded the true difference by the last look bounds the rate of false claims:
that is what is counted (exact, and cheap: the evidence at one value per sequence). tests/core/test_decide.py
asserts these rates, each at a 99.9% Clopper-Pearson bound, from the same functions.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
from pydantic import BaseModel, ConfigDict, PositiveInt
from scipy import special

from forgetbench.benchmark.core import decide as D
from forgetbench.benchmark.perf.measurements import Measurement, register

GRID = 1 / 450  # one test image of the demo's digits tasks, as an accuracy


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sequences: PositiveInt = 4000  # simulated suites per case
    start: PositiveInt = 3  # the rule's first look, as seeds: {start: 3, max: 20}
    max: PositiveInt = 20
    alpha: float = D.ALPHA
    margin: float = 0.01  # the equivalence margin, in the differences' unit (one accuracy point)


# --- the shapes -----------------------------------------------------------------------------------------------------


def on_grid(rng: np.random.Generator, mean: float, sd: float, shape: tuple[int, ...]) -> np.ndarray:
    """Paired differences of two accuracies measured on a test set of 450 images: multiples of 1/450."""
    return np.round(rng.normal(mean, sd, shape) / GRID) * GRID


def t3(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_t(3, shape)


def skewed(rng: np.random.Generator, skew: float, shape: tuple[int, ...]) -> np.ndarray:
    """Mean-0, sd-1 differences of skewness ``skew`` (a centred gamma of shape 4 / skew^2)."""
    k = 4.0 / skew**2
    return (rng.gamma(k, 1.0, shape) - k) / math.sqrt(k)


def self_paired(rng: np.random.Generator, values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A null made of real per-seed numbers: one method's seed paired against another of its own seeds (drawn
    without replacement within a sequence), so the two sides are exchangeable by construction."""
    sequences, n = shape
    out = np.empty(shape)
    for i in range(sequences):
        picked = rng.choice(values.size, 2 * n, replace=values.size < 2 * n)
        out[i] = values[picked[:n]] - values[picked[n:]]
    return out


# --- the rules --------------------------------------------------------------------------------------------------------


def excluded(d: np.ndarray, theta: float | np.ndarray, a: float, most: int) -> np.ndarray:
    """Per sequence, whether its set at level 1 - a excluded ``theta`` by ``most`` seeds: at any look of the rounds,
    or at the one look of a suite of fixed seeds (the set after ``most`` seeds is the same either way: it keeps
    every earlier prefix's evidence)."""
    return np.asarray(D.excluded_by(d[..., :most], theta, a) <= most)


def recomputed_t(d: np.ndarray, theta: float, a: float, start: int, most: int) -> np.ndarray:
    """What the sign-flip sets replace, under the same looks: the fixed-n t interval recomputed at every look, per
    sequence whether some look's interval excluded ``theta``."""
    hit = np.zeros(d.shape[:-1], dtype=bool)
    for n in range(start, most + 1):
        x = d[..., :n]
        mean, sd = x.mean(axis=-1), x.std(axis=-1, ddof=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.abs(mean - theta) / (sd / math.sqrt(n))
        p = np.where(sd > 0, 2 * special.stdtr(n - 1, -t), np.where(mean == theta, 1.0, 0.0))  # ties: sd 0, p 0
        hit |= p <= a
    return hit


def sorted_by_seed(d: np.ndarray, theta: float, a: float, start: int, most: int, first: int = 3) -> np.ndarray:
    """The sequential rule fed each look's seeds sorted by seed number, as before records kept their round: the
    first ``first`` seeds numbered 100, 101, ... come last at every look after them, so the evidence at a look is
    not the evidence the earlier looks saw. Per sequence, whether some look excluded ``theta``."""
    hit = np.zeros(d.shape[:-1], dtype=bool)
    for n in range(start, most + 1):
        late = d[..., first:n]  # seeds 0, 1, ... added by the rounds
        arranged = np.concatenate([late, d[..., :first]], axis=-1)
        hit |= D.excluded_by(arranged, theta, a) <= n
    return hit


Rule = Callable[[np.ndarray, float, float], np.ndarray]


def rates(params: Params, real: np.ndarray | None = None) -> dict[str, Any]:
    """Every case of the battery: the share of sequences that ended in a false claim (at most: the share whose set
    missed the truth), per rule."""
    rng = np.random.default_rng(20261127)
    S, n, a, m = params.sequences, params.max, params.alpha, params.margin
    shape = (S, n)
    cases: dict[str, tuple[np.ndarray, float]] = {
        "grid, sd 0.3 points": (on_grid(rng, 0.0, 0.003, shape), 0.0),
        "grid, sd 0.7 points": (on_grid(rng, 0.0, 0.007, shape), 0.0),
        "grid, sd 2 points": (on_grid(rng, 0.0, 0.02, shape), 0.0),
        "t3": (t3(rng, shape), 0.0),
        "skew 1": (skewed(rng, 1.0, shape), 0.0),
        "skew 2": (skewed(rng, 2.0, shape), 0.0),
        "on the margin (+1 point), grid sd 1 point": (on_grid(rng, m, 0.01, shape), m),
        "on the margin (-1 point), grid sd 1 point": (on_grid(rng, -m, 0.01, shape), -m),
    }
    if real is not None:
        cases["real per-seed numbers, self-paired"] = (self_paired(rng, real, shape), 0.0)
    out: dict[str, Any] = {"params": params.model_dump(), "cases": {}}
    for name, (d, theta) in cases.items():
        out["cases"][name] = {
            "sign_flip": float(excluded(d, theta, a, n).mean()),
            "recomputed_t": float(recomputed_t(d, theta, a, params.start, n).mean()),
            "t_one_look": float(recomputed_t(d, theta, a, n, n).mean()),
        }
    d = on_grid(rng, 0.0, 0.007, shape)
    out["first seeds 100-102"] = {
        "run order": float(excluded(d, 0.0, a, n).mean()),
        "sorted by seed": float(sorted_by_seed(d, 0.0, a, params.start, n).mean()),
    }
    means = np.array([0.0] * 5 + [m] * 5)
    family = on_grid(rng, 0.0, 0.01, (S, 10, n)) + means[None, :, None]
    out["family of 10 pairs, 5 at 0 and 5 at the margin"] = {
        "sign_flip": float(excluded(family, means[None, :], a / 10, n).any(axis=1).mean()),
        "recomputed_t": float(
            np.stack([recomputed_t(family[:, j], means[j], a / 10, params.start, n) for j in range(10)], 1)
            .any(axis=1)
            .mean()
        ),
    }
    return out


def power(params: Params, sd: float = 0.01) -> dict[str, float]:
    """A difference of one standard deviation of d, one pair: the share decided (A > B) within ``max`` seeds and the
    median seeds it took."""
    rng = np.random.default_rng(11)
    d = rng.normal(sd, sd, (params.sequences, params.max))
    found = [D.sequential_set(row, params.margin, params.alpha) for row in d]
    decided = np.array([D.outcome_of(f, params.alpha, 1) == "greater" for f in found])
    at = np.array([f.since.get("greater", params.max + 1) for f in found])
    return {
        "decided": float(decided.mean()),
        "median_seeds": float(np.median(at[decided])) if decided.any() else float("nan"),
    }


def run(opts: Any, params: Params, data: Any) -> dict[str, Any]:
    return {**rates(params), "power_one_sd": power(params)}


def lines(result: dict[str, Any]) -> list[str]:
    p = result["params"]
    out = [
        f"{p['sequences']} sequences per case, looks at {p['start']}..{p['max']} seeds, alpha {p['alpha']}: the share "
        "ending in a false claim (at most): sign-flip sets / t-test recomputed at every look / t-test at one look"
    ]
    for name, r in result["cases"].items():
        out.append(f"  {name:<44} {r['sign_flip']:6.1%} {r['recomputed_t']:6.1%} {r['t_one_look']:6.1%}")
    order = result["first seeds 100-102"]
    out.append(
        f"  first seeds 100-102: in run order {order['run order']:.1%}, sorted by seed {order['sorted by seed']:.1%}"
    )
    family = result["family of 10 pairs, 5 at 0 and 5 at the margin"]
    out.append(
        f"  family of 10 pairs (5 at 0, 5 at the margin), any false claim: sign-flip {family['sign_flip']:.1%}, "
        f"t-test recomputed {family['recomputed_t']:.1%}"
    )
    power_ = result["power_one_sd"]
    out.append(
        f"  one-sd difference decided within {p['max']} seeds: {power_['decided']:.1%} (median "
        f"{power_['median_seeds']:.0f} seeds)"
    )
    return out


register(Measurement("decision_error_rates", "a verdict's false claims and power, simulated", Params, run, lines))
