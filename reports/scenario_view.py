"""One scenario's section of the report, as data: who ran, its tables, the paired comparisons with naive, the
verdict and its cost, the problems; its figures are submitted by :mod:`forgetbench.reports.figure_views`."""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from concurrent.futures import Executor
from typing import Any, Mapping

import numpy as np
import pandas as pd

from forgetbench.reports.figure_views import add_adapters, add_attribution, add_figures
from forgetbench.reports.views import KEY_COMPARISONS, TABLE_SECTIONS, Cell, ScenarioView, derived_rows, fmt
from forgetbench.benchmark.core.record import RunRecord
from forgetbench.benchmark.core.metric_registry import METRICS, Metric
from forgetbench.reports import decisions as DC
from forgetbench.reports import frames, summary
from forgetbench.reports.drawing import InProcess, drawn
from forgetbench.reports.summary import (
    flagged_runs,
    has_results,
)
from forgetbench.reports.frontier import has_frontier
from forgetbench.reports.verdict import (
    MIN_SEEDS,
    decided_lowest,
    headline_metric,
    matched_headline,
    plasticity_traders,
    roles,
    scenario_verdict,
    search_outcome,
)
from forgetbench.reports.verdict import fmt_p


def _cells(
    table: pd.DataFrame,
    order: list[str],
    metrics: list[Metric],
    references: AbstractSet[str] = frozenset(),
    best: Mapping[str, AbstractSet[str]] | None = None,
) -> list[dict[str, Any]]:
    """Rows of the summary for ``metrics``; ``best`` (metric -> labels) marked: only a winner the verdict's decisions
    name (decided lower than every other strategy), never a mean that merely came out lowest."""
    best = best or {}
    rows = []
    for strategy in order:
        sub = table[table.strategy == strategy].set_index("metric")
        if sub.empty:
            continue
        cells, n = {}, 0
        for m in metrics:
            if m.key not in sub.index:
                cells[m.key] = Cell("–")
                continue
            r = sub.loc[m.key]
            ci = f"[{fmt(r.ci_low, m.unit)}, {fmt(r.ci_high, m.unit)}]" if np.isfinite(r.ci_low) else ""
            cells[m.key] = Cell(fmt(r["mean"], m.unit), ci, strategy in best.get(m.key, ()), int(r.n_seeds))
            n = max(n, int(r.n_seeds))
        rows.append({"strategy": strategy, "n": n, "cells": cells, "reference": strategy in references})
    return rows


def _verdict(
    table: pd.DataFrame,
    long: pd.DataFrame,
    naive: str | None,
    references: AbstractSet[str],
    options: DC.DecisionOptions | None = None,
    decide: bool = True,
    inert: AbstractSet[str] = frozenset(),
) -> list[str]:
    """The verdict (:func:`forgetbench.reports.verdict.scenario_verdict`), then what the least-forgetting strategy costs."""

    def mean(strategy: str | None, metric: str) -> float:
        v = table[(table.strategy == strategy) & (table.metric == metric)]["mean"]
        return float(v.iloc[0]) if len(v) else float("nan")

    lines = scenario_verdict(long, naive, references, options, decide, inert)
    shipped = search_outcome(long[~long.strategy.isin(references)], naive, options)
    metric = headline_metric(table, "mean")
    traders = set(plasticity_traders(long, naive))  # never "the winner" whose cost is shown
    contenders = table[
        (table.metric == metric) & ~table.strategy.isin(references) & ~table.strategy.isin(traders)
    ].set_index("strategy")["mean"]
    contenders = contenders.astype(float).dropna()
    if not lines or contenders.empty:
        return lines + shipped
    _, decided = decided_lowest(long, naive, references, options)
    winner = decided if decided is not None and decided in contenders.index else str(contenders.idxmin())
    named = f"{winner}" if decided == winner else f"{winner} (lowest on average, not decided lower than every other)"
    cost = []
    t_w, t_n = mean(winner, "train_seconds"), mean(naive, "train_seconds")
    if np.isfinite(t_w):
        cost.append(
            f"train time {fmt(t_w, 'seconds')}"
            + (f" ({t_w / t_n:.1f}x {naive})" if np.isfinite(t_n) and t_n > 0 and winner != naive else "")
        )
    mem = mean(winner, "regularizer_bytes")
    if np.isfinite(mem):
        cost.append(f"regularizer memory {fmt(mem, 'bytes')}")
    acc_w = mean(winner, "ACC")
    if np.isfinite(acc_w):
        cost.append(f"final ACC {fmt(acc_w, 'accuracy')}%")
    if cost:
        lines.append(f"Cost of {named}: " + ", ".join(cost) + ".")
    acc = table[(table.metric == "ACC") & ~table.strategy.isin(references)].set_index("strategy")["mean"]
    acc = acc.astype(float).dropna()
    if len(acc) > 1:
        top = str(acc.idxmax())
        lines.append(
            f"Highest final accuracy (ACC): {top} ({fmt(acc[top], 'accuracy')}%)"
            + ("; the same strategy." if top == winner else ".")
        )
    return lines + shipped


