"""Result files: atomic writes, and reading back what a previous invocation completed.

Layout of an output folder::

    OUT/suite.yaml                 the resolved suite config
    OUT/runs/<run_id>/result.json  one record per run (see runner.run)

Every file is written to a temporary sibling, flushed, fsynced and renamed over the target, so a
crash or a kill leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from benchmark.record import RecordError, RunRecord

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"
REQUIRED_KEYS = ("schema_version", "run_id", "status", "config", "accuracy_matrix")
_UMASK = os.umask(0)
os.umask(_UMASK)
TMP_SUFFIX = ".tmp"
CHECKPOINT_FILE = "checkpoint.pt"
DONE_STATUSES = ("ok", "diverged")  # deterministic outcomes; "failed" runs are retried


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp creates 0600; result files are meant to be shared
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, allow_nan=False, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def result_path(out: Path, run_id: str) -> Path:
    return out / "runs" / run_id / RESULT_FILE


def checkpoint_path(out: Path, run_id: str) -> Path:
    return out / "runs" / run_id / CHECKPOINT_FILE


def remove_stale_temporaries(out: Path) -> list[Path]:
    """Delete ``*.tmp`` files under ``out`` left by a writer that was killed mid-write.

    Only safe while holding the output folder's lock with no worker of ours alive (see
    :mod:`benchmark.lock`): then no temporary file can belong to a write in progress.
    """
    removed = []
    for path in Path(out).rglob(f"*{TMP_SUFFIX}"):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def write_result(out: Path, record: dict[str, Any]) -> Path:
    path = result_path(out, record["run_id"])
    atomic_write_json(path, record)
    return path


def write_suite(out: Path, resolved_suite: dict[str, Any]) -> None:
    atomic_write_text(out / "suite.yaml", yaml.safe_dump(resolved_suite, sort_keys=False))


def read_result(path: Path) -> dict[str, Any] | None:
    """The record at ``path`` (any schema version, as the current one), or None when missing,
    truncated, corrupt, incomplete or not a valid :class:`~benchmark.record.RunRecord` (with a
    warning naming the file)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or any(k not in record for k in REQUIRED_KEYS):
        return None
    try:
        return RunRecord.from_dict(record).to_dict()
    except RecordError as exc:
        log.warning("skipping %s: not a valid run record (%s)", path, exc)
        return None


def is_complete(record: dict[str, Any] | None, resolved_config: dict[str, Any]) -> bool:
    """True when ``record`` finished (ok or diverged) under exactly ``resolved_config``."""
    return (
        record is not None
        and record.get("status") in DONE_STATUSES
        and record.get("config") == resolved_config
    )


def load_results(*folders: Path) -> list[dict[str, Any]]:
    """Every readable result record under the given output folders."""
    records = []
    for folder in folders:
        for path in sorted(Path(folder).glob(f"runs/*/{RESULT_FILE}")):
            record = read_result(path)
            if record is not None:
                records.append(record)
    return records
