"""The verdict's lines on searches and tuning: what a weight-sharing search's outcome says against naive's (the
ground truth it recovered, the cut in forgetting), and the strengths tuned on the edge of their searched range."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from forgetbench.benchmark.core import decide as D
from forgetbench.benchmark.core import stats
from forgetbench.benchmark.core.units import display_scale
from forgetbench.reports import decisions as DC
from forgetbench.reports.decisions import fmt_p
from forgetbench.reports import summary as S
from forgetbench.reports.summary import METRICS


SEARCH_OUTCOMES = (
    "regret",
    "search_tau",
    "derived_test_ppl",
    "retrained_test_ppl",
    "derived_test_accuracy",
    "retrained_test_accuracy",
)


def search_outcome(long: pd.DataFrame, naive: str | None, options: DC.DecisionOptions | None = None) -> list[str]:
    """For a search: what each strategy changed in what the search ships, against ``naive`` on the same seeds
    (regret, Kendall tau, the derived architecture's test perplexity on the shared weights and retrained), each as
    a paired difference with its p-value, one family per metric (the scenario's strategies against naive, as the
    paired table's: :func:`forgetbench.reports.summary.comparisons_table`); nothing when the scenario is not a
    search."""
    options = options or DC.DecisionOptions()
    present = [m for m in SEARCH_OUTCOMES if m in set(long.metric)]
    if naive is None or not present:
        return []
    strategies = [s for s in dict.fromkeys(long.strategy) if s != naive]
    table = S.comparisons_table(long[long.metric.isin(present)], options.method, options.alpha, options.planned)
    found = {(str(r.strategy), str(r.metric)): r for r in table.itertuples()}
    lines = []
    for strategy in strategies:
        parts = []
        for metric in present:
            got = found.get((strategy, metric))
            if got is None:
                continue
            info = METRICS[metric]
            shift = got.diff
            diff = f"{display_scale(info.unit) * shift:+.1f} points" if info.unit == "accuracy" else f"{shift:+.2f}"
            parts.append(f"{info.label.lower()} {diff} (p = {fmt_p(got.p_adjusted)}, {got.n_pairs} seeds)")
        if parts:
            lines.append(
                f"What the search ships, {strategy} vs {naive} on the same seeds"
                + (
                    f" (p adjusted over the {len(strategies)} strategies against {naive})"
                    if len(strategies) > 1
                    else ""
                )
                + ": "
                + "; ".join(parts)
                + "."
            )
    return lines


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _cut_said(long: pd.DataFrame, strategy: str, naive: str | None) -> str:
    """``forgetting cut vs naive 1% [-10%, 13%] on 20 seeds``: the mean per-seed cut with its 95% t interval
    (descriptive; none from fewer than 3 seeds)."""
    v = long[(long.strategy == strategy) & (long.metric == "forgetting_reduction")].value.astype(float)
    v = v[np.isfinite(v)]
    if not len(v):
        return f"no seed where {naive} forgot to measure its cut against"
    found = stats.summarize(v.to_numpy())
    interval = f" [{found.ci_low:.0f}%, {found.ci_high:.0f}%]" if found.n >= D.MIN_PAIRED else ""
    return f"forgetting cut vs {naive} {found.mean:.0f}%{interval} on {found.n} seed{'s' if found.n != 1 else ''}"


def _cut(long: pd.DataFrame, strategy: str) -> float:
    v = long[(long.strategy == strategy) & (long.metric == "forgetting_reduction")].value.astype(float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else float("nan")


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
