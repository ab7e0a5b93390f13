"""Running a whole suite: preflight checks, lock, resume, progress, one result file per run.

The suite decides what runs (resume: complete runs are skipped, failed/missing/corrupt ones rerun)
and writes every result file; an executor (:mod:`benchmark.executors`) decides where runs execute.
SIGTERM and Ctrl-C unwind cleanly: workers are stopped and no temporary or partial file is left.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from benchmark import selection, store
from benchmark.config import ConfigError, SuiteConfig
from benchmark.datasets import DataMissingError, check_available
from benchmark.executors import Executor, Job, make_executor
from benchmark.lock import output_lock
from benchmark.runner import RunSpec, expand_suite, failure_record
from benchmark.scenarios import SCENARIOS

SELECTION_DIR = "selection"  # OUT/selection/runs/<run_id>/result.json: the validation sweep
SELECTION_FILE = "selection.json"  # OUT/selection.json: every combination's score and the choice


@dataclass
class SuiteOutcome:
    out: Path
    run_ids: list[str] = field(default_factory=list)  # every run of the suite, in suite order
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    selection: Path | None = None  # OUT/selection.json when the suite selected hyperparameters

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def preflight(suite: SuiteConfig, data_root: Path) -> None:
    """Raise :class:`ConfigError` if any scenario's data is missing and may not be downloaded."""
    errors = []
    for i, spec in enumerate(suite.scenarios):
        params = SCENARIOS.get(spec.name).parse_params(spec.params)
        for dataset, download in params.data_requirements():
            try:
                check_available(dataset, data_root, download)
            except DataMissingError as exc:
                errors.append(f"scenarios[{i}].params.dataset: {exc}")
    if errors:
        raise ConfigError("\n".join(errors))


