"""The decisions table: every pair a verdict compares, with its outcome (A < B, A > B, equivalent, undecided), its
Holm-adjusted p-values, its simultaneous interval and the seeds it paired (the maths:
:mod:`forgetbench.benchmark.core.decide`), and the suite-level probability of improvement across scenarios.

The families, one per verdict:

* **each strength alone**: per scenario, every pair of strategies on the scenario's headline measure of forgetting
  (:func:`forgetbench.reports.verdict.headline_metric`), naive included, references (joint, standalone) and strategies
  that trade plasticity (:func:`forgetbench.reports.verdict.plasticity_traders`) left out;
* **matched plasticity**: per scenario with a frontier and per plasticity level (naive's LA minus 1, 2, 5 points),
  every pair of methods whose fronts reach that level, on their per-seed interpolated forgetting.

The verdict sentences, the report's table, ``Results.decisions()`` and the rounds of ``seeds: {start, max}`` all read
this frame.
"""

from __future__ import annotations

import json
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Sequence

import numpy as np
import pandas as pd
import yaml

from forgetbench.benchmark.core import decide as D
from forgetbench.benchmark.core.metric_registry import METRICS
from forgetbench.benchmark.core.record import RunRecord

ROUNDS_FILE = "rounds.json"  # OUT/rounds.json: the rounds of seeds added until decided (forgetbench.benchmark.run)
DEFAULT_LEVEL = "each strength alone"
DECISIONS_PREFIX = "Decisions on "  # the sentence of a family's decisions (family_sentence) starts so
UNDECIDED_LISTED = 3  # a verdict sentence lists this many undecided pairs at most (the table lists every one)
COLUMNS = [
    "scenario",
    "level",
    "metric",
    "first",
    "second",
    "outcome",
    "diff",
    "ci_low",
    "ci_high",
    "p_value",
    "p_adjusted",
    "p_equivalence_adjusted",
    "n",
    "seeds",
    "family",
    "margin",
    "method",
    "more_seeds",
    "note",
]


@dataclass(frozen=True)
class DecisionOptions:
    """How a folder's verdicts decide: margins per metric (in the metric's display unit: points for accuracy),
    the family-wise error rate, and whether the seeds were added until decided (anytime-valid tests)."""

    margins: Mapping[str, float] = field(default_factory=lambda: {"forgetting": 1.0, "ACC": 1.0})
    alpha: float = D.ALPHA
    method: D.Method = "fixed"

    def margin(self, metric: str) -> float:
        """``metric``'s margin in its own unit (fractions for accuracy metrics); 0 where none is set (no equivalence
        can be concluded)."""
        info = METRICS.get(metric)
        value = self.margins.get(metric)
        if value is None and info is not None and info.unit == "accuracy":
            value = self.margins.get("forgetting")  # an accuracy measure of forgetting: the forgetting margin
        if value is None:
            return 0.0
        return float(value) / 100.0 if info is not None and info.unit == "accuracy" else float(value)


def options_of(folders: Iterable[Path]) -> DecisionOptions:
    """The first folder's ``verdict`` options (its ``suite.yaml``), and ``sequential`` where its seeds were added
    until decided (its ``rounds.json``); the defaults where there is neither."""
    for folder in folders:
        folder = Path(folder)
        method: D.Method = "sequential" if (folder / ROUNDS_FILE).is_file() else "fixed"
        try:
            suite = yaml.safe_load((folder / "suite.yaml").read_text()) or {}
        except (OSError, yaml.YAMLError):
            suite = {}
        verdict = suite.get("verdict") if isinstance(suite, dict) else None
        if isinstance(verdict, dict):
            margins = verdict.get("equivalence_margin") or {}
            return DecisionOptions(
                {str(k): float(v) for k, v in margins.items()} if isinstance(margins, dict) else {},
                float(verdict.get("alpha", D.ALPHA)),
                method,
            )
        return DecisionOptions(method=method)
    return DecisionOptions()


def rounds_of(folders: Iterable[Path]) -> dict[str, Any] | None:
    """The first folder's ``rounds.json`` (None: its seeds were fixed)."""
    for folder in folders:
        try:
            rounds = json.loads((Path(folder) / ROUNDS_FILE).read_text())
        except (OSError, ValueError):
            continue
        return rounds if isinstance(rounds, dict) else None
    return None


