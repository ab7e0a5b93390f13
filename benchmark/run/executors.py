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

import contextlib
import importlib
import multiprocessing as mp
import os
import signal
import sys
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Protocol

from forgetbench.benchmark.core.children import DRIVER_PID, available_cores
from forgetbench.benchmark.core import stop
from forgetbench.benchmark.core.record import RecordError, RunRecord

if TYPE_CHECKING:  # importing this module stays cheap (no torch) so the CLI can start workers first
    from forgetbench.benchmark.run.spec import RunSpec

ProgressCallback = Callable[[str], None]
EXECUTORS = ("local", "process", "ray", "auto")  # auto: process where there is more than one core, else local
HARNESS_MODULES = [
    "forgetbench.benchmark.run.runner",
    "forgetbench.strategies",
    "forgetbench.benchmark.data.scenarios",
]  # what every worker imports
STOP_POLL_SECONDS = 0.2  # how often a driver waiting for workers looks for a stop request


@dataclass(frozen=True)
class Job:
    """One run to execute; ``key`` identifies it to the caller (unique within a batch)."""

    key: str
    spec: RunSpec
    checkpoint: Path | None = None
    cache_dir: Path | None = None  # the results folder whose ground-truth cache the run may use
    # a batch (one task): one run's seeds trained as one stacked model (run.batching); spec is the first member's
    members: tuple["Job", ...] = ()
    # a run that trains alone: why it is not in a batch of its run's seeds (its record's ``batch.alone``)
    alone: str | None = None

    @property
    def jobs(self) -> tuple["Job", ...]:
        """The runs this job executes: its members, or itself."""
        return self.members or (self,)


def run_job(job: Job, data_root: Path, progress: ProgressCallback | None = None) -> list[RunRecord]:
    """The records of ``job``'s runs, in :attr:`Job.jobs` order: one run, or a batch of seeds
    (:func:`~forgetbench.benchmark.run.batching.run_seeds`)."""
    from forgetbench.benchmark.run.runner import run

    if not job.members:
        return [run(job.spec, data_root, progress, job.checkpoint, job.cache_dir)]
    from forgetbench.benchmark.run.batching import run_seeds

    return run_seeds([member.spec for member in job.members], data_root, progress, job.cache_dir)


class Executor(Protocol):
    def execute(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, RunRecord]]:
        """Run every job; yield each with its record as it finishes."""

    def close(self) -> None:
        """Stop workers (also those still running: called on interrupt)."""


def resolve_executor(kind: str) -> str:
    """``auto`` as the executor it stands for here: worker processes where this machine gives the process more than
    one core (every executor gives the same records: each run trains on its own threads), else this process."""
    if kind != "auto":
        return kind
    return "process" if available_cores() > 1 else "local"


def run_threads(spec: RunSpec) -> int:
    """The torch threads a run trains with on every executor: ``training.threads``, else 1 (the same numbers under
    local, process and Ray: a thread count changes float rounding)."""
    return spec.training.threads or 1


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """``threads`` torch threads inside the block, the previous count after it."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """Torch threads per worker so that ``workers x threads <= cores`` (at least 1)."""
    return max(1, (cores or available_cores()) // max(1, workers))


def component_modules(spec: RunSpec) -> list[str]:
    """Modules that register the spec's scenario and strategy.

    A worker imports them before running, so components registered outside the built-in packages
    (a plug-in imported by the driver, a test module) exist in the worker too.
    """
    from forgetbench.benchmark.data.scenarios import SCENARIOS
    from forgetbench.strategies import STRATEGIES

    modules = []
    for registry, name in ((SCENARIOS, spec.scenario.name), (STRATEGIES, spec.strategy.name)):
        module = getattr(registry.get(name).factory, "__module__", None)
        if module and module not in ("__main__", "__mp_main__"):
            modules.append(module)
    return modules


def _prepare_worker(threads: int, sys_path: list[str], modules: list[str]) -> None:
    import torch

    for entry in reversed(sys_path):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    torch.set_num_threads(threads)
    for module in modules:
        importlib.import_module(module)


def _received(job: Job, raw: Any) -> RunRecord:
    """The record a worker sent (its JSON form), validated; a form that is not a record fails that run only."""
    from forgetbench.benchmark.run.spec import failure_record

    try:
        return RunRecord.from_dict(raw)
    except RecordError as exc:
        return failure_record(job.spec, f"the worker sent back no valid record ({exc})")


def _received_all(job: Job, raw: Any) -> list[RunRecord]:
    """The records a worker sent for ``job``'s runs (:func:`_received` each; a missing one fails its run)."""
    from forgetbench.benchmark.run.spec import failure_record

    sent = list(raw) if isinstance(raw, list) else []
    return [
        _received(member, sent[k]) if k < len(sent) else failure_record(member.spec, "the worker sent back no record")
        for k, member in enumerate(job.jobs)
    ]


