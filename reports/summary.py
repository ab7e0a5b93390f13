"""The one aggregator: result records to tidy tables (per-run metrics, the across-seed summary, paired
comparisons, the runs to list apart). The terminal table, ``Results.summary``, the report, the verdicts and
the reproductions all read these tables; the frames the figures plot are in :mod:`forgetbench.reports.frames`.

Only ``ok`` runs feed the metrics; every other run is listed by :func:`problem_runs`. Optional
result keys (``curves``, ``memory``, ``err1``/``err2``, ``standalone_accuracy``, reference runs of
the ``joint``/``standalone`` strategies) add metrics when present and nothing when absent.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import AbstractSet, Any, Iterable, Iterator, Literal, Mapping, Sequence

import numpy as np
import pandas as pd

from forgetbench.benchmark.core.record import RunRecord, as_records
from forgetbench.benchmark.core import store
from forgetbench.benchmark.core.store import ResultScan
from forgetbench.benchmark.core import decide, metrics, plan, stats
from forgetbench.benchmark.core.metrics import _is_square, run_intransigence, run_metrics
from forgetbench.benchmark.core.metric_registry import METRICS, Metric, registered_metrics  # noqa: F401  (METRICS re-exported)
from forgetbench.reports.environment import environment_differences

log = logging.getLogger(__name__)
_WARNED: set[str] = set()  # environment warnings already logged by this process

SUMMARY_COLUMNS = ["scenario", "strategy", "metric", "mean", "std", "ci_low", "ci_high", "n_seeds"]
COMPARISON_COLUMNS = [
    "scenario",
    "strategy",
    "metric",
    "diff",
    "ci_low",
    "ci_high",
    "p_value",  # the paired test's p of no difference, unadjusted
    "n_pairs",
    "p_adjusted",  # the family's: the scenario's strategies against naive on this metric
    "outcome",  # less, greater or undecided: Holm's step-down over the family of paired tests
]
NAIVE = "naive"
REFERENCE_STRATEGIES = ("joint", "standalone")  # preferred in this order for intransigence


FIGURE_RUNS = 20  # per (scenario, strategy): runs whose curves and attribution a report's figures draw
PARALLEL_FROM = 2_000  # result files in a folder from which lean reading is spread over the machine's cores
_CHUNK = 250  # result files per task of a parallel read


def load_records(*folders: Path, figure_runs: int | None = None) -> ResultScan:
    """Every readable result record under the folders, and the files skipped as not readable records, each with
    why (also logged as a warning): a record that is not a run of its folder's plan, or whose matrix is not its
    scenario's shape, is skipped too (:func:`forgetbench.benchmark.core.plan.refusals`); and the environment differences between runs a scenario averages or pairs
    (logged as warnings too). One record per run: two files of one run id, or of one (scenario, strategy, seed),
    that differ are both refused and named (which is right cannot be told, and a mean over either would be a silent
    number); byte-identical copies (one folder given twice, a copied folder) count once, the others named.

    ``sources`` maps each run id to its folder, so the report can say where a run came from. Each run's metrics
    (:func:`run_metrics`, no reference) are computed as it is read, into ``metrics``, what :func:`runs_long` takes.

    With ``figure_runs`` N, only the first N readable runs of each (scenario, strategy), in run-id order (seeds
    numerically), are read whole; the others lean (``store.read_lean``: see ``record.LEAN_SKIPS``; listed
    in ``lean``), their metrics still measured on their curves, so every table counts every run while only the
    figures' sample keeps its detail. A folder of :data:`PARALLEL_FROM` files or more is then read on every core.
    A metric added with ``register_metric`` may read any field, so with one registered every record is read whole.
    """
    if registered_metrics():
        figure_runs = None
    entries: list[tuple[store.ReadResult, dict[str, float], str]] = []
    skipped: list[tuple[Path, str]] = []
    missing: list[store.MissingRun] = []
    for folder in folders:
        found: list[tuple[store.ReadResult, dict[str, float], str]] = []
        # a folder written before plans is checked by its records' configs: every one read whole, in every reader
        planned = plan.plan_path(Path(folder)).exists()
        for read, values in _read_folder(Path(folder), figure_runs if planned else None):
            if read.record is None:
                skipped.append((read.path, str(read.error)))
            else:
                found.append((read, values, str(folder)))
        against_plan = plan.refusals(Path(folder), [read.record for read, _, _ in found if read.record is not None])
        for read, values, source in found:
            assert read.record is not None
            why = against_plan.get(read.record.run_id)
            if why is None:
                entries.append((read, values, source))
            else:
                log.warning("skipping %s: %s", read.path, why)
                skipped.append((read.path, why))
    entries, refused = _one_record_per_run(entries)
    skipped += refused
    for folder in folders:  # planned runs with no record kept: named where not named yet, counted as not ok
        present = {path.parent.name for path in store.result_paths(Path(folder))}
        accepted = {read.record.run_id for read, _, source in entries if read.record and source == str(folder)}
        for run in plan.missing_runs(Path(folder), present, accepted):
            if not run.named:
                log.warning("missing %s: %s", run.path, run.why)
                skipped.append((run.path, run.why))
            missing.append(run)
    by_key: dict[tuple, RunRecord] = {}
    computed: dict[tuple, dict[str, float]] = {}
    lean: set[tuple] = set()
    sources: dict[str, str] = {}
    shared: dict[str, Any] = {}
    for read, values, source in entries:
        record = read.record
        assert record is not None  # entries hold readable records only
        sources[record.run_id] = source
        key = (_scenario(record), _strategy(record), record.seed)
        by_key[key], computed[key] = record, values
        if read.lean:
            store.share_repeated(record, shared)
            lean.add(key)
    records = list(by_key.values())
    differences = environment_differences(records)
    for sentence in differences:
        if sentence not in _WARNED:  # `run` reads a folder for its table and again for its report: say it once
            _WARNED.add(sentence)
            log.warning("warning: %s", sentence)
    return ResultScan(
        records,
        skipped,
        sources,
        differences,
        metrics={by_key[key].run_id: values for key, values in computed.items()},
        lean={by_key[key].run_id for key in lean},
        missing=missing,
    )


def _one_record_per_run(
    entries: list[tuple[store.ReadResult, dict[str, float], str]],
) -> tuple[list[tuple[store.ReadResult, dict[str, float], str]], list[tuple[Path, str]]]:
    """``entries`` with every duplicate resolved (see :func:`load_records`): the entries kept, and the files
    refused with why."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, (read, _, _) in enumerate(entries):
        record = read.record
        assert record is not None
        groups[("run id", record.run_id)].append(i)
        groups[("run", _scenario(record), _strategy(record), record.seed)].append(i)
    refused: dict[int, str] = {}
    for key, members in groups.items():
        if len(members) < 2:
            continue
        contents = {i: _bytes(entries[i][0].path) for i in members}
        first = members[0]
        what = f"run id {key[1]!r}" if key[0] == "run id" else f"{key[1]} / {key[2]} / seed {key[3]}"
        if all(contents[i] == contents[first] for i in members):
            for i in members[1:]:
                refused.setdefault(i, f"the same record as {entries[first][0].path} ({what}): counted once")
            continue
        for i in members:
            others = ", ".join(str(entries[j][0].path) for j in members if j != i)
            refused[i] = f"another record of {what} differs from it ({others}): neither is used"
    kept = [entry for i, entry in enumerate(entries) if i not in refused]
    for i, why in refused.items():
        log.warning("skipping %s: %s", entries[i][0].path, why)
    return kept, [(entries[i][0].path, why) for i, why in sorted(refused.items())]


