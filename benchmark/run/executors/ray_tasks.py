"""The Ray executor: one Ray task per run, a private Ray instance started (or a cluster joined) by
:func:`start_ray`, runs lost with their node submitted again."""

from __future__ import annotations

import os
import sys
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from forgetbench.benchmark.core.children import available_cores
from forgetbench.benchmark.core import stop
from forgetbench.benchmark.core.record import RunRecord

if TYPE_CHECKING:  # importing this module stays cheap (no torch) so the CLI can start workers first
    from forgetbench.benchmark.run.spec import RunSpec

from forgetbench.benchmark.run.executors.jobs import (
    HARNESS_MODULES,
    STOP_POLL_SECONDS,
    Job,
    ProgressCallback,
    prepare_worker,
    received_all,
    run_job,
    run_threads,
    component_modules,
    worker_error,
)


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

    prepare_worker(threads, sys_path, modules)
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
    prepare_worker(1, sys_path, HARNESS_MODULES)


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
                    records = received_all(job, ray.get(ref))
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
