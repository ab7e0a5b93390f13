"""The self-contained HTML report: Jinja2 (autoescaped) + embedded PNG figures.

``write_report(folders)`` reads result folders, computes the tables of :mod:`forgetbench.reports.summary`,
draws the figures of :mod:`forgetbench.reports.figures` and writes ``report.html`` plus ``summary.csv`` (and
``comparisons.csv``, the paired differences against naive) next to it, each atomically.
"""

from __future__ import annotations

import base64
import contextlib
import os
import platform
import signal
import threading
import time
from collections.abc import Set as AbstractSet
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape

from forgetbench.benchmark.core.record import RunRecord
from forgetbench.benchmark.core.metric_registry import METRICS, Metric, registered_metrics
from forgetbench.benchmark.core.store import (
    atomic_write_bytes,
    DiskFull,
    atomic_write_set,
    file_in_the_way,
    is_disk_full,
    no_room,
    registered_metric_modules,
    rerun_command,
)
from forgetbench.benchmark.core.grid import combination_label
from forgetbench.reports import decisions as DC
from forgetbench.reports import frames, summary
from forgetbench.reports.drawing import InProcess, drawn, easel
from forgetbench.reports.attribution import attribution_sentence, attribution_summary
from forgetbench.reports.summary import (
    NAIVE,
    comparisons_table,
    flagged_runs,
    has_results,
    load_records,
    problem_runs,
    runs_long,
    strategy_order,
    summary_table,
    tuning_studies,
)
from forgetbench.reports.verdict import (
    MIN_SEEDS,
    PLASTICITY_TRADE,
    decisions_frame,
    edge_lines,
    headline_metric,
    improvement_frame,
    matched_headline,
    plasticity_traders,
    roles,
    scenario_verdict,
    search_outcome,
)
from forgetbench.benchmark.core.units import format_bytes
from forgetbench.reports.verdict import fmt_p
from forgetbench.reports.reproduce import reproduction_rows

TEMPLATES = Path(__file__).parent / "templates"
REPORT_FILE = "report.html"
SUMMARY_FILE = "summary.csv"
COMPARISONS_FILE = "comparisons.csv"
DECISIONS_FILE = "decisions.csv"  # every pair of every verdict: outcome, adjusted p, simultaneous interval, seeds
FRONTIER_FILE = "frontier.csv"  # every (method, setting, seed) point of a strength sweep, on its front or not
TABLE_SECTIONS = ("stability", "curves")
KEY_COMPARISONS = ("ACC", "forgetting", "LA", "curve_max_drop", "err_gap_mean", "search_tau", "regret", "train_seconds")


class ReportError(ValueError):
    """Bad input to the report (missing folder, no results): the CLI exits 2."""


# --- formatting ------------------------------------------------------------------------------------


def fmt(value: float, unit: str, signed: bool = False) -> str:
    """Human text for a metric value in its unit (accuracies in points of %)."""
    if value is None or not np.isfinite(value):
        return "–"
    sign = "+" if signed else ""
    if unit == "accuracy":
        return f"{value * 100:{sign}.1f}"
    if unit == "percent":
        return f"{value:{sign}.0f}%"
    if unit == "seconds":
        return f"{value:{sign}.1f} s" if abs(value) < 100 else f"{value:{sign},.0f} s"
    if unit == "rate":
        return f"{value:{sign},.0f}"
    if unit == "bytes":
        return format_bytes(value, signed)
    if unit == "area":
        return f"{value:{sign},.1f}"
    if unit == "nats":
        return f"{value:{sign}.3f}"
    if unit == "ppl":
        return f"{value:{sign},.1f}"
    return f"{value:{sign}.2f}"


def seeds_text(seeds: Sequence[Any], shown: int = 12) -> str:
    """``seeds 0, 1, 2`` when few; else their count and range (``1,250 seeds (0–1249)``), or the first and last
    few when they are not a run of consecutive integers."""
    if len(seeds) <= shown:
        return "seeds " + ", ".join(map(str, seeds))
    numbers = sorted(s for s in seeds if isinstance(s, int))
    if len(numbers) == len(seeds) and numbers[-1] - numbers[0] == len(numbers) - 1:
        return f"{len(seeds):,} seeds ({numbers[0]}–{numbers[-1]})"
    head, tail = ", ".join(map(str, seeds[: shown - 3])), ", ".join(map(str, seeds[-2:]))
    return f"{len(seeds):,} seeds ({head}, …, {tail})"


# --- view model ------------------------------------------------------------------------------------


@dataclass
class Cell:
    text: str
    ci: str = ""
    best: bool = False
    n: int = 0


