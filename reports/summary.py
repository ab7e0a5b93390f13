"""The one aggregator: result records to tidy tables (per-run metrics, the across-seed summary, paired
comparisons, the runs to list apart). The terminal table, ``Results.summary``, the report, the verdicts and
the reproductions all read these tables; the frames the figures plot are in :mod:`forgetbench.reports.frames`.

Only ``ok`` runs feed the metrics; every other run is listed by :func:`problem_runs`. Optional
result keys (``curves``, ``memory``, ``err1``/``err2``, ``standalone_accuracy``, reference runs of
the ``joint``/``standalone`` strategies) add metrics when present and nothing when absent.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping

import numpy as np
import pandas as pd

from forgetbench.benchmark.core.record import RunRecord, as_records
from forgetbench.benchmark.core.store import ResultScan, scan_results
from forgetbench.benchmark.core import metrics, stats
from forgetbench.benchmark.core.metrics import _is_square, run_metrics
from forgetbench.benchmark.core.metric_registry import METRICS, Metric  # noqa: F401  (re-exported: reports.summary.METRICS)
from forgetbench.reports.environment import environment_differences

log = logging.getLogger(__name__)
_WARNED: set[str] = set()  # environment warnings already logged by this process

SUMMARY_COLUMNS = ["scenario", "strategy", "metric", "mean", "std", "ci_low", "ci_high", "n_seeds"]
COMPARISON_COLUMNS = ["scenario", "strategy", "metric", "diff", "ci_low", "ci_high", "p_value", "n_pairs"]
NAIVE = "naive"
REFERENCE_STRATEGIES = ("joint", "standalone")  # preferred in this order for intransigence


def load_records(*folders: Path) -> ResultScan:
    """Every readable result record under the folders (a later folder's copy of a run id wins), and
    the files skipped as not readable records, each with why (also logged as a warning), and the
    environment differences between runs a scenario averages or pairs (logged as warnings too).

    ``sources`` maps each run id to its folder, so the report can say where a run came from.
    """
    by_key: dict[tuple, RunRecord] = {}
    sources: dict[str, str] = {}
    skipped: list[tuple[Path, str]] = []
    for folder in folders:
        scan = scan_results(Path(folder))
        skipped.extend(scan.skipped)
        for record in scan.records:
            sources[record.run_id] = str(folder)
            by_key[(_scenario(record), _strategy(record), record.seed)] = record
    records = list(by_key.values())
    differences = environment_differences(records)
    for sentence in differences:
        if sentence not in _WARNED:  # `run` reads a folder for its table and again for its report: say it once
            _WARNED.add(sentence)
            log.warning("warning: %s", sentence)
    return ResultScan(records, skipped, sources, differences)


def _scenario(record: RunRecord) -> str:
    return record.scenario.label


def _strategy(record: RunRecord) -> str:
    return record.strategy.label


def _strategy_name(record: RunRecord) -> str:
    return record.strategy.name


def reference_accuracies(records: Iterable[RunRecord | Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """a*_j per scenario: mean over seeds of the reference run's R[j][j] (joint, else standalone).

    A non-square reference matrix (one joint training stage) contributes its final row instead.
    """
    found: dict[str, dict[str, list[np.ndarray]]] = defaultdict(lambda: defaultdict(list))
    for record in as_records(records):
        if record.ok and _strategy_name(record) in REFERENCE_STRATEGIES:
            R = np.asarray(record.accuracy_matrix, dtype=float)
            found[_scenario(record)][_strategy_name(record)].append(np.diag(R) if _is_square(R) else R[-1])
    refs = {}
    for scenario, by_name in found.items():
        for name in REFERENCE_STRATEGIES:
            rows = by_name.get(name)
            if rows and len({len(r) for r in rows}) == 1:
                refs[scenario] = np.mean(rows, axis=0)
                break
    return refs


def runs_long(records: Iterable[RunRecord | Mapping[str, Any]]) -> pd.DataFrame:
    """One row per (ok run, metric): scenario, strategy, strategy_name, seed, metric, value.

    Adds ``forgetting_reduction`` per seed against the naive run of the same scenario and seed.
    """
    records = as_records(records)
    refs = reference_accuracies(records)
    rows = []
    for record in records:
        if not has_results(record):
            continue
        ident = {"scenario": _scenario(record), "strategy": _strategy(record),
                 "strategy_name": _strategy_name(record), "seed": record.seed}
        for metric, value in run_metrics(record, refs.get(ident["scenario"])).items():
            rows.append({**ident, "metric": metric, "value": value})
    frame = pd.DataFrame(rows, columns=["scenario", "strategy", "strategy_name", "seed", "metric", "value"])
    if frame.empty:
        return frame
    F = frame[frame.metric == "forgetting"]
    naive = F[F.strategy_name == NAIVE].drop_duplicates(["scenario", "seed"]).set_index(["scenario", "seed"]).value
    extra = []
    for row in F.itertuples(index=False):
        base = naive.get((row.scenario, row.seed))
        if base is None or row.strategy_name == NAIVE:
            continue
        extra.append({"scenario": row.scenario, "strategy": row.strategy, "strategy_name": row.strategy_name,
                      "seed": row.seed, "metric": "forgetting_reduction",
                      "value": metrics.forgetting_reduction(row.value, base)})
    if extra:
        frame = pd.concat([frame, pd.DataFrame(extra)], ignore_index=True)
    return frame


def strategy_order(records: Iterable[RunRecord | Mapping[str, Any]]) -> dict[str, list[str]]:
    """Scenario -> strategy labels: naive first, then the order in which strategies first appear."""
    records = as_records(records)
    order: dict[str, list[str]] = {}
    for record in sorted(records, key=lambda r: r.started_at or ""):  # the order they ran in
        labels = order.setdefault(_scenario(record), [])
        if _strategy(record) not in labels:
            labels.append(_strategy(record))
    for scenario, labels in order.items():
        naive = [r for r in records if _scenario(r) == scenario and _strategy_name(r) == NAIVE]
        first = {_strategy(r) for r in naive}
        labels.sort(key=lambda s: s not in first)  # stable: keeps first appearance otherwise
    return order


def summary_table(
    long: pd.DataFrame, method: Literal["t", "bootstrap"] = "t", order: dict[str, list[str]] | None = None
) -> pd.DataFrame:
    """Tidy summary: scenario, strategy, metric, mean, std, ci_low, ci_high, n_seeds.

    One row per (scenario, strategy, metric) with at least one finite value; ``n_seeds`` counts
    the seeds with a finite value. The interval is clipped to the metric's range (a t interval
    over 2 seeds of an accuracy can otherwise pass 100%). Strategies follow ``order`` (scenario ->
    labels) when given, else first appearance.
    """
    rows = []
    if long.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    for scenario, sc in long.groupby("scenario", sort=False):
        labels = list(dict.fromkeys([*(order or {}).get(scenario, []), *sc.strategy]))
        for strategy in labels:
            st = sc[sc.strategy == strategy]
            for metric, info in METRICS.items():
                s = stats.summarize(st.value[st.metric == metric], method=method)
                if s.n == 0:
                    continue
                low, high = (float(np.clip(v, *info.bounds)) if np.isfinite(v) else v
                             for v in (s.ci_low, s.ci_high))
                rows.append([scenario, strategy, metric, s.mean, s.std, low, high, s.n])
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def comparisons_table(long: pd.DataFrame) -> pd.DataFrame:
    """Every non-naive strategy minus naive, paired on shared seeds, per metric (see stats.paired_difference)."""
    rows = []
    if long.empty:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    for scenario, sc in long.groupby("scenario", sort=False):
        naive_rows = sc[sc.strategy_name == NAIVE]
        if naive_rows.empty:
            continue
        naive_label = naive_rows.strategy.iloc[0]
        for strategy, st in sc.groupby("strategy", sort=False):
            if strategy == naive_label:
                continue
            for metric in METRICS:
                if metric == "forgetting_reduction":
                    continue  # already relative to naive
                mine = st[st.metric == metric]
                base = naive_rows[(naive_rows.metric == metric) & (naive_rows.strategy == naive_label)]
                if mine.empty or base.empty:
                    continue
                p = stats.paired_difference(dict(zip(mine.seed, mine.value.astype(float))),
                                            dict(zip(base.seed, base.value.astype(float))))
                if p.n:
                    rows.append([scenario, strategy, metric, p.diff, p.ci_low, p.ci_high, p.p_value, p.n])
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def problem_runs(records: Iterable[RunRecord | Mapping[str, Any]], sources: Mapping[str, str] | None = None
                 ) -> pd.DataFrame:
    """Runs that are not ok (failed, diverged, collapsed, or ok without an accuracy matrix), with their error
    and the folder each came from (``sources``: run id -> folder, as :func:`load_records` gives it)."""
    sources = sources or {}
    rows = [
        {"scenario": _scenario(r), "strategy": _strategy(r), "seed": r.seed, "status": r.status,
         "error": r.error or ("no accuracy matrix" if r.status == "ok" else ""),
         "run_id": r.run_id, "source": sources.get(r.run_id, "")}
        for r in as_records(records) if not has_results(r)
    ]
    return pd.DataFrame(rows, columns=["scenario", "strategy", "seed", "status", "error", "run_id", "source"])


def flagged_runs(records: Iterable[RunRecord | Mapping[str, Any]]) -> pd.DataFrame:
    """Ok runs that left some tasks at chance (``tasks_at_chance``): counted in every metric, and listed
    with the record's sentence (``3 of 5 tasks at chance at the end: ...``) so that is never silent."""
    rows = [
        {"scenario": _scenario(r), "strategy": _strategy(r), "seed": r.seed, "run_id": r.run_id,
         "tasks": len(r.tasks_at_chance),
         "warning": next((w for w in r.warnings or [] if "at chance" in w), "")}
        for r in as_records(records) if r.ok and r.tasks_at_chance
    ]
    return pd.DataFrame(rows, columns=["scenario", "strategy", "seed", "run_id", "tasks", "warning"])


def has_results(record: RunRecord) -> bool:
    """An ok run with numbers to report: an accuracy matrix, or a search's own (a language-model search
    keeps no accuracy matrix)."""
    return record.ok or (record.status == "ok" and record.search is not None)
