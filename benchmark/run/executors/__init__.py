"""Where runs execute: in this process, in worker processes, or as Ray tasks.

An executor takes jobs (a :class:`~forgetbench.benchmark.run.spec.RunSpec` and where its checkpoint goes) and
yields ``(job, record)`` pairs as runs finish, in completion order. Workers only compute: they
receive the spec, call :func:`forgetbench.benchmark.run.runner.run` (a pure function of the spec) and send the
record back; the driver (:mod:`forgetbench.benchmark.run.suite`) alone writes result files. A worker that dies
(SIGKILL, out of memory, lost node) yields a ``failed`` record naming the cause, and the other
runs go on.

* ``local``: one run after another in this process.
* ``process``: N worker processes (forked from a fork server) on this machine, each running one job at a time.
* ``ray``: one Ray task per run (named after the run) with the config's ``num_cpus``/``num_gpus``; starts a private
  local Ray instance, or joins a cluster with ``address`` (``auto``, ``ray://host:port``).

Every executor runs each run with ``training.threads`` torch threads (1 unless set, :func:`run_threads`): a thread
count changes float rounding, so the same config gives the same numbers under all three.
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import signal
import sys
from collections import deque
from multiprocessing.connection import wait
from pathlib import Path
from typing import Iterable, Iterator

from forgetbench.benchmark.core.children import DRIVER_PID, available_cores
from forgetbench.benchmark.core import stop
from forgetbench.benchmark.core.record import RunRecord


from forgetbench.benchmark.run.executors.jobs import (  # noqa: F401 (the executors' API)
    HARNESS_MODULES,
    STOP_POLL_SECONDS,
    Executor,
    Job,
    ProgressCallback,
    component_modules,
    prepare_worker,
    received,
    received_all,
    run_job,
    run_threads,
    threads_per_worker,
    torch_threads,
    worker_error,
)
from forgetbench.benchmark.run.executors.ray_tasks import (  # noqa: F401 (the executors' API)
    NODE_LOSS_RESUBMITS,
    RAY_SYSTEM_CONFIG,
    RayExecutor,
    release_prestarted,
    start_ray,
)

EXECUTORS = ("local", "process", "ray", "auto")  # auto: process where there is more than one core, else local


def resolve_executor(kind: str) -> str:
    """``auto`` as the executor it stands for here: worker processes where this machine gives the process more than
    one core (every executor gives the same records: each run trains on its own threads), else this process."""
    if kind != "auto":
        return kind
    return "process" if available_cores() > 1 else "local"


class LocalExecutor:
    """Runs the jobs one after another in this process."""

    def __init__(self, data_root: Path, progress: ProgressCallback | None = None):
        self.data_root = data_root
        self.progress = progress

    def execute(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, RunRecord]]:
        for job in jobs:
            stop.check()
            if self.progress is not None:
                self.progress(job.spec.run_id)
            with torch_threads(run_threads(job.spec)):
                records = run_job(job, self.data_root, self.progress)
            yield from zip(job.jobs, records)

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- process executor


def _process_worker(conn, threads: int, data_root: Path, sys_path: list[str]) -> None:
    """A worker process: receive jobs, send back ``(key, record)``; ``None`` means stop."""
    # Ctrl-C reaches the whole process group: the driver decides what happens, not the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # SIGTERM from the driver: unwind (so an atomic write in progress removes its temporary file).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # the fork server's at-fork hook (run/fork_server.py) set this worker to end with it, before anything was imported
    prepare_worker(threads, sys_path, [])
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        job, modules = message
        for module in modules:
            importlib.import_module(module)

        def progress(text: str, key: str = job.key) -> None:  # where the run is, once an epoch, to the driver
            try:
                conn.send(("progress", key, text))
            except OSError:  # the driver is gone: the run's end will find it so
                pass

        # JSON's form across the pipe: a plug-in's extra result need not be picklable, and the driver validates
        with torch_threads(run_threads(job.spec)):
            records = run_job(job, data_root, progress)
        try:
            conn.send((job.key, [record.to_dict() for record in records]))
        except (BrokenPipeError, EOFError):  # the driver is gone: nobody to send it to
            return


class _Worker:
    def __init__(self, context, threads: int, data_root: Path):
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=_process_worker, args=(child, threads, data_root, list(sys.path)), daemon=True
        )
        self.process.start()
        child.close()
        self.job: Job | None = None

    def stop(self, timeout: float = 5.0) -> None:
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


def describe_exit(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exited with status {exitcode}"


def worker_context():
    """The multiprocessing context of the process workers.

    forkserver, not fork: forking a process whose torch thread pools are running can deadlock.
    The fork server (one per driver) imports the harness once, so a new worker is a cheap fork
    of it rather than a fresh interpreter importing torch and Avalanche (about 5 s).
    """
    context = mp.get_context("forkserver")
    os.environ[DRIVER_PID] = str(os.getpid())  # the fork server inherits it: it ends with this driver, however early
    # the fork server's first import makes it end with this driver (run/fork_server.py)
    context.set_forkserver_preload(["forgetbench.benchmark.run.fork_server", *HARNESS_MODULES])
    return context


def prestart(kind: str, workers: int | None = None, address: str | None = None) -> None:
    """Start the executor's slow-to-start machinery in the background, before the driver's imports.

    For ``process`` this launches the fork server, which imports torch and the harness on another
    core while the driver imports them (and validates the config) here; the two imports would
    otherwise run one after the other. For ``ray`` it starts (or joins) Ray and warms its workers
    up the same way (:func:`start_ray`); the executor then adopts that instance. It writes no
    result and runs no job, so calling it before the config is validated is harmless.
    """
    if workers is not None and workers < 1:
        return  # the suite rejects it with a clear error
    if kind == "process":
        from multiprocessing import forkserver

        worker_context()
        forkserver.ensure_running()
    elif kind == "ray":
        start_ray(workers, address)


class ProcessExecutor:
    """N worker processes, one job each at a time; a dead worker is replaced."""

    def __init__(self, workers: int, data_root: Path, progress: ProgressCallback | None = None):
        if workers < 1:
            raise ValueError("--workers must be at least 1")
        self.workers = workers
        self.data_root = data_root
        self.progress = progress
        self.threads = threads_per_worker(workers)
        self.context = worker_context()
        self.pool: list[_Worker] = []

    def _start_worker(self) -> _Worker:
        worker = _Worker(self.context, self.threads, self.data_root)
        self.pool.append(worker)
        return worker

    def execute(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, RunRecord]]:
        from forgetbench.benchmark.run.spec import failure_record

        pending = deque(jobs)
        while len(self.pool) < min(self.workers, len(pending)):
            self._start_worker()

        def assign(worker: _Worker) -> None:
            if not pending:
                return
            job = pending.popleft()
            message = (job, component_modules(job.spec))
            try:
                worker.conn.send(message)
            except OSError:  # the idle worker died between jobs: replace it, nothing was lost
                self.pool.remove(worker)
                worker.stop()
                worker = self._start_worker()
                worker.conn.send(message)
            worker.job = job

        for worker in self.pool:
            assign(worker)
        while any(w.job is not None for w in self.pool):
            busy = [w for w in self.pool if w.job is not None]
            # a timeout, so that a stop request is seen while every worker is busy
            while not wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=STOP_POLL_SECONDS):
                stop.check()
            for worker in busy:
                job = worker.job
                if job is None:  # busy holds workers with a job
                    continue
                records = None
                while records is None and worker.conn.poll():
                    try:
                        message = worker.conn.recv()
                    except (EOFError, OSError):  # the pipe closed: the worker is dying
                        break
                    if message[0] == "progress":  # where the run is: the suite's progress line
                        if self.progress is not None:
                            self.progress(message[2])
                        continue
                    records = received_all(job, message[1])
                if records is None:
                    if worker.process.is_alive():
                        continue  # still running (another worker woke us)
                    # a stop signal sent to the whole process group (`timeout`, a batch scheduler) ends the
                    # workers too: their runs were stopped, not failed, so they stay missing and a rerun runs them
                    stop.check()
                    worker.process.join()
                    why = f"worker process {describe_exit(worker.process.exitcode)} during the run"
                    records = [failure_record(member.spec, why) for member in job.jobs]
                    self.pool.remove(worker)
                    worker.stop()
                    if pending:
                        assign(self._start_worker())
                else:
                    worker.job = None
                    assign(worker)
                yield from zip(job.jobs, records)

    def close(self) -> None:
        for worker in self.pool:
            if worker.process.is_alive() and worker.job is None:
                try:
                    worker.conn.send(None)
                except OSError:
                    pass
        for worker in self.pool:
            worker.stop()
        self.pool.clear()


def make_executor(
    kind: str,
    data_root: Path,
    workers: int | None = None,
    address: str | None = None,
    progress: ProgressCallback | None = None,
) -> Executor:
    """The executor named ``kind`` (one of :data:`EXECUTORS`)."""
    kind = resolve_executor(kind)
    if kind == "local":
        return LocalExecutor(data_root, progress)
    if kind == "process":
        return ProcessExecutor(workers or available_cores(), data_root, progress)
    if kind == "ray":
        return RayExecutor(data_root, workers, address, progress)
    from forgetbench.benchmark.core.config import ConfigError

    raise ConfigError(f"--executor: unknown executor {kind!r}; allowed: {', '.join(EXECUTORS)}")
