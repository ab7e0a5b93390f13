"""Imported by the process executor's fork server alone, as the first module of its preload: the fork server ends
with the driver that started it, however the driver ends (SIGKILL included).

The fork server notices a driver gone when a pipe closes, but then tears down an interpreter holding torch, which
took longer than 5 s here; its workers (told by the kernel when the fork server ends:
:func:`~forgetbench.benchmark.core.children.die_with_parent` in each) went on training the run they held meanwhile.
The kernel's parent-death signal ends it at once instead. Only the fork server imports this module (its preload);
a worker forked from it inherits neither the signal setting (the kernel clears it on fork) nor a second call.
"""

from __future__ import annotations

import signal

from forgetbench.benchmark.core.children import die_with_parent

die_with_parent(sig=signal.SIGKILL)
