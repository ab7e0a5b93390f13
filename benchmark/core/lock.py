"""One suite per output folder at a time: an advisory lock file ``OUT/.forgetbench.lock``.

Two suites writing the same folder would each skip or rerun runs from a snapshot the other is
changing, so the second one refuses (exit status 2) with a message naming the lock file and the
holder's pid. The lock is a POSIX record lock (``fcntl.lockf``) on that file: the kernel drops it
when the holder exits *however* it exits (SIGKILL included), so a lock file left by a dead process
is simply taken over, with no pid-liveness guessing; and unlike ``flock`` it also works on NFS.
The file itself is never deleted (deleting it would let a third process lock a fresh inode while
a second one still holds the old), only its content (holder pid, host, start time) is rewritten.

A POSIX record lock belongs to a process, not a thread: a second ``run_suite`` on the same folder from another
thread of the same interpreter would take it again, and closing any descriptor of the lock file in that process
drops it. So the process also keeps the folders it holds (by real path, symlinks resolved) in a table behind a
thread lock, consulted before the lock file is even opened: a second writer in the same process is refused the same
way, naming the thread that holds the folder.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from forgetbench.benchmark.core.config import ConfigError
from forgetbench.benchmark.core.store import GROUND_TRUTH_DIR, ResultFolder, file_in_the_way

LOCK_FILE = ResultFolder.LOCK
_HELD: dict[str, str] = {}  # real path of a folder this process writes -> who holds it (thread, since)
_HELD_GUARD = threading.Lock()


class OutputLockedError(ConfigError):
    """Another live suite holds the output folder's lock."""


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process"
    return f"pid {info.get('pid')} on {info.get('host')} (since {info.get('since')})"


def check_output_folder(out: Path) -> None:
    """Raise :class:`ConfigError` when ``out`` cannot be an output folder: it, or a parent, is a file; it (or the
    folder it would be made in) cannot be written; or it holds a ``suite.yaml`` of its own that is not a results
    folder's (a run writes OUT/suite.yaml: it would overwrite the user's config, comments and all)."""
    out = Path(out)
    blocking = file_in_the_way(out)
    if blocking is not None:
        raise ConfigError(
            f"--out {out}: {blocking} is a file, not a folder; give an output folder (a new one is created)"
        )
    existing = next((p for p in (out, *out.parents) if p.exists()), None)
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"--out {out}: {existing} cannot be written (a read-only folder or file system); nothing was written. "
            "Give a writable output folder"
        )
    outside = _outside(out)
    if outside is not None:
        raise ConfigError(
            f"--out {out}: {outside[0]} is a symbolic link to {outside[1]}, outside the folder: a run writes and moves "
            "records there, and would change another folder's. Replace the link with a folder of its own, or give "
            "another --out"
        )
    if ResultFolder(out).suite.exists() and not any(
        os.path.lexists(out / name)
        for name in (ResultFolder.RUNS, ResultFolder.PLAN, ResultFolder.INVOCATION, ResultFolder.LOCK)
    ):
        raise ConfigError(
            f"--out {out}: it holds a suite.yaml that is not a results folder's (no runs/ beside it); a run writes "
            f"its resolved config there and would overwrite it. Give another output folder (e.g. {out / 'results'})"
        )


def _in_this_process(out: Path) -> str | None:
    with _HELD_GUARD:
        return _HELD.get(os.path.realpath(out))


def _refuse_in_process(out: Path, holder: str) -> OutputLockedError:
    return OutputLockedError(
        f"--out {out}: another forgetbench suite of this process is writing there ({holder}); wait for it to "
        "finish or choose another --out"
    )


def _outside(out: Path) -> tuple[Path, Path] | None:
    """(the path, where it leads) of the first entry of the folder's layout, or of a run folder under ``runs/``, that
    is a symbolic link resolving outside ``out``; None where every one stays inside."""
    if not out.is_dir():
        return None
    inside = os.path.realpath(out)
    candidates = [out / name for name in (*ResultFolder.LAYOUT, GROUND_TRUTH_DIR)]
    runs = ResultFolder(out).runs
    if runs.is_dir() and not runs.is_symlink():
        candidates += sorted(p for p in runs.iterdir() if p.is_symlink())
    for path in candidates:
        if path.is_symlink():
            target = os.path.realpath(path)
            if os.path.commonpath([inside, target]) != inside:
                return path, Path(target)
    return None


def check_unlocked(out: Path) -> None:
    """Raise :class:`OutputLockedError` now if another live suite holds ``out``'s lock (before anything slow
    starts: a Ray cluster joined, workers forked), in another process or another thread of this one. Takes and
    releases the lock at once, never while this process holds it (closing a descriptor releases every lock the
    process holds on that file)."""
    holder = _in_this_process(Path(out))
    if holder is not None:
        raise _refuse_in_process(Path(out), holder)
    path = ResultFolder(Path(out)).lock
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return  # no lock file (or no folder): nobody holds it
    try:
        _take(fd, out, path)
        fcntl.lockf(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _take(fd: int, out: Path, path: Path) -> None:
    """Lock ``fd`` (the lock file of ``out``) or raise :class:`OutputLockedError` naming its holder."""
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise OutputLockedError(
            f"--out {out}: another forgetbench suite is writing there (lock file {path} held by "
            f"{_holder(fd)}); wait for it to finish or choose another --out"
        ) from None


@contextmanager
def output_lock(out: Path) -> Iterator[Path]:
    """Hold ``out``'s lock for the ``with`` block; raise :class:`OutputLockedError` if it is taken (by another
    process, or another thread of this one)."""
    out = Path(out)
    check_output_folder(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot create the output folder ({exc.strerror})") from None
    key = os.path.realpath(out)
    with _HELD_GUARD:
        if key in _HELD:
            raise _refuse_in_process(out, _HELD[key])
        _HELD[key] = f"thread {threading.current_thread().name!r} since {time.strftime('%H:%M:%S')}"
    try:
        with _process_lock(out) as path:
            yield path
    finally:
        with _HELD_GUARD:
            _HELD.pop(key, None)


@contextmanager
def _process_lock(out: Path) -> Iterator[Path]:
    """The lock file's POSIX lock, for this process (output_lock holds the folder for one thread of it)."""
    path = ResultFolder(out).lock
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:  # a directory at the lock's path, a read-only folder
        raise ConfigError(
            f"--out {out}: cannot open its lock file {path} ({exc.strerror}); nothing was written. Make the folder "
            "writable, or move what is at that path"
        ) from None
    try:
        _take(fd, out, path)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing releases the lock
