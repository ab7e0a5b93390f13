"""The plan of a results folder: which runs the suite asked for there, under which config (``OUT/plan.json``), and
the checks a record must pass against it, or, in a folder without one, against the folder's other records.

Every batch of runs the suite's driver is handed (ordinary runs, calibration probes, tuning trials, a tuned point's
seeds, the seeds a sequential decision adds) is added to the plan of the folder it writes to, under the folder's
lock, before it runs. A run id planned again under another config replaces its entry, and so does every other seed
of that (scenario, strategy): a suite whose config changed plans none of the records of the old config, which are
then refused by name instead of being averaged with the new ones.

A record is refused (and named, with the field that differs) when:

* its run id is not planned (a record copied from another suite or another seed list);
* its config differs from the planned run's (``training.lr: 0.5 in the record, 0.05 planned``);
* its accuracy matrix has another shape than the records of the same scenario (experiences and rows).

**The last invocation's runs.** The plan also keeps which runs the last invocation of the suite on the folder asked
for (``last``): a rerun with ``--seeds 0,1`` over a folder that ran seeds 0-2, or a rounds suite rerun with a
smaller ``max``, reads exactly the runs it asked for; the others stay on disk, named, never averaged in, so the
terminal, the report, ``summary.csv``, ``table`` and ``load_results`` agree.

**A plan that cannot be read is named, never a silent downgrade.** A ``plan.json`` that does not parse as one (a
truncated or foreign file), or a missing one where a suite that keeps plans wrote the folder (its ``suite.yaml`` or
``invocation.json`` is there and its records carry a planned run's fingerprint), is a :class:`PlanError`: the folder's records cannot be told from copies, and
rerunning the suite on the folder writes its plan again (its complete runs are kept). Only a folder no suite wrote a
plan for (written before plans existed, or records gathered by hand) is read by one stated rule, the same in every
reader: its records are held to each other (one suite name, one config per scenario and per (scenario, strategy)),
every one read whole.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Mapping, Sequence

from forgetbench.benchmark.core.config import ConfigError
from forgetbench.benchmark.core.record import RunRecord, config_fingerprint
from forgetbench.benchmark.core.store import RESULT_FILE, MissingRun, ResultFolder, natural_key
from forgetbench.benchmark.core.migrations import without_retired_keys

PLAN_FILE = ResultFolder.PLAN
PLAN_VERSION = 1


@dataclass(frozen=True)
class PlannedRun:
    """One run a suite asked for: its id, its resolved config, and the strategy's retired params (a record written
    before a param retired still matches: :func:`forgetbench.benchmark.core.migrations.without_retired_keys`)."""

    run_id: str
    config: Mapping[str, Any]
    retired: Mapping[str, Any] = field(default_factory=dict)


def _group(run_id: str) -> str:
    """The run id without its seed: the (scenario, strategy) every seed of which shares one config."""
    return run_id.rsplit("__seed", 1)[0]


def _without_seed(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k != "seed"}


def plan_path(folder: Path) -> Path:
    return ResultFolder(Path(folder)).plan


def extended(entries: dict[str, dict[str, Any]], runs: Iterable[PlannedRun]) -> dict[str, dict[str, Any]]:
    """``entries`` (run id -> {fingerprint, config, retired}) with ``runs`` added: a run's entry replaced, and every
    seed of its (scenario, strategy) planned under another config dropped."""
    entries = dict(entries)
    for run in runs:
        config = json.loads(json.dumps(run.config))  # JSON's own types: what the record will hold
        group, rest = _group(run.run_id), _without_seed(config)
        for other in [k for k, e in entries.items() if _group(k) == group and _without_seed(e["config"]) != rest]:
            del entries[other]
        entries[run.run_id] = {
            "fingerprint": config_fingerprint(config),
            "config": config,
            "retired": dict(run.retired),
        }
    return entries


class PlanError(ConfigError):
    """A folder's plan cannot be read, or is missing where its records say there was one (one line, naming it; the
    command line exits 2)."""


MAX_PLAN_BYTES = 64 * 2**20  # a plan of 100,000 runs is about 30 MB; a file past this is not one


def _raw(folder: Path) -> dict[str, Any] | None:
    """``plan.json`` parsed, None where there is no such file; :class:`PlanError` where it is not a plan."""
    path = plan_path(folder)
    if not path.exists():
        return None
    try:
        if path.stat().st_size > MAX_PLAN_BYTES:
            raise ValueError(f"{path.stat().st_size:,} bytes")
        raw = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise PlanError(_unreadable(path, str(exc).splitlines()[0][:120])) from None
    runs = raw.get("runs") if isinstance(raw, dict) else None
    if not isinstance(runs, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("config"), dict) for v in runs.values()
    ):
        raise PlanError(_unreadable(path, "not an object of planned runs"))
    last = raw.get("last")
    if last is not None and not (isinstance(last, list) and all(isinstance(k, str) for k in last)):
        raise PlanError(_unreadable(path, "its 'last' is not a list of run ids"))
    return raw


def _unreadable(path: Path, why: str) -> str:
    return (
        f"{path} cannot be read as the folder's plan ({why}): its records cannot be checked against the runs the "
        "suite asked for, and none is read without it. Rerun the suite on this folder to write its plan again "
        "(complete runs are kept), or restore the file"
    )


def read_entries(folder: Path) -> dict[str, dict[str, Any]] | None:
    """The plan's entries of ``folder`` (None: no plan there); :class:`PlanError` where it cannot be read."""
    raw = _raw(folder)
    return None if raw is None else dict(raw["runs"])


