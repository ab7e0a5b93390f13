"""The verdict: which strategy forgets least, said only as strongly as the seeds allow, and never of a strategy that
bought it with plasticity.

**The headline** of a scenario where some method ran at two or more strengths beside naive (a strength sweep, or a
tuned entry's final runs at its chosen point and neighbours) is the **matched-plasticity verdict** of the suite's
own runs (the test split, its seeds; :func:`forgetbench.reports.frontier.matched_verdicts`): forgetting compared at
the same plasticity, where a stronger penalty cannot win by learning less. Otherwise the headline is the forgetting
verdict below, with each strategy's LA beside its forgetting.

**The forgetting verdict.** A strategy whose mean LA (accuracy on each task right after learning it) is more than
:data:`PLASTICITY_TRADE` (5 points) below naive's *trades plasticity*: it is named as such, with both LAs, and is
never "forgets least" or "lowest forgetting" (it may forget little because it learnt little). Among the others, one
is named the one that "forgets least" only when its paired difference is significant (two-sided paired t-test,
p < 0.05, at least 3 seeds) both against naive and against the next best strategy. Otherwise the verdict says which
strategies are indistinguishable on this suite and about how many seeds would tell them apart (:func:`seeds_needed`,
a power estimate from the observed paired differences). With fewer than 3 seeds it says the intervals are not
informative. Every p-value names both strategies it compares.

Pure functions of the tidy frames of :mod:`forgetbench.reports.summary`: the HTML report and the terminal
summary after ``forgetbench run`` print the same sentences.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from forgetbench.benchmark.core import decide as D
from forgetbench.benchmark.core.record import RunRecord, as_records
from forgetbench.benchmark.core.units import display_scale
from forgetbench.reports import decisions as DC
from forgetbench.reports import frames as FR
from forgetbench.reports import frontier as FT
from forgetbench.reports.decisions import fmt_p
from forgetbench.reports import summary as S
from forgetbench.reports.summary import METRICS
from forgetbench.benchmark.core.calibration import ACTS as INERT_RATIO
from forgetbench.reports.search_verdict import (
    search_outcome,
    _and,
    _cut_said,
    _cut,
    edge_lines,
)

HEADLINE_METRICS = (
    "forgetting",
    "forgetting_value_mean",
    "lm_forgetting_mean",
    "err_gap_mean",
    "curve_max_drop",
)  # the first one a scenario measures (a square matrix: forgetting; a search with rounds: its forgetting value)
SIGNIFICANCE = 0.05
PLASTICITY_TRADE = 0.05  # LA (0-1) below naive's beyond which a strategy trades plasticity for its low forgetting
MIN_SEEDS = D.MIN_PAIRED
TRADE_PREFIX = "Trades plasticity"  # the sentence naming the strategies that trade plasticity starts so
IDLE_PREFIX = "Does not act"  # ... the strategies whose penalty does not act


def headline_metric(frame: pd.DataFrame, column: str = "value") -> str | None:
    """The forgetting measure a scenario's verdict is about, the first of :data:`HEADLINE_METRICS` with a finite
    ``column`` in ``frame`` (rows of metric, value): forgetting where each task has a row of the accuracy matrix (a
    sequential schedule), else a search's forgetting value (accuracy points or nats), else err2 - err1, else the
    curves' max drop."""
    values = pd.to_numeric(frame[column], errors="coerce") if len(frame) else pd.Series(dtype=float)
    measured = set(frame.metric[np.isfinite(values.to_numpy(dtype=float))]) if len(frame) else set()
    return next((m for m in HEADLINE_METRICS if m in measured), None)


def _points(value: float) -> str:
    return f"{100 * value:.1f}"


def plasticity_traders(long: pd.DataFrame, naive: str | None) -> dict[str, tuple[float, float]]:
    """Strategies whose LA is more than :data:`PLASTICITY_TRADE` below ``naive``'s, each compared with naive on the
    seeds both ran (one scenario of :func:`forgetbench.reports.summary.runs_long`): label -> (its mean LA, naive's
    mean LA, both over those seeds). A label to say beside its figures, never a reason to leave it out of a family:
    which strategies a verdict compares comes from the plan. Empty where naive or LA is missing (a search)."""
    rows = long[long.metric == "LA"] if len(long) else long
    if naive is None or not len(rows):
        return {}
    la = DC.per_seed(rows, "LA")
    base = la.get(naive)
    if not base:
        return {}
    out = {}
    for strategy, values in la.items():
        seeds = sorted(values.keys() & base.keys())
        if strategy == naive or not seeds:
            continue
        mine, theirs = float(np.mean([values[s] for s in seeds])), float(np.mean([base[s] for s in seeds]))
        if mine < theirs - PLASTICITY_TRADE:
            out[str(strategy)] = (mine, theirs)
    return out