def worker_error(exc: BaseException) -> str:
    return f"worker died before reporting: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


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
    _prepare_worker(threads, sys_path, [])
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
                    records = _received_all(job, message[1])
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


# --------------------------------------------------------------------------- Ray executor


def _ray_task(
    spec: RunSpec,
    data_root: str,
    threads: int,
    sys_path: list[str],
    modules: list[str],
    checkpoint: str | None,
    cache_dir: str | None = None,
    batch: tuple[RunSpec, ...] = (),
) -> list[dict[str, Any]]:
    """Body of the Ray task: runs on any node, reads the data root that node sees; the record's JSON form."""
    from forgetbench.benchmark.data.datasets import default_data_root

    _prepare_worker(threads, sys_path, modules)
    root = Path(data_root)
    if not root.exists():  # another machine: its own $FORGETBENCH_DATA / default root
        root = default_data_root()
    job = Job(
        spec.run_id, spec, Path(checkpoint) if checkpoint else None, Path(cache_dir) if cache_dir else None,
        members=tuple(Job(s.run_id, s, cache_dir=Path(cache_dir) if cache_dir else None) for s in batch),
    )  # fmt: skip
    return [record.to_dict() for record in run_job(job, root)]


_ray_started_here = False  # this process started (or joined) the Ray instance, so it shuts it down


def _import_ray():
    try:
        import ray
    except ImportError:
        from forgetbench.benchmark.core.config import ConfigError

        raise ConfigError(
            "--executor ray: Ray is not installed; install the extra: pip install 'forgetbench[ray]'"
        ) from None
    return ray


def _ray_warm_up(sys_path: list[str]) -> None:
    """A task whose only effect is importing the harness in a fresh Ray worker."""
    _prepare_worker(1, sys_path, HARNESS_MODULES)


# Ray runs its workers at niceness 15, so that its own daemons keep up. A run's worker is the one doing the work:
# beside a CPU-bound process at niceness 0 it got 36/1060 of a core (CFS's weights), and a run of seconds took
# minutes. The private instance runs them at the driver's priority, as the process executor's workers run; a cluster
# joined with --address keeps its own settings.
RAY_SYSTEM_CONFIG = {"worker_niceness": 0}


def start_ray(workers: int | None = None, address: str | None = None, object_store_mb: int = 128) -> None:
    """Start a private Ray instance (or join ``address``) unless Ray is already initialised.

    Without ``address`` the instance is private even when another Ray runs on the machine: joining
    that one silently is how a suite ends up on someone else's cluster.

    A private instance also gets one warm-up task per worker, submitted without waiting: the
    workers import torch and the harness (about 5 s) while the driver does the same.
    """
    global _ray_started_here
    ray = _import_ray()
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # offline machines: no phoning home
    if address:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    else:
        ray.init(
            # "local": a new instance even when another Ray runs on this machine (RAY_ADDRESS, Ray's
            # last-cluster file, a live GCS), which Ray's default address would join
            address="local",
            num_cpus=workers or available_cores(),
            include_dashboard=False,
            object_store_memory=object_store_mb * 2**20,
            log_to_driver=False,
            configure_logging=False,
            _system_config=RAY_SYSTEM_CONFIG,
        )
        warm_up = ray.remote(num_cpus=1, max_retries=0)(_ray_warm_up)
        for _ in range(workers or available_cores()):
            warm_up.remote(list(sys.path))
    _ray_started_here = True


def release_prestarted() -> None:
    """Stop the Ray instance :func:`start_ray` started, if it is still running.

    The Ray executor calls it on close; the CLI calls it when ``run`` ends, so a suite that stops
    before its executor exists (an invalid config, a refused lock) leaves no Ray behind either.
    A Ray the caller started is never touched.
    """
    global _ray_started_here
    if _ray_started_here:
        _import_ray().shutdown()
        _ray_started_here = False


