"""Group-sequential boundaries: how a test at level ``a`` spends its error rate over the looks a suite's rounds make.

A pair whose seeds come in rounds (``seeds: {start, max, step}``) is looked at after every round that added to it,
at ``n_1 < n_2 < ... <= N`` paired seeds, ``N`` the rounds' planned maximum. Its statistic at look k, on the normal
scale, is Z_k; under "no difference" (Z_1, ..., Z_K) behaves as a Brownian motion B read at the information
fractions t_k = n_k / N, Z_k = B(t_k) / sqrt(t_k) (Jennison and Turnbull, *Group Sequential Methods*, 2000, ch. 3).
A test at level ``a`` rejects at the first look whose Z_k reaches its boundary c_k, the boundaries set so that the
chance of a first crossing at look k is exactly the error rate the **spending function** releases between t_{k-1}
and t_k (Lan and DeMets, Biometrika 1983):

    spent(a, t) = a (1 - exp(-gamma t)) / (1 - exp(-gamma))        (Hwang, Shih and DeCani, Stat. Med. 1990)

so the total over any looks, however many and wherever they fall, is ``a``. ``gamma`` = :data:`GAMMA` (-2) spends
little early (about 11% of ``a`` by half the planned seeds), between O'Brien-Fleming's shape (-4) and Pocock's (1):
docs/guide/decisions.md gives the seeds each needs on the tool's own pairs. A single look at t = 1 spends all of
``a`` at once: the fixed-n test, exactly.

The crossing probabilities are computed by recursive numerical integration of the density of B(t_k) over the
region not yet crossed (Armitage, McPherson and Rowe 1969), on Simpson grids fine enough for the increments, for many
levels at once. ``sides=2``: symmetric boundaries, |Z_k| >= c_k (a difference, either way); ``sides=1``: Z_k >= c_k
(one side of an equivalence test). Pure functions, cached on their arguments.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import special

GAMMA = -2.0  # the spending function's shape (Hwang-Shih-DeCani): negative spends late, as O'Brien-Fleming's does
_SPAN = 8.5  # the grids reach this many standard deviations of B(t) (the region not crossed lies within)
_ITERATIONS = 60
_MOST_NODES = 6000  # the most nodes a grid spans (+-_SPAN sd at the last look)


def spent(level: float | np.ndarray, fraction: float, gamma: float = GAMMA) -> np.ndarray:
    """The error rate a test at ``level`` may have spent by information fraction ``fraction`` (0 to 1)."""
    t = min(max(float(fraction), 0.0), 1.0)
    share = t if gamma == 0 else (1.0 - math.exp(-gamma * t)) / (1.0 - math.exp(-gamma))
    return np.asarray(level, dtype=float) * share


def _crossing(
    nodes: np.ndarray, mass: np.ndarray, b: np.ndarray, root_dt: float, sides: int
) -> tuple[np.ndarray, np.ndarray]:
    """P(first crossing at this look) per level and its derivative in the boundary: the mass not yet crossed
    (``mass`` (L, G) at ``nodes`` (G,)), moved by an increment of sd ``root_dt``, beyond ``b`` (L,)."""
    upper = (nodes[None, :] - b[:, None]) / root_dt
    p = special.ndtr(upper)
    dp = np.exp(-0.5 * upper * upper)
    if sides == 2:
        lower = (-b[:, None] - nodes[None, :]) / root_dt
        p = p + special.ndtr(lower)
        dp = dp + np.exp(-0.5 * lower * lower)
    return np.sum(mass * p, axis=1), -np.sum(mass * dp, axis=1) / (root_dt * math.sqrt(2 * math.pi))


def _solve(
    nodes: np.ndarray, mass: np.ndarray, target: np.ndarray, root_dt: float, sd: float, sides: int
) -> np.ndarray:
    """The boundary per level at which the crossing probability is ``target``: Newton's method on its logarithm,
    kept inside a bracket that bisection shrinks where a step would leave it."""
    lo = np.zeros(target.size) if sides == 2 else np.full(target.size, -_SPAN * sd)
    hi = np.full(target.size, (_SPAN + 4.0) * sd)
    b = np.clip(-special.ndtri(np.clip(target / sides, 1e-300, 0.5)) * sd, lo, hi)
    todo = np.arange(target.size)  # the levels not yet solved
    for _ in range(_ITERATIONS):
        p, dp = _crossing(nodes, mass[todo], b[todo], root_dt, sides)
        gap = np.log(np.maximum(p, 1e-300)) - np.log(target[todo])
        above = gap > 0  # the boundary must rise
        lo[todo], hi[todo] = np.where(above, b[todo], lo[todo]), np.where(above, hi[todo], b[todo])
        with np.errstate(divide="ignore", invalid="ignore"):
            new = b[todo] - gap * p / dp
        bad = ~np.isfinite(new) | (new <= lo[todo]) | (new >= hi[todo])
        new = np.where(bad, 0.5 * (lo[todo] + hi[todo]), new)
        done = (np.abs(gap) <= 1e-10) | (np.abs(new - b[todo]) <= 1e-12 * sd)
        b[todo] = np.where(np.abs(gap) <= 1e-10, b[todo], new)
        todo = todo[~done]
        if not todo.size:
            break
    return b


def _inside(nodes: np.ndarray, step: float, b: np.ndarray, sides: int) -> np.ndarray:
    """Per level and node, the share of the node's cell [u - step/2, u + step/2] not beyond the boundary ``b``: the
    region a path continues from (accurate to second order where the boundary cuts a cell)."""
    top = np.clip((b[:, None] - (nodes[None, :] - step / 2)) / step, 0.0, 1.0)
    if sides == 1:
        return top
    bottom = np.clip(((nodes[None, :] + step / 2) + b[:, None]) / step, 0.0, 1.0)
    return np.asarray(np.minimum(top, bottom))


def _convolve(rows: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Each row's full linear convolution with ``kernel``, by FFT (numpy's: scipy.signal would bring scipy.stats,
    a second of imports, into every command that reads results)."""
    size = rows.shape[1] + kernel.size - 1
    n = 1 << (size - 1).bit_length()
    spectrum = np.fft.rfft(rows, n, axis=1) * np.fft.rfft(kernel, n)[None, :]
    return np.fft.irfft(spectrum, n, axis=1)[:, :size]


