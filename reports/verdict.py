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

import math
from collections.abc import Set as AbstractSet
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import special as _special  # Student's t from its special functions: scipy.stats' import is 0.6 s

from forgetbench.benchmark.core import stats
from forgetbench.benchmark.core.record import RunRecord, as_records
from forgetbench.benchmark.core.units import display_scale
from forgetbench.reports import frontier as FT
from forgetbench.reports import summary as S
from forgetbench.reports.summary import METRICS

HEADLINE_METRICS = (
    "forgetting",
    "forgetting_value_mean",
    "lm_forgetting_mean",
    "err_gap_mean",
    "curve_max_drop",
)  # the first one a scenario measures (a square matrix: forgetting; a search with rounds: its forgetting value)
SIGNIFICANCE = 0.05
PLASTICITY_TRADE = 0.05  # LA (0-1) below naive's beyond which a strategy trades plasticity for its low forgetting
MIN_SEEDS = 3
POWER = 0.8
MAX_SEEDS_ESTIMATE = 10_000
COUNTED_SEEDS = 64  # seeds_needed tries every n up to this one, then bisects


def seeds_needed(
    differences: ArrayLike, alpha: float = SIGNIFICANCE, power: float = POWER, limit: int = MAX_SEEDS_ESTIMATE
) -> int | None:
    """Smallest number of paired seeds n at which a two-sided paired t-test at level ``alpha`` detects
    the observed mean difference with probability ``power``, taking the observed mean and standard
    deviation of the differences as the truth (noncentral t, df = n - 1, noncentrality
    mean / sd * sqrt(n)). None when it cannot be estimated (fewer than 2 differences, or none that
    differ) or when it exceeds ``limit``; 2 when every difference is the same non-zero shift.
    """
    d = np.asarray(differences, dtype=float)
    d = d[np.isfinite(d)]
    if d.size < 2 or not np.any(d):
        return None
    sd = float(d.std(ddof=1))
    if sd == 0:
        return 2
    effect = abs(float(d.mean())) / sd

    def achieved(n: int) -> float:
        crit = _special.stdtrit(n - 1, 1 - alpha / 2)
        nc = effect * math.sqrt(n)
        # P(T' > crit) + P(T' < -crit), T' noncentral t (scipy.stats.nct's cdf is this function)
        return float(1 - _special.nctdtr(n - 1, nc, crit) + _special.nctdtr(n - 1, nc, -crit))

    # counted up one n at a time while n is small: scipy's noncentral t turns to NaN for large noncentralities (a
    # large effect, a small answer: 3 seeds where a bisection stepping over NaN at 2 and 4 said 5); beyond, power
    # grows with n and stays finite: double until it is reached, then bisect
    for n in range(2, min(COUNTED_SEEDS, limit) + 1):
        if achieved(n) >= power:
            return n
    low, high = COUNTED_SEEDS + 1, min(2 * COUNTED_SEEDS, limit)
    if low > limit:
        return None
    while not achieved(high) >= power:
        if high >= limit:
            return None
        low, high = high + 1, min(2 * high, limit)
    while low < high:
        mid = (low + high) // 2
        if achieved(mid) >= power:
            high = mid
        else:
            low = mid + 1
    return low


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


def _needed_text(differences: np.ndarray) -> str:
    n = seeds_needed(differences)
    if n is None:
        return "no number of seeds within reach would tell them apart at this effect size"
    return f"about {n} seeds would tell them apart (80% power at p < 0.05)"


def plasticity_traders(long: pd.DataFrame, naive: str | None) -> dict[str, tuple[float, float]]:
    """Strategies whose mean LA is more than :data:`PLASTICITY_TRADE` below ``naive``'s on the same rows (one
    scenario of :func:`forgetbench.reports.summary.runs_long`): label -> (its LA, naive's LA). Empty where naive or
    LA is missing (a search)."""
    rows = long[long.metric == "LA"] if len(long) else long
    if naive is None or not len(rows):
        return {}
    la = rows.assign(value=pd.to_numeric(rows.value, errors="coerce")).groupby("strategy", sort=False).value.mean()
    if naive not in la or not np.isfinite(la[naive]):
        return {}
    return {
        str(s): (float(v), float(la[naive]))
        for s, v in la.items()
        if s != naive and np.isfinite(v) and v < la[naive] - PLASTICITY_TRADE
    }