def read_last(folder: Path) -> list[str] | None:
    """The run ids the last invocation on ``folder`` asked for (None: no plan, or one written before plans kept it)."""
    raw = _raw(folder)
    return None if raw is None or raw.get("last") is None else list(raw["last"])


def plan_bytes(entries: dict[str, dict[str, Any]], last: Iterable[str] | None = None) -> bytes:
    body: dict[str, Any] = {"version": PLAN_VERSION, "runs": entries}
    if last is not None:
        body["last"] = sorted(last)
    return (json.dumps(body, indent=None, sort_keys=True) + "\n").encode()


def difference(planned: Any, actual: Any, where: str = "", expected: str = "planned") -> str | None:
    """The first place two configs differ, named by its path (``training.lr: 0.5 in the record, 0.05 planned``), or
    None when they are equal; ``expected`` says where ``planned`` comes from."""
    if isinstance(planned, Mapping) and isinstance(actual, Mapping):
        for key in sorted(set(planned) | set(actual), key=str):
            path = f"{where}.{key}" if where else str(key)
            if key not in actual:
                return f"{path}: missing in the record, {planned[key]!r} {expected}"
            if key not in planned:
                return f"{path}: {actual[key]!r} in the record, absent {expected}"
            found = difference(planned[key], actual[key], path, expected)
            if found:
                return found
        return None
    if planned == actual and type(planned) is type(actual):
        return None
    return f"{where or 'config'}: {actual!r} in the record, {planned!r} {expected}"


@dataclass
class Plan:
    """The runs a folder's suite planned (see the module's docstring)."""

    folder: Path
    entries: dict[str, dict[str, Any]]
    last: frozenset[str] | None = None  # the runs the last invocation asked for (None: every planned run)

    def refusal(self, record: RunRecord, config: Mapping[str, Any] | None = None) -> str | None:
        """Why ``record`` is not a run of this plan, or None. ``config``: the record's config when the record was
        read without it (lean)."""
        entry = self.entries.get(record.run_id)
        if entry is None:
            return (
                f"run id {record.run_id!r} is not a run this suite planned ({plan_path(self.folder)}: "
                f"{len(self.entries)} run(s)): a record copied from another suite, another seed list or an older config"
            )
        if self.last is not None and record.run_id not in self.last:
            return (
                f"run {record.run_id!r} was not asked for by the last run of the suite on this folder (it asked for "
                f"{len(self.last)} run(s): {plan_path(self.folder)}'s 'last'); kept on disk, not read"
            )
        if record.fingerprint is not None and record.fingerprint == entry.get("fingerprint"):
            return None
        actual = record.config if config is None and record.config else config
        if actual is None:
            return f"its fingerprint {record.fingerprint} is not the planned run's {entry.get('fingerprint')}"
        found = difference(entry["config"], without_retired_keys(dict(actual), entry.get("retired") or {}))
        return None if found is None else f"not the run this suite planned: {found}"