def _derived_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The derived architectures as table rows: accuracies in %, perplexities as they are, "–" where absent."""

    def text(value: Any, score: str) -> str:
        if value is None or not np.isfinite(float(value)):
            return "–"
        return f"{100 * float(value):.1f}%" if score == "accuracy" else f"{float(value):.1f}"

    return [
        {
            "strategy": row.strategy,
            "seed": row.seed,
            "architecture": row.architecture,
            "test": text(row.test, row.score),
            "retrained": text(row.retrained_test, row.score),
            "score": row.score,
        }
        for row in frame.itertuples()
    ]


@dataclass
class ScenarioView:
    name: str
    anchor: str
    runs_ok: int
    runs_total: int
    seeds: list[Any]
    scenario_type: str | None = None
    verdict: list[str] = field(default_factory=list)
    columns: list[Metric] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)  # {strategy, n, cells{metric: Cell}}
    comparison_columns: list[Metric] = field(default_factory=list)
    comparison_rows: list[dict[str, Any]] = field(default_factory=list)
    cost_columns: list[Metric] = field(default_factory=list)
    cost_rows: list[dict[str, Any]] = field(default_factory=list)
    supernet_columns: list[Metric] = field(default_factory=list)
    supernet_rows: list[dict[str, Any]] = field(default_factory=list)
    search_columns: list[Metric] = field(default_factory=list)
    search_rows: list[dict[str, Any]] = field(default_factory=list)
    derived_rows: list[dict[str, Any]] = field(default_factory=list)  # per run: the architecture its search derived
    forgotten_rows: list[dict[str, Any]] = field(default_factory=list)  # per strategy: its most forgotten architectures
    figures: dict[str, Any] = field(default_factory=dict)  # data URIs; futures while they draw (_finish_figures)
    problems: list[dict[str, Any]] = field(default_factory=list)
    flagged: list[dict[str, Any]] = field(default_factory=list)  # ok runs with tasks at chance
    naive: str | None = None
    few_seeds: bool = False  # fewer than 3 seeds: the intervals are not informative
    headline: str | Future[str | None] | None = None  # the scenario's headline figure (data URI)
    many_experiences: bool = False  # per-experience figures drawn as distributions (frames.MANY_EXPERIENCES)
    headline_caption: str = ""
    scores_caption: str = ""  # the supernet-vs-standalone scatter's, when it is not the headline
    attribution_sentence: str | None = None  # the quadratic premise on this network (training.attribution)
    attribution_rows: list[dict[str, Any]] = field(default_factory=list)
    adapter_rows: list[dict[str, Any]] = field(default_factory=list)  # per strategy and task (frames.adapter_summary)
    inert: dict[str, dict[str, int]] = field(default_factory=dict)  # strategy -> where its penalty was too small
    figure_sample: str | None = None  # when the curves and attribution are drawn from some of the runs: which

    @property
    def seeds_text(self) -> str:
        return seeds_text(self.seeds)


def _cells(
    table: pd.DataFrame, order: list[str], metrics: list[Metric], references: AbstractSet[str] = frozenset()
) -> list[dict[str, Any]]:
    """Rows of the summary for ``metrics``; the best mean per metric is marked (ties all marked).

    Reference runs (joint/standalone) are upper bounds, not contenders: never marked best.
    """
    best: dict[str, set[str]] = {}
    for m in metrics:
        col = table[table.metric == m.key].set_index("strategy")["mean"].astype(float).dropna()
        col = col[~col.index.isin(references)]
        if len(col) > 1:
            target = col.max() if m.better == "higher" else col.min()
            winners = set(col.index[np.isclose(col, target, rtol=0, atol=1e-12)])
            if len(winners) < len(col):  # a column where everyone ties has no best
                best[m.key] = winners
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
) -> list[str]:
    """The verdict (:func:`forgetbench.reports.verdict.scenario_verdict`), then what the least-forgetting strategy costs."""

    def mean(strategy: str | None, metric: str) -> float:
        v = table[(table.strategy == strategy) & (table.metric == metric)]["mean"]
        return float(v.iloc[0]) if len(v) else float("nan")

    lines = scenario_verdict(long, naive, references, options, decide)
    shipped = search_outcome(long[~long.strategy.isin(references)], naive)
    metric = headline_metric(table, "mean")
    traders = set(plasticity_traders(long, naive))  # never "the winner" whose cost is shown
    contenders = table[
        (table.metric == metric) & ~table.strategy.isin(references) & ~table.strategy.isin(traders)
    ].set_index("strategy")["mean"]
    contenders = contenders.astype(float).dropna()
    if not lines or contenders.empty:
        return lines + shipped
    winner = str(contenders.idxmin())
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
        lines.append(f"Cost of {winner}: " + ", ".join(cost) + ".")
    acc = table[(table.metric == "ACC") & ~table.strategy.isin(references)].set_index("strategy")["mean"]
    acc = acc.astype(float).dropna()
    if len(acc) > 1:
        top = str(acc.idxmax())
        lines.append(
            f"Highest final accuracy (ACC): {top} ({fmt(acc[top], 'accuracy')}%)"
            + ("; the same strategy." if top == winner else ".")
        )
    return lines + shipped


def _scenario_view(
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
) -> ScenarioView:
    """One scenario's section of the report, in the order it reads: who ran, the tables, the comparisons with
    naive, the verdict, the problems, the figures, attribution, adapters. The figures are submitted to ``easel``
    (drawn here when none is given) and read by :func:`_finish_figures`."""
    from forgetbench.reports import figures as F  # matplotlib imports only when drawing

    easel = easel or InProcess()

    mine = [r for r in records if r.scenario.label == name]
    naive, refs = roles(records, name)
    view = _header(name, mine, naive, lean)
    t = table[table.scenario == name]
    _add_tables(view, records, name, t, order, refs, naive)
    _add_comparisons(view, comps[comps.scenario == name], order)
    _add_verdict(view, name, t, long[long.scenario == name], naive, refs, points, edges, options)
    view.problems = problems[problems.scenario == name].to_dict("records")
    flagged = flagged_runs(records)
    view.flagged = flagged[flagged.scenario == name].to_dict("records")
    colours = F.palette(order, naive, emphasised, methods)
    figs = _add_figures(view, records, name, t, order, colours, easel)
    _add_attribution(view, figs, records, name, order, colours, easel)
    _add_adapters(view, records, name, order)
    view.inert = frames.inert_penalties(records, name)
    view.figures = figs  # the drawings, read by _finish_figures
    return view


def _finish_figures(view: ScenarioView) -> ScenarioView:
    """The scenario's figures once drawn: data URIs, without those that had nothing to draw."""
    view.headline = drawn(view.headline)
    view.figures = {key: uri for key, figure in view.figures.items() if (uri := drawn(figure))}
    return view