def _la_means(long: pd.DataFrame) -> dict[str, float]:
    rows = long[long.metric == "LA"] if len(long) else long
    if not len(rows):
        return {}
    la = rows.assign(value=pd.to_numeric(rows.value, errors="coerce")).groupby("strategy", sort=False).value.mean()
    return {str(s): float(v) for s, v in la.items() if np.isfinite(v)}


def scenario_verdict(long: pd.DataFrame, naive: str | None, references: AbstractSet[str] = frozenset()) -> list[str]:
    """Sentences for one scenario, the first being the headline. ``long`` is :func:`forgetbench.reports.summary.runs_long`
    restricted to the scenario; ``naive`` the baseline's label; ``references`` (joint, standalone) are
    upper bounds, never contenders. A strategy that trades plasticity (:func:`plasticity_traders`) is named apart
    and never called the one that forgets least."""
    long = long[~long.strategy.isin(references)]
    metric = headline_metric(long)
    if metric is None:
        return []
    info = METRICS[metric]
    unit = "points" if info.unit == "accuracy" else info.unit
    las = _la_means(long) if metric == "forgetting" else {}
    traders = plasticity_traders(long, naive) if metric == "forgetting" else {}

    def amount(value: float) -> str:
        return _points(value) if info.unit == "accuracy" else f"{value:.3f}"

    def with_la(strategy: str, value: float) -> str:  # with LAs, each figure carries its unit
        if not las:
            return amount(value)
        la = las.get(strategy)
        return f"{amount(value)} {unit}" + (f" at LA {_points(la)}" if la is not None else "")

    by_strategy: dict[str, Mapping[int, float]] = {
        s: dict(zip(g.seed, g.value.astype(float)))
        for s, g in long[long.metric == metric].groupby("strategy", sort=False)
    }
    by_strategy = {s: v for s, v in by_strategy.items() if any(np.isfinite(list(v.values())))}
    if not by_strategy:
        return []
    all_means = pd.Series({s: float(np.nanmean(list(v.values()))) for s, v in by_strategy.items()}).sort_values()
    trading_line = (
        f"Trades plasticity (LA more than {100 * PLASTICITY_TRADE:.0f} points below {naive}'s {_points(next(iter(traders.values()))[1])}), "
        "so its low forgetting is not a win: "
        + _and(
            [
                f"{s} (LA {_points(la)}, {info.label.lower()} {amount(all_means[s])})"
                for s, (la, _) in traders.items()
                if s in all_means
            ]
        )
        + "."
        if any(s in all_means for s in traders)
        else None
    )
    by_strategy = {s: v for s, v in by_strategy.items() if s not in traders}
    means = all_means[[s for s in all_means.index if s in by_strategy]]
    lines = _forgetting_verdict(by_strategy, means, naive, info, "" if las else unit, amount, with_la, long)
    return lines + ([trading_line] if trading_line else [])


