"""The error rates and power of a verdict's decisions (:mod:`forgetbench.benchmark.core.decide`), by simulation on
the numbers the tool produces: families of the tool's own per-seed forgetting (every method centred to one mean, the
seeds drawn with their five methods together, so the pairs keep their real shapes, ties and dependence), single
real pairs' shapes (centred, and made symmetric), the 1/450 grid of the demo's test sets, t3 and skewed spreads;
suites of 5, 10 and 20 fixed seeds and seeds added in rounds of 1 and of 24 up to 20 or 50. Then power on the real
families at their observed means, against the paired t-test with Holm at fixed seeds.

    forgetbench perf --only decision_error_rates [--set sequences=4000]

A false claim is a difference claim where the pair's mean difference is 0 or of the other sign, or an equivalence
claim where it is at least the margin; a sequence counts once if any claim it made, at any look, was false.
tests/core/test_decide.py asserts these rates, each at a 99.9% Clopper-Pearson bound, from the same functions;
docs/guide/decisions.md prints this measurement's tables.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, PositiveInt
from scipy import special, stats

from forgetbench.benchmark.core import decide as D
from forgetbench.benchmark.core import sequential as Q
from forgetbench.benchmark.perf.measurements import REPO, Measurement, register

GRID = 1 / 450  # one test image of the demo's digits tasks, as an accuracy
FAMILY = 10  # pairs in a family: five methods, as the demo's scenarios compare
# the tool's own per-seed forgetting: decide_demo_50 on an H200 (../shared/data/decisions, two-model 27 seeds a
# method, supernet 50) and decide_demo's methods on 50 fixed seeds on a 2-core CPU (tests/data)
GPU_TABLE = "decisions/decide_demo_50_gpu_forgetting.csv"
CPU_TABLE = REPO / "tests" / "data" / "decide_null_50_cpu_forgetting.csv"
REAL_PAIRS = (
    ("two-model", "ewc", "wpl"),
    ("two-model", "ewc", "mas"),
    ("supernet", "ewc", "naive"),
    ("supernet", "mas", "si"),
)


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sequences: PositiveInt = 4000  # simulated suites per case
    alpha: float = D.ALPHA
    margin: float = 0.01  # the equivalence margin, in the differences' unit (one accuracy point)


@dataclass(frozen=True)
class Design:
    """How the seeds come: ``fixed`` at ``n`` seeds (one look), or rounds from ``start`` by ``step`` up to ``most``."""

    name: str
    looks: tuple[int, ...]
    most: int

    @property
    def fractions(self) -> tuple[float, ...]:
        return tuple(k / self.most for k in self.looks)

    @property
    def sequential(self) -> bool:
        return self.fractions != (1.0,)


def fixed(n: int) -> Design:
    return Design(f"{n} fixed seeds", (n,), n)


def rounds(start: int, step: int, most: int) -> Design:
    looks = list(range(start, most + 1, step))
    if looks[-1] != most:
        looks.append(most)
    return Design(f"rounds of {step} to {most}", tuple(looks), most)


DESIGNS = (fixed(5), fixed(10), fixed(20), rounds(3, 1, 20), rounds(3, 1, 50), rounds(3, 24, 50))


# --- the shapes -----------------------------------------------------------------------------------------------------


def shared_data() -> Path | None:
    """../shared/data (or FORGETBENCH_DATA) where it holds the GPU table; None elsewhere."""
    for root in (os.environ.get("FORGETBENCH_DATA"), str(REPO.parent / "shared" / "data")):
        if root and (Path(root) / GPU_TABLE).is_file():
            return Path(root)
    return None


def real_tables() -> dict[str, pd.DataFrame]:
    """Source -> scenario -> a (seed x method) table of per-seed forgetting: the GPU run where ../shared is present,
    this repository's CPU run always."""
    out: dict[str, pd.DataFrame] = {}
    root = shared_data()
    for source, path in (("GPU", root / GPU_TABLE if root else None), ("CPU", CPU_TABLE)):
        if path is None or not path.is_file():
            continue
        frame = pd.read_csv(path)
        for scenario, group in frame.groupby("scenario", sort=False):
            out[f"{scenario} ({source})"] = group.pivot(index="seed", columns="strategy", values="value").dropna()
    return out