def _la_means(long: pd.DataFrame) -> dict[str, float]:
    rows = long[long.metric == "LA"] if len(long) else long
    if not len(rows):
        return {}
    la = rows.assign(value=pd.to_numeric(rows.value, errors="coerce")).groupby("strategy", sort=False).value.mean()
    return {str(s): float(v) for s, v in la.items() if np.isfinite(v)}


def strength_family(
    long: pd.DataFrame, naive: str | None, references: AbstractSet[str] = frozenset()
) -> tuple[str | None, dict[str, dict[int, float]], dict[str, tuple[float, float]]]:
    """One scenario's family at each strength alone: its headline metric, strategy -> seed -> value for every
    strategy the suite ran there (references left out: upper bounds, not contenders), and the strategies that trade
    plasticity (label -> (its LA, naive's LA) on their paired seeds), named in the verdict, still in the family."""
    long = long[~long.strategy.isin(references)]
    metric = headline_metric(long)
    if metric is None:
        return None, {}, {}
    traders = plasticity_traders(long, naive) if metric == "forgetting" else {}
    return metric, DC.per_seed(long, metric), traders


def strength_decisions(
    long: pd.DataFrame,
    naive: str | None,
    references: AbstractSet[str] = frozenset(),
    options: DC.DecisionOptions | None = None,
) -> tuple[str | None, list[D.Decision]]:
    """The decisions of one scenario's strategies at each strength alone (:mod:`forgetbench.reports.decisions`): one
    family of every pair of the strategies the suite ran there, each pair in the order its seeds were run."""
    options = options or DC.DecisionOptions()
    metric, values, _ = strength_family(long, naive, references)
    if metric is None or len(values) < 2:
        return metric, []
    planned = len(set(long.strategy) - set(references))
    order = sorted(values, key=lambda s: (s != naive, float(np.mean(list(values[s].values())))))
    rounds = S.seed_rounds(long)
    return metric, DC.family(values, options.margin(metric), options, order, rounds, planned * (planned - 1) // 2)


def scenario_verdict(
    long: pd.DataFrame,
    naive: str | None,
    references: AbstractSet[str] = frozenset(),
    options: DC.DecisionOptions | None = None,
    decide: bool = True,
    inert: AbstractSet[str] = frozenset(),
) -> list[str]:
    """Sentences for one scenario, the first being the headline. ``long`` is :func:`forgetbench.reports.summary.runs_long`
    restricted to the scenario; ``naive`` the baseline's label; ``references`` (joint, standalone) are
    upper bounds, never contenders. A strategy that trades plasticity (:func:`plasticity_traders`) or whose penalty
    does not act (``inert``: strategy labels, :func:`forgetbench.reports.frames.inert_penalties`) stays in the family, is
    named apart with what it costs or cuts, and is never called the one that forgets least. The pairs are decided
    as one family (module docstring); with ``decide`` False (a scenario whose methods are decided at matched
    plasticity), the strategies' figures only."""
    long = long[~long.strategy.isin(references)]
    options = options or DC.DecisionOptions()
    metric, by_strategy, traders = strength_family(long, naive)
    if metric is None:
        return []
    info = METRICS[metric]
    unit = "points" if info.unit == "accuracy" else info.unit
    las = _la_means(long) if metric == "forgetting" else {}

    def amount(value: float) -> str:
        return _points(value) if info.unit == "accuracy" else f"{value:.3f}"

    def with_la(strategy: str, value: float) -> str:  # with LAs, each figure carries its unit
        if not las:
            return amount(value)
        la = las.get(strategy)
        return f"{amount(value)} {unit}" + (f" at LA {_points(la)}" if la is not None else "")

    every = DC.per_seed(long, metric)
    if not every:
        return []
    all_means = pd.Series({s: float(np.mean(list(v.values()))) for s, v in every.items()}).sort_values()
    trading_line = (
        f"{TRADE_PREFIX} (LA more than {100 * PLASTICITY_TRADE:.0f} points below {naive}'s on the same seeds), "
        "so its low forgetting is not a win: "
        + _and(
            [
                f"{s} (LA {_points(la)} vs {naive}'s {_points(theirs)}; {info.label.lower()} {amount(all_means[s])})"
                for s, (la, theirs) in traders.items()
                if s in all_means
            ]
        )
        + "."
        if any(s in all_means for s in traders)
        else None
    )
    idle = [s for s in all_means.index if s != naive and s in inert]
    idle_line = (
        f"{IDLE_PREFIX} (its penalty's gradient over training, on the parameters later models share, below "
        f"{100 * INERT_RATIO:g}% of the data loss's in most experiences with a penalty: the result is nearly naive's), "
        "so it is compared but never ranked as a regularizer: "
        + _and([f"{s} ({_cut_said(long, s, naive)})" for s in idle])
        + "."
        if idle
        else None
    )
    apart = [line for line in (trading_line, idle_line) if line]
    means = all_means[[s for s in all_means.index if s in by_strategy]]
    if not decide:  # the pairs are decided at matched plasticity (the headline): here the strengths' figures only
        ranked = ", ".join(f"{s} {with_la(s, means[s])}" for s in means.index)
        lines = [
            f"{info.label} ({'' if las else unit + ', '}mean over seeds; decided at matched plasticity): {ranked}."
        ]
        return lines + apart
    _, decisions = strength_decisions(long, naive, frozenset(), options)
    set_apart = set(traders) | set(idle)
    lines = _forgetting_verdict(
        by_strategy, means, naive, info, "" if las else unit, with_la, long, decisions, set_apart, options.alpha
    )
    return lines + apart


def decided_lowest(
    long: pd.DataFrame,
    naive: str | None,
    references: AbstractSet[str] = frozenset(),
    options: DC.DecisionOptions | None = None,
) -> tuple[str | None, str | None]:
    """(the headline metric, the strategy decided lower on it than every other strategy of its family): the one
    strategy a table may mark best; None where no winner can be named."""
    metric, decisions = strength_decisions(long, naive, references, options)
    labels = {label for d in decisions for label in (d.first, d.second)}
    for label in labels:
        if len(_wins(label, decisions)) == len(labels) - 1:
            return metric, label
    return metric, None


def _wins(best: str, decisions: Sequence[D.Decision]) -> list[D.Decision]:
    """The decisions in which ``best`` is decided lower than the other."""
    return [
        d
        for d in decisions
        if (d.first == best and d.outcome == "less") or (d.second == best and d.outcome == "greater")
    ]


def _involving(label: str, decisions: Sequence[D.Decision]) -> list[D.Decision]:
    return [d for d in decisions if label in (d.first, d.second)]


@dataclass
class _Words:
    """How one scenario's verdict writes its figures: the measure's name and unit, each strategy's mean (with its LA
    beside it where there is one), naive's, and how the p-values were adjusted."""

    label: str
    sp: str  # " <unit>" after a figure, or "" where each figure carries its unit
    with_la: Any
    means: pd.Series
    naive: str | None
    shown_unit: str
    adjusted: str

    @property
    def base(self) -> str:
        return f"{self.naive} {self.with_la(self.naive, self.means[self.naive])}" if self.naive in self.means else ""

    def of(self, strategy: str) -> str:
        return f"{self.with_la(strategy, self.means[strategy])}{self.sp}"


def _least_headline(
    w: _Words, group: list[str], wins: list[D.Decision], decisions, long: pd.DataFrame, scale: float
) -> str:
    """The lowest strategy (with those decided equivalent to it) decided lower than every other."""

    def cut(s: str) -> str:
        value = _cut(long, s, w.naive) if w.base else float("nan")
        return f", a {value:.0f}% cut" if np.isfinite(value) else ""

    best = group[0]
    if len(group) == 1:
        text = f"Forgets least: {best} ({w.label} {w.of(best)}" + (f" vs {w.base}" if w.base else "") + cut(best)
    else:
        margin = decisions[0].margin * scale
        text = (
            f"Forget least, equivalent within +/- {margin:.1f} {w.shown_unit} of each other: "
            + _and([f"{s} ({w.of(s)}{cut(s)})" for s in group])
            + f" ({w.label}"
            + (f"; {w.naive} {w.of(str(w.naive))}" if w.base else "")
        )
    worst_p = max(d.p_adjusted for d in wins)
    said = "adjusted p < 0.001" if worst_p < 0.001 else f"adjusted p <= {fmt_p(worst_p)}"
    return text + f"; lower than every other strategy, {said}; {w.adjusted})."


def _open_headline(w: _Words, best: str, beats_naive: list[D.Decision], wins: list[D.Decision], decisions) -> str:
    """No single winner: the strategies decided lower than naive, and the pairs the lowest is not decided in."""
    winners = [d.first if d.second == w.naive else d.second for d in beats_naive]
    parts = []
    if winners:
        parts.append(
            f"Less {w.label} than {w.base}{w.sp} ({w.adjusted}): {_and([f'{s} {w.with_la(s, w.means[s])}' for s in winners])}"
        )
    open_pairs = [d for d in _involving(best, decisions) if d not in wins]
    if open_pairs:
        parts.append(
            f"{'lowest' if parts else 'Lowest'} {w.label} {best}, not decided lower than "
            + _and([d.second if d.first == best else d.first for d in open_pairs])
        )
    return ("; ".join(parts) or f"Lowest {w.label}: {best} ({w.of(best)})") + "."


def _too_early(
    n_seeds: int,
    means: pd.Series,
    best: str,
    label: str,
    sp: str,
    with_la: Any,
    info: Any,
    decisions: Sequence[D.Decision],
    alpha: float,
) -> list[str]:
    """The verdict where nothing can be decided yet (fewer seeds than a test needs, or one strategy alone); empty
    where the pairs can be decided."""
    if n_seeds < MIN_SEEDS:
        return [
            f"Too few seeds to name a winner: {n_seeds} seed(s), and with fewer than {MIN_SEEDS} the "
            f"confidence intervals are not informative. Lowest {label} so far: {best} "
            f"({with_la(best, means[best])}{sp}). Rerun with --seeds {MIN_SEEDS} or more."
        ]
    if len(means) == 1:
        return [f"Only {best} ran: nothing to compare ({label} {with_la(best, means[best])}{sp})."]
    return []


def _forgetting_verdict(
    by_strategy: dict[str, dict[int, float]],
    means: pd.Series,
    naive: str | None,
    info: Any,
    unit: str,
    with_la: Any,
    long: pd.DataFrame,
    decisions: Sequence[D.Decision],
    set_apart: AbstractSet[str] = frozenset(),
    alpha: float = D.ALPHA,
) -> list[str]:
    label = info.label.lower()
    sp = f" {unit}" if unit else ""  # "" where each figure carries its unit
    if means.empty:
        return []
    eligible = [str(s) for s in means.index if s not in set_apart]
    best = eligible[0] if eligible else str(means.index[0])
    n_seeds = max(len(v) for v in by_strategy.values())
    early = _too_early(n_seeds, means, best, label, sp, with_la, info, decisions, alpha)
    if early:
        return early
    scale = display_scale(info.unit)
    m = decisions[0].family if decisions else 0
    w = _Words(
        label,
        sp,
        with_la,
        means,
        naive,
        "points" if info.unit == "accuracy" else info.unit,
        f"every claim at family-wise {alpha:g} over the {m} pair{'s' if m != 1 else ''}",
    )
    beats_naive = [  # decided lower than naive
        d
        for d in decisions
        if (d.second == naive and d.outcome == "less") or (d.first == naive and d.outcome == "greater")
    ]
    # the lowest, with every strategy decided equivalent to it: a group that forgets least together
    group = [best] + [
        other
        for d in _involving(best, decisions)
        if d.outcome == "equivalent" and (other := d.second if d.first == best else d.first) not in set_apart
    ]
    outside = [s for s in eligible if s not in group]
    wins = [
        d
        for member in group
        for d in _wins(member, decisions)
        if not {d.first, d.second} <= set(group) and not {d.first, d.second} & set(set_apart)
    ]
    if naive not in group and outside and len(wins) == len(group) * len(outside):
        headline = _least_headline(w, group, wins, decisions, long, scale)
        if set_apart:
            headline = headline.replace("Forget", "Of the strategies that act and keep plasticity, forget", 1).replace(
                "lower than every other strategy", "lower than every other such strategy", 1
            )
    elif naive in means and not beats_naive:
        lowest = best if best != naive else next(s for s in means.index if s != naive)
        versus = next((d for d in _involving(lowest, decisions) if naive in (d.first, d.second)), None)
        digits = 1 if info.unit == "accuracy" else 3
        said = f": {DC.describe(versus, scale, w.shown_unit, digits)}" if versus is not None else ""
        headline = (
            f"No strategy forgets less than {naive} on this suite ({label}: lowest {lowest} "
            f"{with_la(lowest, means[lowest])} vs {w.base}{sp}; {w.adjusted}){said}."
        )
    else:
        headline = _open_headline(w, best, beats_naive, wins, decisions)
    detail = DC.family_sentence(decisions, label, scale, w.shown_unit, 1 if info.unit == "accuracy" else 3, alpha)
    return [headline] + ([detail] if detail else [])


def decisions_frame(
    records: Iterable[RunRecord | Mapping[str, Any]],
    computed: Mapping[str, Mapping[str, float]] | None = None,
    options: DC.DecisionOptions | None = None,
    long: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Every family of every scenario's verdict, one row per pair (:data:`forgetbench.reports.decisions.COLUMNS`):
    matched plasticity at each level where the scenario has a frontier, else each strength alone. Differences and
    intervals are in the metric's own unit (fractions for accuracy)."""
    options = options or DC.DecisionOptions()
    records = as_records(records)
    long = S.runs_long(records, computed) if long is None else long
    points = FT.frontier_frame(records, computed)
    out: list[dict[str, Any]] = []
    for scenario in S.strategy_order(records):
        naive, references = roles(records, scenario)
        mine = long[long.scenario == scenario] if len(long) else long
        matched = bool(len(points)) and FT.has_frontier(points, scenario)
        if len(mine) and not matched:  # with a front, the methods are decided at matched plasticity only
            metric, decisions = strength_decisions(mine, naive, references, options)
            if metric is not None:
                out += DC.rows(scenario, DC.DEFAULT_LEVEL, metric, decisions)
        if matched:
            for level, metric, decisions in FT.matched_decisions(points, scenario, options):
                out += DC.rows(scenario, level, metric, decisions)
    return DC.frame_of(out)


def roles(records: Sequence[RunRecord], scenario: str) -> tuple[str | None, set[str]]:
    """The scenario's baseline label (its naive run) and its reference labels (joint, standalone)."""
    mine = [r for r in records if S._scenario(r) == scenario]
    naive = next((S._strategy(r) for r in mine if S._strategy_name(r) == S.NAIVE), None)
    return naive, {S._strategy(r) for r in mine if S._strategy_name(r) in S.REFERENCE_STRATEGIES}


def matched_headline(points: pd.DataFrame, scenario: str, options: DC.DecisionOptions | None = None) -> list[str]:
    """The matched-plasticity verdict of ``scenario``'s points (:func:`forgetbench.reports.frontier.frontier_frame`
    of the suite's own runs), headed as the headline; empty where no method ran at two or more strengths beside
    naive."""
    if not len(points) or not FT.has_frontier(points, scenario):
        return []
    if points[points.scenario == scenario].seed.nunique() < 2:  # fronts are compared over seeds: say so below
        return []
    matched = FT.matched_plasticity(points, scenario)
    lines = FT.matched_verdicts(matched, FT.scenario_axes(points, scenario), options)
    if not lines:
        return []
    # the headline: the first plasticity level that two or more methods' fronts reach (they are compared there)
    reached = [int((group.n >= 2).sum()) for _, group in matched.groupby("drop", sort=False)]
    first = next((i for i, n in enumerate(reached) if n >= 2), 0)
    seeds = points[points.scenario == scenario].seed.nunique()
    head = f"At matched plasticity (the suite's runs, {seeds} seed(s), each method's front over its strengths): "
    return [head + lines[first], *(line for i, line in enumerate(lines) if i != first)]


def verdicts(
    records: Iterable[RunRecord | Mapping[str, Any]],
    long: pd.DataFrame | None = None,
    computed: Mapping[str, Mapping[str, float]] | None = None,
    tuning: Iterable[Mapping[str, Any]] = (),
    options: DC.DecisionOptions | None = None,
) -> dict[str, list[str]]:
    """Scenario label -> its verdict sentences, for every scenario in ``records`` (in order of appearance); the first
    is the headline: the matched-plasticity verdict where some method ran at several strengths, else the forgetting
    verdict (module doc). ``computed``: the runs' metrics, as :func:`forgetbench.reports.summary.load_records` gives;
    ``tuning``: the studies of ``tuning.json``, whose choices on an edge of their range are flagged."""
    records = as_records(records)
    long = S.runs_long(records, computed) if long is None else long
    points = FT.frontier_frame(records, computed)
    edges = edge_lines(tuning)
    out = {}
    for scenario in S.strategy_order(records):
        naive, references = roles(records, scenario)
        mine = long[long.scenario == scenario] if len(long) else long
        matched = bool(len(points)) and FT.has_frontier(points, scenario)
        inert = set(FR.inert_penalties(records, scenario, by_label=True))
        lines = (
            (
                scenario_verdict(mine, naive, references, options, decide=not matched, inert=inert)
                + search_outcome(mine[~mine.strategy.isin(references)], naive, options)
            )
            if len(long)
            else []
        )
        headline = matched_headline(points, scenario, options)
        if headline:
            lines = headline + [f"At each strength alone: {lines[0]}", *lines[1:]] if lines else headline
        out[scenario] = lines + edges.get(scenario, [])
    return out


def improvement_frame(
    records: Iterable[RunRecord | Mapping[str, Any]],
    computed: Mapping[str, Mapping[str, float]] | None = None,
    long: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The suite-level answer: for each pair of methods, the probability that one forgets less than the other across
    the scenarios (:func:`forgetbench.reports.decisions.probability_of_improvement`), on each scenario's headline
    values: per-seed forgetting at the first matched plasticity level two methods reach where the scenario has a
    front, else each strategy's forgetting at its strength (plasticity traders and references left out)."""
    records = as_records(records)
    long = S.runs_long(records, computed) if long is None else long
    points = FT.frontier_frame(records, computed)
    by_scenario: dict[str, dict[str, dict[int, float]]] = {}
    for scenario in S.strategy_order(records):
        if len(points) and FT.has_frontier(points, scenario):
            axes = FT.scenario_axes(points, scenario)
            matched = FT.matched_plasticity(points, scenario)
            for _, group in matched.groupby("drop", sort=False):
                reached = group[group.n >= 2]
                if len(reached) >= 2:
                    by_scenario[scenario] = {
                        str(r.method): {int(s): float(v) / axes.scale for s, v in r.per_seed.items()}
                        for r in reached.itertuples()
                    }
                    break
        elif len(long):
            naive, references = roles(records, scenario)
            metric, values, _ = strength_family(long[long.scenario == scenario], naive, references)
            if metric == "forgetting" and len(values) >= 2:
                by_scenario[scenario] = values
    return DC.probability_of_improvement(by_scenario)


def undecided_on(folder: Path, run_ids: AbstractSet[str], verdict: Any, planned: int) -> D.Undecided:
    """The rounds' decider (:data:`forgetbench.benchmark.run.rounds.Decider`): the pairs the verdict leaves undecided on
    the runs ``run_ids`` of ``folder``, decided with group-sequential tests planned to ``planned`` seeds (the rounds'
    ``max``) under the suite's ``verdict`` options. A scenario's deciding families: matched plasticity where it has a
    front (every level), else each strength alone."""
    scan = S.load_records(folder)
    records = [r for r in scan.records if r.run_id in run_ids]
    options = DC.DecisionOptions(dict(verdict.equivalence_margin), float(verdict.alpha), "sequential", planned)
    frame = decisions_frame(records, scan.metrics, options)
    out = D.Undecided()
    for scenario, group in frame.groupby("scenario", sort=False):
        deciding = group[group.level != DC.DEFAULT_LEVEL] if (group.level != DC.DEFAULT_LEVEL).any() else group
        out.participants[str(scenario)] = set(deciding["first"]) | set(deciding["second"])
        for first, second, at in zip(deciding["first"], deciding["second"], deciding["decided_at"]):
            if not pd.isna(at):
                for label in (str(first), str(second)):
                    seen = out.decided_at.setdefault(str(scenario), {})
                    seen[label] = max(seen.get(label, 0), int(at))
        still = deciding[deciding.outcome == "undecided"]
        if len(still):
            out.pairs[str(scenario)] = [(str(a), str(b)) for a, b in zip(still["first"], still["second"])]
    return out