def _header(name: str, mine: list[RunRecord], naive: str | None, lean: AbstractSet[str]) -> ScenarioView:
    ok = [r for r in mine if has_results(r)]
    view = ScenarioView(
        name=name,
        anchor="s-" + "".join(c if c.isalnum() else "-" for c in name),
        runs_ok=len(ok),
        runs_total=len(mine),
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
) -> None:
    """The metric tables (main, cost with the ratio to naive's train time, supernet, search) and the search's
    derived architectures and most forgotten ones."""
    present = [METRICS[k] for k in METRICS if k in set(t.metric)]
    view.columns = [m for m in present if m.section in TABLE_SECTIONS]
    view.rows = _cells(t, order, view.columns, refs)
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
    view.derived_rows = _derived_rows(frames.derived_frame(records, name))
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
                ci = f"[{fmt(r.ci_low, m.unit, True)}, {fmt(r.ci_high, m.unit, True)}]" if np.isfinite(r.ci_low) else ""
                better = (r["diff"] > 0) == (m.better == "higher") and r["diff"] != 0
                cells[m.key] = {
                    "diff": fmt(r["diff"], m.unit, True),
                    "ci": ci,
                    "p": fmt_p(r.p_adjusted),  # Holm over the scenario's strategies against naive on this metric
                    "n": int(r.n_pairs),
                    "good": bool(better and r.p_adjusted < 0.05),
                    "bad": bool(not better and r["diff"] != 0 and r.p_adjusted < 0.05),
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
) -> None:
    """The verdict: matched plasticity first where methods ran at several strengths, then each strength's."""
    headline = matched_headline(points, name, options) if points is not None else []
    view.verdict = _verdict(t, long, naive, refs, options, decide=not headline)
    view.verdict += (edges or {}).get(name, [])
    if headline:  # several strengths per method: the matched-plasticity verdict heads, per-strength lines follow
        view.verdict = headline + (
            [f"At each strength alone: {view.verdict[0]}", *view.verdict[1:]] if view.verdict else []
        )
    view.few_seeds = 0 < max((row["n"] for row in view.rows), default=0) < MIN_SEEDS


