"""From result records to tidy tables: per-run metrics, the across-seed summary, paired comparisons.

Only ``ok`` runs feed the metrics; every other run is listed by :func:`problem_runs`. Optional
result keys (``curves``, ``memory``, ``err1``/``err2``, ``standalone_accuracy``, reference runs of
the ``joint``/``standalone`` strategies) add metrics when present and nothing when absent.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

import numpy as np
import pandas as pd

from forgetbench.benchmark.core.store import ResultScan, scan_results
from forgetbench.benchmark.core import metrics, stats
from forgetbench.benchmark.core.metrics import _is_square, curve_series, is_ok, run_metrics  # noqa: F401  (the one metrics path)
from forgetbench.benchmark.core.metric_registry import METRICS, Metric  # noqa: F401  (re-exported: reports.summary.METRICS)

SUMMARY_COLUMNS = ["scenario", "strategy", "metric", "mean", "std", "ci_low", "ci_high", "n_seeds"]
COMPARISON_COLUMNS = ["scenario", "strategy", "metric", "diff", "ci_low", "ci_high", "p_value", "n_pairs"]
NAIVE = "naive"
REFERENCE_STRATEGIES = ("joint", "standalone")  # preferred in this order for intransigence


def load_records(*folders: Path) -> ResultScan:
    """Every readable result record under the folders (a later folder's copy of a run id wins), and
    the files skipped as not readable records, each with why (also logged as a warning).

    Each record gets ``_source`` (its folder) so the report can say where it came from.
    """
    by_key: dict[tuple, dict[str, Any]] = {}
    skipped: list[tuple[Path, str]] = []
    for folder in folders:
        scan = scan_results(Path(folder))
        skipped.extend(scan.skipped)
        for record in scan.records:
            record["_source"] = str(folder)
            by_key[(_scenario(record), _strategy(record), record.get("seed"))] = record
    return ResultScan(list(by_key.values()), skipped)


def _scenario(record: dict[str, Any]) -> str:
    return str(record.get("scenario", {}).get("label", "?"))


def _strategy(record: dict[str, Any]) -> str:
    return str(record.get("strategy", {}).get("label", "?"))


def _strategy_name(record: dict[str, Any]) -> str:
    return str(record.get("strategy", {}).get("name", ""))


def reference_accuracies(records: Iterable[dict[str, Any]]) -> dict[str, np.ndarray]:
    """a*_j per scenario: mean over seeds of the reference run's R[j][j] (joint, else standalone).

    A non-square reference matrix (one joint training stage) contributes its final row instead.
    """
    found: dict[str, dict[str, list[np.ndarray]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        if is_ok(record) and _strategy_name(record) in REFERENCE_STRATEGIES:
            R = np.asarray(record["accuracy_matrix"], dtype=float)
            found[_scenario(record)][_strategy_name(record)].append(np.diag(R) if _is_square(R) else R[-1])
    refs = {}
    for scenario, by_name in found.items():
        for name in REFERENCE_STRATEGIES:
            rows = by_name.get(name)
            if rows and len({len(r) for r in rows}) == 1:
                refs[scenario] = np.mean(rows, axis=0)
                break
    return refs


def runs_long(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (ok run, metric): scenario, strategy, strategy_name, seed, metric, value.

    Adds ``forgetting_reduction`` per seed against the naive run of the same scenario and seed.
    """
    refs = reference_accuracies(records)
    rows = []
    for record in records:
        if not has_results(record):
            continue
        ident = {"scenario": _scenario(record), "strategy": _strategy(record),
                 "strategy_name": _strategy_name(record), "seed": int(record.get("seed", 0))}
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


def strategy_order(records: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Scenario -> strategy labels: naive first, then the order in which strategies first appear."""
    order: dict[str, list[str]] = {}
    for record in sorted(records, key=lambda r: str(r.get("started_at") or "")):  # the order they ran in
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


def problem_runs(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Runs that are not ok (failed, diverged, collapsed, or ok without an accuracy matrix), with their error."""
    rows = [
        {"scenario": _scenario(r), "strategy": _strategy(r), "seed": r.get("seed"), "status": r.get("status"),
         "error": r.get("error") or ("no accuracy matrix" if r.get("status") == "ok" else ""),
         "run_id": r.get("run_id"), "source": r.get("_source", "")}
        for r in records if not has_results(r)
    ]
    return pd.DataFrame(rows, columns=["scenario", "strategy", "seed", "status", "error", "run_id", "source"])


def flagged_runs(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Ok runs that left some tasks at chance (``tasks_at_chance``): counted in every metric, and listed
    with the record's sentence (``3 of 5 tasks at chance at the end: ...``) so that is never silent."""
    rows = [
        {"scenario": _scenario(r), "strategy": _strategy(r), "seed": r.get("seed"), "run_id": r.get("run_id"),
         "tasks": len(r["tasks_at_chance"]),
         "warning": next((w for w in r.get("warnings") or [] if "at chance" in w), "")}
        for r in records if is_ok(r) and r.get("tasks_at_chance")
    ]
    return pd.DataFrame(rows, columns=["scenario", "strategy", "seed", "run_id", "tasks", "warning"])


# --- frames the figures plot -----------------------------------------------------------------------


def mean_matrices(records: list[dict[str, Any]], scenario: str) -> dict[str, np.ndarray]:
    """Strategy -> accuracy matrix averaged over its ok seeds (seeds whose shape differs are skipped)."""
    by_strategy: dict[str, list[np.ndarray]] = defaultdict(list)
    for r in records:
        if is_ok(r) and _scenario(r) == scenario:
            by_strategy[_strategy(r)].append(np.asarray(r["accuracy_matrix"], dtype=float))
    out = {}
    for strategy, mats in by_strategy.items():
        shape = mats[0].shape
        out[strategy] = np.mean([m for m in mats if m.shape == shape], axis=0)
    return out


def final_accuracy_frame(records: list[dict[str, Any]], scenario: str) -> pd.DataFrame:
    """strategy, seed, experience, accuracy: the final model's accuracy on each experience."""
    rows = [
        {"strategy": _strategy(r), "seed": r.get("seed"), "experience": j, "accuracy": float(a)}
        for r in records if is_ok(r) and _scenario(r) == scenario
        for j, a in enumerate(r["accuracy_matrix"][-1])
    ]
    return pd.DataFrame(rows, columns=["strategy", "seed", "experience", "accuracy"])


def curves_frame(records: list[dict[str, Any]], scenario: str) -> pd.DataFrame:
    """strategy, seed, eval_exp, train_exp, iteration, step, accuracy for earlier models.

    ``step`` is the iteration counted from the start of the whole run: each experience's curve is
    shifted by the largest iteration seen in the experiences before it (over every run of the
    scenario, so all strategies share one time axis).
    """
    rows = []
    for r in records:
        if is_ok(r) and _scenario(r) == scenario:
            for (t, e), (it, acc) in curve_series(r).items():
                rows += [{"strategy": _strategy(r), "seed": r.get("seed"), "train_exp": t, "eval_exp": e,
                          "iteration": float(i), "accuracy": float(a)} for i, a in zip(it, acc)]
    frame = pd.DataFrame(rows, columns=["strategy", "seed", "train_exp", "eval_exp", "iteration", "accuracy"])
    if frame.empty:
        return frame.assign(step=pd.Series(dtype=float))
    span = frame.groupby("train_exp").iteration.max()
    offsets = span.shift(1, fill_value=0).cumsum()
    frame["step"] = frame.iteration + frame.train_exp.map(offsets)
    return frame


def err_gap_frame(records: list[dict[str, Any]], scenario: str) -> pd.DataFrame:
    """strategy, seed, round, architecture, gap = err2 - err1, for supernet runs."""
    rows = []
    for r in records:
        if is_ok(r) and _scenario(r) == scenario and r.get("err1") is not None and r.get("err2") is not None:
            gap = np.asarray(r["err2"], dtype=float) - np.asarray(r["err1"], dtype=float)
            for (k, a), g in np.ndenumerate(gap):
                if np.isfinite(g):
                    rows.append({"strategy": _strategy(r), "seed": r.get("seed"), "round": k,
                                 "architecture": a, "gap": float(g)})
    return pd.DataFrame(rows, columns=["strategy", "seed", "round", "architecture", "gap"])


def search_scores_frame(records: list[dict[str, Any]], scenario: str) -> pd.DataFrame:
    """strategy, seed, candidate, supernet (validation accuracy), standalone, chosen, for search runs."""
    rows = []
    for r in records:
        search = r.get("search")
        truth = r.get("standalone_accuracy")
        if not (is_ok(r) and _scenario(r) == scenario and search and truth):
            continue
        for k, (s, t) in enumerate(zip(search["validation_accuracy"], truth)):
            rows.append({"strategy": _strategy(r), "seed": r.get("seed"), "candidate": k, "supernet": float(s),
                         "standalone": float(t), "chosen": k == int(search["chosen"])})
    return pd.DataFrame(rows, columns=["strategy", "seed", "candidate", "supernet", "standalone", "chosen"])


def search_epochs_frame(records: list[dict[str, Any]], scenario: str) -> pd.DataFrame:
    """strategy, seed, epoch, forgetting value (mean, top-5 mean, max) and controller reward per search epoch."""
    rows = []
    for r in records:
        search = r.get("search")
        if not (has_results(r) and _scenario(r) == scenario and search):
            continue
        series = metrics.search_epochs(r)
        for e, (e1, e2) in enumerate(zip(r.get("err1") or [], r.get("err2") or [])):
            _, top5, _ = metrics.forgetting_value(e1, e2)
            rows.append({"strategy": _strategy(r), "seed": r.get("seed"), "epoch": e, "fv_mean": series["mean_gap"][e],
                         "fv_top5": top5, "fv_max": series["max_gap"][e], "fv_best5": series["best_gap"][e],
                         "reward": series["reward"][e]})
    return pd.DataFrame(rows, columns=["strategy", "seed", "epoch", "fv_mean", "fv_top5", "fv_max", "fv_best5", "reward"])


def has_results(record: dict[str, Any]) -> bool:
    """An ok run with numbers to report: an accuracy matrix, or a search's own (a language-model search
    keeps no accuracy matrix)."""
    return is_ok(record) or (record.get("status") == "ok" and bool(record.get("search")))


def sampled_search_unit(records: list[dict[str, Any]], scenario: str) -> tuple[str, float] | None:
    """``(axis label, scale)`` of err for a search whose architectures are sampled while it runs (its record
    names its error: ``enas_rnn``, ``enas_cnn``), None for any other scenario. Accuracy errors are drawn in
    points (scale 100), log-perplexities in nats (scale 1)."""
    errors = {str((r.get("search") or {}).get("error")) for r in records
              if _scenario(r) == scenario and (r.get("search") or {}).get("error")}
    if not errors:
        return None
    if any("log-perplexity" in e for e in errors):
        return "nats (log-perplexity)", 1.0
    return "points (validation error)", 100.0


MANY_EXPERIENCES = 20  # above this, per-experience figures are drawn as distributions (a search's candidates)


def many_experiences(records: list[dict[str, Any]], scenario: str) -> bool:
    """True when ``scenario``'s accuracy matrices have more than :data:`MANY_EXPERIENCES` columns (a search
    over tens to hundreds of architectures): one bar or heatmap column per experience is unreadable there."""
    return any(is_ok(r) and _scenario(r) == scenario and len(r["accuracy_matrix"][-1]) > MANY_EXPERIENCES
               for r in records)


SWEEP_METRICS = ("forgetting_value_mean", "search_tau", "regret")


def search_sweep_frame(table: pd.DataFrame, records: list[dict[str, Any]], setting: str = "steps_per_turn",
                       metrics_shown: Sequence[str] = SWEEP_METRICS) -> pd.DataFrame:
    """The summary rows of ``metrics_shown`` for the search scenarios of a suite that differ in ``setting``
    (a scenario param, e.g. the turn length), with that param's value as column ``setting``.

    Empty unless at least two search scenarios with results take different values of ``setting``. A line
    of the sweep is a ``series``: the strategy, followed by the search kind when the swept scenarios mix
    random and controller searches (so the two are never joined into one line)."""
    columns = [*SUMMARY_COLUMNS, "setting", "series"]
    value_of: dict[str, Any] = {}
    kind_of: dict[str, str] = {}
    for r in records:
        params = (r.get("scenario") or {}).get("params") or {}
        if has_results(r) and r.get("search") and setting in params:
            value_of[_scenario(r)] = params[setting]
            kind_of[_scenario(r)] = str(params.get("search", ""))
    if len(set(value_of.values())) < 2:
        return pd.DataFrame(columns=columns)
    rows = table[table.scenario.isin(list(value_of)) & table.metric.isin(list(metrics_shown))].copy()
    rows["setting"] = rows.scenario.map(value_of)
    mixed = len(set(kind_of.values())) > 1
    rows["series"] = [f"{s} · {kind_of[sc]}" if mixed else s for s, sc in zip(rows.strategy, rows.scenario)]
    return rows[columns].reset_index(drop=True)
