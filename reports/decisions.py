"""The decisions table: every pair a verdict compares, with its outcome (A < B, A > B, equivalent, undecided) about
its mean difference, its interval at the level its claim was tested at, the family's adjusted p-values and the seeds
it paired (the maths: :mod:`forgetbench.benchmark.core.decide`), and the suite-level probability of improvement
across scenarios.

The families, one per verdict:

* **each strength alone**: per scenario, every pair of the strategies the suite ran there, on the scenario's headline
  measure of forgetting (:func:`forgetbench.reports.verdict.headline_metric`), naive included, references (joint,
  standalone) left out; strategies that trade plasticity or do not act stay in, named by the verdict;
* **matched plasticity**: per scenario with a frontier, at each plasticity level (naive's LA minus 1, 2, 5 points)
  every pair of methods whose fronts reach that level, on their per-seed interpolated forgetting: one family of
  every pair of the methods the suite ran at every level, so the claims of all three levels share one alpha.

The verdict sentences, the report's table, ``Results.decisions()`` and the rounds of ``seeds: {start, max}`` all read
this frame.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from itertools import combinations
from typing import Any, Iterable, Literal, Mapping, Sequence

import numpy as np
import pandas as pd


from forgetbench.benchmark.core import decide as D
from forgetbench.benchmark.core.metric_registry import METRICS
from forgetbench.benchmark.core.record import RunRecord
from forgetbench.reports.decision_options import (  # noqa: F401 (the decisions' API: how a folder decides)
    DecisionOptions,
    DecisionSettingsError,
    folder_options,
    options_of,
    rounds_of,
)

DEFAULT_LEVEL = "each strength alone"
DECISIONS_PREFIX = "Decisions on "  # the sentence of a family's decisions (family_sentence) starts so
UNDECIDED_LISTED = 3  # a verdict sentence lists this many undecided pairs at most (the table lists every one)
MIN_IMPROVEMENT_SEEDS = D.MIN_PAIRED  # a method's seeds in a scenario below which P(improvement) is not estimated
COLUMNS = [
    "scenario",
    "level",
    "metric",
    "unit",
    "first",
    "second",
    "outcome",
    "diff",
    "ci_low",
    "ci_high",
    "ci_level",
    "p_value",
    "p_adjusted",
    "p_equivalence_adjusted",
    "n",
    "seeds",
    "family",
    "margin",
    "method",
    "planned",
    "decided_at",
    "more_seeds",
    "note",
]


def family(
    values: Mapping[str, Mapping[int, float]],
    margin: float,
    options: DecisionOptions,
    order: Sequence[str] | None = None,
    rounds: Mapping[str, Mapping[int, int]] | None = None,
    size: int | None = None,
) -> list[D.Decision]:
    """Every pair of ``values`` (label -> seed -> value) decided as one family, each pair on the seeds both have
    (``rounds``: label -> seed -> the round that ran it; a pair's seed counts from the later of its two runs; read
    under rounds only). ``size``: the pairs the plan compares, where some have no values here."""
    labels = [label for label in (order or list(values)) if label in values]
    pairs = [
        D.paired(first, second, values[first], values[second], margin, options.method, rounds, options.planned)
        for first, second in combinations(labels, 2)
    ]
    return D.decide(pairs, options.alpha, family=size)


def _scaled(value: float, metric: str) -> float:
    """``value`` of ``metric`` in display units: points for an accuracy metric, else its own unit."""
    info = METRICS.get(metric)
    return 100.0 * value if info is not None and info.unit == "accuracy" else value


def unit_of(metric: str) -> str:
    """The unit the frame's numbers of ``metric`` are in: points for an accuracy metric, else its own; a metric this
    tool does not know (a table from elsewhere) stays in the unit it came in."""
    info = METRICS.get(metric)
    if info is None:
        return "as given"
    return "points" if info.unit == "accuracy" else info.unit


def rows(scenario: str, level: str, metric: str, decisions: Iterable[D.Decision]) -> list[dict[str, Any]]:
    """The decisions as the frame's rows, in display units (points for an accuracy metric: the report's unit)."""
    return [
        {
            "scenario": scenario,
            "level": level,
            "metric": metric,
            "unit": unit_of(metric),
            "first": d.first,
            "second": d.second,
            "outcome": d.outcome,
            "diff": _scaled(d.diff, metric),
            "ci_low": _scaled(d.ci_low, metric),
            "ci_high": _scaled(d.ci_high, metric),
            "ci_level": d.ci_level,
            "p_value": d.p_value,
            "p_adjusted": d.p_adjusted,
            "p_equivalence_adjusted": d.p_equivalence_adjusted,
            "n": d.n,
            "seeds": list(d.seeds),
            "family": d.family,
            "margin": _scaled(d.margin, metric),
            "method": d.method,
            "planned": d.planned,
            "decided_at": d.decided_at,
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
    (ties count half: the Mann-Whitney statistic over their seeds), averaged over the scenarios where both ran on at
    least :data:`MIN_IMPROVEMENT_SEEDS` seeds (fewer: no interval can be drawn from them); with a stratified bootstrap
    interval (each method's seeds resampled within each scenario; Agarwal et al., "Deep RL at the edge of the
    statistical precipice", NeurIPS 2021), descriptive: it is not one of the verdicts' decided claims. Columns:
    first, second, probability, ci_low, ci_high, scenarios."""
    methods = list(dict.fromkeys(m for values in by_scenario.values() for m in values))
    rng = np.random.default_rng(seed)
    out = []

    def enough(scenario: str, method: str) -> bool:
        return len(by_scenario[scenario].get(method, {})) >= MIN_IMPROVEMENT_SEEDS

    for a, b in combinations(methods, 2):
        shared = [s for s in by_scenario if enough(s, a) and enough(s, b)]
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
        # the percentile interval of a statistic bounded at 0 and 1 can miss its own point: never printed so
        out.append([a, b, point, float(min(low, point)), float(max(high, point)), len(shared)])
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