@functools.lru_cache(maxsize=1024)
def boundaries(
    fractions: tuple[float, ...], levels: tuple[float, ...], sides: int = 2, gamma: float = GAMMA
) -> np.ndarray:
    """The boundaries c_k on the normal scale, one row per level, one column per look at ``fractions`` (increasing,
    in (0, 1]), the level spent by :func:`spent` of shape ``gamma``; ``inf`` where a look may spend nothing. The
    density of B(t) lives on one uniform grid (a step that resolves the first look's spread and the smallest
    increment), so each look's move is one FFT convolution for every level."""
    taus = np.asarray(fractions, dtype=float)
    if taus.size == 0 or np.any(np.diff(taus) <= 0) or taus[0] <= 0 or taus[-1] > 1 + 1e-12:
        raise ValueError(f"information fractions must increase within (0, 1]: {fractions}")
    lv = np.asarray(levels, dtype=float)
    out = np.full((lv.size, taus.size), np.inf)
    released = np.diff(np.concatenate([[0.0], [float(spent(1.0, t, gamma)) for t in taus]]))
    increments = np.diff(np.concatenate([[0.0], taus]))
    step = max(float(np.sqrt(increments.min())) / 10.0, 2 * _SPAN / _MOST_NODES)
    mass = np.zeros((lv.size, 0))
    half = 0  # the grid's nodes: step * (-half .. half)
    for k, tau in enumerate(taus):
        sd, root_dt = math.sqrt(tau), math.sqrt(increments[k])
        target = lv * released[k]
        if k == 0:  # B(t_1) is normal: the boundary has a closed form
            tail = target / sides
            b = np.where(tail > 0, -special.ndtri(np.clip(tail, 1e-300, 0.5)) * sd, np.inf)
        else:
            nodes = step * np.arange(-half, half + 1)
            b = np.full(lv.size, np.inf)
            active = np.nonzero(target > 0)[0]
            if active.size:
                b[active] = _solve(nodes, mass[active], target[active], root_dt, sd, sides)
        out[:, k] = b / sd
        if k + 1 == taus.size:
            break
        new_half = int(math.ceil(_SPAN * sd / step))
        nodes = step * np.arange(-new_half, new_half + 1)
        if k == 0:
            density = np.broadcast_to(
                np.exp(-0.5 * (nodes / sd) ** 2) / (sd * math.sqrt(2 * math.pi)), (lv.size, nodes.size)
            )
        else:
            reach = int(math.ceil(_SPAN * root_dt / step))
            kernel = np.exp(-0.5 * (step * np.arange(-reach, reach + 1) / root_dt) ** 2) / (
                root_dt * math.sqrt(2 * math.pi)
            )
            full = _convolve(mass, kernel)  # nodes -(half + reach) .. half + reach
            offset = half + reach - new_half
            density = np.maximum(full[:, offset : offset + nodes.size], 0.0)
        mass = density * step * _inside(nodes, step, b, sides)
        half = new_half
    return out