class SuiteInterrupted(KeyboardInterrupt):
    """SIGTERM (or SIGINT) arrived: unwind, stopping workers and removing temporary files."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _interrupt(signum: int, frame) -> None:
    # Further signals are ignored while unwinding, so the cleanup itself is not cut short.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    raise SuiteInterrupted(signum)


def _claim_signals() -> None:
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _interrupt)


@contextmanager
def _stop_cleanly_on_signals():
    """Turn SIGTERM/SIGINT into an exception in the driver, so ``finally`` blocks run.

    Atomic writes remove their temporary file on the way out, and the executor's workers are
    stopped; a second signal while unwinding is ignored. The previous handlers come back after.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    _claim_signals()
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _Driver:
    """Runs batches of jobs on an executor; the only writer of result files."""

    def __init__(self, executor: Executor, out: Path, outcome: SuiteOutcome, bar, retries: int, fresh: bool):
        self.executor, self.out, self.outcome = executor, out, outcome
        self.bar, self.retries, self.fresh = bar, retries, fresh

    def run_batch(self, batch: list[tuple[Path, RunSpec]]) -> None:
        """Run what is not complete in ``batch`` (folder, spec); retry failures up to ``retries``."""
        todo = []
        for folder, spec in batch:
            previous = store.read_result(store.result_path(folder, spec.run_id))
            if not self.fresh and store.is_complete(previous, spec.resolved()):
                self.outcome.skipped.append(spec.run_id)
                if previous["status"] != "ok":
                    self.outcome.failed.append(spec.run_id)
                self.bar.update(1)
            else:
                todo.append((folder, spec))
        self._refresh()
        for attempt in range(1, self.retries + 2):
            if not todo:
                break
            jobs = {}
            for folder, spec in todo:
                key = f"{folder.name}/{spec.run_id}"
                checkpoint = store.checkpoint_path(folder, spec.run_id) if spec.training.checkpoint else None
                jobs[key] = (folder, Job(key, spec, checkpoint))
            retry = []
            last = attempt == self.retries + 1
            for job, record in self.executor.execute([job for _, job in jobs.values()]):
                folder = jobs[job.key][0]
                if attempt > 1:
                    record["attempt"] = attempt
                if record["status"] == "failed" and not last:
                    retry.append((folder, job.spec))
                    self.bar.write(f"run {job.spec.run_id} failed (attempt {attempt}), will retry: {record['error']}")
                    continue
                self._finish(folder, job, record)
            todo = retry

    def _finish(self, folder: Path, job: Job, record: dict) -> None:
        store.write_result(folder, record)
        if job.checkpoint is not None and record["status"] in store.DONE_STATUSES:
            job.checkpoint.unlink(missing_ok=True)  # a complete run needs no checkpoint
        self.outcome.ran.append(job.spec.run_id)
        if record["status"] != "ok":
            self.outcome.failed.append(job.spec.run_id)
            self.bar.write(f"run {job.spec.run_id} {record['status']}: {record['error']}")
        self.bar.update(1)
        self._refresh(job.spec.run_id)

    def write_failure(self, folder: Path, spec: RunSpec, error: str) -> None:
        self._finish(folder, Job(spec.run_id, spec), failure_record(spec, error))

    def _refresh(self, last: str = "") -> None:
        self.bar.set_postfix_str(f"failed={len(self.outcome.failed)}" + (f" last={last}" if last else ""), refresh=True)


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
) -> SuiteOutcome:
    """Run every run of the suite on ``executor``; skip runs already complete under the same config.

    Holds ``out``'s lock throughout (a second suite on the same folder is refused). Runs of
    strategies with a ``selection`` go in two phases: the validation sweep (alongside every
    ordinary run), then the suite's seeds with the chosen combination. ``retries`` reruns
    ``failed`` runs (not ``diverged`` ones: divergence is deterministic) up to that many times.
    """
    if retries < 0:
        raise ConfigError(f"--retries: must be >= 0, got {retries}")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers: must be >= 1, got {workers}")
    preflight(suite, data_root)
    ordinary = expand_suite(suite, seeds)
    sweeps = selection.plan_sweeps(suite, seeds)
    n_final = sum(len(seeds or suite.seeds) for _ in sweeps)
    total = len(ordinary) + sum(len(s.specs) for s in sweeps) + n_final
    with output_lock(out):
        store.remove_stale_temporaries(out)  # left by a writer killed mid-write (SIGKILL)
        store.write_suite(out, suite.model_dump(mode="json") | ({"seeds": seeds} if seeds else {}))
        outcome = SuiteOutcome(out, run_ids=[spec.run_id for spec in ordinary])
        bar = tqdm(total=total, unit="run", disable=not show_progress, dynamic_ncols=True)
        pool = None
        with _stop_cleanly_on_signals():
            try:
                pool = make_executor(executor, data_root, workers, address)
                _claim_signals()  # starting Ray may have installed its own handlers
                driver = _Driver(pool, out, outcome, bar, retries, fresh)
                _run_phases(driver, suite, out, ordinary, sweeps, seeds)
            finally:
                if pool is not None:
                    pool.close()
                bar.close()
                store.remove_stale_temporaries(out)  # our workers are gone: any *.tmp is an orphan
    return outcome


def _run_phases(
    driver: _Driver,
    suite: SuiteConfig,
    out: Path,
    ordinary: list[RunSpec],
    sweeps: list[selection.Sweep],
    seeds: list[int] | None,
) -> None:
    """Phase 1: ordinary runs and every validation sweep; phase 2: the selected combinations."""
    sweep_folder = out / SELECTION_DIR
    driver.run_batch(
        [(out, spec) for spec in ordinary] + [(sweep_folder, spec) for sweep in sweeps for _, spec in sweep.specs]
    )
    if not sweeps:
        return
    decisions, finals = [], []
    for sweep in sweeps:
        records = {
            spec.run_id: store.read_result(store.result_path(sweep_folder, spec.run_id)) for _, spec in sweep.specs
        }
        decision = selection.decide(sweep, records)
        decisions.append(decision)
        chosen = selection.final_specs(suite, sweep, decision, seeds)
        finals.extend(chosen)
        if not chosen:  # every combination failed: the final runs fail too, saying why
            unlabelled = sweep.variants[0][1].model_copy(update={"label": sweep.strategy.display_name})
            for seed in seeds or suite.seeds:
                spec = RunSpec(suite.name, sweep.scenario, unlabelled, seed, suite.training, suite.device)
                driver.outcome.run_ids.append(spec.run_id)
                driver.write_failure(out, spec, "selection: no grid combination finished on the validation split")
    store.atomic_write_json(out / SELECTION_FILE, {"selections": decisions})
    driver.outcome.selection = out / SELECTION_FILE
    driver.outcome.run_ids.extend(spec.run_id for spec in finals)
    driver.run_batch([(out, spec) for spec in finals])
