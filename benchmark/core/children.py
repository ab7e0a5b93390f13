"""Worker processes: how many cores they may have, how long a process has run, and how they end with the process that
started them, however it ends (SIGKILL included).

A worker that outlives its driver keeps its memory, its share of the cores and the driver's output pipe (so
``forgetbench report X | cat`` never ends). Each worker calls :func:`die_with_parent` first thing: on Linux the kernel
sends it ``signal`` when its parent dies (``prctl(PR_SET_PDEATHSIG)``); elsewhere a daemon thread notices the parent
gone within a second. Either way the worker unwinds as on a stop (SIGTERM: temporary files removed).

The parent's pid is handed to the child by the parent (captured before the fork), never read in the child: a parent
that died before the child set its watch has already been replaced by the reaper as the child's parent, so the
child compares the two after the watch is set and ends itself when they differ. No step depends on timing.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1
WATCH_SECONDS = 0.5  # how often the fallback thread looks at the parent
DRIVER_PID = "FORGETBENCH_DRIVER_PID"  # the environment variable a driver sets for the processes it starts


def die_with_parent(parent: int | None = None, sig: int = signal.SIGTERM) -> None:
    """Have this process receive ``sig`` when ``parent`` dies: the pid its parent had when it forked this process,
    handed in by the parent (module docstring). Default: its parent now, which is only right where the parent
    cannot have died yet."""
    parent = os.getppid() if parent is None else parent
    if not _kernel_watch(sig):
        threading.Thread(target=_watch, args=(parent, sig), name="die-with-parent", daemon=True).start()
    if os.getppid() != parent:  # it died before the watch was set: nobody will tell us
        os.kill(os.getpid(), sig)


def _kernel_watch(sig: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _watch(parent: int, sig: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCH_SECONDS)
    os.kill(os.getpid(), sig)


def available_cores() -> int:
    """The cores this process may run on (its affinity where the platform says, else the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def process_age() -> float | None:
    """Seconds since this process started (Linux: its start time in ``/proc/self/stat`` against the boot clock both
    count from), None where that cannot be read."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()  # from the third field, the state
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # the 22nd: the start, in clock ticks since boot
        return max(time.clock_gettime(time.CLOCK_BOOTTIME) - started, 0.0)
    except (OSError, ValueError, IndexError, AttributeError):
        return None