NODE_LOSS_RESUBMITS = 3  # a run lost with its Ray node is submitted again at most this many times


class RayExecutor:
    """One Ray task per run; at most ``workers`` in flight (default: as many as Ray schedules).

    A run lost with its node (the node left the cluster, or died, while the run was on it) is not the
    run's failure: it is submitted again, up to :data:`NODE_LOSS_RESUBMITS` times, and ``notify`` says so
    (the suite's progress line). A run that crashes its worker on a live node is recorded as failed.
    """

    notify: Callable[[str], None] = staticmethod(lambda message: print(message, file=sys.stderr))

    def __init__(
        self,
        data_root: Path,
        workers: int | None = None,
        address: str | None = None,
        progress: ProgressCallback | None = None,
        object_store_mb: int = 128,
    ):
        start_ray(workers, address, object_store_mb)
        self.ray = _import_ray()
        self.data_root = data_root
        self.workers = workers
        self.address = address
        self.refs: dict[Any, Job] = {}
        self.lost: dict[str, int] = {}  # job key -> times resubmitted after losing its node
        self.lost_why: dict[str, str] = {}  # job key -> the exception that lost it last
        self._nodes_seen = self._alive_nodes()

    def _alive_nodes(self) -> set[str]:
        return {n["NodeID"] for n in self.ray.nodes() if n.get("Alive")}

    def _lost_with_its_node(self, exc: BaseException) -> bool:
        """True when ``exc`` is a node's loss, not the run's: Ray says the node died or the object is lost,
        or the worker crashed and a node of the cluster as it was when the suite started has gone."""
        exceptions = self.ray.exceptions
        if isinstance(exc, (exceptions.NodeDiedError, exceptions.ObjectLostError)):
            return True
        return isinstance(exc, exceptions.WorkerCrashedError) and bool(self._nodes_seen - self._alive_nodes())

    def _threads(self, spec: RunSpec) -> int:
        return run_threads(spec)

    def execute(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, RunRecord]]:
        from forgetbench.benchmark.run.spec import failure_record

        ray = self.ray
        remote = ray.remote(max_retries=0)(_ray_task)
        pending = deque(jobs)
        limit = self.workers or len(pending) or 1

        def submit(job: Job) -> None:
            spec = job.spec
            ref = remote.options(
                name=spec.run_id, num_cpus=spec.training.num_cpus, num_gpus=spec.training.num_gpus
            ).remote(
                spec,
                str(self.data_root),
                self._threads(spec),
                list(sys.path),
                component_modules(spec),
                str(job.checkpoint) if job.checkpoint else None,
                str(job.cache_dir) if job.cache_dir else None,
                tuple(member.spec for member in job.members),
            )
            self.refs[ref] = job

        while pending and len(self.refs) < limit:
            submit(pending.popleft())
        while self.refs:
            done, _ = ray.wait(list(self.refs), num_returns=1, timeout=STOP_POLL_SECONDS)
            stop.check()
            for ref in done:
                job = self.refs.pop(ref)
                try:
                    records = _received_all(job, ray.get(ref))
                except Exception as exc:  # noqa: BLE001 - worker crash, lost node, task error
                    if self._lost_with_its_node(exc) and self.lost.get(job.key, 0) < NODE_LOSS_RESUBMITS:
                        self.lost[job.key] = self.lost.get(job.key, 0) + 1
                        self.lost_why[job.key] = type(exc).__name__
                        self.notify(
                            f"run {job.spec.run_id} was lost with its Ray node ({type(exc).__name__}); "
                            f"submitted again (resubmission {self.lost[job.key]} of at most "
                            f"{NODE_LOSS_RESUBMITS})"
                        )
                        submit(job)
                        continue
                    records = [failure_record(member.spec, worker_error(exc)) for member in job.jobs]
                for record in records:
                    if job.key in self.lost:  # the record says it ran again, and why
                        record.attempt = self.lost[job.key] + 1
                        record.warnings = [
                            *(record.warnings or []),
                            f"submitted {self.lost[job.key] + 1} times: lost with "
                            f"its Ray node ({self.lost_why[job.key]}) before",
                        ]
                if pending:
                    submit(pending.popleft())
                yield from zip(job.jobs, records)

    def close(self) -> None:
        for ref in list(self.refs):
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - best effort while shutting down
                pass
        self.refs.clear()
        release_prestarted()  # only a Ray this module started; a caller's own Ray keeps running


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