def family(
    values: Mapping[str, Mapping[int, float]],
    margin: float,
    options: DecisionOptions,
    order: Sequence[str] | None = None,
) -> list[D.Decision]:
    """Every pair of ``values`` (label -> seed -> value) decided as one family, each pair on the seeds both have."""
    labels = [label for label in (order or list(values)) if label in values]
    pairs = []
    for first, second in combinations(labels, 2):
        a, b = values[first], values[second]
        seeds = sorted(s for s in a.keys() & b.keys() if np.isfinite(a[s]) and np.isfinite(b[s]))
        pairs.append(D.evidence(first, second, seeds, [a[s] - b[s] for s in seeds], margin, options.method))
    return D.decide(pairs, options.alpha)


def rows(scenario: str, level: str, metric: str, decisions: Iterable[D.Decision]) -> list[dict[str, Any]]:
    return [
        {
            "scenario": scenario,
            "level": level,
            "metric": metric,
            "first": d.first,
            "second": d.second,
            "outcome": d.outcome,
            "diff": d.diff,
            "ci_low": d.ci_low,
            "ci_high": d.ci_high,
            "p_value": d.p_value,
            "p_adjusted": d.p_adjusted,
            "p_equivalence_adjusted": d.p_equivalence_adjusted,
            "n": d.n,
            "seeds": list(d.seeds),
            "family": d.family,
            "margin": d.margin,
            "method": d.method,
            "more_seeds": d.more_seeds,
            "note": d.note,
        }
        for d in decisions
    ]


def per_seed(
    long: pd.DataFrame, metric: str, strategies: AbstractSet[str] | None = None
) -> dict[str, dict[int, float]]:
    """Strategy -> seed -> value of ``metric`` (finite values only) from one scenario's rows of ``runs_long``."""
    mine = long[long.metric == metric]
    out: dict[str, dict[int, float]] = {}
    for strategy, group in mine.groupby("strategy", sort=False):
        if strategies is not None and strategy not in strategies:
            continue
        values = {int(s): float(v) for s, v in zip(group.seed, group.value) if np.isfinite(float(v))}
        if values:
            out[str(strategy)] = values
    return out


