"""Running a whole suite: preflight checks, lock, resume, progress, one result file per run.

The suite decides what runs (resume: complete runs are skipped, failed/missing/corrupt ones rerun)
and writes every result file; an executor (:mod:`forgetbench.benchmark.run.executors`) decides where runs execute.
SIGTERM and Ctrl-C stop the suite at the next safe point (:mod:`forgetbench.benchmark.core.stop`): workers are
stopped and no temporary or partial file is left.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from collections import Counter

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

from tqdm.auto import tqdm

from forgetbench.benchmark.run import rounds, study_store, tracking, tuning, tuning_space
from forgetbench.benchmark.run.planned import planned_runs
from forgetbench.benchmark.core import plan, stop, store
from forgetbench.benchmark.core.plan import PlannedRun
from forgetbench.benchmark.core.config import ConfigError, SuiteConfig, refused_pairs
from forgetbench.benchmark.core.children import available_cores
from forgetbench.benchmark.run.batching.groups import BATCHING_OFF, batch_key, seed_batches
from forgetbench.benchmark.run.executors import Executor, Job, make_executor, resolve_executor
from forgetbench.benchmark.core.lock import check_output_folder, output_lock
from forgetbench.benchmark.core.record import RunRecord, SeedBatch
from forgetbench.benchmark.core.metric_registry import registered_metrics
from forgetbench.benchmark.core.references import searched_folders
from forgetbench.benchmark.run.spec import RunSpec, expand_suite, failure_record
from forgetbench.benchmark.core.training import MAX_SEED
from forgetbench.benchmark.run.preflight import (
    preflight,
)

NOT_FAILED = ("ok", "pruned")  # a pruned tuning trial ended as its study asked: not a run the user must look at
# a calibration probe or tuning trial that diverged or collapsed has found where a strength is too
# strong: an outcome of the search, counted apart; only the runs the user asked for (OUT/runs) make the exit 1
OUTCOMES = ("diverged", "collapsed")
T = TypeVar("T")


@dataclass
class SuiteOutcome:
    out: Path
    run_ids: list[str] = field(default_factory=list)  # every run of the suite, in suite order
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    diverged: list[str] = field(default_factory=list)  # calibration probes / tuning trials that diverged
    tuning: Path | None = None  # OUT/tuning.json when the suite tuned strategies

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


class Eta:
    """The time left, from the runs' own measured times: each finished (or resumed) run's seconds teach the mean of
    its (scenario, strategy), and the runs still planned of each are counted at that mean (a pair not measured yet:
    the mean over every run so far), over the workers."""

    def __init__(self, planned: Counter[tuple[str, str]], workers: int) -> None:
        self.left, self.workers = Counter(planned), max(workers, 1)
        self.seconds: dict[tuple[str, str], list[float]] = {}

    def done(self, spec: RunSpec, record: RunRecord | None) -> None:
        key = (spec.scenario.display_name, spec.strategy.name)
        if self.left[key] > 0:
            self.left[key] -= 1
        if record is not None and record.status in store.DONE_STATUSES:
            t = record.timing
            spent = t.train_seconds + t.eval_seconds + (t.retrain_seconds or 0.0) + (t.search_seconds or 0.0)
            self.seconds.setdefault(key, []).append(spent)

    def remaining(self) -> float | None:
        """Seconds left, or None before any run was measured."""
        every = [x for xs in self.seconds.values() for x in xs]
        if not every:
            return None
        overall = sum(every) / len(every)
        means = {k: sum(v) / len(v) for k, v in self.seconds.items()}
        return sum(n * means.get(k, overall) for k, n in self.left.items()) / self.workers


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class _Driver:
    """Runs batches of jobs on an executor; the only writer of result files."""

    def __init__(
        self,
        executor: Executor,
        out: Path,
        outcome: SuiteOutcome,
        bar,
        retries: int,
        fresh: bool,
        loggers: Sequence[str] | None = None,
        suite_name: str = "",
        batch_seeds: bool = True,
    ):
        self.executor, self.out, self.outcome = executor, out, outcome
        self.batch_seeds = batch_seeds  # one run's seeds in a batch train as one stacked model (run.batching)
        self.refused_batches: dict[str, str] = {}  # runs whose seeds' batch was refused (the reason): apart now
        self.bar, self.retries, self.fresh = bar, retries, fresh
        self.loggers, self.suite_name = list(loggers or []), suite_name
        self.exploring: set[str] = set()  # runs of OUT/runs that explore, not asked for: a tuned point's neighbours
        self.asked: set[str] = set()  # the runs of OUT/runs this invocation asked for: the plan's ``last``
        self.eta: Eta | None = None  # the time left, where the suite's plan is known
        self.now = ""  # where the run in progress is (a worker's last report)

    def run_batch(self, batch: list[tuple[Path, RunSpec]]) -> None:
        """Run what is not complete in ``batch`` (folder, spec); retry failures up to ``retries``. Each folder's
        plan gains the batch's runs first; a record in the way of a run that is not that run's (another config, a
        partial matrix, an unreadable file) is moved aside, never deleted."""
        self._plan(batch)
        todo = []
        found = [store.ResultFolder(folder).read(spec.run_id) for folder, spec in batch]
        # a matrix of another shape than its scenario's other records (a partial or padded one) is not complete
        misshapen = plan.shape_refusals([r for r in found if r is not None])
        for (folder, spec), previous in zip(batch, found):
            if previous is not None and previous.run_id in misshapen:
                previous = None
            if not self.fresh and store.is_complete(previous, spec.resolved(), spec.retired_params()):
                self.outcome.skipped.append(spec.run_id)
                self._count(folder, spec.run_id, previous.status)
                if self.eta is not None:
                    self.eta.done(spec, previous)
                self.bar.update(1)
            else:
                ours = previous is not None and store.is_planned(previous, spec.resolved(), spec.retired_params())
                if not ours and (moved := store.ResultFolder(folder).set_aside(spec.run_id)) is not None:
                    self.bar.write(f"run {spec.run_id}: the record in its place is not this run's; moved to {moved}")
                todo.append((folder, spec))
        self._refresh()
        for attempt in range(1, self.retries + 2):
            if not todo:
                break
            jobs = {}
            for folder, spec in todo:
                key = f"{folder.name}/{spec.run_id}"
                checkpoint = store.ResultFolder(folder).checkpoint(spec.run_id) if spec.training.checkpoint else None
                jobs[key] = (folder, Job(key, spec, checkpoint, cache_dir=folder))
            retry = []
            last = attempt == self.retries + 1
            planned = [job for _, job in jobs.values()]
            if self.batch_seeds:
                jobs_now = self._longest_first(seed_batches(planned, self.refused_batches))
            else:
                jobs_now = [dataclasses.replace(job, alone=BATCHING_OFF) for job in planned]
            for job, record in self.executor.execute(jobs_now):
                folder = jobs[job.key][0]
                if attempt > 1:
                    record.attempt = attempt
                if record.status == "failed" and not last:
                    retry.append((folder, job.spec))
                    self.bar.write(f"run {job.spec.run_id} failed (attempt {attempt}), will retry: {record.error}")
                    continue
                self._finish(folder, job, record)
                stop.check()
            todo = retry

    def _longest_first(self, jobs: list[Job]) -> list[Job]:
        """``jobs`` in the order of their expected seconds, longest first (a batch of K seeds: K runs at its pair's
        mean so far, or the mean of every run): a worker then ends on a short job, not the others idle beside a long
        one."""
        seconds = self.eta.seconds if self.eta is not None else {}
        every = [x for xs in seconds.values() for x in xs]
        overall = sum(every) / len(every) if every else 1.0
        means = {key: sum(xs) / len(xs) for key, xs in seconds.items()}

        def expected(job: Job) -> float:
            key = (job.spec.scenario.display_name, job.spec.strategy.name)
            return len(job.jobs) * means.get(key, overall)

        return sorted(jobs, key=expected, reverse=True)

    def _plan(self, batch: list[tuple[Path, RunSpec]]) -> None:
        """Add the batch's runs to the plan of each folder they write to (``OUT/plan.json``: what a report reads
        them against)."""
        by_folder: dict[Path, list[PlannedRun]] = {}
        for folder, spec in batch:
            by_folder.setdefault(folder, []).append(PlannedRun(spec.run_id, spec.resolved(), spec.retired_params()))
        for folder, runs in by_folder.items():
            try:
                entries = plan.read_entries(folder) or {}
            except plan.PlanError:  # an unreadable plan: this invocation writes it again from its own runs
                entries = {}
            grown = plan.extended(entries, runs)
            last = None
            if folder == self.out:  # the suite's own runs: readers read exactly the ones this invocation asked for
                self.asked |= {run.run_id for run in runs}
                last = self.asked
            if grown != entries or last is not None:
                store.atomic_write_bytes(plan.plan_path(folder), plan.plan_bytes(grown, last))

    def _finish(self, folder: Path, job: Job, record: RunRecord) -> None:
        refusal = record.batch.alone if record.batch is not None else None  # its batch's, said once below
        if record.batch is None and job.alone is not None:
            record.batch = SeedBatch(alone=job.alone)
        results = store.ResultFolder(folder)
        path = results.record_path(job.spec.run_id)
        try:
            try:
                results.write(record)
            except (TypeError, ValueError) as exc:  # a value JSON cannot hold: this run fails, the suite goes on
                record = failure_record(job.spec, f"the result could not be written as JSON: {exc}")
                results.write(record)
        except OSError as exc:
            if store.is_disk_full(exc):  # every later run would fail the same way: stop, keeping what was saved
                raise store.DiskFull(
                    f"{store.no_room(exc, self.out)}: run {job.spec.run_id} could not be "
                    f"saved and is left to run again; {len(self.outcome.ran)} run(s) saved before it are kept. "
                    "Free some space (or raise the limit) and rerun the same command"
                ) from None
            # something in the way of this run's record (a directory at result.json, a folder without write
            # permission): this run is not saved, the suite goes on, the exit status says so
            self.outcome.ran.append(job.spec.run_id)
            self.outcome.failed.append(job.spec.run_id)
            self.bar.write(
                f"run {job.spec.run_id} could not be saved: {exc.filename or path}: {exc.strerror}; make that folder "
                "writable (or move what is in the way) and rerun the same command"
            )
            self.bar.update(1)
            return
        if job.checkpoint is not None and record.status in store.DONE_STATUSES:
            job.checkpoint.unlink(missing_ok=True)  # a complete run needs no checkpoint
        if self.loggers and folder == self.out:  # the suite's own runs, not the tuning trials
            for problem in tracking.log_run(self.out, record, self.loggers, self.suite_name):
                self.bar.write(problem)
        self.outcome.ran.append(job.spec.run_id)
        if self._count(folder, job.spec.run_id, record.status) == "failed":
            self.bar.write(f"run {job.spec.run_id} {record.status}: {record.error}")
        if refusal is not None and batch_key(job.spec) not in self.refused_batches:  # once: its seeds now go apart
            self.refused_batches[batch_key(job.spec)] = refusal
            where = f"{job.spec.scenario.display_name} / {job.spec.strategy.display_name}"
            self.bar.write(f"runs {where}: each seed ran alone, not batched with its other seeds: {refusal}")
        for warning in record.warnings or []:
            self.bar.write(f"run {job.spec.run_id}: {warning}")
        if self.eta is not None:
            self.eta.done(job.spec, record)
        self.bar.update(1)
        self._refresh(job.spec.run_id)

    def _count(self, folder: Path, run_id: str, status: str) -> str:
        """Where a finished run counts: ``ok``, ``diverged`` (an exploration run's outcome) or ``failed``."""
        if status in NOT_FAILED:
            return "ok"
        if status in OUTCOMES and (folder != self.out or run_id in self.exploring):
            self.outcome.diverged.append(run_id)
            return "diverged"
        self.outcome.failed.append(run_id)
        return "failed"

    def account(self, folder: Path, run_ids: Sequence[str]) -> None:
        """Count runs of ``folder`` this invocation did not pass through a batch (a calibration or a study read back
        whole on a rerun) as skipped, with their outcome: the counts are the same on a first run and a rerun."""
        seen = set(self.outcome.ran) | set(self.outcome.skipped)
        for run_id in dict.fromkeys(run_ids):
            if run_id in seen:
                continue
            record = store.ResultFolder(folder).read(run_id)
            if record is not None:
                self.outcome.skipped.append(run_id)
                self._count(folder, run_id, record.status)

    def write_failure(self, folder: Path, spec: RunSpec, error: str) -> None:
        self._finish(folder, Job(spec.run_id, spec), failure_record(spec, error))

    def inside(self, text: str) -> None:
        """A worker's report of where its run is (once an epoch): shown on the progress line."""
        self.now = text
        self._refresh()

    def _refresh(self, last: str = "") -> None:
        counts = f"failed={len(self.outcome.failed)}" + (
            f" diverged={len(self.outcome.diverged)}" if self.outcome.diverged else ""
        )
        left = self.eta.remaining() if self.eta is not None else None
        eta = f" left≈{_clock(left)}" if left is not None else ""
        where = f" now={self.now}" if self.now else (f" last={last}" if last else "")
        self.bar.set_postfix_str(counts + eta + where, refresh=True)


def run_suite(
    suite: SuiteConfig,
    out: Path,
    data_root: Path,
    seeds: list[int] | None = None,
    fresh: bool = False,
    show_progress: bool = True,
    executor: str = "local",
    workers: int | None = None,
    address: str | None = None,
    retries: int = 0,
    storage: str | None = None,
    decide: rounds.Decider | None = None,
) -> SuiteOutcome:
    """Run every run of the suite on ``executor``; skip runs already complete under the same config.

    With ``seeds: {start, max}`` (``suite.until_decided``), ``decide`` says which pairs are undecided after each round
    of seeds (the front end passes the verdict's decisions: :func:`forgetbench.reports.verdict.undecided_on`).

    Holds ``out``'s lock throughout (a second suite on the same folder is refused). Runs of
    strategies with a ``tune`` go in two phases: the study on held-out validation data (after every
    ordinary run), then the suite's seeds at the chosen point. ``retries`` reruns
    ``failed`` runs (not ``diverged`` or ``collapsed`` ones: those are deterministic) up to that many times.
    """
    if retries < 0:
        raise ConfigError(f"--retries: must be >= 0, got {retries}")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers: must be >= 1, got {workers}")
    bad = [s for s in seeds or [] if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= MAX_SEED]
    if bad or (seeds is not None and (not seeds or len(set(seeds)) != len(seeds))):
        raise ConfigError(f"seeds: distinct integers in 0..{MAX_SEED}, at least one; got {seeds}")
    check_output_folder(out)
    for (scenario, strategy), why in refused_pairs(suite).items():  # not run, and told why (even with --quiet)
        print(f"refused at config time, not run: {strategy} on {scenario}: {why}", file=sys.stderr)
    ordinary = expand_suite(suite, seeds)
    studies = tuning.plan_tuning(suite)
    index = {spec.display_name: i for i, spec in enumerate(suite.scenarios)}
    # a complete suite reruns without its data: only scenarios with runs left to execute are checked (a tuned
    # entry's scenario always is: its study decides at run time what is left)
    preflight(
        suite,
        data_root,
        executor,
        address,
        scenarios=_scenarios_with_work(suite, out, ordinary, fresh)
        | {index[study.scenario.display_name] for study in studies},
    )
    begun = time.perf_counter()
    # before any run: a missing driver, a bad URL or a corrupt study file is refused before anything trains
    opened = (study_store.open_storage(out, storage), round(time.perf_counter() - begun, 4)) if studies else None
    # one bar over every run the suite executes: probes, references, trials and final runs too (the rounds grow it)
    planned = [s for phase, specs in planned_runs(suite, out, seeds).items() if phase != "rounds" for s in specs]
    outcome = SuiteOutcome(out, run_ids=[spec.run_id for spec in ordinary])
    with _session(
        suite, out, outcome, data_root, len(planned), seeds, show_progress, executor, workers, address, retries, fresh
    ) as driver:
        driver.eta = Eta(
            Counter((s.scenario.display_name, s.strategy.name) for s in planned),
            1 if resolve_executor(executor) == "local" else (workers or available_cores()),
        )
        _run_phases(driver, suite, out, ordinary, seeds, studies, opened, decide)
    return outcome


def run_work(
    suite: SuiteConfig,
    out: Path,
    work: Callable[[Callable[[list[tuple[Path, RunSpec]]], None]], T],
    data_root: Path,
    fresh: bool = False,
    show_progress: bool = True,
    executor: str = "local",
    workers: int | None = None,
    address: str | None = None,
    retries: int = 0,
    total: int | None = None,
) -> tuple[SuiteOutcome, T]:
    """Run ``work`` under ``out``'s lock, handing it a ``run_batch`` that runs a batch (result folder, spec) as
    :func:`run_suite` runs a suite's runs (resume, executors, retries, atomic result files); ``work`` may call it
    several times (a calibration's waves). Every scenario of the suite is checked first. ``total``: the progress
    bar's expected count (it grows past it when work adds batches)."""
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers: must be >= 1, got {workers}")
    check_output_folder(out)
    preflight(suite, data_root, executor, address)
    outcome = SuiteOutcome(out)
    with _session(
        suite, out, outcome, data_root, total or 0, None, show_progress, executor, workers, address, retries, fresh
    ) as driver:

        def run_batch(batch: list[tuple[Path, RunSpec]]) -> None:
            outcome.run_ids.extend(spec.run_id for _, spec in batch)
            if driver.bar.total is not None and driver.bar.n + len(batch) > driver.bar.total:
                driver.bar.total = driver.bar.n + len(batch)
            driver.run_batch(batch)

        result = work(run_batch)
    return outcome, result


@contextlib.contextmanager
def _session(
    suite: SuiteConfig,
    out: Path,
    outcome: SuiteOutcome,
    data_root: Path,
    total: int,
    seeds: list[int] | None,
    show_progress: bool,
    executor: str,
    workers: int | None,
    address: str | None,
    retries: int,
    fresh: bool,
) -> Iterator[_Driver]:
    """``out``'s lock, its resolved suite, a progress bar and an executor started on first use; stop signals
    end the session at the next safe point, and no temporary file of ours outlives it."""
    with output_lock(out):
        store.remove_stale_temporaries(out)  # left by a writer killed mid-write (SIGKILL)
        store.write_suite(
            out,
            suite.model_dump(mode="json") | ({"seeds": seeds} if seeds else {}),
            data_root=data_root,
            import_folders=searched_folders(),
            metrics={m.key: m.compute.__module__ for m in registered_metrics()},
        )
        # tqdm's own time left assumes every run costs the same: the driver's Eta measures each kind of run instead
        bar = tqdm(
            total=total,
            unit="run",
            disable=not show_progress,
            dynamic_ncols=True,
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]",
        )
        reports: list[_Driver] = []  # the driver, once made: where a worker's progress reports go

        def report(text: str) -> None:
            for driver in reports:
                driver.inside(text)

        pool = _LazyExecutor(lambda: make_executor(executor, data_root, workers, address, progress=report))
        with stop.stop_on_signals():
            try:
                pool.notify = bar.write
                driver = _Driver(
                    pool, out, outcome, bar, retries, fresh, suite.loggers, suite.name, batch_seeds=suite.batch_seeds
                )
                reports.append(driver)
                yield driver
            finally:
                pool.close()
                bar.close()
                store.remove_stale_temporaries(out)  # our workers are gone: any temporary of ours is an orphan