def scenario_view(
    name: str,
    records: list[RunRecord],
    order: list[str],
    table: pd.DataFrame,
    comps: pd.DataFrame,
    problems: pd.DataFrame,
    long: pd.DataFrame,
    lean: AbstractSet[str] = frozenset(),
    points: pd.DataFrame | None = None,
    edges: Mapping[str, list[str]] | None = None,
    easel: Executor | None = None,
    options: DC.DecisionOptions | None = None,
    emphasised: AbstractSet[str] = frozenset(),
    methods: list[str] | None = None,
    missing: int = 0,
) -> ScenarioView:
    """One scenario's section of the report, in the order it reads: who ran, the tables, the comparisons with
    naive, the verdict, the problems, the figures, attribution, adapters. The figures are submitted to ``easel``
    (drawn here when none is given) and read by :func:`finish_figures`. ``missing``: its planned runs with no
    record (not ok, in the runs' count)."""
    from forgetbench.reports import figures as F  # matplotlib imports only when drawing

    easel = easel or InProcess()

    mine = [r for r in records if r.scenario.label == name]
    naive, refs = roles(records, name)
    view = _header(name, mine, naive, lean, missing)
    t = table[table.scenario == name]
    metric, winner = decided_lowest(long[long.scenario == name], naive, refs, options)
    matched = points is not None and len(points) and has_frontier(points, name)  # decided at matched plasticity
    best = {metric: {winner}} if metric and winner and not matched else {}
    _add_tables(view, records, name, t, order, refs, naive, best)
    _add_comparisons(view, comps[comps.scenario == name], order)
    view.inert = frames.inert_penalties(records, name)
    inert = set(frames.inert_penalties(records, name, by_label=True))  # each strength on its own: one may act
    _add_verdict(view, name, t, long[long.scenario == name], naive, refs, points, edges, options, inert)
    view.problems = problems[problems.scenario == name].to_dict("records")
    flagged = flagged_runs(records)
    view.flagged = flagged[flagged.scenario == name].to_dict("records")
    colours = F.palette(order, naive, emphasised, methods)
    figs = add_figures(view, records, name, t, order, colours, easel)
    add_attribution(view, figs, records, name, order, colours, easel)
    add_adapters(view, records, name, order)
    view.figures = figs  # the drawings, read by finish_figures
    return view


def finish_figures(view: ScenarioView) -> ScenarioView:
    """The scenario's figures once drawn: data URIs, without those that had nothing to draw."""
    view.headline = drawn(view.headline)
    view.figures = {key: uri for key, figure in view.figures.items() if (uri := drawn(figure))}
    return view


def _header(
    name: str, mine: list[RunRecord], naive: str | None, lean: AbstractSet[str], missing: int = 0
) -> ScenarioView:
    ok = [r for r in mine if has_results(r)]
    view = ScenarioView(
        name=name,
        anchor="s-" + "".join(c if c.isalnum() else "-" for c in name),
        runs_ok=len(ok),
        runs_total=len(mine) + missing,
        runs_missing=missing,
        seeds=sorted({r.seed for r in mine}, key=str),
        naive=naive,
        scenario_type=next((r.scenario_type for r in mine if r.scenario_type), None),
    )
    drawn = [r for r in ok if r.run_id not in lean]
    if len(drawn) < len(ok):
        view.figure_sample = (
            f"Forgetting curves and attribution are drawn from the first {summary.FIGURE_RUNS} runs of each strategy "
            f"(in seed order): {len(drawn):,} of the {len(ok):,} runs. Every table and every other figure counts all of them."
        )
    return view