def missing_runs(folder: Path, present: Iterable[str], accepted: Iterable[str]) -> list[MissingRun]:
    """The planned runs of ``folder`` (those its last invocation asked for) that no reader reads: not among
    ``accepted`` (the run ids whose records were read and kept), each with its record's path and why. A run whose
    folder is among ``present`` (the run folders a reader found) had its file refused, and named, already
    (``named``); the others are deleted or never run, replaced by a symbolic link (never followed), or a file where
    the folder should be. None in a folder without a plan."""
    plan = read_plan(folder)
    if plan is None:
        return []
    found, kept, runs = set(present), set(accepted), ResultFolder(folder).runs
    missing = []
    for run_id in sorted(plan.last if plan.last is not None else plan.entries, key=lambda r: natural_key(Path(r))):
        if run_id in kept:
            continue
        place = runs / run_id
        if run_id in found:
            why = f"planned run {run_id!r}: its record was refused (named above)"
        elif place.is_symlink():
            why = f"planned run {run_id!r}: {place} is a symbolic link, not the run's own folder, so it is not read"
        elif place.exists():
            why = f"planned run {run_id!r}: {place} is not a folder, so it holds no record"
        else:
            why = (
                f"planned run {run_id!r} has no record ({place} is missing: deleted, or not run yet); "
                "rerun the suite on this folder to run it"
            )
        config = plan.entries.get(run_id, {}).get("config") or {}
        scenario, strategy = (_label(config.get(part)) for part in ("scenario", "strategy"))
        missing.append(MissingRun(place / RESULT_FILE, why, scenario, strategy, named=run_id in found))
    return missing


def _label(component: Any) -> str:
    """A planned component's label, as its record would carry it (its label, else its name)."""
    if not isinstance(component, Mapping):
        return "?"
    return str(component.get("label") or component.get("name") or "?")


def read_plan(folder: Path) -> Plan | None:
    """The folder's plan (None: none there); :class:`PlanError` where it cannot be read."""
    raw = _raw(folder)
    if raw is None:
        return None
    last = raw.get("last")
    return Plan(Path(folder), dict(raw["runs"]), None if last is None else frozenset(last))


def _majority(
    records: Sequence[RunRecord], key: Callable[[RunRecord], Hashable | None]
) -> tuple[Hashable | None, bool]:
    """The most common key among ``records`` (None keys ignored), and whether it is the only most common one."""
    counts = Counter(k for k in map(key, records) if k is not None)
    if not counts:
        return None, True
    (top, n), *rest = counts.most_common()
    return top, not rest or rest[0][1] < n


def _frozen(value: Any) -> Hashable:
    return json.dumps(value, sort_keys=True, default=str)


def _outliers(
    records: Sequence[RunRecord],
    by: Callable[[RunRecord], str],
    key: Callable[[RunRecord], Hashable | None],
    why: Callable[[RunRecord, Hashable | None, bool], str],
) -> dict[str, str]:
    """Run id -> why, for the records whose ``key`` is not their group's (``by``) majority; on a tie, every
    record of the tied keys (which is right cannot be told)."""
    groups: dict[str, list[RunRecord]] = defaultdict(list)
    for record in records:
        groups[by(record)].append(record)
    refused: dict[str, str] = {}
    for members in groups.values():
        top, unique = _majority(members, key)
        for record in members:
            own = key(record)
            if own is not None and (own != top or not unique):
                refused[record.run_id] = why(record, top, unique)
    return refused


def _shape(record: RunRecord) -> Hashable | None:
    """The accuracy matrix's shape a scenario fixes: its number of experiences and rows (their names may differ by
    seed: a split's class order); none for a search, whose turns and architectures are its own, or a run not ok."""
    if record.status != "ok" or record.search is not None or record.err1 is not None:
        return None
    return (len(record.experiences), len(record.accuracy_matrix))


