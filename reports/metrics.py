"""Continual-learning metrics as pure functions of an accuracy matrix.

``R[i][j]`` is the accuracy on experience (task) ``j`` after training experience ``i``; ``b[j]`` the
untrained model's accuracy on ``j``. ``T`` is the number of rows (training stages); the final row
``R[T-1]`` is the model at the end. Every function takes array-likes and returns a float (NaN where
the metric is undefined, e.g. backward transfer with a single experience).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def _matrix(R: ArrayLike) -> np.ndarray:
    R = np.asarray(R, dtype=float)
    if R.ndim != 2 or R.shape[0] == 0:
        raise ValueError(f"accuracy matrix must be 2-D and non-empty, got shape {R.shape}")
    return R


def _square(R: ArrayLike) -> np.ndarray:
    R = _matrix(R)
    if R.shape[0] != R.shape[1]:
        raise ValueError(f"this metric needs one row per experience, got shape {R.shape}")
    return R


def average_accuracy(R: ArrayLike) -> float:
    """ACC = mean_j R[T-1][j]: the final model's mean accuracy over all experiences."""
    return float(_matrix(R)[-1].mean())


def learning_accuracy(R: ArrayLike) -> float:
    """LA = mean_j R[j][j]: accuracy on each experience right after learning it (plasticity)."""
    return float(np.diag(_square(R)).mean())


def backward_transfer(R: ArrayLike) -> float:
    """BWT = mean_{j<T-1} (R[T-1][j] - R[j][j]); negative means forgetting. NaN for T = 1."""
    R = _square(R)
    T = R.shape[0]
    if T < 2:
        return float("nan")
    return float(np.mean(R[-1, : T - 1] - np.diag(R)[: T - 1]))


def forward_transfer(R: ArrayLike, b: ArrayLike) -> float:
    """FWT = mean_{j>=1} (R[j-1][j] - b_j): accuracy on j before training it, over chance. NaN for T = 1."""
    R = _square(R)
    b = np.asarray(b, dtype=float)
    T = R.shape[0]
    if T < 2:
        return float("nan")
    return float(np.mean([R[j - 1, j] - b[j] for j in range(1, T)]))


def forgetting(R: ArrayLike) -> float:
    """F = mean_{j<T-1} (max_{l<T-1} R[l][j] - R[T-1][j]) (Chaudhry et al., 2018). NaN for T = 1."""
    R = _square(R)
    T = R.shape[0]
    if T < 2:
        return float("nan")
    best = R[: T - 1, : T - 1].max(axis=0)
    return float(np.mean(best - R[-1, : T - 1]))


def intransigence(R: ArrayLike, reference: ArrayLike) -> float:
    """I = mean_j (a*_j - R[j][j]), with a* the reference (joint or standalone) accuracy per experience."""
    R = _square(R)
    reference = np.asarray(reference, dtype=float)
    return float(np.mean(reference - np.diag(R)))


def forgetting_reduction(f_strategy: float, f_naive: float) -> float:
    """1 - F_strategy / F_naive, in percent (the WPL paper's headline). NaN if naive did not forget."""
    if not np.isfinite(f_naive) or f_naive <= 0:
        return float("nan")
    return float(100.0 * (1.0 - f_strategy / f_naive))


def mean_err_gap(err1: ArrayLike, err2: ArrayLike) -> float:
    """Multi-model forgetting of a weight-sharing run: mean over rounds r and architectures k of
    ``err2[r][k] - err1[r][k]`` (error at the end of round r minus error right after k's turn;
    positive = the architectures trained later in the round degraded k)."""
    e1, e2 = np.asarray(err1, dtype=float), np.asarray(err2, dtype=float)
    if e1.shape != e2.shape or e1.size == 0:
        raise ValueError(f"err1 and err2 must be non-empty and of one shape, got {e1.shape} and {e2.shape}")
    return float(np.mean(e2 - e1))


def ranking_kendall_tau(supernet_accuracy: ArrayLike, standalone_accuracy: ArrayLike) -> float:
    """Kendall's tau-b between the supernet's ranking of the architectures (e.g. the final row of the
    accuracy matrix) and their standalone ranking: (concordant - discordant) pairs over the pairs,
    with ties corrected (``scipy.stats.kendalltau``). 1 = same order, -1 = reversed, ~0 = unrelated.
    NaN with fewer than two architectures or when either ranking is constant."""
    from scipy.stats import kendalltau

    a, b = np.asarray(supernet_accuracy, dtype=float), np.asarray(standalone_accuracy, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"need two 1-D accuracy lists of one length, got shapes {a.shape} and {b.shape}")
    if a.size < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(kendalltau(a, b).statistic)