def normal_scale(t: np.ndarray, df: np.ndarray) -> np.ndarray:
    """A t statistic on ``df`` degrees of freedom as the normal deviate of the same one-sided tail (the usual t form
    of a group-sequential test); +-inf stays +-inf."""
    t = np.asarray(t, dtype=float)
    tail = special.stdtr(np.asarray(df, dtype=float), -np.abs(t))
    z = -special.ndtri(np.clip(tail, 0.0, 1.0))
    return np.where(np.isnan(t), 0.0, np.sign(t) * z)


def t_scale(c: np.ndarray, df: np.ndarray) -> np.ndarray:
    """The inverse of :func:`normal_scale`: a boundary on the normal scale as a t quantile on ``df`` degrees of
    freedom (inf stays inf)."""
    c = np.asarray(c, dtype=float)
    out = np.full(np.broadcast(c, np.asarray(df)).shape, np.inf)
    finite = np.isfinite(c) & np.ones_like(out, dtype=bool)
    tail = special.ndtr(-np.broadcast_to(c, out.shape)[finite])
    out[finite] = -special.stdtrit(np.broadcast_to(np.asarray(df, dtype=float), out.shape)[finite], tail)
    return out


P_LEVELS = tuple(float(v) for v in np.geomspace(1e-12, 1.0, 97))  # the levels sequential p-values are read between


def sequential_p(z: np.ndarray, fractions: tuple[float, ...], sides: int = 2) -> np.ndarray:
    """Sequential p-values (Jennison and Turnbull's repeated p-values): per row of ``z`` (..., K: one value per look,
    on the normal scale), the smallest level whose boundaries it reached at some look, min over looks k of the level
    whose c_k equals z_k. One look at t = 1: the fixed-n p-value itself, exactly. Otherwise read off the boundaries
    of :data:`P_LEVELS` (every eighth of a decade), interpolated in log level: a p-value to print (decisions use the
    boundaries of their own levels)."""
    z = np.asarray(z, dtype=float)
    if len(fractions) == 1 and fractions[0] == 1.0:
        return np.minimum(1.0, sides * special.ndtr(-z[..., 0]))
    table = boundaries(fractions, P_LEVELS, sides)  # (levels, K): falling as the level rises
    logs = np.log(np.asarray(P_LEVELS))
    out = np.ones(z.shape[:-1])
    for k in range(z.shape[-1]):
        column = table[:, k]
        finite = np.isfinite(column)
        if finite.sum() < 2:
            continue
        c, lv = column[finite][::-1], logs[finite][::-1]  # c rising, as np.interp wants
        level = np.exp(np.interp(z[..., k], c, lv, left=0.0, right=lv[-1]))
        level = np.where(z[..., k] >= c[-1], P_LEVELS[0], level)  # past the smallest level's boundary
        level = np.where(z[..., k] < c[0], 1.0, level)
        out = np.minimum(out, level)
    return out
