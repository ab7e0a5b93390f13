"""Statistics across seeds: mean, std, 95% confidence intervals, paired comparison against naive.

* ``std`` is the sample standard deviation (ddof = 1).
* The default interval is Student's t: mean ± t_{0.975, n-1} · std / sqrt(n). With the 2-5 seeds
  typical of a suite it is wide, honestly so; a percentile bootstrap is available
  (``method="bootstrap"``) and is deterministic for a given ``seed``.
* :func:`paired_difference` compares two strategies run on the same seeds: d_s = x_s - y_s per
  shared seed s, then the mean of d, its t interval and the two-sided paired t-test p-value
  (p = 2 · P(T_{n-1} > |mean(d)| / (std(d)/sqrt(n)))).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Mapping

import numpy as np
from numpy.typing import ArrayLike
from scipy import special as _special  # Student's t from its special functions: scipy.stats' import is 0.6 s

NAN = float("nan")


@dataclass(frozen=True)
class Summary:
    mean: float
    std: float
    ci_low: float
    ci_high: float
    n: int


@dataclass(frozen=True)
class Paired:
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int


def _finite(values: ArrayLike) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    return x[np.isfinite(x)]


def t_interval(values: ArrayLike, confidence: float = 0.95) -> tuple[float, float]:
    """Student-t interval for the mean of the finite values; (mean, mean) when all are equal; NaN for n < 2."""
    x = _finite(values)
    if x.size < 2:
        return NAN, NAN
    mean, sem = float(x.mean()), float(x.std(ddof=1)) / math.sqrt(x.size)
    half = float(_special.stdtrit(x.size - 1, 0.5 + confidence / 2)) * sem  # t_{(1+c)/2, n-1}
    return mean - half, mean + half


def bootstrap_interval(
    values: ArrayLike, confidence: float = 0.95, n_resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (deterministic for a given ``seed``); NaN for n < 2."""
    x = _finite(values)
    if x.size < 2:
        return NAN, NAN
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_resamples, x.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def summarize(
    values: ArrayLike,
    confidence: float = 0.95,
    method: Literal["t", "bootstrap"] = "t",
    seed: int = 0,
) -> Summary:
    """Mean, sample std and confidence interval of the finite values (non-finite ones are dropped)."""
    x = _finite(values)
    if x.size == 0:
        return Summary(NAN, NAN, NAN, NAN, 0)
    if method == "t":
        low, high = t_interval(x, confidence)
    elif method == "bootstrap":
        low, high = bootstrap_interval(x, confidence, seed=seed)
    else:
        raise ValueError(f"method must be one of 't', 'bootstrap', got {method!r}")
    std = float(x.std(ddof=1)) if x.size > 1 else NAN
    return Summary(float(x.mean()), std, low, high, int(x.size))


def paired_difference(values: Mapping[int, float], baseline: Mapping[int, float], confidence: float = 0.95) -> Paired:
    """Strategy minus baseline on the seeds both have (finite values only), with a paired t-test.

    When every difference is identical the t statistic is undefined (zero spread): the p-value is
    then 1 if the differences are all 0 and 0 otherwise (a constant non-zero shift).
    """
    seeds = sorted(s for s in values.keys() & baseline.keys() if np.isfinite(values[s]) and np.isfinite(baseline[s]))
    d = np.array([values[s] - baseline[s] for s in seeds], dtype=float)
    if d.size == 0:
        return Paired(NAN, NAN, NAN, NAN, 0)
    mean = float(d.mean())
    if d.size < 2:
        return Paired(mean, NAN, NAN, NAN, 1)
    sd = float(d.std(ddof=1))
    low, high = t_interval(d, confidence)
    if sd == 0 or not np.isfinite(sd):
        p = 1.0 if mean == 0 else 0.0
    else:
        t = mean / (sd / math.sqrt(d.size))
        p = float(2 * _special.stdtr(d.size - 1, -abs(t)))  # 2 P(T_{n-1} > |t|)
    return Paired(mean, low, high, p, int(d.size))