def _bytes(path: Path) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except OSError:
        return None


def tuning_studies(folders: Iterable[Path]) -> list[dict[str, Any]]:
    """The studies of every folder's ``tuning.json`` (none where a folder tuned nothing or its file is unreadable:
    the report then has nothing to say about tuning)."""
    import json

    studies: list[dict[str, Any]] = []
    for folder in folders:
        try:
            found = json.loads(store.ResultFolder(Path(folder)).tuning_file.read_text()).get("studies", [])
        except (OSError, ValueError, AttributeError):
            continue
        studies += [s for s in found if isinstance(s, dict)] if isinstance(found, list) else []
    return studies


def _read_folder(folder: Path, figure_runs: int | None) -> Iterator[tuple[store.ReadResult, dict[str, float]]]:
    """Each result file of ``folder`` read (whole, or lean beyond the first ``figure_runs`` readable runs of a
    (scenario, strategy)) with its metrics; the metrics of an unreadable file are empty."""
    paths = store.result_paths(folder)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    whole: Counter[tuple[str, str]] = Counter()
    if figure_runs is None or len(paths) < PARALLEL_FROM or cores < 2:
        for path in paths:
            read = store.read_result_file(
                path,
                None if figure_runs is None else lambda scenario, strategy: whole[(scenario, strategy)] >= figure_runs,
            )
            if read.record is not None and not read.lean:
                whole[(_scenario(read.record), _strategy(read.record))] += 1
            yield read, _metrics_of(read)
        return
    # every file read lean on every core (fork: the workers start with this process's imports), then the first
    # figure_runs of each (scenario, strategy) read again whole here, for the figures
    chunks = [paths[i : i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
    with ProcessPoolExecutor(min(cores, len(chunks)), mp_context=multiprocessing.get_context("fork")) as pool:
        for read, values in itertools.chain.from_iterable(pool.map(_read_lean_chunk, chunks)):
            group = (_scenario(read.record), _strategy(read.record)) if read.record is not None else None
            if group is not None and whole[group] < figure_runs:
                read = store.read_result_file(read.path)
                values = _metrics_of(read)
                whole[group] += read.record is not None
            yield read, values


def _metrics_of(read: store.ReadResult) -> dict[str, float]:
    return {} if read.record is None else run_metrics(read.record, curve_points=read.curve_points)


def _read_lean_chunk(paths: list[Path]) -> list[tuple[store.ReadResult, dict[str, float]]]:
    out = []
    for read in map(store.read_lean, paths):
        values = _metrics_of(read)
        read.curve_points = None  # measured: not worth sending back
        out.append((read, values))
    return out


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


def runs_long(
    records: Iterable[RunRecord | Mapping[str, Any]], computed: Mapping[str, Mapping[str, float]] | None = None
) -> pd.DataFrame:
    """One row per (ok run, metric): scenario, strategy, strategy_name, seed, round (of ``seeds: {start, max}``
    that ran it: 0 for the first seeds), metric, value.

    Adds ``forgetting_reduction`` per seed against the naive run of the same scenario and seed. ``computed`` (run
    id -> metrics, as :func:`load_records` gives them for runs read without their figure fields) stands for
    :func:`run_metrics` of those runs; intransigence is still measured here, against the scenario's reference.
    The frame is built column by column: 100,000 runs make millions of rows.
    """
    records = as_records(records)
    refs = reference_accuracies(records)
    computed = computed or {}
    columns: dict[str, list[Any]] = {
        k: [] for k in ("scenario", "strategy", "strategy_name", "seed", "round", "metric", "value")
    }
    for record in records:
        if not has_results(record):
            continue
        reference = refs.get(_scenario(record))
        values = computed.get(record.run_id)
        if values is None:
            values = run_metrics(record, reference)
        elif reference is not None and record.ok:
            values = {
                **values,
                "intransigence": run_intransigence(np.asarray(record.accuracy_matrix, float), reference),
            }
        n = len(values)
        columns["scenario"] += [_scenario(record)] * n
        columns["strategy"] += [_strategy(record)] * n
        columns["strategy_name"] += [_strategy_name(record)] * n
        columns["seed"] += [record.seed] * n
        columns["round"] += [record.round or 0] * n
        columns["metric"] += list(values)
        columns["value"] += [float(v) for v in values.values()]
    frame = pd.DataFrame(columns)
    if frame.empty:
        return frame
    F = frame[frame.metric == "forgetting"]
    naive_rows = F[F.strategy_name == NAIVE].drop_duplicates(["scenario", "seed"])
    naive = dict(zip(zip(naive_rows.scenario, naive_rows.seed), naive_rows.value))
    others = F[F.strategy_name != NAIVE]
    paired = [key in naive for key in zip(others.scenario, others.seed)]
    extra = others.loc[paired].assign(metric="forgetting_reduction")
    if len(extra):
        extra["value"] = [
            metrics.forgetting_reduction(v, naive[key]) for v, key in zip(extra.value, zip(extra.scenario, extra.seed))
        ]
        frame = pd.concat([frame, extra], ignore_index=True)
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
    the seeds with a finite value. No interval (NaN) from fewer than 3 seeds. The interval is clipped to the metric's range (a t interval
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
                low, high = (float(np.clip(v, *info.bounds)) if np.isfinite(v) else v for v in (s.ci_low, s.ci_high))
                if s.n < decide.MIN_PAIRED:  # an interval from one or two values says nothing: none is shown
                    low = high = float("nan")
                rows.append([scenario, strategy, metric, s.mean, s.std, low, high, s.n])
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def seed_rounds(long: pd.DataFrame) -> dict[str, dict[int, int]]:
    """Strategy -> seed -> the round of ``seeds: {start, max}`` that ran it (0: the first seeds), from one
    scenario's rows of ``runs_long`` (its ``round`` column; every seed 0 where it has none)."""
    if "round" not in long.columns or not len(long):
        return {}
    out: dict[str, dict[int, int]] = {}
    for strategy, seed, round_ in zip(long.strategy, long.seed, long["round"]):
        out.setdefault(str(strategy), {})[int(seed)] = int(round_)
    return out


def how_ran(records: Sequence[RunRecord]) -> str:
    """How a pair's runs trained: ``alone``, ``batches of K`` (each record's time its 1/K share of its batch's wall),
    or ``mixed`` (some each way: their times are not one quantity)."""
    sizes = sorted({len(r.batch.seeds) for r in records if r.batch is not None and r.batch.seeds})
    batched = sum(1 for r in records if r.batch is not None and r.batch.seeds)
    if not batched:
        return "alone"
    if batched < len(records):
        return "mixed"
    return f"batches of {', '.join(map(str, sizes))}"


def one_way(ran: str | None) -> str | None:
    """``alone``, ``batched`` or ``mixed``: what a cost ratio needs equal on both sides."""
    return "batched" if ran is not None and ran.startswith("batches") else ran


def time_unlike_naive(records: Sequence[RunRecord]) -> set[tuple[str, str]]:
    """(scenario, strategy) whose ok runs trained otherwise than their scenario's naive (a batch's 1/K shares against
    runs alone, or either mixed): their seconds are not naive's quantity, so no paired test of time is made."""
    ran: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for r in records:
        if r.ok:
            ran[(_scenario(r), _strategy(r))].append(r)
    naive = {scenario: how_ran(rs) for (scenario, strategy), rs in ran.items() if rs[0].strategy.name == NAIVE}
    return {
        (scenario, strategy)
        for (scenario, strategy), rs in ran.items()
        if scenario in naive
        and (one_way(how_ran(rs)) != one_way(naive[scenario]) or "mixed" in (how_ran(rs), naive[scenario]))
    }


def comparisons_table(
    long: pd.DataFrame,
    method: decide.Method = "fixed",
    alpha: float = decide.ALPHA,
    planned: int | None = None,
    unlike: AbstractSet[tuple[str, str]] = frozenset(),
) -> pd.DataFrame:
    """Every non-naive strategy minus naive, paired on shared seeds, per metric, decided as one family per (scenario,
    metric) by :mod:`forgetbench.benchmark.core.decide` (``method``: fixed seeds, or seeds added in rounds planned
    to ``planned``): ``diff`` (the mean paired difference), ``ci_low`` / ``ci_high`` (its interval at the level its
    claim was tested at; none on fewer than 3 pairs), ``p_value`` (the paired test's p of no difference,
    unadjusted), ``p_adjusted`` (Holm's: the smallest family-wise alpha at which it is decided), ``outcome`` (less,
    greater, undecided: no equivalence is claimed against naive). ``unlike``: (scenario, strategy) whose runs trained
    otherwise than naive's (:func:`time_unlike_naive`): no row of seconds for them."""
    if long.empty:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    found: dict[tuple[str, str], list[decide.PairEvidence]] = {}
    for scenario, sc in long.groupby("scenario", sort=False):
        naive_rows = sc[sc.strategy_name == NAIVE]
        if naive_rows.empty:
            continue
        naive_label = str(naive_rows.strategy.iloc[0])
        rounds = seed_rounds(sc)
        for strategy, st in sc.groupby("strategy", sort=False):
            if strategy == naive_label:
                continue
            for metric in METRICS:
                if metric == "forgetting_reduction":
                    continue  # already relative to naive
                if METRICS[metric].unit == "seconds" and (str(scenario), str(strategy)) in unlike:
                    continue  # a batch's share against a run alone: not one quantity
                mine = st[st.metric == metric]
                base = naive_rows[(naive_rows.metric == metric) & (naive_rows.strategy == naive_label)]
                values, reference = (dict(zip(f.seed.astype(int), f.value.astype(float))) for f in (mine, base))
                pair = decide.paired(str(strategy), naive_label, values, reference, 0.0, method, rounds, planned)
                if pair.n:
                    found.setdefault((str(scenario), metric), []).append(pair)
    rows = []
    for (scenario, metric), pairs in found.items():
        for pair, d in zip(pairs, decide.decide(pairs, alpha, project=False)):
            rows.append(
                [scenario, pair.first, metric, d.diff, d.ci_low, d.ci_high, d.p_value, d.n, d.p_adjusted, d.outcome]
            )
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def problem_runs(
    records: Iterable[RunRecord | Mapping[str, Any]], sources: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """Runs that are not ok (failed, diverged, collapsed, or ok without an accuracy matrix), with their error
    and the folder each came from (``sources``: run id -> folder, as :func:`load_records` gives it)."""
    sources = sources or {}
    rows = [
        {
            "scenario": _scenario(r),
            "strategy": _strategy(r),
            "seed": r.seed,
            "status": r.status,
            "error": r.error or ("no accuracy matrix" if r.status == "ok" else ""),
            "run_id": r.run_id,
            "source": sources.get(r.run_id, ""),
        }
        for r in as_records(records)
        if not has_results(r)
    ]
    return pd.DataFrame(rows, columns=["scenario", "strategy", "seed", "status", "error", "run_id", "source"])


def flagged_runs(records: Iterable[RunRecord | Mapping[str, Any]]) -> pd.DataFrame:
    """Ok runs that left some tasks at chance (``tasks_at_chance``): counted in every metric, and listed
    with the record's sentence (``3 of 5 tasks at chance at the end: ...``) so that is never silent."""
    rows = [
        {
            "scenario": _scenario(r),
            "strategy": _strategy(r),
            "seed": r.seed,
            "run_id": r.run_id,
            "tasks": len(r.tasks_at_chance),
            "warning": next((w for w in r.warnings or [] if "at chance" in w), ""),
        }
        for r in as_records(records)
        if r.ok and r.tasks_at_chance
    ]
    return pd.DataFrame(rows, columns=["scenario", "strategy", "seed", "run_id", "tasks", "warning"])


def has_results(record: RunRecord) -> bool:
    """An ok run with numbers to report: an accuracy matrix, or a search's own (a language-model search
    keeps no accuracy matrix)."""
    return record.ok or (record.status == "ok" and record.search is not None)