def test_set_sizes(records: Iterable[RunRecord]) -> dict[str, list[int]]:
    """Scenario label -> the test-set size of each task, read off its accuracies (each a multiple of 1 / n_test:
    the smallest n up to 100,000 that makes every accuracy of that task, in every run, a whole number of images);
    a task whose accuracies fit no such n is left out."""
    values: dict[str, dict[int, set[float]]] = {}
    for record in records:
        if record.status != "ok" or not record.accuracy_matrix:
            continue
        tasks = values.setdefault(record.scenario.label or record.scenario.name, {})
        for row in record.accuracy_matrix:
            for j, v in enumerate(row):
                if np.isfinite(v):
                    tasks.setdefault(j, set()).add(float(v))
    candidates = np.arange(1, 100_001, dtype=float)
    out: dict[str, list[int]] = {}
    for scenario, tasks in values.items():
        sizes = []
        for j in sorted(tasks):
            fits = np.ones(candidates.size, dtype=bool)
            for v in sorted(tasks[j])[:64]:  # enough accuracies to pin the denominator down
                scaled = v * candidates
                fits &= np.abs(scaled - np.round(scaled)) <= 1e-6 * np.maximum(candidates, 1.0)
            found = np.nonzero(fits)[0]
            if found.size and len(tasks[j]) > 1:
                sizes.append(int(candidates[found[0]]))
        if sizes:
            out[scenario] = sizes
    return out


def resolution_sentence(sizes: Sequence[int]) -> str:
    """``one test image = 0.22 points (450 test images a task)``: what one image moves an accuracy by."""
    low, high = min(sizes), max(sizes)
    points = f"{100 / high:.2f}" if low == high else f"{100 / high:.2f} to {100 / low:.2f}"
    images = f"{low}" if low == high else f"{low} to {high}"
    return f"one test image = {points} points ({images} test images a task)"


def _number(value: float, digits: int) -> str:
    if not np.isfinite(value):
        return "-inf" if value < 0 else "inf"
    return f"{value:.{digits}f}"


def _end(value: float, digits: int, limits: Sequence[float]) -> str:
    """An interval's end with enough digits that it does not print as one of ``limits`` (0, +-margin) it does not
    equal: an interval that excludes 0 never prints an end of 0.0."""
    for more in range(digits, digits + 8):
        text = _number(value, more)
        if not np.isfinite(value) or not any(float(text) == limit and value != limit for limit in limits):
            return text
    return text