class _LazyExecutor:
    """An executor started when the first job needs it: a suite whose runs are all complete starts no
    worker processes and no Ray."""

    def __init__(self, make):
        self._make, self._pool = make, None

    notify = None  # where an executor's own messages go (the progress bar's line), when it has any

    def execute(self, jobs):
        if self._pool is None:
            self._pool = self._make()
            stop.install()  # starting Ray may have installed its own handlers
            if self.notify is not None and hasattr(self._pool, "notify"):
                self._pool.notify = self.notify
        return self._pool.execute(jobs)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()


def _scenarios_with_work(suite: SuiteConfig, out: Path, ordinary: list[RunSpec], fresh: bool) -> set[int]:
    """Indices of the scenarios some run of which is not complete under ``out`` (all of them with ``fresh``)."""
    if fresh:
        return set(range(len(suite.scenarios)))
    index = {spec.display_name: i for i, spec in enumerate(suite.scenarios)}

    results = store.ResultFolder(out)
    return {index[spec.scenario.display_name] for spec in ordinary if results.complete(spec) is None}


def _run_phases(
    driver: _Driver,
    suite: SuiteConfig,
    out: Path,
    ordinary: list[RunSpec],
    seeds: list[int] | None,
    studies: list[tuning.Study] | None = None,
    storage: Any = None,
    decide: rounds.Decider | None = None,
) -> None:
    """Phase 1: the ordinary runs; phase 2: the tuning studies (their calibration first where a range is ``auto``) in
    ``storage`` (opened: :func:`study_store.open_storage`), then the tuned points' runs; phase 3, with
    ``seeds: {start, max}``: rounds of more seeds where ``decide`` finds a pair undecided (:mod:`.rounds`)."""
    driver.run_batch([(out, spec) for spec in ordinary])
    finals = _tune(driver, suite, out, seeds, studies, storage) if studies else []  # storage: (opened, seconds)
    if suite.until_decided is not None:
        if decide is None:
            raise ConfigError("seeds: {start, max}: this entry point cannot decide pairs (pass decide=...)")

        def grow(batch: list[tuple[Path, RunSpec]]) -> None:
            driver.outcome.run_ids.extend(spec.run_id for _, spec in batch)
            if driver.bar.total is not None and driver.bar.n + len(batch) > driver.bar.total:
                driver.bar.total = driver.bar.n + len(batch)
            driver.run_batch(batch)

        rounds.run_rounds(suite, out, [*ordinary, *finals], grow, decide, driver.exploring, driver.bar.write)


