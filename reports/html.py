"""The self-contained HTML report: Jinja2 (autoescaped) + embedded PNG figures.

``write_report(folders)`` reads result folders, computes the tables of :mod:`forgetbench.reports.summary`,
draws the figures of :mod:`forgetbench.reports.figures` and writes ``report.html`` plus ``summary.csv`` (and
``comparisons.csv``, the paired differences against naive) into the results folder, each atomically.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape

from forgetbench.benchmark.core.record import RunRecord
from forgetbench.reports.figure_views import frontier_views, sweep_view
from forgetbench.reports.scenario_view import finish_figures, scenario_view
from forgetbench.reports.views import FrontierView, ScenarioView, SweepView, metadata, reproductions, tuning_rows
from forgetbench.benchmark.core.metric_registry import METRICS, registered_metrics
from forgetbench.benchmark.core.store import (
    ResultFolder,
    ResultScan,
    atomic_write_bytes,
    DiskFull,
    atomic_write_set,
    file_in_the_way,
    is_disk_full,
    no_room,
    registered_metric_modules,
)
from forgetbench.benchmark.core.grid import combination_label
from forgetbench.benchmark.core.plan import PlanError
from forgetbench.reports import decisions as DC
from forgetbench.reports import summary
from forgetbench.reports.drawing import drawn, easel
from forgetbench.reports.summary import (
    comparisons_table,
    has_results,
    load_records,
    problem_runs,
    runs_long,
    strategy_order,
    summary_table,
    time_unlike_naive,
    tuning_studies,
)
from forgetbench.reports.search_verdict import edge_lines
from forgetbench.reports.verdict import PLASTICITY_TRADE, decisions_frame, improvement_frame

TEMPLATES = Path(__file__).parent / "templates"


REPORT_FILE = ResultFolder.REPORT


SUMMARY_FILE = ResultFolder.SUMMARY


COMPARISONS_FILE = ResultFolder.COMPARISONS


DECISIONS_FILE = ResultFolder.DECISIONS  # every pair of every verdict: outcome, its interval, p, seeds


FRONTIER_FILE = ResultFolder.FRONTIER  # every (method, setting, seed) point of a sweep, on its front or not


class ReportError(ValueError):
    """Bad input to the report (missing folder, no results): the CLI exits 2."""


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


def _read(folders: list[Path], strategies: Sequence[str] | None) -> tuple[ResultScan, list[RunRecord]]:
    """The folders' records (only ``strategies``' where given), or :class:`ReportError` saying why there are none."""
    for folder in folders:
        if not folder.is_dir():
            raise ReportError(f"results folder {folder} does not exist (expected OUT/runs/<run_id>/result.json)")
    try:
        scan = load_records(*folders, figure_runs=summary.FIGURE_RUNS)
    except PlanError as exc:
        raise ReportError(str(exc)) from None
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
    return scan, records


@dataclass
class _Tables:
    """What every view of the report reads: the tidy frames and the order strategies and methods are shown in."""

    long: pd.DataFrame
    order: dict[str, list[str]]
    table: pd.DataFrame
    comps: pd.DataFrame
    problems: pd.DataFrame
    methods: list[str]  # a method has one colour and marker in every figure of the report

    @classmethod
    def of(cls, records: list[RunRecord], scan: ResultScan, options: DC.DecisionOptions) -> "_Tables":
        long = runs_long(records, scan.metrics)
        order = strategy_order(records)
        methods = list(dict.fromkeys(label.partition("[")[0] for labels in order.values() for label in labels))
        return cls(
            long,
            order,
            summary_table(long, order=order),
            comparisons_table(long, options.method, options.alpha, options.planned, time_unlike_naive(records)),
            problem_runs(records, scan.sources),
            methods,
        )


def _trial_frontiers(
    folders: list[Path], pad: Any, options: DC.DecisionOptions, methods: list[str]
) -> tuple[list[FrontierView], pd.DataFrame | None]:
    """The tuning trials' frontiers, on the validation split (none where no folder tuned)."""
    tuned = [ResultFolder(f).tuning for f in folders if ResultFolder(f).tuning.runs.is_dir()]
    if not tuned:
        return [], None
    trials = load_records(*[t.path for t in tuned], figure_runs=0)
    if not trials.records:
        return [], None
    views, points = frontier_views(
        trials.records, "tuning trials, on the validation split", trials.metrics, pad, options, methods
    )
    return views, points if views else None


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
    options = _decision_options(folders)
    scan, records = _read(folders, strategies)
    t = _Tables.of(records, scan, options)
    studies = tuning_studies(folders)
    # a tuned method's chosen point: drawn strong, its neighbours faint (figures.palette)
    chosen = {combination_label(str(s["strategy"]), s["chosen"]) for s in studies if s.get("chosen")}
    with easel(workers if workers is not None else workers_asked()) as pad:  # figures drawn beside the tables
        frontiers, points = frontier_views(
            records, computed=scan.metrics, easel=pad, options=options, methods=t.methods
        )
        edges = edge_lines(studies)
        scenarios = [
            scenario_view(
                name,
                records,
                t.order[name],
                t.table,
                t.comps,
                t.problems,
                t.long,
                scan.lean,
                points,
                edges,
                pad,
                options,
                chosen,
                t.methods,
                missing=sum(run.scenario == name for run in scan.missing),
            )
            for name in t.order
        ]
        trial_views, trial_points = _trial_frontiers(folders, pad, options, t.methods)
        frontiers += trial_views
        if trial_points is not None:
            trial_points.insert(0, "source", "tuning")
            points = pd.concat(
                [points.assign(source="runs") if len(points) else points, trial_points], ignore_index=True
            )
        decided, decisions_shown = _decisions(folders, records, scan, t, options)
        sweep = sweep_view(records, t.table, pad)
        scenarios = [finish_figures(view) for view in scenarios]
        for frontier in frontiers:
            frontier.figure = drawn(frontier.figure)
    html = _render(
        title=f"forgetbench report: {', '.join(sorted({r.suite for r in records}))}",
        scenarios=scenarios,
        glossary=[m for m in METRICS.values() if m.key in set(t.table.metric)],
        n_runs=len(records) + len(scan.missing),  # a planned run with no record is not ok: never "N of N"
        n_ok=sum(has_results(r) for r in records),
        problems=t.problems.to_dict("records"),
        skipped=[{"path": str(path), "reason": reason} for path, reason in scan.skipped],
        environment_warnings=scan.environment_warnings,
        metric_warnings=unknown_metrics(folders),
        reproductions=reproductions(folders, t.table),
        sweep=sweep,
        frontiers=frontiers,
        plasticity_trade=f"{100 * PLASTICITY_TRADE:g}",
        tuning=tuning_rows(folders),
        decisions=decisions_shown,
        meta=metadata(folders, records, command),
    )
    figures = report_figures(scenarios, sweep, frontiers)
    skipped = [(str(p), why) for p, why in scan.skipped]
    return Report(html, t.table, t.comps, decided, points if frontiers else None, skipped, figures)


