"""Result files: atomic writes, and reading back what a previous invocation completed.

Layout of an output folder::

    OUT/suite.yaml                 the resolved suite config
    OUT/runs/<run_id>/result.json  one record per run (see runner.run)

Every file is written to a temporary sibling, flushed, fsynced and renamed over the target, so a
crash or a kill leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import stat
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Any, Callable, Iterator, Mapping, Protocol, TypeGuard

import pydantic_core
import yaml

from forgetbench.benchmark.core.atomic import (  # noqa: F401 (the store's API: its writers are these)
    TMP_MARK,
    TMP_SUFFIX,
    DiskFull,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_set,
    atomic_write_text,
    file_in_the_way,
    is_disk_full,
    no_room,
)
from forgetbench.benchmark.core.migrations import without_retired_keys
from forgetbench.benchmark.core.record import RecordError, RunRecord, check_read

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"
CALIBRATION_DIR = "calibration"  # OUT/calibration/runs/<run_id>/result.json: strength probes
REQUIRED_KEYS = ("schema_version", "run_id", "status", "config", "accuracy_matrix")
CHECKPOINT_FILE = "checkpoint.pt"
INVOCATION_FILE = "invocation.json"  # OUT/invocation.json: the data root and import folders a rerun needs
DONE_STATUSES = ("ok", "diverged", "collapsed", "pruned")  # deterministic outcomes; "failed" runs are retried


def result_path(out: Path, run_id: str) -> Path:
    return out / "runs" / run_id / RESULT_FILE


def checkpoint_path(out: Path, run_id: str) -> Path:
    return out / "runs" / run_id / CHECKPOINT_FILE


GROUND_TRUTH_DIR = "ground_truth"  # OUT/ground_truth/<key digest>.json: standalone accuracies, shared by runs


def ground_truth_path(out: Path, key: Any) -> Path:
    """Where the standalone accuracies for ``key`` (a JSON-able description of what they depend on) live."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return Path(out) / GROUND_TRUTH_DIR / f"{digest}.json"


@contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock tied to ``path`` (on ``<path>.lock``) across processes: another process
    asking for it waits until this one is done; the kernel releases it if the holder dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_suffix(path.suffix + ".lock"), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def ground_truth_entries(path: Path, key: Any) -> Iterator[dict[int, float]]:
    """The accuracies computed so far for ``key`` (task index -> accuracy), held under an exclusive lock.

    Another process asking for the same file waits until the holder is done, then finds its entries,
    so runs of a suite that need the same ground truth compute it once. Entries the caller adds are
    saved with :func:`save_ground_truth` (atomically, one at a time: an interrupted computation resumes
    where it stopped). A file written for another key (a digest collision) is ignored.
    """
    with exclusive(path):
        entries: dict[int, float] = {}
        try:
            stored = json.loads(path.read_bytes())
            if stored.get("key") == json.loads(json.dumps(key)):
                entries = {int(k): float(v) for k, v in stored.get("accuracy", {}).items()}
        except (OSError, ValueError, AttributeError):
            pass  # missing or unreadable: computed again
        yield entries


def save_ground_truth(path: Path, key: Any, entries: dict[int, float]) -> None:
    atomic_write_json(path, {"key": key, "accuracy": {str(k): v for k, v in sorted(entries.items())}})


def remove_stale_temporaries(out: Path) -> list[Path]:
    """Delete the temporary files of our atomic writes that a killed writer left under ``out``.

    Only our own names (``.<file>.forgetbench-<random>.tmp``), and only in the folders the suite
    writes to (``out``, ``out/runs/*``, the calibration's and the ground truth's): ``--out .`` must never touch a
    user's own ``*.tmp`` files. Only safe while holding the output folder's lock with no worker of
    ours alive (see :mod:`forgetbench.benchmark.core.lock`): then no temporary file can belong to a write in progress.
    """
    out = Path(out)
    folders = [
        out,
        *out.glob("runs/*"),
        out / CALIBRATION_DIR,
        *out.glob(f"{CALIBRATION_DIR}/runs/*"),
        out / GROUND_TRUTH_DIR,
    ]
    removed = []
    for folder in folders:
        for path in folder.glob(f".*{TMP_MARK}*{TMP_SUFFIX}"):
            if path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def write_result(out: Path, record: RunRecord) -> Path:
    """Write ``record`` to ``OUT/runs/<run_id>/result.json`` (atomically: a crash leaves the old file or none)."""
    path = result_path(out, record.run_id)
    atomic_write_json(path, record.to_dict())
    return path