def interval_text(low: float, high: float, digits: int, limits: Sequence[float] = (0.0,)) -> str:
    """``[-2.7, -0.02]``; ``unbounded`` where the set is the whole line; an infinite end written ``inf``."""
    if np.isnan(low) or np.isnan(high):
        return ""
    if not np.isfinite(low) and not np.isfinite(high):
        return "unbounded"
    return f"[{_end(low, digits, limits)}, {_end(high, digits, limits)}]"


def _interval(low: float, high: float, digits: int) -> str:
    return interval_text(low, high, digits)


def _level(decision: D.Decision) -> str:
    """``99.3%``: the confidence level of the decision's interval."""
    level = 100 * decision.ci_level
    return f"{level:.1f}%" if np.isfinite(level) and round(level, 1) < 100 else f"{level:.3g}%"


def _seeds(decision: D.Decision) -> str:
    n = f"{decision.n} seed{'s' if decision.n != 1 else ''}"
    if decision.decided_at is not None and decision.decided_at < decision.n:
        return f"{n}, decided at {decision.decided_at}"
    return n


def describe(
    decision: D.Decision, scale: float = 100.0, unit: str = "points", digits: int = 1, lower_is_better: bool = True
) -> str:
    """One pair's decision in words, in display units (``scale`` times the metric; points for accuracy), about its
    mean difference, the better method first and the interval oriented as the claim reads: ``wpl < si by 8.8 (wpl -
    si [-17.2, -0.5] at 99.5%; adjusted p = 0.013, 12 seeds)``, ``ewc and mas: equivalent within +/- 1.0 points (ewc
    - mas [-0.4, 0.6] at 99.8%; adjusted p = 0.021, 20 seeds)``, ``si vs ewc: undecided, si - ewc [-2.1, 3.4] at
    99.6% on 5 seeds; about 12 more seeds would decide it``. ``lower_is_better``: which side a claim names first
    (``A < B``: A better where lower is better; ``A > B``: A better where higher is)."""
    low, high, diff = (scale * v for v in (decision.ci_low, decision.ci_high, decision.diff))
    margin = scale * decision.margin
    seeds = _seeds(decision)
    level = _level(decision)
    first, second = decision.first, decision.second
    if decision.outcome in ("less", "greater"):
        first_better = (decision.outcome == "less") == lower_is_better
        if not first_better:  # the claim reads second first: its difference and interval turn round
            first, second, low, high = second, first, -high, -low
        sign = "<" if (decision.outcome == "less") == first_better else ">"
        interval = interval_text(low, high, digits)
        return (
            f"{first} {sign} {second} by {_end(abs(diff), digits, (0.0,))} ({first} - {second} {interval} at {level}; "
            f"{p_said(decision.p_adjusted, adjusted=True)}, {seeds})"
        )
    interval = interval_text(low, high, digits, (0.0, -margin, margin))
    if decision.outcome == "equivalent":
        return (
            f"{first} and {second}: equivalent within +/- {_number(margin, digits)} {unit} ({first} - {second} "
            f"{interval} at {level}; {p_said(decision.p_equivalence_adjusted, adjusted=True)}, {seeds})"
        )
    if decision.note:
        return f"{first} vs {second}: undecided ({decision.note})"
    if decision.more_seeds is not None:
        more = f"about {decision.more_seeds} more seed{'s' if decision.more_seeds != 1 else ''} would decide it"
        if decision.planned is not None and decision.n + decision.more_seeds > decision.planned:
            more += f", past the rounds' planned {decision.planned}"
    else:
        more = f"no number of seeds up to {D.PROJECTION_LIMIT} would decide it at this mean and spread"
    return f"{first} vs {second}: undecided, {first} - {second} {interval} at {level} on {seeds}; {more}"