def _forgetting_verdict(
    by_strategy: dict[str, Mapping[int, float]],
    means: pd.Series,
    naive: str | None,
    info: Any,
    unit: str,
    amount: Any,
    with_la: Any,
    long: pd.DataFrame,
) -> list[str]:
    label = info.label.lower()
    sp = f" {unit}" if unit else ""  # "" where each figure carries its unit
    if means.empty:
        return []
    best = str(means.index[0])
    n_seeds = max(sum(np.isfinite(list(v.values()))) for v in by_strategy.values())
    if n_seeds < MIN_SEEDS:
        return [
            f"Too few seeds to name a winner: {n_seeds} seed(s), and with fewer than {MIN_SEEDS} the "
            f"confidence intervals are not informative. Lowest {label} so far: {best} "
            f"({with_la(best, means[best])}{sp}). Rerun with --seeds {MIN_SEEDS} or more."
        ]

    def paired(a: str, b: str) -> tuple[stats.Paired, np.ndarray]:
        x, y = by_strategy[a], by_strategy[b]
        shared = sorted(s for s in x.keys() & y.keys() if np.isfinite(x[s]) and np.isfinite(y[s]))
        return stats.paired_difference(x, y), np.array([x[s] - y[s] for s in shared])

    def significant(p: stats.Paired) -> bool:
        return p.n >= MIN_SEEDS and np.isfinite(p.p_value) and p.p_value < SIGNIFICANCE

    lines = []
    beats_naive = []  # strategies with significantly lower forgetting than naive
    if naive in by_strategy:
        for s in means.index:
            if s != naive:
                p, _ = paired(s, naive)
                if significant(p) and p.diff < 0:
                    beats_naive.append((s, p))
    base = f"{naive} {with_la(naive, means[naive])}" if naive in means else ""
    if naive in by_strategy and not beats_naive:
        other = next((s for s in means.index if s != naive), None)
        if other is None:
            return [f"Only {naive} ran: nothing to compare ({label} {with_la(naive, means[naive])}{sp})."]
        p, d = paired(other, naive)
        few = f", too few to test (at least {MIN_SEEDS} needed)" if p.n < MIN_SEEDS else ""
        return [
            f"No strategy forgets significantly less than {naive} on this suite ({label}: lowest {other} "
            f"{with_la(other, means[other])} vs {base}{sp}, paired p = {fmt_p(p.p_value)} ({other} vs {naive}) on "
            f"{p.n} seeds both completed{few}); {_needed_text(d)}."
        ]
    contenders = [s for s in means.index if s != naive]
    runner_up = next((s for s in contenders if s != best), None)
    versus_next, d_next = paired(best, runner_up) if runner_up else (None, np.array([]))
    if best != naive and (
        runner_up is None or (versus_next is not None and significant(versus_next) and versus_next.diff < 0)
    ):
        text = f"Forgets least: {best} ({label} {with_la(best, means[best])}{sp}"
        if base:
            versus_naive = dict(beats_naive).get(best)
            text += f" vs {base}"
            cut = _cut(long, best)
            if np.isfinite(cut):
                text += f", a {cut:.0f}% cut"
            if versus_naive is not None:
                text += f", paired p = {fmt_p(versus_naive.p_value)} ({best} vs {naive})"
        if runner_up and versus_next is not None:
            text += (
                f"; next best {runner_up} {with_la(runner_up, means[runner_up])}, paired p = "
                f"{fmt_p(versus_next.p_value)} ({best} vs {runner_up})"
            )
        lines.append(text + ").")
    else:
        tied = [s for s in contenders if s != best and not significant(paired(best, s)[0])]
        parts = []
        if beats_naive:
            parts.append(
                f"Significantly less {label} than {base}{sp} (paired p < 0.05): "
                f"{_and([f'{s} {with_la(s, means[s])}' for s, _ in beats_naive])}"
            )
        if tied:
            p_tie, d_tie = paired(best, tied[0])
            parts.append(
                f"{'lowest' if parts else 'Lowest'} {label} {best}, indistinguishable on this suite from {', '.join(tied)} (paired p = "
                f"{fmt_p(p_tie.p_value)}, {best} vs {tied[0]}); {_needed_text(d_tie)}"
            )
        if parts:
            lines.append("; ".join(parts) + ".")
        if not lines:  # no naive run in this scenario
            lines.append(f"Lowest {label}: {best} ({with_la(best, means[best])}{sp}).")
    return lines


SEARCH_OUTCOMES = (
    "regret",
    "search_tau",
    "derived_test_ppl",
    "retrained_test_ppl",
    "derived_test_accuracy",
    "retrained_test_accuracy",
)