def _add_figures(
    view: ScenarioView,
    records: list[RunRecord],
    name: str,
    t: pd.DataFrame,
    order: list[str],
    colours,
    easel: Executor,
) -> dict[str, Future[str | None]]:
    """The headline figure (the search's four panels, its scatter, err2 - err1, or the first model's curve) and
    the scenario's other figures, each submitted to ``easel`` (:mod:`forgetbench.reports.drawing`)."""
    from forgetbench.reports import figures as F

    curves, gaps = frames.curves_frame(records, name), frames.err_gap_frame(records, name)
    scores, epochs = frames.search_scores_frame(records, name), frames.search_epochs_frame(records, name)
    sampled = frames.sampled_search_unit(records, name)
    if not epochs.empty and sampled:
        unit, scale = sampled
        errors = ["fv_mean", "fv_top5", "fv_max", "fv_best5"]
        view.headline = easel.submit(
            F.search_four_panels, epochs.assign(**{c: epochs[c] * scale for c in errors}), colours, unit
        )
        view.headline_caption = (
            "Multi-model forgetting during the search (the WPL paper's Figure 3): per search "
            f"epoch, err2 − err1 in {unit} (error at the epoch's end minus right after the "
            "architecture's own turn) averaged over the architectures the epoch trained, the "
            "same over the 5 with lowest err1, the largest, and the controller's mean reward "
            "(c / perplexity for a language model, c × accuracy for images). Line = mean over "
            "seeds, band = min–max. Above 0 = forgetting."
        )
    scores_caption = (
        "What the search sees against the truth: every ground-truth architecture's accuracy on the supernet's "
        "shared weights at the end (x; the validation data, the test split for a fixed schedule) and its "
        "accuracy trained alone (y), all seeds (a seeded sample of 2,000 "
        "points per strategy where there are more); ringed = the architecture "
        "each search picked. A search that ranks well puts its points on a rising line "
        "and its rings at the top."
    )
    fixed = frames.fixed_schedule(records, name)  # rounds over a list: its headline is where the forgetting is
    if not view.headline and not fixed and not scores.empty:
        view.headline = easel.submit(F.search_scatter, scores, colours)
        view.headline_caption = scores_caption
    elif not view.headline and not gaps.empty:
        view.headline = easel.submit(F.err_gap_per_architecture, gaps, colours)
        view.headline_caption = (
            "err2 − err1 per architecture (training order): error at the end minus error "
            "right after the architecture's own turn, mean over rounds and seeds, whisker "
            "min–max over seeds. Above 0 = multi-model forgetting."
        )
    elif not view.headline and not curves.empty:
        view.headline = easel.submit(F.first_model_curve, curves, colours)
        view.headline_caption = (
            "Accuracy of the first model while the later model(s) train (the WPL paper's "
            "Figure 1): line = mean, band = min–max over seeds; dotted lines separate later "
            "experiences."
        )
    view.many_experiences = frames.many_experiences(records, name)
    matrices, final = frames.mean_matrices(records, name), frames.final_accuracy_frame(records, name)
    figs = {
        "scatter": easel.submit(F.stability_plasticity, t, colours),
        "curves": easel.submit(F.forgetting_curves, curves, colours),
        "heatmaps": (
            easel.submit(F.accuracy_matrix_quantiles, matrices, colours)
            if view.many_experiences
            else easel.submit(F.heatmaps, matrices, order)
        ),
        "final": (
            easel.submit(F.final_accuracy_distribution, final, colours)
            if view.many_experiences
            else easel.submit(F.final_accuracy_bars, final, colours)
        ),
        "err_gap": easel.submit(F.err_gap_distribution, gaps, colours),
    }
    if fixed and not scores.empty:
        figs["search_scores"] = easel.submit(F.search_scatter, scores, colours)
    view.scores_caption = scores_caption
    # a sampled-architecture search shows these in its four-panel headline; one round has no course over epochs
    if not sampled and not epochs.empty and epochs.epoch.nunique() > 1:
        figs["search_forgetting"] = easel.submit(
            F.search_over_epochs, epochs, colours, "fv_mean", "mean err2 - err1 (points; > 0 = forgetting)"
        )
        figs["search_reward"] = easel.submit(F.search_over_epochs, epochs, colours, "reward", "controller reward (%)")
    return figs


def _add_attribution(
    view: ScenarioView,
    figs: dict[str, Future[str | None]],
    records: list[RunRecord],
    name: str,
    order: list[str],
    colours,
    easel: Executor,
) -> None:
    """Attribution's sentence, table and figures (training.attribution)."""
    from forgetbench.reports import figures as F

    attribution = frames.attribution_frame(records, name)
    if not attribution.empty:
        view.attribution_sentence = attribution_sentence(attribution)
        view.attribution_rows = [
            {
                "strategy": row.strategy,
                "points": int(row.points),
                "observed": f"{row.observed:.4f}",
                "predicted": f"{row.predicted:.4f}",
                "first_order": f"{row.first_order:+.4f}",
                "explained": f"{row.explained:.0f}%" if np.isfinite(row.explained) else "–",
                "rho": f"{row.rho:.2f}" if np.isfinite(row.rho) else "–",
                "first_order_share": f"{row.first_order_share:+.0f}%" if np.isfinite(row.first_order_share) else "–",
            }
            for row in attribution_summary(attribution, order).itertuples()
        ]
        figs["attribution_layers"] = easel.submit(
            F.attribution_layers, frames.attribution_layers_frame(records, name), order
        )
        figs["attribution_scatter"] = easel.submit(F.attribution_scatter, attribution, colours)