def write_suite(
    out: Path,
    resolved_suite: dict[str, Any],
    data_root: Path | None = None,
    import_folders: list[str] | None = None,
    metrics: dict[str, str] | None = None,
) -> None:
    """``OUT/suite.yaml`` (the resolved config) and ``OUT/invocation.json`` (what else a rerun needs: the data
    root and the folders ``module:attribute`` references were imported from; and what a later report needs: the
    module of each metric registered with ``register_metric`` when the suite ran)."""
    atomic_write_text(out / "suite.yaml", yaml.safe_dump(resolved_suite, sort_keys=False))
    if data_root is not None:
        atomic_write_json(
            out / INVOCATION_FILE,
            {"data_root": str(data_root), "import_folders": import_folders or [], "metrics": metrics or {}},
        )


def registered_metric_modules(out: Path) -> dict[str, str]:
    """The metrics registered when the suite in ``out`` ran, each with the module that registered it ({} when
    unknown: an older folder, or an unreadable file)."""
    try:
        metrics = json.loads((Path(out) / INVOCATION_FILE).read_text()).get("metrics")
    except (OSError, ValueError, AttributeError):
        return {}
    return {str(k): str(v) for k, v in metrics.items()} if isinstance(metrics, dict) else {}


def rerun_command(out: Path) -> str | None:
    """The shell command that reruns the suite of results folder ``out`` as it ran (None without its suite.yaml):
    absolute paths, its data root, and ``PYTHONPATH`` for the folders its references were imported from."""
    import shlex

    out = Path(out).resolve()
    if not (out / "suite.yaml").exists():
        return None
    try:
        invocation = json.loads((out / INVOCATION_FILE).read_text())
    except (OSError, ValueError):
        invocation = {}
    words = ["forgetbench", "run", str(out / "suite.yaml"), "--out", str(out)]
    if invocation.get("data_root"):
        words += ["--data-root", invocation["data_root"]]
    command = shlex.join(words)
    folders = [f for f in invocation.get("import_folders") or [] if isinstance(f, str)]
    return f"PYTHONPATH={shlex.quote(os.pathsep.join(folders))} {command}" if folders else command


