"""What every executor runs: a :class:`Job` (one run, or a batch of one run's seeds) and :func:`run_job`, the
threads a run trains with, what a worker imports before it runs, and the records a worker sends back."""

from __future__ import annotations

import contextlib
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Protocol

from forgetbench.benchmark.core.children import available_cores
from forgetbench.benchmark.core.record import RecordError, RunRecord

if TYPE_CHECKING:  # importing this module stays cheap (no torch) so the CLI can start workers first
    from forgetbench.benchmark.run.spec import RunSpec

ProgressCallback = Callable[[str], None]
STOP_POLL_SECONDS = 0.2  # how often a driver waiting for workers looks for a stop request
HARNESS_MODULES = [
    "forgetbench.benchmark.run.runner",
    "forgetbench.strategies",
    "forgetbench.benchmark.data.scenarios",
]  # what every worker imports


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


def prepare_worker(threads: int, sys_path: list[str], modules: list[str]) -> None:
    import torch

    for entry in reversed(sys_path):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    torch.set_num_threads(threads)
    for module in modules:
        importlib.import_module(module)


def received(job: Job, raw: Any) -> RunRecord:
    """The record a worker sent (its JSON form), validated; a form that is not a record fails that run only."""
    from forgetbench.benchmark.run.spec import failure_record

    try:
        return RunRecord.from_dict(raw)
    except RecordError as exc:
        return failure_record(job.spec, f"the worker sent back no valid record ({exc})")


def received_all(job: Job, raw: Any) -> list[RunRecord]:
    """The records a worker sent for ``job``'s runs (:func:`received` each; a missing one fails its run)."""
    from forgetbench.benchmark.run.spec import failure_record

    sent = list(raw) if isinstance(raw, list) else []
    return [
        received(member, sent[k]) if k < len(sent) else failure_record(member.spec, "the worker sent back no record")
        for k, member in enumerate(job.jobs)
    ]


def worker_error(exc: BaseException) -> str:
    return f"worker died before reporting: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
