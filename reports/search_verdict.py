"""The verdict's lines on searches and tuning: what a weight-sharing search's outcome says against naive's (the
ground truth it recovered, the cut in forgetting), and the strengths tuned on the edge of their searched range."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from forgetbench.benchmark.core import metrics as run_metrics
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


def _paired_forgetting(long: pd.DataFrame, strategy: str, naive: str | None) -> tuple[np.ndarray, np.ndarray]:
    """The strategy's and naive's forgetting on the seeds both ran."""
    rows = long[long.metric == "forgetting"]
    mine, base = (dict(zip(rows[rows.strategy == s].seed, rows[rows.strategy == s].value)) for s in (strategy, naive))
    seeds = sorted(set(mine) & set(base), key=str)
    return np.array([mine[s] for s in seeds], dtype=float), np.array([base[s] for s in seeds], dtype=float)


def _cut_said(long: pd.DataFrame, strategy: str, naive: str | None) -> str:
    """``forgetting cut vs naive 12% on 20 paired seeds``: the ratio of the paired means
    (:func:`~forgetbench.benchmark.core.metrics.forgetting_cut`), or why there is none."""
    mine, base = _paired_forgetting(long, strategy, naive)
    value = run_metrics.forgetting_cut(mine, base)
    if not np.isfinite(value):
        return f"no forgetting cut: {naive} does not measurably forget on the {len(base)} paired seed(s)"
    return f"forgetting cut vs {naive} {value:.0f}% on {len(base)} paired seeds"


def _cut(long: pd.DataFrame, strategy: str, naive: str | None) -> float:
    """The strategy's forgetting cut against naive (NaN where naive does not measurably forget)."""
    return run_metrics.forgetting_cut(*_paired_forgetting(long, strategy, naive))


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
