"""Atomic writes: every file is written to a temporary sibling, flushed, fsynced and renamed over its target, so a
crash, a kill or a full disk leaves either the old file or the new one, never half of one (several files as one set:
:func:`atomic_write_set`); and what a full disk is, in words."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)
TMP_SUFFIX = ".tmp"
TMP_MARK = ".forgetbench-"  # temporary files are .<target name>.forgetbench-<random>.tmp


def file_in_the_way(folder: Path) -> Path | None:
    """The existing path among ``folder`` and its parents that is not a folder (so ``folder`` cannot be
    created there), else None."""
    for candidate in (Path(folder), *Path(folder).parents):
        if candidate.exists() or candidate.is_symlink():
            return None if candidate.is_dir() else candidate
    return None


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write_set({Path(path): data})


def atomic_write_set(files: dict[Path, bytes]) -> None:
    """Write several files as one: each to a temporary sibling first (written and fsynced), and only when every one
    is written are they renamed into place. A full disk, a file-size limit, a read-only folder, a directory where a
    file goes, an error or a stop while writing leaves every old file as it was and no temporary file; the renames
    need no space. An :class:`OSError` names the file it was for (``filename``), not its temporary sibling."""
    for path in files:  # checked before anything is written: a rename onto a directory fails half-way through a set
        if os.path.isdir(path) and not os.path.islink(path):
            raise IsADirectoryError(errno.EISDIR, "a directory is where this file goes", str(path))
    written: list[tuple[str, Path]] = []
    path = next(iter(files), Path("."))
    try:
        for path, data in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{TMP_MARK}", suffix=TMP_SUFFIX)
            written.append((tmp, path))
            os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp creates 0600; result files are meant to be shared
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
    except OSError as exc:
        for tmp, _ in written:
            Path(tmp).unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    except BaseException:
        for tmp, _ in written:
            Path(tmp).unlink(missing_ok=True)
        raise
    for tmp, path in written:
        os.replace(tmp, path)


class DiskFull(RuntimeError):
    """The disk under a results folder has no space left: what could not be written is named, nothing half-written
    is left, and a rerun of the same command continues."""


def is_disk_full(exc: BaseException) -> bool:
    """No room for what is written: a full disk, a quota, or a file-size limit (``ulimit -f``): every later write
    would fail the same way."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def no_room(exc: OSError, where: Path) -> str:
    """What :func:`is_disk_full` found, in words."""
    if exc.errno == errno.EFBIG:
        return f"a file under {where} reached the file-size limit (ulimit -f; {exc.strerror})"
    return f"the disk holding {where} is full ({exc.strerror})"


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, allow_nan=False, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