def shape_refusals(records: Sequence[RunRecord]) -> dict[str, str]:
    """Run id -> why, for each ok record whose matrix has another shape than the other records of its scenario."""

    def why(record: RunRecord, top: Hashable | None, unique: bool) -> str:
        rows, names = len(record.accuracy_matrix), len(record.experiences)
        if not unique or not isinstance(top, tuple):
            return (
                f"its accuracy matrix ({rows} row(s), {names} experience(s)) disagrees with other records of "
                f"scenario {record.scenario.label!r}, and no shape is the most common"
            )
        experiences, top_rows = top
        return (
            f"its accuracy matrix has {rows} row(s) over {names} experience(s), where the other records of scenario "
            f"{record.scenario.label!r} have {top_rows} over {experiences}: a partial, padded or foreign record"
        )

    return _outliers(records, lambda r: r.scenario.label, _shape, why)


def _config_part(keys: tuple[str, ...]) -> Callable[[RunRecord], Hashable | None]:
    """A record's config restricted to ``keys``, as a comparable key (None for a record read without its config)."""

    def key(record: RunRecord) -> Hashable | None:
        return _frozen({k: record.config.get(k) for k in keys}) if record.config else None

    return key


def _config_outlier_why(keys: tuple[str, ...], part: str) -> Callable[[RunRecord, Hashable | None, bool], str]:
    def why(record: RunRecord, top: Hashable | None, unique: bool) -> str:
        if not unique or top is None:
            return f"its {'/'.join(keys)} config disagrees with other records of its {part}, none the most common"
        found = difference(json.loads(str(top)), {k: record.config.get(k) for k in keys}, expected="in the others")
        return f"not the config of the other records of its {part}: {found}"

    return why


def records_alone_refusals(records: Sequence[RunRecord]) -> dict[str, str]:
    """Run id -> why, for a folder without a plan: the records whose suite name, scenario config (scenario, training,
    device) or strategy config is not that of the other records (the most common one)."""
    refused = _outliers(
        records,
        lambda r: "",
        lambda r: r.suite,
        lambda r, top, unique: (
            f"suite: {r.suite!r}, where the folder's other records are of "
            + (f"{top!r}" if unique else "several suites")
            + ": one suite per folder"
        ),
    )
    checks: list[tuple[Callable[[RunRecord], str], tuple[str, ...], str]] = [
        (lambda r: r.scenario.label, ("scenario", "training", "device"), "scenario"),
        (lambda r: f"{r.scenario.label}/{r.strategy.label}", ("strategy",), "strategy"),
    ]
    for by, keys, part in checks:
        kept = [r for r in records if r.run_id not in refused]
        for run_id, why in _outliers(kept, by, _config_part(keys), _config_outlier_why(keys, part)).items():
            refused.setdefault(run_id, why)
    return refused


def refusals(folder: Path, records: Sequence[RunRecord]) -> dict[str, str]:
    """Run id -> why, for every record of ``folder`` that is not a run of its plan (or, in a folder written before
    plans, that disagrees with the folder's other records), or whose matrix has another shape than its scenario's.
    :class:`PlanError` where the plan cannot be read, or is missing and the records say there was one."""
    plan = read_plan(folder)
    if plan is None:
        written = [name for name in (ResultFolder.SUITE, ResultFolder.INVOCATION) if (Path(folder) / name).exists()]
        fingerprinted = sum(1 for r in records if r.fingerprint)
        if written and fingerprinted:
            raise PlanError(
                f"{plan_path(folder)} is missing, but the folder was written by a suite that keeps one (it holds "
                f"{' and '.join(written)}, and {fingerprinted} record(s) carry the fingerprint of a planned run): its "
                "records cannot be told from copies, and none is read without it. Rerun the suite on this folder to "
                "write its plan again (complete runs are kept), or restore the file"
            )
        refused = records_alone_refusals(records)
    else:
        refused = {r.run_id: why for r in records if (why := plan.refusal(r)) is not None}
    refused.update(shape_refusals([r for r in records if r.run_id not in refused]))
    return refused