def search_outcome(long: pd.DataFrame, naive: str | None) -> list[str]:
    """For a search: what each strategy changed in what the search ships, against ``naive`` on the same seeds
    (regret, Kendall tau, the derived architecture's test perplexity on the shared weights and retrained),
    each as a paired difference with its p-value; nothing when the scenario is not a search."""
    present = [m for m in SEARCH_OUTCOMES if m in set(long.metric)]
    if naive is None or not present:
        return []
    lines = []
    for strategy in [s for s in dict.fromkeys(long.strategy) if s != naive]:
        parts = []
        for metric in present:
            rows = long[long.metric == metric]
            mine = dict(zip(rows[rows.strategy == strategy].seed, rows[rows.strategy == strategy].value.astype(float)))
            base = dict(zip(rows[rows.strategy == naive].seed, rows[rows.strategy == naive].value.astype(float)))
            p = stats.paired_difference(mine, base)
            if p.n == 0 or not np.isfinite(p.diff):
                continue
            info = METRICS[metric]
            diff = f"{display_scale(info.unit) * p.diff:+.1f} points" if info.unit == "accuracy" else f"{p.diff:+.2f}"
            parts.append(f"{info.label.lower()} {diff} (p = {fmt_p(p.p_value)})")
        if parts:
            lines.append(f"What the search ships, {strategy} vs {naive} on the same seeds: " + "; ".join(parts) + ".")
    return lines


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _cut(long: pd.DataFrame, strategy: str) -> float:
    v = long[(long.strategy == strategy) & (long.metric == "forgetting_reduction")].value.astype(float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else float("nan")


def fmt_p(p: float) -> str:
    """A p-value as the report and the terminal show it."""
    if p is None or not np.isfinite(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def roles(records: Sequence[RunRecord], scenario: str) -> tuple[str | None, set[str]]:
    """The scenario's baseline label (its naive run) and its reference labels (joint, standalone)."""
    mine = [r for r in records if S._scenario(r) == scenario]
    naive = next((S._strategy(r) for r in mine if S._strategy_name(r) == S.NAIVE), None)
    return naive, {S._strategy(r) for r in mine if S._strategy_name(r) in S.REFERENCE_STRATEGIES}


def matched_headline(points: pd.DataFrame, scenario: str) -> list[str]:
    """The matched-plasticity verdict of ``scenario``'s points (:func:`forgetbench.reports.frontier.frontier_frame`
    of the suite's own runs), headed as the headline; empty where no method ran at two or more strengths beside
    naive."""
    if not len(points) or not FT.has_frontier(points, scenario):
        return []
    if points[points.scenario == scenario].seed.nunique() < 2:  # fronts are compared over seeds: say so below
        return []
    matched = FT.matched_plasticity(points, scenario)
    lines = FT.matched_verdicts(matched, FT.matched_pairs(matched), FT.scenario_axes(points, scenario))
    if not lines:
        return []
    # the headline: the first plasticity level that two or more methods' fronts reach (they are compared there)
    reached = [int((group.n >= 2).sum()) for _, group in matched.groupby("drop", sort=False)]
    first = next((i for i, n in enumerate(reached) if n >= 2), 0)
    seeds = points[points.scenario == scenario].seed.nunique()
    head = f"At matched plasticity (the suite's runs, {seeds} seed(s), each method's front over its strengths): "
    return [head + lines[first], *(line for i, line in enumerate(lines) if i != first)]


EDGE_PREFIX = "Tuned on the edge of its searched range"


def edge_lines(studies: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Scenario label -> a sentence per tuned strategy whose chosen point sits on an edge of its searched range
    (``tuning.json``'s ``chosen_on_edge``): the best strength may lie beyond it, so its place in the verdict is
    provisional."""
    out: dict[str, list[str]] = {}
    for study in studies:
        edges = study.get("chosen_on_edge") or {}
        if not edges or not study.get("chosen"):
            continue
        parts = []
        for name, side in edges.items():
            low, high = (study.get("search_range") or {}).get(name, [None, None])
            span = f" of {low:g} to {high:g}" if low is not None and high is not None else ""
            parts.append(f"{name} {study['chosen'][name]:g} at the {side} end{span}")
        out.setdefault(str(study.get("scenario")), []).append(
            f"{EDGE_PREFIX} (the best strength may lie beyond it): {study.get('strategy')}, " + "; ".join(parts) + "."
        )
    return out


def verdicts(
    records: Iterable[RunRecord | Mapping[str, Any]],
    long: pd.DataFrame | None = None,
    computed: Mapping[str, Mapping[str, float]] | None = None,
    tuning: Iterable[Mapping[str, Any]] = (),
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
        lines = (
            (scenario_verdict(mine, naive, references) + search_outcome(mine[~mine.strategy.isin(references)], naive))
            if len(long)
            else []
        )
        headline = matched_headline(points, scenario)
        if headline:
            lines = headline + [f"At each strength alone: {lines[0]}", *lines[1:]] if lines else headline
        out[scenario] = lines + edges.get(scenario, [])
    return out