def _decision_options(folders: Sequence[Path]) -> DC.DecisionOptions:
    """The folders' verdict settings, validated; folders that disagree are refused, each named (ReportError)."""
    try:
        return DC.options_of(folders)
    except DC.DecisionSettingsError as exc:
        raise ReportError(str(exc)) from None


def _decisions(
    folders: Sequence[Path], records: list[RunRecord], scan: ResultScan, t: _Tables, options: DC.DecisionOptions
) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """Every verdict's decisions (the frame of decisions.csv) and the report's Decisions section."""
    decided = decisions_frame(records, scan.metrics, options, t.long)
    improvement = improvement_frame(records, scan.metrics, t.long)
    try:
        rounds = DC.rounds_of(folders)
    except DC.DecisionSettingsError as exc:
        raise ReportError(str(exc)) from None
    shown = DC.view(
        decided,
        improvement,
        rounds,
        DC.records_seeds(records),
        options.alpha,
        DC.test_set_sizes(records),
    )
    return decided, shown


def _render(**page: Any) -> str:
    """The page: ``report.html.j2`` rendered (autoescaped) with ``page``'s views."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("report.html.j2").render(**page)


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
    """Build the report and write it (default ``<first folder>/report.html``, or ``out``: the one path the user
    names) and its tables (summary.csv, comparisons.csv, decisions.csv, frontier.csv) into the first results folder,
    whatever ``out`` is, so no other folder's tables are overwritten; the result files it could not read are
    appended to ``skipped`` (path, why) when given; ``figures``: a folder to write every figure into as a PNG as well
    (:func:`report_figures` names them); ``strategies``: only these labels' runs."""
    out = Path(out) if out else Path(folders[0]) / REPORT_FILE
    tables = Path(folders[0])
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
        tables / SUMMARY_FILE: report.summary.to_csv(index=False).encode(),
        tables / COMPARISONS_FILE: report.comparisons.to_csv(index=False).encode(),
        tables / DECISIONS_FILE: report.decisions.to_csv(index=False).encode(),
        out: report.html.encode(),
    }
    if report.frontier is not None:
        files[tables / FRONTIER_FILE] = report.frontier.to_csv(index=False).encode()
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