def procedure(decisions: Sequence[D.Decision], alpha: float = D.ALPHA) -> str:
    """How a family's claims were made, in words: the tests, the multiplicity, the error rate, the intervals."""
    if not decisions:
        return ""
    m = decisions[0].family
    margin = max(d.margin for d in decisions)
    alpha_d, alpha_e = D.shares(alpha, margin)
    sequential = decisions[0].method == "sequential"
    planned = max((d.planned or 0) for d in decisions)
    tests = (
        "group-sequential paired t-tests of each pair's mean difference (a look after each round, Lan-DeMets "
        f"spending up to the {planned} seeds the rounds planned: valid however they stopped)"
        if sequential
        else "paired t-tests of each pair's mean difference (one look at every seed, in any order)"
    )
    kinds = (
        f"Holm's step-down over the {m} pair{'s' if m != 1 else ''}: differences at family-wise {alpha_d:g}, "
        f"equivalence (two one-sided tests) at {alpha_e:g}"
        if alpha_e > 0
        else f"Holm's step-down over the {m} pair{'s' if m != 1 else ''} at family-wise {alpha_d:g} (margin 0: no "
        "equivalence claim possible)"
    )
    return (
        f"{tests}, each with its skew-corrected form (Hall 1992; a claim needs both); {kinds}, so the chance of any "
        f"false claim here is at most {alpha:g}; each interval at the level its claim was tested at"
    )


def family_sentence(
    decisions: Sequence[D.Decision],
    what: str,
    scale: float = 100.0,
    unit: str = "points",
    digits: int = 1,
    alpha: float = D.ALPHA,
    lower_is_better: bool = True,
) -> str:
    """The family's decisions in one sentence: how they were made, then each pair, decided ones first."""
    if not decisions:
        return ""
    how = procedure(decisions, alpha)
    decided = [d for d in decisions if d.outcome in ("less", "greater")]
    decided += [d for d in decisions if d.outcome == "equivalent"]
    tested = [d for d in decisions if d.outcome == "undecided" and not d.note]
    untested = [d for d in decisions if d.outcome == "undecided" and d.note]
    parts = [describe(d, scale, unit, digits, lower_is_better) for d in decided]
    if len(tested) <= UNDECIDED_LISTED:
        parts += [describe(d, scale, unit, digits, lower_is_better) for d in tested]
    else:  # a long list of open intervals hides the decisions: counted here, every one in the Decisions table
        widest = max(tested, key=lambda d: d.ci_high - d.ci_low)
        parts.append(
            f"{len(tested)} pairs undecided (each with its interval and the seeds it needs in the Decisions table; "
            f"the widest: {describe(widest, scale, unit, digits, lower_is_better)})"
        )
    if untested:
        parts.append(
            f"{len(untested)} pair{'s' if len(untested) != 1 else ''} not tested, on fewer than {D.MIN_PAIRED} "
            "paired seeds: " + ", ".join(f"{d.first} vs {d.second} ({d.n})" for d in untested)
        )
    return f"{DECISIONS_PREFIX}{what} ({unit}; {how}): " + "; ".join(parts) + "."


def p_said(p: float, adjusted: bool = False) -> str:
    """``p = 0.012`` or ``p < 0.001`` (``adjusted p = ...``: a family's adjusted p), in a sentence."""
    text = fmt_p(p)
    name = "adjusted p" if adjusted else "p"
    return f"{name} {text[0]} {text[1:]}" if text.startswith("<") else f"{name} = {text}"