def _add_adapters(view: ScenarioView, records: list[RunRecord], name: str, order: list[str]) -> None:
    """Per strategy and task: the adapters' norm, overlap and size."""
    view.adapter_rows = [
        {
            "strategy": row.strategy,
            "task": int(row.task),
            "seeds": int(row.seeds),
            "norm": f"{row.norm:.3f}",
            "overlap": f"{row.overlap:.3f}" if np.isfinite(row.overlap) else "–",
            "trainable": f"{row.trainable_params:,.0f}",
            "total": f"{row.total_params:,.0f}",
        }
        for row in frames.adapter_summary(frames.adapters_frame(records, name), order).itertuples()
    ]


def _metadata(folders: Sequence[Path], records: list[RunRecord], command: str | None) -> dict[str, Any]:
    import jinja2
    import matplotlib

    envs = [r.environment for r in records]
    keys = list(dict.fromkeys(k for e in envs for k in e))  # every fingerprint key any run recorded, in order
    run_env = {k: sorted({str(e[k]) for e in envs if k in e}) for k in keys}
    suites = []
    for folder in folders:
        path = Path(folder) / "suite.yaml"
        text = path.read_text() if path.exists() else None
        suites.append({"folder": str(folder), "suite": text, "rerun": rerun_command(folder) if text else None})
    return {
        "command": command,
        "generated": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "run_env": {k: ", ".join(v) for k, v in run_env.items() if v},
        "report_env": {
            "python": platform.python_version(),
            "pandas": pd.__version__,
            "matplotlib": matplotlib.__version__,
            "jinja2": jinja2.__version__,
            "platform": platform.platform(),
        },
        "suites": suites,
        "started": min((r.started_at or "" for r in records), default=""),
        "finished": max((r.finished_at or "" for r in records), default=""),
    }