_BOM = b"\xef\xbb\xbf"
_SPECIAL = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _plain_file(path: Path) -> None:
    """Refuse, without opening or following it, anything at ``path`` that is not a plain file: a symbolic link (a
    loop or a dangling one included), a directory, a FIFO (reading one blocks forever), a socket or a device."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        raise RecordError("missing: the run's folder holds no result.json (a run in progress or stopped)") from None
    except OSError as exc:
        raise RecordError(f"cannot read it ({exc.strerror})") from None
    if stat.S_ISLNK(mode):
        raise RecordError("a symbolic link, not followed: a result file is the plain file its run wrote")
    if stat.S_ISDIR(mode):
        raise RecordError("a directory where the run's record goes")
    for test, kind in _SPECIAL:
        if test(mode):
            raise RecordError(f"{kind}, not a plain file: not opened")


def _read_json(path: Path) -> dict[str, Any]:
    """The JSON object of a result file (pydantic-core's parser: about 3x the standard library's speed); refused
    with :class:`RecordError` saying why when it is not a plain file, not JSON, or holds NaN or Infinity (forgetbench
    writes neither: JSON has no such number)."""
    _plain_file(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise RecordError(f"cannot read it ({exc.strerror})") from None
    if data.startswith(_BOM):
        raise RecordError("starts with a UTF-8 byte-order mark: saved by an editor, not written by a run")
    try:
        record = pydantic_core.from_json(data, allow_inf_nan=False)
    except ValueError as exc:
        try:
            pydantic_core.from_json(data)  # the same bytes with NaN / Infinity allowed
        except ValueError:
            raise RecordError(f"not JSON ({exc}); a run killed while writing, or an edited file") from None
        raise RecordError(
            "holds NaN or Infinity where a number must be finite: not written by a run (forgetbench writes null)"
        ) from None
    if not isinstance(record, dict):
        raise RecordError(f"a run record is a JSON object, got {type(record).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        raise RecordError(f"required key(s) missing: {', '.join(missing)}")
    return record


def check_integrity(path: Path, record: RunRecord, config: Any = None) -> None:
    """What a record must agree with beyond its own fields (raises :class:`RecordError`): its run id names its
    folder (a record copied or moved into another run's folder is not that run), each accuracy row has one
    entry per experience the record names, and :func:`~forgetbench.benchmark.core.record.check_read` (seed, fingerprint,
    a complete matrix when ok; ``config``: the file's config, for a record read without it)."""
    folder = Path(path).parent.name
    if record.run_id != folder:
        raise RecordError(
            f"its run_id {record.run_id!r} is not its folder's name {folder!r}: a record copied or moved from "
            "another run"
        )
    width = len(record.experiences)
    rows = record.accuracy_matrix
    if rows and len(rows[0]) != width:
        raise RecordError(
            f"its accuracy_matrix has {len(rows[0])} column(s) but the record names {width} experience(s)"
        )
    check_read(record, record.config if config is None else config)


def parse_result(path: Path) -> RunRecord:
    """The record at ``path`` (any schema version, as the current one); :class:`RecordError` saying
    why it is not one (missing, not a plain file, truncated, not JSON, a non-finite number, a required key missing,
    a badly typed field, a run id or shape that disagrees: :func:`check_integrity`)."""
    record = RunRecord.from_dict(_read_json(path))
    check_integrity(path, record)
    return record


def read_result(path: Path) -> RunRecord | None:
    """The record at ``path``, or None when it is missing or not a readable record (a file that is
    there but unreadable also gets a warning naming it)."""
    try:
        return parse_result(path)
    except RecordError as exc:
        if os.path.lexists(path):
            log.warning("skipping %s: not a valid run record (%s)", path, exc)
        return None


def is_complete(
    record: RunRecord | None, resolved_config: dict[str, Any], retired_params: Mapping[str, Any] | None = None
) -> TypeGuard[RunRecord]:
    """True when ``record`` finished (ok, diverged or collapsed) under exactly ``resolved_config`` (a record written
    before a key or param retired still matches: :func:`without_retired_keys`)."""
    return (
        record is not None
        and record.status in DONE_STATUSES
        and without_retired_keys(record.config, retired_params) == resolved_config
    )


def is_planned(
    record: RunRecord, resolved_config: dict[str, Any], retired_params: Mapping[str, Any] | None = None
) -> bool:
    """True when ``record`` is a record of the run ``resolved_config`` describes, whatever its status (a failed run
    of ours is rerun in place; anything else in its place is moved aside first: :func:`set_aside`)."""
    return without_retired_keys(record.config, retired_params) == resolved_config


SET_ASIDE_DIR = "set_aside"  # OUT/set_aside/<run_id>[.N]/: what stood where a run's record goes, moved, never deleted


def set_aside(out: Path, run_id: str) -> Path | None:
    """Move whatever is at ``run_id``'s result file (a foreign or corrupt record, a directory, a link, a FIFO) to
    ``OUT/set_aside/<run_id>[.N]/result.json``, never following or opening it; a run folder that is a symbolic link
    or no folder at all (a file in its place) moves whole (``.../run_folder``), leaving what a link points at as it
    was. None when nothing is there."""
    path = result_path(out, run_id)
    whole = run_folder_is_link(out, run_id) or (os.path.lexists(path.parent) and not path.parent.is_dir())
    if not whole and not os.path.lexists(path):
        return None
    target = Path(out) / SET_ASIDE_DIR / run_id
    n = 1
    while os.path.lexists(target):
        target, n = Path(out) / SET_ASIDE_DIR / f"{run_id}.{n}", n + 1
    target.mkdir(parents=True)
    moved = target / ("run_folder" if whole else RESULT_FILE)
    os.replace(path.parent if whole else path, moved)
    return moved


def run_folder_is_link(out: Path, run_id: str) -> bool:
    """Whether ``OUT/runs/<run_id>`` is a symbolic link: what it points at is not the run's own folder, so no reader
    reads it and no run writes through it."""
    return Path(out, "runs", run_id).is_symlink()


@dataclass
class ResultScan:
    """What a results folder holds: the readable records, and every result file skipped with why."""

    records: list[RunRecord] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # run id -> the folder it was read from
    # runs of one scenario whose fingerprints differ in more than the seed (forgetbench.reports.environment)
    environment_warnings: list[str] = field(default_factory=list)
    # run id -> its metrics (run_metrics, without a reference), computed while it was read (reports.summary)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    lean: set[str] = field(
        default_factory=set
    )  # run ids read lean (RunRecord.from_dict_lean): no curves or attribution
    # planned runs with no record read (missing, or refused: those in ``skipped`` too), counted as not ok
    missing: list[MissingRun] = field(default_factory=list)


@dataclass(frozen=True)
class MissingRun:
    """A run a folder's plan holds that no reader can read: where its record belongs, why it is not there, and the
    (scenario, strategy) labels it would count under."""

    path: Path
    why: str
    scenario: str
    strategy: str
    named: bool = False  # its result file was read and refused: named with that reason already


@dataclass
class ReadResult:
    """One result file as :func:`read_result_file` read it: the record, or why it is not one."""

    path: Path
    record: RunRecord | None = None
    error: str | None = None
    lean: bool = False  # read without curves, attribution, config and turn_accuracy (RunRecord.from_dict_lean)
    curve_points: list[tuple[int, int, int, float]] | None = None  # a lean read's curves, for its metrics


def natural_key(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def result_paths(folder: Path) -> list[Path]:
    """The result file of every run folder under ``folder`` (whatever is there: a dangling link or a missing file
    is read, and refused, by name), in run-id order with numbers compared as numbers (so a strategy's seeds come in
    numeric order)."""
    runs = Path(folder) / "runs"
    try:
        folders = [entry for entry in os.scandir(runs) if entry.is_dir(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted((Path(entry.path) / RESULT_FILE for entry in folders), key=natural_key)


def read_result_file(path: Path, lean_if: Callable[[str, str], bool] | None = None) -> ReadResult:
    """The record at ``path``, or why it is not one (also logged as a warning). It is read lean (without
    :data:`~forgetbench.benchmark.core.record.LEAN_SKIPS`, :meth:`RunRecord.from_dict_lean`, its curve points in
    ``curve_points``) when ``lean_if(scenario label, strategy label)`` says so."""
    try:
        raw = _read_json(path)
        if lean_if is not None and lean_if(*_labels(raw)):
            record, points = RunRecord.from_dict_lean(raw)
            check_integrity(path, record, raw.get("config"))
            return ReadResult(path, record, lean=True, curve_points=points)
        record = RunRecord.from_dict(raw)
        check_integrity(path, record)
        return ReadResult(path, record)
    except RecordError as exc:
        log.warning("skipping %s: not a valid run record (%s)", path, exc)
        return ReadResult(path, error=str(exc))


def read_lean(path: Path) -> ReadResult:
    """:func:`read_result_file`, lean."""
    return read_result_file(path, lambda scenario, strategy: True)


def _labels(raw: dict[str, Any]) -> tuple[str, str]:
    """The scenario's and the strategy's labels of a record's JSON (empty where malformed: validation says why)."""

    def label(key: str) -> str:
        part = raw.get(key)
        return str(part.get("label")) if isinstance(part, dict) else ""

    return label("scenario"), label("strategy")


def share_repeated(record: RunRecord, shared: dict[str, Any]) -> None:
    """Point ``record``'s scenario, strategy and environment at the equal objects already in ``shared`` (adding
    its own when new): the runs of a large folder repeat them, and one copy of each is enough."""
    for name in ("scenario", "strategy", "environment"):
        value = getattr(record, name)
        setattr(record, name, shared.setdefault(f"{name}:{value!r}", value))


def scan_results(*folders: Path) -> ResultScan:
    """Every result file under the given output folders, read or skipped (with the reason)."""
    scan = ResultScan()
    for folder in folders:
        for read in map(read_result_file, result_paths(Path(folder))):
            if read.record is not None:
                scan.records.append(read.record)
            else:
                scan.skipped.append((read.path, str(read.error)))
    return scan


def load_results(*folders: Path) -> list[RunRecord]:
    """Every readable result record under the given output folders."""
    return scan_results(*folders).records


class PlannedSpec(Protocol):
    """What :class:`ResultFolder` needs of a run's spec (``forgetbench.benchmark.run.spec.RunSpec`` is one)."""

    @property
    def run_id(self) -> str: ...

    def resolved(self) -> dict[str, Any]: ...

    def retired_params(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class ResultFolder:
    """A results folder (``forgetbench run --out``): each run's record and checkpoint under ``runs/<run_id>/``, read
    strictly and written atomically, and every other path of the folder's layout, named here once (the lock, the
    plan, the rounds, the suite and invocation files, the set-aside records, the tuning and calibration folders,
    the report and its tables). Every caller that reads or writes the folder goes through it."""

    path: Path

    RUNS: ClassVar[str] = "runs"  # runs/<run_id>/result.json (+ checkpoint.pt)
    PLAN: ClassVar[str] = "plan.json"  # the runs the suite planned (core/plan.py)
    ROUNDS: ClassVar[str] = "rounds.json"  # seeds added until decided (run/rounds.py)
    SUITE: ClassVar[str] = "suite.yaml"  # the resolved suite (its verdict settings)
    INVOCATION: ClassVar[str] = INVOCATION_FILE
    LOCK: ClassVar[str] = ".forgetbench.lock"  # one writer at a time (core/lock.py)
    SET_ASIDE: ClassVar[str] = "set_aside"  # what stood where a run's record goes, moved, never deleted
    TUNING: ClassVar[str] = "tuning"  # tuning/runs/<run_id>/result.json: the trials; tuning/study.db
    TUNING_FILE: ClassVar[str] = "tuning.json"
    CALIBRATION: ClassVar[str] = CALIBRATION_DIR
    CALIBRATION_FILE: ClassVar[str] = "calibration.json"
    REPORT: ClassVar[str] = "report.html"
    SUMMARY: ClassVar[str] = "summary.csv"
    COMPARISONS: ClassVar[str] = "comparisons.csv"
    DECISIONS: ClassVar[str] = "decisions.csv"
    FRONTIER: ClassVar[str] = "frontier.csv"
    LAYOUT: ClassVar[tuple[str, ...]] = (RUNS, SET_ASIDE, TUNING, CALIBRATION, PLAN, ROUNDS, SUITE, INVOCATION)

    def __truediv__(self, name: str) -> Path:
        """``folder / ResultFolder.PLAN``: a path of the layout (names above only)."""
        return Path(self.path) / name

    @property
    def runs(self) -> Path:
        return self / self.RUNS

    @property
    def plan(self) -> Path:
        return self / self.PLAN

    @property
    def rounds(self) -> Path:
        return self / self.ROUNDS

    @property
    def suite(self) -> Path:
        return self / self.SUITE

    @property
    def lock(self) -> Path:
        return self / self.LOCK

    @property
    def tuning(self) -> "ResultFolder":
        """The trials' own results folder (its runs, plan and lock are laid out as this one's)."""
        return ResultFolder(self / self.TUNING)

    @property
    def tuning_file(self) -> Path:
        return self / self.TUNING_FILE

    @property
    def calibration_file(self) -> Path:
        return self / self.CALIBRATION_FILE

    def record_path(self, run_id: str) -> Path:
        return result_path(self.path, run_id)

    def read(self, run_id: str) -> RunRecord | None:
        """The run's record, None when it is missing or cannot be trusted (see :func:`read_result`), or its folder
        is a symbolic link (:func:`run_folder_is_link`)."""
        if run_folder_is_link(self.path, run_id):
            log.warning(
                "skipping %s: the run's folder is a symbolic link, not its own folder", self.path / "runs" / run_id
            )
            return None
        return read_result(self.record_path(run_id))

    def write(self, record: RunRecord) -> Path:
        return write_result(self.path, record)

    def checkpoint(self, run_id: str) -> Path:
        return checkpoint_path(self.path, run_id)

    def set_aside(self, run_id: str) -> Path | None:
        return set_aside(self.path, run_id)

    def records(self) -> list[RunRecord]:
        """Every readable record of the folder."""
        return load_results(self.path)

    def complete(self, spec: PlannedSpec) -> RunRecord | None:
        """The run's record when it finished under exactly the spec's config, else None (rerun it)."""
        record = self.read(spec.run_id)
        return record if is_complete(record, spec.resolved(), spec.retired_params()) else None
