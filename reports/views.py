"""The report's views, data only: the dataclasses the template renders (a scenario's section, the turn-length
sweep, a frontier), how a value and a seed list read, and the report's metadata, reproductions and tuning rows.
No Jinja and no files here (:mod:`forgetbench.reports.html` renders and writes)."""

from __future__ import annotations

import platform
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from forgetbench.benchmark.core.record import RunRecord
from forgetbench.benchmark.core.metric_registry import Metric
from forgetbench.benchmark.core.store import (
    ResultFolder,
    rerun_command,
)
from forgetbench.reports.summary import (
    tuning_studies,
)
from forgetbench.benchmark.core.units import format_bytes
from forgetbench.reports.reproduce import reproduction_rows


TABLE_SECTIONS = ("stability", "curves")


KEY_COMPARISONS = ("ACC", "forgetting", "LA", "curve_max_drop", "err_gap_mean", "search_tau", "regret", "train_seconds")


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


@dataclass
class Cell:
    text: str
    ci: str = ""
    best: bool = False
    n: int = 0


def derived_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
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
    runs_total: int  # its runs read and its planned runs with no record (runs_missing)
    seeds: list[Any]
    scenario_type: str | None = None
    runs_missing: int = 0
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
    figures: dict[str, Any] = field(default_factory=dict)  # data URIs; futures while they draw (finish_figures)
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


@dataclass
class SweepView:
    """Suite level: search scenarios that differ in one setting (the turn length), side by side."""

    setting: str
    figure: str
    caption: str


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


def metadata(folders: Sequence[Path], records: list[RunRecord], command: str | None) -> dict[str, Any]:
    import jinja2
    import matplotlib

    envs = [r.environment for r in records]
    keys = list(dict.fromkeys(k for e in envs for k in e))  # every fingerprint key any run recorded, in order
    run_env = {k: sorted({str(e[k]) for e in envs if k in e}) for k in keys}
    suites = []
    for folder in folders:
        path = ResultFolder(Path(folder)).suite
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


def reproductions(folders: Sequence[Path], table: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of every folder whose suite names published figures (its ``reproduce`` block)."""
    import yaml

    rows = []
    for folder in folders:
        path = ResultFolder(Path(folder)).suite
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


def tuning_rows(folders: Sequence[Path]) -> list[dict[str, Any]]:
    """One row per tuning study of ``OUT/tuning.json``: how the tuned strategies' final runs got their params, or
    why a study stopped with none (its strategy then has no final runs, and this row says so)."""
    rows = []
    for study in tuning_studies(folders):  # a study this report cannot read is skipped, not fatal
        if study.get("stopped"):
            rows.append(
                {
                    "scenario": study.get("scenario"),
                    "strategy": study.get("strategy"),
                    "protocol": "",
                    "trials": f"0/{study.get('budget', '?')}",
                    "objective": str(study.get("objective", "")),
                    "chosen": "none: the study stopped, so the strategy has no final runs",
                    "value": None,
                    "notes": str(study["stopped"]),
                }
            )
            continue
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