def _reproductions(folders: Sequence[Path], table: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of every folder whose suite names published figures (its ``reproduce`` block)."""
    import yaml

    rows = []
    for folder in folders:
        path = Path(folder) / "suite.yaml"
        suite = yaml.safe_load(path.read_text()) if path.exists() else None
        if not isinstance(suite, dict) or not suite.get("reproduce"):
            continue
        scenario = suite["scenarios"][0].get("label") or suite["scenarios"][0]["name"]
        frame = reproduction_rows(table, suite["reproduce"], scenario)
        for row in frame.to_dict("records"):
            rows.append(
                row
                | {
                    "suite": suite.get("name"),
                    "source": suite["reproduce"]["source"],
                    "settings": suite["reproduce"]["settings"],
                }
            )
    return rows


@dataclass
class SweepView:
    """Suite level: search scenarios that differ in one setting (the turn length), side by side."""

    setting: str
    figure: str
    caption: str


def _sweep_view(records: list[RunRecord], table: pd.DataFrame, easel: Executor) -> SweepView | None:
    from forgetbench.reports import figures as F

    sweep = frames.search_sweep_frame(table, records, "steps_per_turn")
    if sweep.empty:
        return None
    series = list(dict.fromkeys(sweep.sort_values(["strategy", "series"]).series))
    naive = NAIVE if NAIVE in series else None
    figure = drawn(easel.submit(F.search_sweep, sweep, F.palette(series, naive), "steps per turn (log scale)"))
    seeds = int(sweep.n_seeds.max())
    caption = (
        "The search scenarios of this suite differ in how many shared steps each sampled architecture "
        "trains before the next is drawn (scenarios "
        + ", ".join(dict.fromkeys(sweep.sort_values("setting").scenario))
        + "). "
        "Left: the forgetting value (per search epoch the mean of err2 − err1 over the architectures it "
        "trained, averaged over epochs; above 0 = forgetting); middle: Kendall tau between the supernet's "
        "ranking and the standalone ground truth; right: regret of the architecture the search picked. "
        f"Point = mean over seeds (up to {seeds}), bar = 95% t-interval."
    )
    return SweepView("steps_per_turn", figure, caption) if figure else None


@dataclass
class FrontierView:
    scenario: str
    anchor: str
    figure: str | Future[str | None] | None  # a data URI once drawn
    rows: list[dict[str, Any]]
    verdicts: list[str]
    source: str = ""  # '' for the suite's runs; what else the points are (tuning trials on held-out data)
    target: str = "naive LA -"  # the plasticity the rows match, before the drop
    forgetting_unit: str = "points"
    number: str = "%.2f"  # the table's format of forgetting


def _frontier_views(
    records: list[RunRecord],
    source: str = "",
    computed: dict[str, dict[str, float]] | None = None,
    easel: Executor | None = None,
    options: DC.DecisionOptions | None = None,
    methods: list[str] | None = None,
) -> tuple[list[FrontierView], pd.DataFrame]:
    """Per scenario with a strength sweep beside naive: its frontier figure, matched-plasticity table and verdicts;
    and every point (``frontier.csv``). ``source`` names where the points come from when not the suite's runs;
    ``computed`` are the runs' metrics (``ResultScan.metrics``). The figures are submitted to ``easel`` (drawn here
    when none is given): read each with :func:`forgetbench.reports.drawing.drawn`."""
    from forgetbench.reports import figures as F
    from forgetbench.reports import frontier as FT

    points = FT.frontier_frame(records, computed)
    views = []
    for scenario in dict.fromkeys(points.scenario):
        if not FT.has_frontier(points, scenario):
            continue
        mine = points[points.scenario == scenario]
        matched = FT.matched_plasticity(points, scenario)
        axes = FT.scenario_axes(points, scenario)
        naive = float(mine[mine.method == FT.NAIVE].plasticity.mean())
        present = list(dict.fromkeys(mine.method))
        figure = (easel or InProcess()).submit(
            F.frontier,
            mine,
            F.palette(present, FT.NAIVE, methods=methods),
            {d: naive - axes.sign * d for d in FT.DROPS},
            axes,
        )
        rows = [
            {
                "method": r.method,
                "drop": r.drop,
                "mean": r.mean,
                "ci_low": r.ci_low,
                "ci_high": r.ci_high,
                "n": r.n,
                "seeds": r.seeds,
            }
            for r in matched.itertuples()
        ]
        anchor = ("tuning-" if source else "") + "frontier-" + "".join(c if c.isalnum() else "-" for c in scenario)
        views.append(
            FrontierView(
                scenario,
                anchor,
                figure,
                rows,
                FT.matched_verdicts(matched, axes, options),
                source,
                target=f"naive {axes.name} {'-' if axes.sign > 0 else '+'}",
                forgetting_unit=axes.forgetting_unit,
                number=f"%.{axes.digits + 1}f",
            )
        )
    return views, points


def _tuning_rows(folders: Sequence[Path]) -> list[dict[str, Any]]:
    """One row per tuning study of ``OUT/tuning.json``: how the tuned strategies' final runs got their params."""
    rows = []
    for study in tuning_studies(folders):  # a study this report cannot read is skipped, not fatal
        try:
            protocol = study["protocol"]
            where = f"{protocol['scenario']}'s " if protocol.get("kind") == "scenario" else ""
            first = f", first {protocol['first_tasks']} tasks" if protocol.get("first_tasks") else ""
            done = sum(t.get("state") == "COMPLETE" for t in study["trials"])
            chosen = study.get("chosen") or {}
            rows.append(
                {
                    "scenario": study["scenario"],
                    "strategy": study["strategy"],
                    "protocol": f"{where}validation split {protocol['fraction']:g}{first}, seeds "
                    f"{', '.join(map(str, protocol['seeds']))}",
                    "trials": f"{done}/{study['budget']} ({study.get('sampler_description', study['sampler'])})",
                    "objective": f"{study['objective']} ({study['goal']})",
                    "chosen": ", ".join(
                        f"{k} = {v:g}" if isinstance(v, float) else f"{k} = {v}" for k, v in chosen.items()
                    )
                    or "none finished",
                    "value": study.get("chosen_value"),
                    "notes": "; ".join(study.get("notes", [])),
                }
            )
        except (KeyError, TypeError, ValueError):
            continue
    return rows


@dataclass
class Report:
    html: str
    summary: pd.DataFrame
    comparisons: pd.DataFrame
    decisions: pd.DataFrame  # every pair of every verdict (decisions.csv)
    frontier: pd.DataFrame | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)  # result files not read: (path, why)
    figures: dict[str, str] = field(default_factory=dict)  # every figure drawn: file stem -> PNG data URI


def report_figures(
    scenarios: Sequence[ScenarioView], sweep: SweepView | None, frontiers: Sequence[FrontierView]
) -> dict[str, str]:
    """Every figure of the report by a file stem that names it: ``<scenario anchor>-<figure>`` (the headline is
    ``-headline``), ``sweep-<setting>``, and the frontiers' anchors (``frontier-<scenario>``)."""
    figures = {}
    for view in scenarios:
        if headline := drawn(view.headline):
            figures[f"{view.anchor}-headline"] = headline
        figures |= {f"{view.anchor}-{key}": uri for key, uri in view.figures.items()}
    if sweep is not None:
        figures[f"sweep-{sweep.setting}"] = sweep.figure
    figures |= {view.anchor: uri for view in frontiers if (uri := drawn(view.figure))}
    return figures


