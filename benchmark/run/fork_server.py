"""Imported by the process executor's fork server alone, as the first module of its preload: the fork server ends
with the driver that started it, however the driver ends (SIGKILL included).

The fork server notices a driver gone when a pipe closes, but then tears down an interpreter holding torch, which
took longer than 5 s here; its workers (told by the kernel when the fork server ends:
:func:`~forgetbench.benchmark.core.children.die_with_parent` in each) went on training the run they held meanwhile.
The kernel's parent-death signal ends it at once instead. Only the fork server imports this module (its preload).

Neither watch may depend on timing. The fork server is told its driver's pid (:data:`DRIVER_PID`, set by the driver
before it starts the server), so a driver that died while the server was still importing is noticed when the watch
is set. A worker is forked from the server, and the kernel clears the signal setting on fork: the server registers
a hook that sets the worker's own watch in the child right after the fork, before it imports or unpickles anything,
with the server's pid captured here, so a server that died in between is noticed too. The worker's signal is SIGKILL
as well: an orphaned worker has nobody to report to, the kernel ends it at once however loaded the machine is, and a
temporary file it may leave is removed by the next run on its folder (``store.remove_stale_temporaries``).
"""

from __future__ import annotations

import os
import signal

from forgetbench.benchmark.core.children import DRIVER_PID, die_with_parent

_driver = os.environ.get(DRIVER_PID, "")
if not (_driver.isdigit() and int(_driver) == os.getpid()):  # imported by the driver itself (a module scan): nothing
    die_with_parent(int(_driver) if _driver.isdigit() else None, sig=signal.SIGKILL)
    _SERVER = os.getpid()
    os.register_at_fork(after_in_child=lambda: die_with_parent(_SERVER, sig=signal.SIGKILL))