def probability_of_improvement(
    by_scenario: Mapping[str, Mapping[str, Mapping[int, float]]],
    lower_is_better: bool = True,
    resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """P(A improves on B) across scenarios: per scenario, the probability that a run of A forgets less than a run of B
    (ties count half: the Mann-Whitney statistic over their seeds), averaged over the scenarios where both ran; with a
    stratified bootstrap interval (each method's seeds resampled within each scenario; Agarwal et al., "Deep RL at the
    edge of the statistical precipice", NeurIPS 2021). Columns: first, second, probability, ci_low, ci_high,
    scenarios."""
    methods = list(dict.fromkeys(m for values in by_scenario.values() for m in values))
    rng = np.random.default_rng(seed)
    out = []
    for a, b in combinations(methods, 2):
        shared = [s for s, values in by_scenario.items() if len(values.get(a, {})) and len(values.get(b, {}))]
        if not shared:
            continue
        arrays = [
            (np.array(list(by_scenario[s][a].values()), float), np.array(list(by_scenario[s][b].values()), float))
            for s in shared
        ]

        def improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            """P(x < y) (or x > y) per bootstrap row: x (R, n), y (R, m)."""
            better = x[:, :, None] < y[:, None, :] if lower_is_better else x[:, :, None] > y[:, None, :]
            ties = x[:, :, None] == y[:, None, :]
            return np.asarray((better + 0.5 * ties).mean(axis=(1, 2)))

        point = float(np.mean([improvement(x[None], y[None])[0] for x, y in arrays]))
        boot = np.zeros(resamples)
        for x, y in arrays:
            xs = x[rng.integers(0, x.size, (resamples, x.size))]
            ys = y[rng.integers(0, y.size, (resamples, y.size))]
            boot += improvement(xs, ys)
        boot /= len(arrays)
        low, high = np.quantile(boot, [(1 - confidence) / 2, (1 + confidence) / 2])
        out.append([a, b, point, float(low), float(high), len(shared)])
    return pd.DataFrame(out, columns=["first", "second", "probability", "ci_low", "ci_high", "scenarios"])


Kind = Literal["strength", "matched"]


def undecided(frame: pd.DataFrame) -> dict[str, set[str]]:
    """Scenario -> the strategies (or methods) in some undecided pair of the frame: who needs more seeds."""
    out: dict[str, set[str]] = {}
    for row in frame[frame.outcome == "undecided"].itertuples():
        out.setdefault(str(row.scenario), set()).update({str(row.first), str(row.second)})
    return out


def empty() -> pd.DataFrame:
    return pd.DataFrame(columns=COLUMNS)


def frame_of(all_rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(all_rows, columns=COLUMNS) if all_rows else empty()


def records_seeds(records: Iterable[RunRecord]) -> dict[tuple[str, str], list[int]]:
    """(scenario, strategy label) -> the seeds of its ok runs, sorted."""
    out: dict[tuple[str, str], list[int]] = {}
    for record in records:
        if record.status == "ok":
            out.setdefault((record.scenario.label, record.strategy.label), []).append(record.seed)
    return {key: sorted(seeds) for key, seeds in out.items()}


def _number(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


def describe(decision: D.Decision, scale: float = 100.0, unit: str = "points", digits: int = 1) -> str:
    """One pair's decision in words, in display units (``scale`` times the metric; points for accuracy):
    ``wpl < si by 8.8 [0.5, 17.2] (p = 0.013, 5 seeds)``, ``ewc and mas: equivalent within +/- 1.0 points ([-0.4,
    0.6], p = 0.021, 20 seeds)``, ``si vs ewc: undecided, interval [-2.1, 3.4] on 5 seeds; about 12 more seeds``."""
    low, high, diff = (scale * v for v in (decision.ci_low, decision.ci_high, decision.diff))
    seeds = f"{decision.n} seed{'s' if decision.n != 1 else ''}"
    if decision.outcome in ("less", "greater"):
        better, worse = (
            (decision.first, decision.second) if decision.outcome == "less" else (decision.second, decision.first)
        )
        near, far = sorted((abs(low), abs(high)))
        return (
            f"{better} < {worse} by {_number(abs(diff), digits)} [{_number(near, digits)}, {_number(far, digits)}] "
            f"(p = {fmt_p(decision.p_adjusted)}, {seeds})"
        )
    if decision.outcome == "equivalent":
        return (
            f"{decision.first} and {decision.second}: equivalent within +/- {_number(scale * decision.margin, digits)} "
            f"{unit} ([{_number(low, digits)}, {_number(high, digits)}], p = "
            f"{fmt_p(decision.p_equivalence_adjusted)}, {seeds})"
        )
    if decision.note:
        return f"{decision.first} vs {decision.second}: undecided ({decision.note})"
    more = (
        f"about {decision.more_seeds} more seed{'s' if decision.more_seeds != 1 else ''} would decide it"
        if decision.more_seeds is not None
        else "no number of seeds within reach would decide it at this spread"
    )
    return (
        f"{decision.first} vs {decision.second}: undecided, interval [{_number(low, digits)}, "
        f"{_number(high, digits)}] on {seeds}; {more}"
    )


def family_sentence(
    decisions: Sequence[D.Decision], what: str, scale: float = 100.0, unit: str = "points", digits: int = 1
) -> str:
    """The family's decisions in one sentence: how they were made, then each pair, decided ones first."""
    if not decisions:
        return ""
    m = decisions[0].family
    method = decisions[0].method
    how = f"each pair on the seeds both ran; p Holm-adjusted over the {m} pair{'s' if m != 1 else ''} tested; " + (
        "anytime-valid (seeds were added until decided)"
        if method == "sequential"
        else f"{100 * (1 - D.ALPHA):.0f}% simultaneous intervals"
    )
    if m == 0:
        how = f"no pair has the {D.MIN_PAIRED} paired seeds a test needs"
    decided = [d for d in decisions if d.outcome in ("less", "greater")]
    decided += [d for d in decisions if d.outcome == "equivalent"]
    tested = [d for d in decisions if d.outcome == "undecided" and not d.note]
    untested = [d for d in decisions if d.outcome == "undecided" and d.note]
    parts = [describe(d, scale, unit, digits) for d in decided]
    if len(tested) <= UNDECIDED_LISTED:
        parts += [describe(d, scale, unit, digits) for d in tested]
    else:  # a long list of open intervals hides the decisions: counted here, every one in the Decisions table
        widest = max(tested, key=lambda d: d.ci_high - d.ci_low)
        parts.append(
            f"{len(tested)} pairs undecided (each with its interval and the seeds it needs in the Decisions table; "
            f"the widest: {describe(widest, scale, unit, digits)})"
        )
    if untested:
        parts.append(
            f"{len(untested)} pair{'s' if len(untested) != 1 else ''} not tested, on fewer than {D.MIN_PAIRED} "
            "paired seeds: " + ", ".join(f"{d.first} vs {d.second} ({d.n})" for d in untested)
        )
    return f"{DECISIONS_PREFIX}{what} ({unit}; {how}): " + "; ".join(parts) + "."


def fmt_p(p: float) -> str:
    """A p-value as the report and the terminal show it."""
    if p is None or not np.isfinite(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _scaled(value: float, metric: str) -> float:
    info = METRICS.get(metric)
    return 100.0 * value if info is not None and info.unit == "accuracy" else value


def view(
    frame: pd.DataFrame,
    improvement: pd.DataFrame,
    rounds: Mapping[str, Any] | None,
    seeds_run: Mapping[tuple[str, str], Sequence[int]],
    alpha: float = D.ALPHA,
) -> dict[str, Any] | None:
    """What the report's Decisions section shows (None when no verdict compared a pair)."""
    if frame.empty:
        return None
    css = {"less": "good", "greater": "good", "equivalent": "good", "undecided": ""}
    rows = []
    for r in frame.itertuples():
        digits = 1 if METRICS.get(str(r.metric)) is None or METRICS[str(r.metric)].unit == "accuracy" else 3
        low, high, diff = (_scaled(float(v), str(r.metric)) for v in (r.ci_low, r.ci_high, r.diff))
        rows.append(
            {
                "scenario": r.scenario,
                "level": r.level,
                "first": r.first,
                "second": r.second,
                "outcome": {"less": "A < B", "greater": "A > B"}.get(str(r.outcome), str(r.outcome)),
                "css": css[str(r.outcome)],
                "diff": f"{diff:+.{digits}f}",
                "ci": f"[{low:+.{digits}f}, {high:+.{digits}f}]" if np.isfinite(low) else "",
                "p": fmt_p(float(r.p_adjusted)),
                "p_eq": fmt_p(float(r.p_equivalence_adjusted)),
                "n": int(r.n),
                "more": r.note if r.note else ("" if pd.isna(r.more_seeds) else f"about {int(r.more_seeds)}"),
            }
        )
    sequential = bool((frame.method == "sequential").any())
    return {
        "alpha": alpha,
        "interval": "anytime-valid confidence sequences at level 1 − α/m, m the pairs of the family (the seeds were "
        "added until decided)"
        if sequential
        else "Student's t at level 1 − α/m, m the pairs of the family (simultaneous)",
        "rows": rows,
        "improvement": [
            {
                "first": r.first,
                "second": r.second,
                "probability": f"{r.probability:.2f}",
                "ci": f"[{r.ci_low:.2f}, {r.ci_high:.2f}]",
                "scenarios": int(r.scenarios),
            }
            for r in improvement.itertuples()
        ],
        "rounds": rounds_view(rounds, seeds_run) if rounds else None,
    }


def rounds_view(rounds: Mapping[str, Any], seeds_run: Mapping[tuple[str, str], Sequence[int]]) -> dict[str, Any]:
    """The seeds each strategy ran under ``seeds: {start, max}`` and why it stopped (``rounds.json``)."""
    rule = rounds.get("rule") or {}
    stopped = rounds.get("stopped") or {}
    rows = []
    for scenario, by_strategy in stopped.items():
        for strategy, why in by_strategy.items():
            ran = [
                s
                for (sc, label), seeds in seeds_run.items()
                if sc == scenario and _method(label) == strategy
                for s in seeds
            ]
            rows.append({"scenario": scenario, "strategy": strategy, "seeds": len(set(ran)), "why": why})
    text = (
        f"{rule.get('start')} seeds first, then {rule.get('step')} more at a time to every strategy still in an undecided "
        f"pair (with the naive runs those seeds need), up to {rule.get('max')}; {len(rounds.get('rounds') or [])} "
        "round(s) ran."
    )
    return {"rule": text, "rows": rows}


def _method(label: str) -> str:
    """A strategy label without its grid suffix (``ewc[ewc_lambda=10]`` -> ``ewc``)."""
    return label.partition("[")[0]