def png_bytes(uri: str) -> bytes:
    """The PNG inside a figure's data URI (the inverse of :func:`forgetbench.reports.figures.to_data_uri`)."""
    header, _, payload = uri.partition(",")
    if header != "data:image/png;base64":
        raise ValueError(f"not a PNG data URI ({header[:40]!r})")
    return base64.b64decode(payload)


def write_figures(figures: dict[str, str], folder: Path) -> list[Path]:
    """Each figure as ``folder/<stem>.png`` (written atomically), for a paper or a docs page; the paths written."""
    paths = []
    for stem, uri in figures.items():
        paths.append(folder / f"{stem}.png")
        atomic_write_bytes(paths[-1], png_bytes(uri))
    return paths


REPORT_WORKERS = "FORGETBENCH_REPORT_WORKERS"  # the processes that draw a report's figures, when set


def workers_asked() -> int | None:
    """``FORGETBENCH_REPORT_WORKERS`` as a number of figure workers (1: draw in this process), or None when unset
    (one per core): a shared machine, or a test suite that already runs a worker per core, sets it."""
    text = os.environ.get(REPORT_WORKERS, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ReportError(
            f"{REPORT_WORKERS}: a whole number of figure processes, 1 or more (1: draw in this process); got {text!r}"
        )
    return int(text)


def build_report(
    folders: Sequence[Path],
    command: str | None = None,
    strategies: Sequence[str] | None = None,
    workers: int | None = None,
) -> Report:
    """Read the folders and render the report (nothing is written); ``strategies``: only the runs of these strategy
    labels (naive and a few strengths of a sweep, for a figure on a page); ``workers``: the processes that draw the
    figures (:func:`forgetbench.reports.drawing.easel`; default :func:`workers_asked`, else one per core; 1 = in this
    process)."""
    folders = [Path(f) for f in folders]
    for folder in folders:
        if not folder.is_dir():
            raise ReportError(f"results folder {folder} does not exist (expected OUT/runs/<run_id>/result.json)")
    scan = load_records(*folders, figure_runs=summary.FIGURE_RUNS)
    records, skipped = scan.records, scan.skipped
    if not records:
        detail = "".join(f"; skipped {path}: {why}" for path, why in skipped)
        raise ReportError(
            f"no {'readable ' if skipped else ''}result files under {', '.join(map(str, folders))} "
            f"(expected OUT/runs/<run_id>/result.json){detail}"
        )
    if strategies:
        labels = list(dict.fromkeys(r.strategy.label for r in records))
        unknown = [s for s in strategies if s not in labels]
        if unknown:
            raise ReportError(f"--strategies: no runs of {', '.join(unknown)}; the folders have: {', '.join(labels)}")
        records = [r for r in records if r.strategy.label in strategies]
    long = runs_long(records, scan.metrics)
    order = strategy_order(records)
    table = summary_table(long, order=order)
    comps = comparisons_table(long)
    problems = problem_runs(records, scan.sources)
    options = DC.options_of(folders)
    # the report's methods in order: a method has one colour and marker in every figure of the report
    methods = list(dict.fromkeys(label.partition("[")[0] for labels in order.values() for label in labels))
    with easel(workers if workers is not None else workers_asked()) as pad:  # figures drawn beside the tables
        frontiers, points = _frontier_views(records, computed=scan.metrics, easel=pad, options=options, methods=methods)
        studies = tuning_studies(folders)
        edges = edge_lines(studies)
        # a tuned method's chosen point: drawn strong, its neighbours faint (figures.palette)
        chosen = {combination_label(str(s["strategy"]), s["chosen"]) for s in studies if s.get("chosen")}
        scenarios = [
            _scenario_view(
                name,
                records,
                order[name],
                table,
                comps,
                problems,
                long,
                scan.lean,
                points,
                edges,
                pad,
                options,
                chosen,
                methods,
            )
            for name in order
        ]
        trials = (
            load_records(*[f / "tuning" for f in folders if (f / "tuning" / "runs").is_dir()], figure_runs=0)
            if any((f / "tuning" / "runs").is_dir() for f in folders)
            else None
        )
        if trials is not None and trials.records:
            trial_views, trial_points = _frontier_views(
                trials.records, "tuning trials, on the validation split", trials.metrics, pad, options, methods
            )
            frontiers += trial_views
            if trial_views:
                trial_points.insert(0, "source", "tuning")
                points = pd.concat(
                    [points.assign(source="runs") if len(points) else points, trial_points], ignore_index=True
                )
        decided = decisions_frame(records, scan.metrics, options, long)
        decisions_shown = DC.view(
            decided,
            improvement_frame(records, scan.metrics, long),
            DC.rounds_of(folders),
            DC.records_seeds(records),
            options.alpha,
        )
        sweep = _sweep_view(records, table, pad)
        scenarios = [_finish_figures(view) for view in scenarios]
        for frontier in frontiers:
            frontier.figure = drawn(frontier.figure)
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    html = env.get_template("report.html.j2").render(
        title=f"forgetbench report: {', '.join(sorted({r.suite for r in records}))}",
        scenarios=scenarios,
        glossary=[m for m in METRICS.values() if m.key in set(table.metric)],
        n_runs=len(records),
        n_ok=sum(has_results(r) for r in records),
        problems=problems.to_dict("records"),
        skipped=[{"path": str(path), "reason": reason} for path, reason in skipped],
        environment_warnings=scan.environment_warnings,
        metric_warnings=unknown_metrics(folders),
        reproductions=_reproductions(folders, table),
        sweep=sweep,
        frontiers=frontiers,
        plasticity_trade=f"{100 * PLASTICITY_TRADE:g}",
        tuning=_tuning_rows(folders),
        decisions=decisions_shown,
        meta=_metadata(folders, records, command),
    )
    return Report(
        html,
        table,
        comps,
        decided,
        points if frontiers else None,
        [(str(p), why) for p, why in skipped],
        report_figures(scenarios, sweep, frontiers),
    )


def unknown_metrics(folders: Sequence[Path]) -> list[str]:
    """A sentence per metric that was registered when a folder's suite ran but is not now (its column would vanish
    from the report without a word), naming the module to import."""
    known = set(METRICS) | {m.key for m in registered_metrics()}
    missing: dict[str, str] = {}
    for folder in folders:
        for key, module in registered_metric_modules(folder).items():
            if key not in known:
                missing.setdefault(key, module)
    return [
        f"metric {key!r} was registered (by module {module}) when these runs were written, but not in this "
        f"report: its column is missing. Report with `forgetbench report ... --import {module}`, or declare "
        "the module in the forgetbench.metrics entry-point group"
        for key, module in missing.items()
    ]


def write_report(
    folders: Sequence[Path],
    out: Path | None = None,
    command: str | None = None,
    skipped: list[tuple[str, str]] | None = None,
    figures: Path | None = None,
    strategies: Sequence[str] | None = None,
) -> Path:
    """Build the report and write it (default ``<first folder>/report.html``) with summary.csv beside it; the result
    files it could not read are appended to ``skipped`` (path, why) when given; ``figures``: a folder to write every
    figure into as a PNG as well (:func:`report_figures` names them); ``strategies``: only these labels' runs."""
    out = Path(out) if out else Path(folders[0]) / REPORT_FILE
    if out.is_dir():
        raise ReportError(f"-o/--output: {out} is a directory; give the report's file name, e.g. {out / REPORT_FILE}")
    blocking = file_in_the_way(out.parent)
    if blocking is not None:
        raise ReportError(f"-o/--output: {out} cannot be written: {blocking} is a file, not a folder")
    blocking = file_in_the_way(figures) if figures is not None else None
    if blocking is not None:
        raise ReportError(f"--figures: {figures} cannot be written: {blocking} is a file, not a folder")
    report = build_report(folders, command, strategies)
    if skipped is not None:
        skipped.extend(report.skipped)
    files = {
        out.parent / SUMMARY_FILE: report.summary.to_csv(index=False).encode(),
        out.parent / COMPARISONS_FILE: report.comparisons.to_csv(index=False).encode(),
        out.parent / DECISIONS_FILE: report.decisions.to_csv(index=False).encode(),
        out: report.html.encode(),
    }
    if report.frontier is not None:
        files[out.parent / FRONTIER_FILE] = report.frontier.to_csv(index=False).encode()
    with _stop_signals_held():  # one commit: every file written aside first, then all renamed (store.atomic_write_set)
        try:
            atomic_write_set(files)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            raise DiskFull(
                f"{no_room(exc, out.parent)}: the report was not written, and the "
                f"previous {out.name} and the tables beside it are as they were. Free some space and rerun"
            ) from None
        if figures is not None:
            write_figures(report.figures, figures)
    return out


@contextlib.contextmanager
def _stop_signals_held():
    """SIGTERM and SIGINT held back inside the block (delivered on leaving it), where the platform can."""
    held = (signal.SIGTERM, signal.SIGINT)
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, held)