def _tune(
    driver: _Driver,
    suite: SuiteConfig,
    out: Path,
    seeds: list[int] | None,
    studies: list[tuning.Study],
    opened: Any,
) -> list[RunSpec]:
    """Each study to its trial budget (trials one at a time, each through the executor), then the final runs at
    every chosen point (returned); ``OUT/tuning.json`` records the studies."""
    calibrated = tuning.ensure_calibration(suite, studies, out, driver.run_batch)
    # naive on the same held-out data and seeds as the trials: the reference of the trials' frontiers
    driver.run_batch([(out / tuning.TUNING_DIR, spec) for spec in tuning.naive_references(suite, studies)])
    summaries, finals = [], []
    for study in studies:
        try:
            summary = tuning.run_study(suite, study, out, driver.run_batch, opened[0], calibrated)
        except tuning_space.NothingLearned as stopped:  # one line, what to check; its final runs are failed with it
            driver.bar.write(f"tuning {study.name} stopped: {stopped}")
            summary = tuning.stopped_summary(study, str(stopped))
        summaries.append(summary)
        chosen = tuning.final_specs(suite, study, summary, seeds)
        finals.extend(chosen)
        # after the chosen point's seeds come its neighbours: they map the front, and one that diverges (a strength
        # too strong for this optimiser) is an outcome, not a failed run
        driver.exploring |= {spec.run_id for spec in chosen[len(seeds or suite.seeds) :]}
        if not chosen:
            unlabelled = study.strategy.model_copy(update={"tune": None})
            for seed in seeds or suite.seeds:
                spec = RunSpec(suite.name, study.scenario, unlabelled, seed, suite.training, suite.device)
                driver.outcome.run_ids.append(spec.run_id)
                driver.write_failure(
                    out, spec, summary.get("stopped") or "tune: no trial finished on the validation split"
                )
    driver.account(
        out / store.CALIBRATION_DIR,
        [
            p["run_id"]
            for e in (calibrated or {}).get("entries", [])
            for p in [e["naive"], *e["probes"]]
            if "run_id" in p
        ],
    )
    driver.account(out / tuning.TUNING_DIR, [run for s in summaries for t in s["trials"] for run in t["runs"]])
    store.atomic_write_json(out / tuning.TUNING_FILE, {"studies": summaries, "storage_open_seconds": opened[1]})
    driver.outcome.tuning = out / tuning.TUNING_FILE
    driver.outcome.run_ids.extend(spec.run_id for spec in finals)
    driver.run_batch([(out, spec) for spec in finals])
    return finals