def family_draws(
    rng: np.random.Generator, table: pd.DataFrame, shape: tuple[int, int], centred: bool
) -> tuple[np.ndarray, np.ndarray]:
    """A family of every pair of the table's methods on seeds drawn with replacement, a seed's methods together:
    (sequences, pairs, n) differences and the pairs' true mean differences. ``centred``: each method shifted to the
    same mean (every pair null, its shape and dependence kept); else the observed means are the truth."""
    values = table.to_numpy(dtype=float)
    if centred:
        values = values - values.mean(axis=0)
    pairs = list(combinations(range(values.shape[1]), 2))
    drawn = values[rng.integers(0, values.shape[0], shape)]
    d = np.stack([drawn[..., i] - drawn[..., j] for i, j in pairs], axis=1)
    means = values.mean(axis=0)
    return d, np.array([means[i] - means[j] for i, j in pairs])


def pair_draws(
    rng: np.random.Generator, values: np.ndarray, shape: tuple[int, int, int], symmetric: bool
) -> np.ndarray:
    """Independent pairs whose differences are a real pair's, centred (and given a random sign: symmetric)."""
    centred = values - values.mean()
    d = centred[rng.integers(0, centred.size, shape)]
    return d * rng.choice((-1.0, 1.0), shape) if symmetric else d


def on_grid(rng: np.random.Generator, mean: float, sd: float, shape: tuple[int, ...]) -> np.ndarray:
    """Paired differences of two accuracies measured on a test set of 450 images: multiples of 1/450."""
    return np.round(rng.normal(mean, sd, shape) / GRID) * GRID


def skewed(rng: np.random.Generator, skew: float, shape: tuple[int, ...]) -> np.ndarray:
    """Mean-0, sd-1 differences of skewness ``skew`` (a centred gamma of shape 4 / skew^2)."""
    k = 4.0 / skew**2
    return (rng.gamma(k, 1.0, shape) - k) / math.sqrt(k)


# --- the rule, vectorised over sequences ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """Per sequence and pair: the look index each kind of claim was first made at (K: never) and the difference
    claim's sign."""

    difference: np.ndarray  # (S, m)
    equivalence: np.ndarray  # (S, m)
    sign: np.ndarray  # (S, m)
    looks: tuple[int, ...]

    def decided_by(self, n: int) -> np.ndarray:
        """(S, m): some claim made by ``n`` seeds."""
        k = sum(1 for look in self.looks if look <= n)
        return (self.difference < k) | (self.equivalence < k)

    def false(self, theta: np.ndarray, margin: float) -> np.ndarray:
        """(S,): any false claim in the sequence, difference or equivalence, at any look."""
        return np.asarray(false_claims(self, theta, margin).any(axis=1))


def decide_sequences(d: np.ndarray, design: Design, margin: float, alpha: float, gamma: float = Q.GAMMA) -> Outcome:
    """The engine on many families at once: ``d`` (S, m, n >= the design's last look) in run order; the same
    functions :func:`forgetbench.benchmark.core.decide.decide` calls, one design for every pair (``gamma``: the
    spending function's shape, the engine's by default)."""
    S, m, _ = d.shape
    alpha_d, alpha_e = D.shares(alpha, margin)
    looks = D.looks_of(d, design.looks, design.sequential)
    K = len(design.looks)
    z0 = D.z_values(looks, 0.0)
    divisors = np.arange(1, m + 1, dtype=float)
    bounds = Q.boundaries(design.fractions, tuple(alpha_d / divisors), 2, gamma)
    first = D.crossing_looks(np.abs(z0), bounds)  # (S, m, m levels)
    decided, step = D.holm_rounds(first, K, m)
    at = np.take_along_axis(first, np.clip(step - 1, 0, m - 1)[..., None], axis=-1)[..., 0]
    sign = np.take_along_axis(np.sign(looks.mean), np.clip(at, 0, K - 1)[..., None], axis=-1)[..., 0]
    equivalence = np.full((S, m), K)
    if alpha_e > 0:
        one = Q.boundaries(design.fractions, tuple(alpha_e / divisors), 1, gamma)
        up = D.crossing_looks(D.z_values(looks, -margin), one)
        down = D.crossing_looks(-D.z_values(looks, margin), one)
        equivalence, _ = D.holm_rounds(np.maximum(up, down), K, m)
    return Outcome(np.where(step > 0, decided, K), equivalence, sign, design.looks)


