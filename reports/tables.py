"""Tidy tables of runs: one row per run, then aggregates per (scenario, strategy)."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from forgetbench.benchmark.core.metric_registry import Metric, terminal_metrics
from forgetbench.benchmark.core.units import display_scale
from forgetbench.benchmark.core.record import RunRecord, as_records
from forgetbench.benchmark.core.store import MissingRun
from forgetbench.reports.summary import runs_long, summary_table


def overview(
    records: Iterable[RunRecord | Mapping[str, Any]],
    computed: Mapping[str, Mapping[str, float]] | None = None,
    missing: Iterable[MissingRun] = (),
) -> pd.DataFrame:
    """Per (scenario, strategy): runs ok / not ok, then ``<metric>_mean`` and ``<metric>_std`` over seeds of
    every metric the terminal table shows (:func:`terminal_metrics`), from the report's own aggregation
    (:func:`summary_table`), so the terminal and the report cannot disagree. ``computed``: the runs' metrics;
    ``missing``: planned runs with no record, each counted as not ok under its pair."""
    records = as_records(records)
    counts: dict[tuple[str, str], list[int]] = {}
    for record in records:
        key = (record.scenario.label, record.strategy.label)
        counts.setdefault(key, [0, 0])[0 if record.status == "ok" else 1] += 1
    for run in missing:
        counts.setdefault((run.scenario, run.strategy), [0, 0])[1] += 1
    if not counts:
        return pd.DataFrame()
    summary = summary_table(runs_long(records, computed)).set_index(["scenario", "strategy", "metric"])
    shown = terminal_metrics()
    rows = []
    for (scenario, strategy), (ok, not_ok) in counts.items():
        row: dict[str, Any] = {"scenario": scenario, "strategy": strategy, "ok": ok, "not_ok": not_ok}
        for metric in shown:
            found = (scenario, strategy, metric.key) in summary.index
            row[f"{metric.key}_mean"] = summary.loc[(scenario, strategy, metric.key), "mean"] if found else np.nan
            row[f"{metric.key}_std"] = summary.loc[(scenario, strategy, metric.key), "std"] if found else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def format_overview(table: pd.DataFrame) -> str:
    """A plain-text rendering of :func:`overview` for the terminal, in the report's units: accuracies
    in percentage points (the verdict's "4.1 points"), seconds with enough digits to be non-zero."""
    if table.empty:
        return "(no results)"
    shown = terminal_metrics()
    lines = []
    for _, row in table.iterrows():
        line = {
            "scenario": row["scenario"],
            "strategy": row["strategy"],
            "runs ok": f"{row['ok']}/{row['ok'] + row['not_ok']}",
        }
        for metric in shown:
            line[str(metric.terminal)] = format_value(
                metric, row.get(f"{metric.key}_mean"), row.get(f"{metric.key}_std")
            )
        lines.append(line)
    return pd.DataFrame(lines).to_string(index=False)


def format_value(metric: Metric, mean: float | None, std: float | None = None) -> str:
    """``mean ± std`` in the metric's display unit: accuracies in points, seconds by :func:`format_seconds`,
    anything else to 3 significant digits; '-' when there is no value."""
    if mean is None or pd.isna(mean):
        return "-"
    if metric.unit == "seconds":
        return format_seconds(mean)
    scale, spec = display_scale(metric.unit), (".1f" if metric.unit == "accuracy" else ".3g")
    return f"{scale * mean:{spec}}" + ("" if std is None or pd.isna(std) else f" ± {scale * std:{spec}}")


def format_seconds(seconds: float | None) -> str:
    """Seconds for a table: one decimal from 1 s up, two significant digits below (0.043), '-' if unknown."""
    if seconds is None or pd.isna(seconds):
        return "-"
    return f"{seconds:.1f}" if seconds >= 1 else f"{seconds:.2g}"


def parameter_sets(model, used: list[frozenset[str]], task_names: list[str]) -> pd.DataFrame:
    """One row per (task, parameter tensor the task's model uses): shape, weights, and whether it is **shared**,
    i.e. used by an *earlier* task's model too (what a penalty on shared parameters protects while this task
    trains: :func:`forgetbench.strategies.base.shared_params`), or private, with the later tasks that will share
    it; then one row per frozen tensor no task trains (task '-')."""
    params = dict(model.named_parameters())
    rows = []
    for j, (name, names) in enumerate(zip(task_names, used)):
        for pname in sorted(names):
            earlier = [task_names[k] for k in range(j) if pname in used[k]]
            later = [task_names[k] for k in range(j + 1, len(used)) if pname in used[k]]
            p = params[pname]
            use = (
                "shared with " + ", ".join(earlier)
                if earlier
                else "private" + (" (later shared by " + ", ".join(later) + ")" if later else "")
            )
            rows.append({"task": name, "parameter": pname, "shape": tuple(p.shape), "weights": p.numel(), "use": use})
    trained = set().union(*used) if used else set()
    for pname, p in params.items():
        if pname not in trained:
            rows.append(
                {
                    "task": "-",
                    "parameter": pname,
                    "shape": tuple(p.shape),
                    "weights": p.numel(),
                    "use": "frozen" if not p.requires_grad else "used by no task",
                }
            )
    return pd.DataFrame(rows, columns=["task", "parameter", "shape", "weights", "use"])


def format_parameter_sets(frame: pd.DataFrame) -> str:
    """:func:`parameter_sets` for the terminal, with a total per task."""
    if frame.empty:
        return "(no parameters)"
    lines = []
    for task, rows in frame.groupby("task", sort=False):
        shared = rows[rows.use.str.startswith("shared")]
        lines.append(
            f"{task}: {len(rows)} tensors, {rows.weights.sum():,} weights "
            f"({shared.weights.sum():,} shared, {rows.weights.sum() - shared.weights.sum():,} private)"
        )
        for row in rows.itertuples():
            lines.append(f"  {row.parameter:<40} {str(row.shape):<14} {row.weights:>12,}  {row.use}")
    return "\n".join(lines)


def format_tuning(tuning: dict) -> str:
    """Plain-text summary of ``OUT/tuning.json``: per study its protocol, budget and choice, and how it got its
    ranges."""
    lines = []
    for study in tuning.get("studies", []):
        done = [t for t in study["trials"] if t["state"] == "COMPLETE"]
        chosen = ", ".join(
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in (study["chosen"] or {}).items()
        )
        protocol = study["protocol"]
        where = f"on {protocol['scenario']}'s " if protocol["kind"] == "scenario" else ""
        where += f"first {protocol['first_tasks']} tasks, " if protocol.get("first_tasks") else ""
        pruned = (study.get("pruning") or {}).get("pruned")
        lines.append(
            f"{study['scenario']} / {study['strategy']}: {len(done)}/{study['budget']} trials "
            + (f"+ {pruned} pruned " if pruned else "")
            + f"({study.get('sampler_description', study['sampler'])}, "
            f"{where}validation split {protocol['fraction']:g}, seeds {protocol['seeds']}), "
            + (
                f"chosen {chosen} ({study['objective']} {study['chosen_value']:.4f}, trial {study['chosen_trial']})"
                if study["chosen"]
                else "no trial finished"
            )
        )
        lines += [f"  {note}" for note in study.get("notes", [])]
        overhead = study.get("overhead") or {}
        if overhead.get("run_seconds"):
            lines.append(
                f"  Optuna and its storage: {overhead['optuna_seconds']:.2f} s, "
                f"{100 * overhead['optuna_seconds'] / overhead['run_seconds']:.1f}% of the trials' "
                f"{overhead['run_seconds']:.1f} s"
            )
    if tuning.get("storage_open_seconds") is not None and lines:
        lines.append(f"Opening the studies' storage: {tuning['storage_open_seconds']:.2f} s (once per run)")
    return "\n".join(lines) or "(no tuning)"
