"""Where the report's figures are drawn: in worker processes beside the tables, on a machine with more than one core.

Each figure of :mod:`forgetbench.reports.figures` is a pure function of small frames that returns a PNG data URI,
and drawing is most of ``forgetbench report``'s wall (matplotlib's constrained layout, the draw and the PNG encoding:
0.1-0.4 s a figure, 15 figures on the demo's report). :func:`easel` yields an executor: the report submits each figure
as it meets it, goes on with the next section's tables while the workers draw, and reads every result
(:func:`drawn`) before it renders the page. The workers are forked, not spawned, so each starts with matplotlib and
pandas already imported. With one core, without fork, or in a process that holds a Ray connection, the figures are
drawn in this process when submitted: the same bytes either way (tested).
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any, TypeVar

from forgetbench.benchmark.core.children import available_cores, die_with_parent

T = TypeVar("T")

MAX_WORKERS = 4  # a report has 5-20 figures of unequal cost: more workers than this only fork for nothing


class InProcess(Executor):
    """Draws each figure when it is submitted (one core, or no fork): an exception is raised by ``result()``, as a
    worker's is."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


@contextlib.contextmanager
def easel(workers: int | None = None) -> Iterator[Executor]:
    """An executor for the figures: ``workers`` forked processes (default: the cores this process may use, at most
    :data:`MAX_WORKERS`), or :class:`InProcess` where that is one or the platform cannot fork."""
    if workers is None:
        workers = min(available_cores(), MAX_WORKERS)
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods() or _connected_to_ray():
        yield InProcess()
        return
    from forgetbench.reports import figures  # noqa: F401  (imported before the fork: every worker starts with it)

    # what this process holds (100,000 records on a large report) stays out of the workers' garbage collections,
    # which would otherwise touch, and so copy, every page of it
    gc.freeze()
    pool = ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("fork"), initializer=_worker_signals, initargs=(os.getpid(),)
    )
    try:
        yield pool
    except BaseException:  # a stop signal or an error: the figures not yet started are dropped, not drawn
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    else:
        pool.shutdown(wait=True)
    finally:
        gc.unfreeze()


def _worker_signals(report: int) -> None:
    """A worker leaves Ctrl-C to the report (the terminal sends it to the whole process group) and ends on SIGTERM
    (the report's own handlers, inherited by the fork, would raise in a worker), and when the report dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent(report)  # a report killed with SIGKILL leaves no worker holding its memory and its output pipe


def _connected_to_ray() -> bool:
    """Whether this process holds a Ray connection, whose gRPC threads a forked child cannot share safely."""
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def drawn(figure: str | Future[str | None] | None) -> str | None:
    """A submitted figure's data URI (waiting for it), or the value itself when it was never submitted."""
    return figure.result() if isinstance(figure, Future) else figure