def fmt_p(p: float) -> str:
    """A p-value as the report and the terminal show it."""
    if p is None or not np.isfinite(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def answer_view(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The report's first screen: per scenario (and plasticity level), its claims in words (``wpl < naive by 16.8``,
    ``mas and wpl equivalent``) and how many of its pairs stay undecided; the Decisions section has every pair."""
    out = []
    for (scenario, level), group in frame.groupby(["scenario", "level"], sort=False, dropna=False):
        claims = []
        for r in group.itertuples():
            unit = " points" if str(r.unit) == "points" else ""
            digits = 1 if str(r.unit) == "points" else 3
            if str(r.outcome) == "less":
                claims.append(f"{r.first} < {r.second} by {abs(float(r.diff)):.{digits}f}{unit}")
            elif str(r.outcome) == "greater":
                claims.append(f"{r.second} < {r.first} by {abs(float(r.diff)):.{digits}f}{unit}")
            elif str(r.outcome) == "equivalent":
                claims.append(f"{r.first} and {r.second} equivalent (within +/- {float(r.margin):g}{unit})")
        out.append(
            {
                "scenario": scenario,
                "level": "" if pd.isna(level) else str(level),
                "claims": claims,
                "undecided": int((group.outcome == "undecided").sum()),
                "pairs": len(group),
            }
        )
    return out


def view(
    frame: pd.DataFrame,
    improvement: pd.DataFrame,
    rounds: Mapping[str, Any] | None,
    seeds_run: Mapping[tuple[str, str], Sequence[int]],
    alpha: float = D.ALPHA,
    resolutions: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, Any] | None:
    """What the report's Decisions section shows (None when no verdict compared a pair): the frame's numbers as
    they are (display units), every decided outcome coloured (its interval agrees with it, at the family's level)."""
    if frame.empty:
        return None
    css = {"less": "good", "greater": "good", "equivalent": "good", "undecided": ""}
    rows = []
    for r in frame.itertuples():
        digits = 1 if str(r.unit) == "points" else 3
        low, high, diff = float(r.ci_low), float(r.ci_high), float(r.diff)
        margin = float(r.margin)
        more = str(r.note) if r.note else ""
        if not more and not pd.isna(r.more_seeds):
            more = f"about {int(r.more_seeds)}"
        limits = (0.0,) if str(r.outcome) in ("less", "greater") else (0.0, -margin, margin)
        rows.append(
            {
                "scenario": r.scenario,
                "level": r.level,
                "first": r.first,
                "second": r.second,
                "outcome": {"less": "A < B", "greater": "A > B"}.get(str(r.outcome), str(r.outcome)),
                "css": css[str(r.outcome)],
                "diff": f"{diff:+.{digits}f}",
                "ci": interval_text(low, high, digits, limits),
                "ci_level": f"{100 * float(r.ci_level):.1f}%" if np.isfinite(float(r.ci_level)) else "",
                "p": fmt_p(float(r.p_adjusted)),
                "p_eq": fmt_p(float(r.p_equivalence_adjusted)),
                "n": int(r.n),
                "decided_at": "" if pd.isna(r.decided_at) else int(r.decided_at),
                "family": int(r.family),
                "more": more,
            }
        )
    sequential = bool((frame.method == "sequential").any())
    planned = int(pd.to_numeric(frame.planned, errors="coerce").max()) if sequential else None
    return {
        "alpha": alpha,
        "interval": (
            "group-sequential t-tests (a look after every round, Lan-DeMets spending up to the "
            f"{planned} seeds the rounds planned): each interval intersects the pair's repeated confidence "
            "intervals over its looks, at the level its claim was tested at"
            if sequential
            else "paired t-tests, one look at every seed: each interval at the level its claim was tested at"
        ),
        "resolution": [
            {"scenario": scenario, "text": resolution_sentence(sizes)}
            for scenario, sizes in (resolutions or {}).items()
        ],
        "rows": rows,
        "answer": answer_view(frame),
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
    """The seeds each strategy ran under ``seeds: {start, max}`` and why it stopped (``rounds.json``): the seeds of
    the runs read (the participant's own label, or every strength of a method)."""
    rule = rounds.get("rule") or {}
    stopped = rounds.get("stopped") or {}
    rows = []
    for scenario, by_strategy in stopped.items():
        for strategy, why in by_strategy.items():
            ran = {
                s
                for (sc, label), seeds in seeds_run.items()
                if sc == scenario and (label == strategy or _method(label) == strategy)
                for s in seeds
            }
            rows.append({"scenario": scenario, "strategy": strategy, "seeds": len(ran), "why": why})
    text = (
        f"{rule.get('start')} seeds first, then {rule.get('step')} more at a time to every strategy still in an undecided "
        f"pair (with the naive runs those seeds need), up to {rule.get('max')}; {len(rounds.get('rounds') or [])} "
        "round(s) ran."
    )
    return {"rule": text, "rows": rows}


def _method(label: str) -> str:
    """A strategy label without its grid suffix (``ewc[ewc_lambda=10]`` -> ``ewc``)."""
    return label.partition("[")[0]
