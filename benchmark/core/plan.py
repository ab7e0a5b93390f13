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

In a folder without ``plan.json`` (written before plans were, or a folder of copied records), the records are held
to each other: one suite name, and one config per scenario and per (scenario, strategy) among them.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Mapping, Sequence

from forgetbench.benchmark.core.record import RunRecord, config_fingerprint
from forgetbench.benchmark.core.migrations import without_retired_keys

PLAN_FILE = "plan.json"
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
    return Path(folder) / PLAN_FILE


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


def read_entries(folder: Path) -> dict[str, dict[str, Any]] | None:
    """The plan's entries of ``folder`` (None: no plan there, or one that cannot be read: the records are then held
    to each other only)."""
    try:
        raw = json.loads(plan_path(folder).read_text())
    except (OSError, ValueError):
        return None
    runs = raw.get("runs") if isinstance(raw, dict) else None
    if not isinstance(runs, dict):
        return None
    return {k: v for k, v in runs.items() if isinstance(v, dict) and isinstance(v.get("config"), dict)}


def plan_bytes(entries: dict[str, dict[str, Any]]) -> bytes:
    return (json.dumps({"version": PLAN_VERSION, "runs": entries}, indent=None, sort_keys=True) + "\n").encode()


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

    def refusal(self, record: RunRecord, config: Mapping[str, Any] | None = None) -> str | None:
        """Why ``record`` is not a run of this plan, or None. ``config``: the record's config when the record was
        read without it (lean)."""
        entry = self.entries.get(record.run_id)
        if entry is None:
            return (
                f"run id {record.run_id!r} is not a run this suite planned ({plan_path(self.folder)}: "
                f"{len(self.entries)} run(s)): a record copied from another suite, another seed list or an older config"
            )
        if record.fingerprint is not None and record.fingerprint == entry.get("fingerprint"):
            return None
        actual = record.config if config is None and record.config else config
        if actual is None:
            return f"its fingerprint {record.fingerprint} is not the planned run's {entry.get('fingerprint')}"
        found = difference(entry["config"], without_retired_keys(dict(actual), entry.get("retired") or {}))
        return None if found is None else f"not the run this suite planned: {found}"


def read_plan(folder: Path) -> Plan | None:
    entries = read_entries(folder)
    return None if entries is None else Plan(Path(folder), entries)


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
    """Run id -> why, for every record of ``folder`` that is not a run of its plan (or, without a plan, that
    disagrees with the folder's other records), or whose matrix has another shape than its scenario's."""
    plan = read_plan(folder)
    if plan is None:
        refused = records_alone_refusals(records)
    else:
        refused = {r.run_id: why for r in records if (why := plan.refusal(r)) is not None}
    refused.update(shape_refusals([r for r in records if r.run_id not in refused]))
    return refused
