"""Stability-plasticity frontiers and the comparison of methods at matched plasticity. Pure functions.

A regularizer trades plasticity (LA: accuracy on each task right after learning it) for stability (low
forgetting); its strength moves it along that trade. One run per strength gives one point
``(plasticity, forgetting)``; the points no other point beats on both (higher or equal plasticity *and* lower
or equal forgetting, one strictly) are its **Pareto front**. Comparing two methods at one strength each
compares where each default happens to sit on its own curve; comparing their fronts at the **same
plasticity** compares the methods:

    forgetting_m(p) = the front of m, linearly interpolated at plasticity p

evaluated at naive's plasticity minus 1, 2 and 5 points, per seed (each seed's own front and naive's own LA),
then paired across seeds. What is compared is the forgetting a method attains *with at least* plasticity p:
where the whole front is more plastic than p, its least-forgetting point (a method that keeps more
plasticity and forgets less is not charged for it); where no point reaches p, NaN, never an extrapolation.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from numpy.typing import ArrayLike

NAN = float("nan")


def pareto_front(plasticity: ArrayLike, forgetting: ArrayLike) -> np.ndarray:
    """Indices of the non-dominated points, ordered by plasticity (ascending). NaN points are never on it; of
    identical points the first is kept."""
    p = np.asarray(plasticity, dtype=float).ravel()
    f = np.asarray(forgetting, dtype=float).ravel()
    if p.shape != f.shape:
        raise ValueError(f"plasticity and forgetting need one value per point, got {p.size} and {f.size}")
    finite = np.flatnonzero(np.isfinite(p) & np.isfinite(f))
    # most plastic first, ties by least forgetting: a point is on the front when it forgets strictly less than
    # every point at least as plastic that came before it
    order = finite[np.lexsort((f[finite], -p[finite]))]
    front, best = [], np.inf
    for i in order:
        if f[i] < best:
            front.append(i)
            best = f[i]
    return np.array(sorted(front, key=lambda i: (p[i], f[i])), dtype=int)


def forgetting_at(plasticity: float, front_plasticity: ArrayLike, front_forgetting: ArrayLike) -> float:
    """The front's forgetting at ``plasticity``: interpolated linearly between its points within the plasticity it
    spans; its least plastic (least forgetting) point's below that span; NaN above it (no point reaches that
    plasticity) or with no point."""
    p = np.asarray(front_plasticity, dtype=float).ravel()
    f = np.asarray(front_forgetting, dtype=float).ravel()
    if p.size == 0 or not np.isfinite(plasticity) or plasticity > p.max():
        return NAN
    order = np.argsort(p, kind="stable")
    return float(np.interp(plasticity, p[order], f[order]))  # np.interp holds the first value below the span


def matched_forgetting(
    points: Mapping[int, tuple[ArrayLike, ArrayLike]], targets: Mapping[int, float]
) -> dict[int, float]:
    """Per seed: the forgetting of that seed's front (its points ``(plasticity, forgetting)`` over strengths) at
    that seed's target plasticity. Seeds missing from either mapping are left out."""
    out = {}
    for seed in sorted(points.keys() & targets.keys()):
        plasticity, forgetting = (np.asarray(a, dtype=float) for a in points[seed])
        front = pareto_front(plasticity, forgetting)
        out[seed] = forgetting_at(targets[seed], plasticity[front], forgetting[front])
    return out
