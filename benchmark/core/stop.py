"""Stopping on SIGTERM / Ctrl-C: a flag that the suite and the training loop check at safe points.

A signal handler that raises lands the exception in whatever Python code happens to run when
the signal arrives; in a ``gc`` callback or a ``__del__`` the interpreter prints "Exception
ignored" and carries on, so the stop is lost. Here the first signal only *records* the request;
code checks it where stopping is safe and raises :class:`StopRequested` itself:

* the training loop, after every iteration (:class:`forgetbench.benchmark.train.harness.StepBudget`);
* the executors, between runs and while waiting for workers.

The handlers stay installed for the whole suite. A second signal raises at once from the
handler (for a stop point that is never reached, e.g. a long evaluation); a third ends the
process immediately (``os._exit(130)``) after killing our worker processes. Completed result
files are whole either way (atomic writes); a rerun resumes.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from contextlib import contextmanager
from typing import Iterator

SIGNALS = (signal.SIGTERM, signal.SIGINT)
EXIT_INTERRUPTED = 130


class StopRequested(KeyboardInterrupt):
    """A stop signal arrived: unwind, stopping workers and removing temporary files."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_received: list[int] = []  # signals received while the handlers were installed


def requested() -> int | None:
    """The first stop signal received, or None."""
    return _received[0] if _received else None


def check() -> None:
    """Raise :class:`StopRequested` if a stop signal arrived (cheap: one list test)."""
    if _received:
        raise StopRequested(_received[0])


def _handle(signum: int, frame) -> None:
    _received.append(signum)
    if len(_received) == 2:
        raise StopRequested(signum)
    if len(_received) > 2:
        for child in multiprocessing.active_children():
            child.kill()
        os._exit(EXIT_INTERRUPTED)


def install() -> None:
    """(Re)install the handlers (after a library such as Ray installed its own)."""
    if threading.current_thread() is threading.main_thread():
        for sig in SIGNALS:
            signal.signal(sig, _handle)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT request a stop (see the module docstring).

    A signal that arrived after the last stop point raises :class:`StopRequested` on leaving the
    block; the request is then forgotten and the previous handlers come back. Outside the main
    thread (where handlers cannot be installed) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received.clear()
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    install()
    try:
        yield
        check()  # a signal after the last stop point still makes the caller stop (and say so)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _received.clear()