def t_holm(d: np.ndarray, n: int, alpha: float) -> np.ndarray:
    """The standard fixed-seed comparator: paired t-tests at ``n`` seeds, Holm at ``alpha``; (S, m) decided."""
    x = d[..., :n]
    mean, sd = x.mean(axis=-1), x.std(axis=-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(sd > 0, mean / (sd / math.sqrt(n)), 0.0)
    p = 2 * special.stdtr(n - 1, -np.abs(t))
    return np.asarray(D.holm_adjusted(p) <= alpha)


# --- the battery ----------------------------------------------------------------------------------------------------


def null_cases(rng: np.random.Generator, params: Params, n: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Case -> (differences (S, m, n), the pairs' true means): every null the battery checks."""
    S, m = params.sequences, FAMILY
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    tables = real_tables()
    for name, table in tables.items():
        d, theta = family_draws(rng, table, (S, n), centred=True)
        out[f"real family: {name}"] = (d, theta)
        out[f"real family, symmetrised: {name}"] = (d * rng.choice((-1.0, 1.0), (S, 1, n)), theta)
    for scenario, a, b in REAL_PAIRS:
        table = next((t for k, t in tables.items() if k.startswith(scenario) and "GPU" in k), None)
        if table is None:
            table = next((t for k, t in tables.items() if k.startswith(scenario)), None)
        if table is None:
            continue
        values = (table[a] - table[b]).to_numpy(dtype=float)
        for symmetric in (False, True):
            label = f"{scenario} {a} - {b}" + (", symmetric" if symmetric else "")
            out[f"pair shape: {label}"] = (pair_draws(rng, values, (S, m, n), symmetric), np.zeros(m))
    for sd in (0.3, 0.7, 2.0):
        out[f"grid, sd {sd:g} points"] = (on_grid(rng, 0.0, sd / 100, (S, m, n)), np.zeros(m))
    out["t3"] = (rng.standard_t(3, (S, m, n)) / 100, np.zeros(m))
    for skew in (1.0, 2.0):
        out[f"skew {skew:g}"] = (skewed(rng, skew, (S, m, n)) / 100, np.zeros(m))
    means = np.array([0.0] * 5 + [params.margin] * 5)
    out["5 pairs at 0, 5 on the margin (grid, sd 1 point)"] = (
        on_grid(rng, 0.0, 0.01, (S, m, n)) + means[None, :, None],
        means,
    )
    for name, table in tables.items():
        out[f"real family at its observed means: {name}"] = family_draws(rng, table, (S, n), centred=False)
    return out


def false_claims(outcome: Outcome, theta: np.ndarray, margin: float) -> np.ndarray:
    """(S, m): pair by pair, whether it made a false claim."""
    K = len(outcome.looks)
    wrong_sign = (theta[None, :] == 0) | (outcome.sign != np.sign(theta)[None, :])
    return np.asarray(((outcome.difference < K) & wrong_sign) | ((outcome.equivalence < K) & (np.abs(theta) >= margin)))


def error_rates(params: Params, designs: tuple[Design, ...] = DESIGNS) -> dict[str, Any]:
    """Case -> design -> the share of sequences with any false claim; and for the real families, each pair's own
    rate (the pair whose shape it is: against its share of alpha, alpha / 10)."""
    rng = np.random.default_rng(20261128)
    most = max(design.looks[-1] for design in designs)
    cases = null_cases(rng, params, most)
    tables = real_tables()
    out: dict[str, Any] = {"rates": {}, "per pair": {}, "skews": {}}
    for family, table in tables.items():  # the real families' pairs: the skews the battery draws from
        skews = [float(stats.skew(table[a] - table[b], bias=False)) for a, b in combinations(table.columns, 2)]
        out["skews"][family] = [min(skews), max(skews)]
    for name, (d, theta) in cases.items():
        out["rates"][name] = {}
        for design in designs:
            outcome = decide_sequences(d, design, params.margin, params.alpha)
            out["rates"][name][design.name] = float(outcome.false(theta, params.margin).mean())
            family = name.removeprefix("real family: ")
            if name.startswith("real family: ") and family in tables:
                labels = [f"{a} - {b}" for a, b in combinations(tables[family].columns, 2)]
                per = false_claims(outcome, theta, params.margin).mean(axis=0)
                named = {f"{a} - {b}" for scenario, a, b in REAL_PAIRS if family.startswith(scenario)}
                out["per pair"].setdefault(family, {})[design.name] = {
                    label: float(rate) for label, rate in zip(labels, per) if label in named
                }
    return out


def first_reaching(share: np.ndarray, ns: np.ndarray, target: float = 0.8) -> int | None:
    hit = np.nonzero(share >= target)[0]
    return int(ns[hit[0]]) if hit.size else None


def power(params: Params) -> dict[str, Any]:
    """On the real families at their observed means: per pair, the share decided at 20 fixed seeds (the engine, and
    the paired t-test with Holm at alpha), and the seeds by which 80% of sequences decided it (t + Holm at that many
    fixed seeds, the engine under rounds of 1 to 20 and to 50)."""
    rng = np.random.default_rng(7)
    out: dict[str, Any] = {}
    for name, table in real_tables().items():
        d, theta = family_draws(rng, table, (params.sequences, 50), centred=False)
        labels = [f"{a} - {b}" for a, b in combinations(table.columns, 2)]
        ns = np.arange(3, 51)
        t_by_n = np.array([t_holm(d, int(n), params.alpha).mean(axis=0) for n in ns])
        at20 = decide_sequences(d, fixed(20), params.margin, params.alpha)
        k20 = len(at20.looks)
        engine20 = ((at20.difference < k20) & (at20.sign == np.sign(theta))).mean(axis=0)
        rows: dict[str, dict[str, Any]] = {}
        for design in (rounds(3, 1, 20), rounds(3, 1, 50)):
            outcome = decide_sequences(d, design, params.margin, params.alpha)
            by_n = np.array([outcome.decided_by(int(n)).mean(axis=0) for n in ns])
            for j, label in enumerate(labels):
                rows.setdefault(label, {})[design.name] = first_reaching(by_n[:, j], ns)
        spread = [float(np.std(table[a] - table[b], ddof=1)) for a, b in combinations(table.columns, 2)]
        for j, label in enumerate(labels):
            rows[label].update(
                {
                    "dz": float(theta[j] / spread[j]) if spread[j] > 0 else 0.0,
                    "engine at 20": float(engine20[j]),
                    "t + Holm at 20": float(t_by_n[17, j]),
                    "t + Holm 80% at": first_reaching(t_by_n[:, j], ns),
                }
            )
        out[name] = rows
    return out


def spending(params: Params, shapes: tuple[float, ...] = (-4.0, -2.0, 1.0)) -> dict[str, Any]:
    """The spending function's trade-off on the two-model family at its observed means (the GPU run where present):
    per shape gamma (-4 like O'Brien-Fleming's, -2 the engine's, 1 like Pocock's), the seeds by which 80% of
    sequences decided each pair under rounds of 1 up to 20 and 50, over t + Holm's at fixed seeds."""
    tables = real_tables()
    name = "two-model (GPU)" if "two-model (GPU)" in tables else "two-model (CPU)"
    if name not in tables:
        return {}
    table = tables[name]
    rng = np.random.default_rng(9)
    d, _ = family_draws(rng, table, (params.sequences, 50), centred=False)
    labels = [f"{a} - {b}" for a, b in combinations(table.columns, 2)]
    ns = np.arange(3, 51)
    t_by_n = np.array([t_holm(d, int(n), params.alpha).mean(axis=0) for n in ns])
    fixed_n = [first_reaching(t_by_n[:, j], ns) for j in range(len(labels))]
    out: dict[str, Any] = {"family": name}
    for gamma in shapes:
        for design in (rounds(3, 1, 20), rounds(3, 1, 50)):
            outcome = decide_sequences(d, design, params.margin, params.alpha, gamma)
            by_n = np.array([outcome.decided_by(int(n)).mean(axis=0) for n in ns])
            reached = [first_reaching(by_n[:, j], ns) for j in range(len(labels))]
            ratios = [r / n if r is not None and n is not None else None for r, n in zip(reached, fixed_n)]
            out[f"gamma {gamma:g}, {design.name}"] = {
                label: ratio for label, ratio, n in zip(labels, ratios, fixed_n) if n is not None
            }
    return out


def small_effect(params: Params, dz: float = 0.2) -> dict[str, Any]:
    """One pair of a 0.2 sd difference, no margin (all of alpha to the difference): its fixed-n sample size at 80%
    power (the paired t-test at alpha) and the share decided by twice that many seeds under rounds of 1 up to 2x and
    4x it."""
    n_fixed = next(
        n for n in range(3, 5000) if stats.nct.sf(stats.t.isf(params.alpha / 2, n - 1), n - 1, dz * math.sqrt(n)) >= 0.8
    )
    rng = np.random.default_rng(3)
    out: dict[str, Any] = {"fixed-n seeds at 80%": n_fixed}
    for factor in (2, 4):
        most = factor * n_fixed
        d = rng.normal(dz, 1.0, (min(params.sequences, 2000), 1, most))
        outcome = decide_sequences(d, rounds(3, 1, most), 0.0, params.alpha)
        out[f"rounds of 1 to {most}: decided by {2 * n_fixed}"] = float(outcome.decided_by(2 * n_fixed).mean())
    return out


def run(opts: Any, params: Params, data: Any) -> dict[str, Any]:
    return {
        "params": params.model_dump(),
        "false claims": error_rates(params),
        "power": power(params),
        "spending": spending(params),
        "small effect": small_effect(params),
    }


def lines(result: dict[str, Any]) -> list[str]:
    p = result["params"]
    rates = result["false claims"]["rates"]
    designs = list(next(iter(rates.values())))
    out = [
        f"{p['sequences']} sequences per case, families of {FAMILY} pairs (a real family: its scenario's 10), alpha "
        f"{p['alpha']}, margin {p['margin']}: the share of sequences with any false claim",
        "  " + f"{'case':<62}" + "".join(f"{name:>19}" for name in designs),
    ]
    for case, row in rates.items():
        out.append("  " + f"{case:<62}" + "".join(f"{row[name]:>19.1%}" for name in designs))
    out.append(
        "the real families' pairs' skews: "
        + ", ".join(
            f"{family} {low:+.2f} to {high:+.2f}" for family, (low, high) in result["false claims"]["skews"].items()
        )
    )
    out.append("each named pair's own rate in its centred real family (its share of alpha: alpha / 10):")
    for family, by_design in result["false claims"]["per pair"].items():
        for label in next(iter(by_design.values())):
            out.append(
                "  " + f"{family + ': ' + label:<62}" + "".join(f"{by_design[d][label]:>19.2%}" for d in designs)
            )
    for family, rows in result["power"].items():
        out.append(
            f"power, {family} at its observed means (dz; decided at 20 fixed seeds, engine / t + Holm; seeds by which "
            "80% decided it: t + Holm fixed / rounds of 1 to 20 / to 50)"
        )
        for label, row in rows.items():
            out.append(
                f"  {label:<14} dz {row['dz']:+.2f}  {row['engine at 20']:6.1%} / {row['t + Holm at 20']:6.1%}   "
                f"{row['t + Holm 80% at'] or '-':>4} / {row['rounds of 1 to 20'] or '-':>4} / "
                f"{row['rounds of 1 to 50'] or '-':>4}"
            )
    trade = result.get("spending") or {}
    if trade:
        out.append(
            f"the spending function's shape, {trade['family']} at its observed means: seeds by which 80% decided each "
            "pair, over t + Holm's at fixed seeds ('-': not by the most seeds)"
        )
        for key, ratios in trade.items():
            if key == "family":
                continue
            shown = "  ".join(f"{label} {'-' if r is None else f'{r:.2f}x'}" for label, r in ratios.items())
            out.append(f"  {key:<28} {shown}")
    small = result["small effect"]
    out.append(
        "a 0.2 sd difference, one pair: "
        + ", ".join(f"{k} {v:.1%}" if isinstance(v, float) else f"{k} {v}" for k, v in small.items())
    )
    return out


register(Measurement("decision_error_rates", "a verdict's false claims and power, simulated", Params, run, lines))
