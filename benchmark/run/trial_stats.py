"""What a study reads off its trials: a trial objective (the mean over its seeds), the pruning bounds the completed
trials set, and the tie statistics (a validation split resolves differences of one binomial standard error)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from forgetbench.benchmark.core.metrics import run_metrics
from forgetbench.benchmark.core.record import RunRecord


PRUNING_SHARE = {"median": 0.5, "quartile": 0.25}  # the share of completed trials a pruned run is behind all but


PRUNING_BOUND = {"median": "median", "quartile": "quartile on the worse side"}


def pruning_bounds(curves: list[list[float]], share: float, maximise: bool) -> tuple[float | None, ...]:
    """Per experience k, the value a run's objective so far must not fall behind: the ``share`` quantile of the
    completed trials' values there (``curves``: one :func:`~forgetbench.benchmark.core.metrics.running_metric` list
    per trial; the 1 - ``share`` quantile when lower is better). None where no trial has a finite value, and after
    the last experience (pruning there saves nothing and would lose a finished trial)."""
    steps = max((len(curve) for curve in curves), default=0) - 1
    bounds: list[float | None] = []
    for k in range(max(steps, 0)):
        values = [curve[k] for curve in curves if k < len(curve) and math.isfinite(curve[k])]
        bounds.append(float(np.quantile(values, share if maximise else 1.0 - share)) if values else None)
    return tuple(bounds)


def inside_bounds(
    points: list[dict[tuple[int, int], float]], share: float, maximise: bool
) -> tuple[tuple[float | None, ...], ...]:
    """Per experience k and point c inside it, the bound a run's objective so far must not fall behind there: the
    ``share`` quantile (as :func:`pruning_bounds`) of the completed trials' values at (k, c) (``points``: one
    ``{(k, c): value}`` per trial, from its ``RunRecord.prune_points``). None where no trial has a value."""
    keys = {key for trial in points for key in trial}
    if not keys:
        return ()
    experiences, per = max(k for k, _ in keys) + 1, max(c for _, c in keys)
    bounds = []
    for k in range(experiences):
        row: list[float | None] = []
        for c in range(1, per + 1):
            values = [trial[(k, c)] for trial in points if (k, c) in trial]
            row.append(float(np.quantile(values, share if maximise else 1.0 - share)) if values else None)
        bounds.append(tuple(row))
    return tuple(bounds)


def pruned_after(records: list[RunRecord | None]) -> int | None:
    """The last experience a trial's pruned run completed (-1: it stopped inside the first; the earliest when several
    were pruned); None when none was."""
    steps = [len(r.accuracy_matrix) - 1 for r in records if r is not None and r.status == "pruned"]
    return min(steps) if steps else None


def objective(records: list[RunRecord | None], metric: str) -> float | None:
    """The objective's mean over the trial's ok runs; None when none finished ok (the trial then fails)."""
    values = [run_metrics(r)[metric] for r in records if r is not None and r.status == "ok"]
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else None


@dataclass(frozen=True)
class Resolution:
    """One binomial standard error of a trial's objective on its validation split: ``samples`` per task over
    ``tasks`` tasks, averaged over ``seeds``. A difference of an accuracy (forgetting, BWT) has twice the variance."""

    error: float
    samples: int  # per task (the smallest task's)
    tasks: int
    seeds: int
    factor: float  # variance of one accuracy at p, times 2 for a difference of accuracies

    @classmethod
    def of(cls, value: float, samples: list[int], seeds: int, objective: str) -> "Resolution":
        n, tasks = max(min(samples), 1), max(len(samples), 1)
        # a rate measured at 0 or 1 on N samples is not known exactly: kept half a sample inside (0, 1)
        edge = 0.5 / (n * tasks * max(seeds, 1))
        p = min(max(value, edge), 1.0 - edge) if objective in ("ACC", "LA") else 0.5  # 0.5: the widest spread
        factor = p * (1 - p) * (1.0 if objective in ("ACC", "LA") else 2.0)
        return cls(math.sqrt(factor / (n * tasks * max(seeds, 1))), n, tasks, seeds, factor)

    def samples_to_resolve(self, difference: float) -> int | None:
        """Validation samples per task at which one standard error is below ``difference`` (None for 0)."""
        if difference <= 0:
            return None
        return math.ceil(self.factor / (difference**2 * self.tasks * max(self.seeds, 1)))


TIE_RULE = "the best value, equal values to the lowest trial number (the same for every driver)"


TIE_SPLIT_LIMIT = 100  # a split this many times larger than the one used is named as a bound, not a number


def tie_notes(
    complete: list[dict[str, Any]], best: dict[str, Any], resolution: Resolution | None, objective: str
) -> list[str]:
    """Sentences for tuning.json's notes when the validation split cannot tell the best trial from others (their
    values within one standard error of the best's), with the rule that chose, and the split that would tell."""
    if resolution is None or len(complete) < 2:
        return []
    tied = [t for t in complete if abs(t["value"] - best["value"]) <= resolution.error]
    if len(tied) < 2:
        return []
    others = sorted({t["value"] for t in complete})
    # an objective moves in steps of one sample of one task and seed: a smaller gap is float rounding, no difference
    step = 1.0 / (resolution.samples * resolution.tasks * max(resolution.seeds, 1))
    gaps = [b - a for a, b in zip(others, others[1:]) if b - a >= step / 2]
    split = f"{resolution.samples} samples a task on {resolution.tasks} task(s), {resolution.seeds} seed(s)"
    needed = resolution.samples_to_resolve(min(gaps)) if gaps else None
    if needed is None:
        tell = "every trial scored the same: the split resolves no difference between these strengths"
    elif needed > TIE_SPLIT_LIMIT * resolution.samples:
        tell = (
            f"the smallest difference these trials show ({min(gaps):.4f}) would need a validation split over "
            f"{TIE_SPLIT_LIMIT} times this one ({resolution.samples:,} samples a task): these strengths are alike"
        )
    else:
        tell = (
            f"a validation split of about {needed:,} samples a task (or that many more seeds' worth) would resolve "
            f"the smallest difference these trials show ({min(gaps):.4f})"
        )
    return [
        f"tie: trials {', '.join(str(t['number']) for t in sorted(tied, key=lambda t: t['number']))} score within "
        f"one binomial standard error ({resolution.error:.4f} {objective}) of the best on the validation split "
        f"({split}); chosen by the rule: {TIE_RULE}. The split cannot tell these points apart: {tell}"
    ]


def point_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