def _add_tables(
    view: ScenarioView,
    records: list[RunRecord],
    name: str,
    t: pd.DataFrame,
    order: list[str],
    refs: AbstractSet[str],
    naive: str | None,
    best: Mapping[str, AbstractSet[str]] | None = None,
) -> None:
    """The metric tables (main, cost with the ratio to naive's train time, supernet, search) and the search's
    derived architectures and most forgotten ones."""
    present = [METRICS[k] for k in METRICS if k in set(t.metric)]
    view.columns = [m for m in present if m.section in TABLE_SECTIONS]
    view.rows = _cells(t, order, view.columns, refs, best)
    view.cost_columns = [m for m in present if m.section == "cost"]
    view.cost_rows = _cells(t, order, view.cost_columns, refs)
    if naive:
        t_naive = t[(t.strategy == naive) & (t.metric == "train_seconds")]["mean"]
        for row in view.cost_rows:
            t_row = t[(t.strategy == row["strategy"]) & (t.metric == "train_seconds")]["mean"]
            ratio = (
                float(t_row.iloc[0]) / float(t_naive.iloc[0])
                if len(t_row) and len(t_naive) and float(t_naive.iloc[0]) > 0
                else float("nan")
            )
            row["vs_naive"] = f"{ratio:.2f}x" if np.isfinite(ratio) else "–"
    view.supernet_columns = [m for m in present if m.section == "supernet"]
    view.supernet_rows = _cells(t, order, view.supernet_columns, refs) if view.supernet_columns else []
    view.search_columns = [m for m in present if m.section == "search"]
    view.search_rows = _cells(t, order, view.search_columns, refs) if view.search_columns else []
    view.derived_rows = derived_rows(frames.derived_frame(records, name))
    unit_scale = (frames.sampled_search_unit(records, name) or ("", 100.0))[1]
    view.forgotten_rows = [
        {
            "strategy": r.strategy,
            "architecture": r.architecture,
            "turns": int(r.turns),
            "gap": f"{unit_scale * r.gap:+.2f}",
        }
        for r in frames.most_forgotten(frames.named_gap_frame(records, name)).itertuples()
    ]


def _add_comparisons(view: ScenarioView, c: pd.DataFrame, order: list[str]) -> None:
    """Each strategy against naive on the key metrics: difference, interval, p, pairs."""
    view.comparison_columns = [METRICS[k] for k in KEY_COMPARISONS if k in set(c.metric)]
    for strategy in order:
        sub = c[c.strategy == strategy].set_index("metric")
        if sub.empty:
            continue
        cells = {}
        for m in view.comparison_columns:
            if m.key in sub.index:
                r = sub.loc[m.key]
                ends = [
                    ("−∞" if v < 0 else "∞") if np.isinf(v) else fmt(v, m.unit, True) for v in (r.ci_low, r.ci_high)
                ]
                ci = "" if np.isnan(r.ci_low) else ("unbounded" if ends == ["−∞", "∞"] else f"[{ends[0]}, {ends[1]}]")
                decided = r.outcome in ("less", "greater")  # its interval, at the level it was tested at, excludes 0
                better = (r.outcome == "greater") == (m.better == "higher")
                cells[m.key] = {
                    "diff": fmt(r["diff"], m.unit, True),
                    "ci": ci,
                    "p": fmt_p(r.p_adjusted),  # the family's: the scenario's strategies against naive on this metric
                    "n": int(r.n_pairs),
                    "good": bool(decided and better),
                    "bad": bool(decided and not better),
                }
        view.comparison_rows.append({"strategy": strategy, "cells": cells})


def _add_verdict(
    view: ScenarioView,
    name: str,
    t: pd.DataFrame,
    long: pd.DataFrame,
    naive: str | None,
    refs: AbstractSet[str],
    points: pd.DataFrame | None,
    edges: Mapping[str, list[str]] | None,
    options: DC.DecisionOptions | None = None,
    inert: AbstractSet[str] = frozenset(),
) -> None:
    """The verdict: matched plasticity first where methods ran at several strengths, then each strength's."""
    headline = matched_headline(points, name, options) if points is not None else []
    view.verdict = _verdict(t, long, naive, refs, options, decide=not headline, inert=inert)
    view.verdict += (edges or {}).get(name, [])
    if headline:  # several strengths per method: the matched-plasticity verdict heads, per-strength lines follow
        view.verdict = headline + (
            [f"At each strength alone: {view.verdict[0]}", *view.verdict[1:]] if view.verdict else []
        )
    view.few_seeds = 0 < max((row["n"] for row in view.rows), default=0) < MIN_SEEDS
