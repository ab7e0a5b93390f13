"""Are the runs a report puts together comparable? Their fingerprints (the record's ``environment``) compared.

Within a scenario every run is averaged with the other seeds of its strategy and paired with the other
strategies on the same seed, so every run of a scenario must have run under the same conditions, its seed
aside: a thread count, a device, a library version or a commit that differs moves the numbers (the demo's
differ between 1 and 2 torch threads, and on CUDA). :func:`environment_differences` names each key that
differs and which runs had which value, in a sentence: ``seeds 0-2 ran with torch_threads 2, seeds 3-4 with
1``. Keys that some runs do not record (records written before the key existed) are not compared.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable, Iterable

from forgetbench.benchmark.core.record import RunRecord

# Differences that are not differences of the conditions: when and where a folder was written.
# the kernel's release string changes with every host update; a run's node names where it ran, not a condition
# (the hardware's own keys, device_name and cpu_kernels, are compared)
NOT_COMPARED = frozenset({"platform", "node"})
# Keys that describe a run's own strategy or scenario, not its conditions: the plug-in distribution a strategy comes
# from differs between a built-in (none) and a plug-in by design; compared only between runs of one strategy
PER_COMPONENT = frozenset({"plugins"})


def seed_ranges(seeds: Iterable[int]) -> str:
    """``0-2, 5`` for seeds 0, 1, 2, 5."""
    ordered = sorted(set(seeds))
    parts, start = [], None
    for i, seed in enumerate(ordered):
        if start is None:
            start = seed
        if i + 1 == len(ordered) or ordered[i + 1] != seed + 1:
            parts.append(str(start) if start == seed else f"{start}-{seed}")
            start = None
    return ", ".join(parts)


def _who(runs: list[RunRecord], everyone: list[RunRecord]) -> str:
    """The runs, as briefly as the group allows: ``seeds 0-2`` when they are every strategy's runs of those
    seeds, else ``wpl seeds 3-4, naive seed 1``."""
    seeds = {r.seed for r in runs}
    if {r.run_id for r in runs} == {r.run_id for r in everyone if r.seed in seeds}:
        return f"seed{'s' if len(seeds) > 1 else ''} {seed_ranges(seeds)}"
    by_strategy: dict[str, list[int]] = defaultdict(list)
    for r in runs:
        by_strategy[r.strategy.label].append(r.seed)
    return ", ".join(f"{label} seed{'s' if len(s) > 1 else ''} {seed_ranges(s)}" for label, s in by_strategy.items())


def environment_differences(records: Iterable[RunRecord]) -> list[str]:
    """One sentence per (scenario, environment key) whose value differs between runs of the scenario."""
    by_scenario: dict[str, list[RunRecord]] = defaultdict(list)
    for record in records:
        by_scenario[record.scenario.label].append(record)
    sentences = []
    for scenario, runs in by_scenario.items():
        keys = set.intersection(*(set(r.environment) for r in runs)) - NOT_COMPARED
        by_strategy: dict[str, list[RunRecord]] = defaultdict(list)
        for r in runs:
            by_strategy[r.strategy.label].append(r)
        for key in sorted(keys):
            for group in by_strategy.values() if key in PER_COMPONENT else [runs]:
                text = _differing(key, group, runs)
                if text:
                    sentences.append(f"{scenario}: {text}; averaged or paired together, they are not comparable")
        paths = [r for r in runs if numeric_path(r) is not None]
        text = _differing("numeric path", paths, runs, numeric_path) if paths else None
        if text:
            sentences.append(
                f"{scenario}: {text}; on an accelerator a seed stacked with others rounds its products otherwise "
                "than alone (and otherwise at each batch size), so one seed's numbers differ between the paths: "
                "averaged or paired together, they are not comparable"
            )
    return sentences


def numeric_path(record: RunRecord) -> str | None:
    """How a run's arithmetic ran, where that moves its numbers: on an accelerator, stacked in a batch of K seeds or
    alone; None on the CPU, where a batched record equals its run alone bit for bit (tests/run/test_batched.py)."""
    device = str(record.environment.get("device", "cpu"))
    if device.startswith("cpu"):
        return None
    seeds = record.batch.seeds if record.batch is not None else None
    return f"a stacked batch of {len(seeds)} seeds on {device}" if seeds and len(seeds) > 1 else f"alone on {device}"


def _differing(
    key: str, group: list[RunRecord], everyone: list[RunRecord], value: Callable[[RunRecord], object] | None = None
) -> str | None:
    """``seeds 0-2 ran with KEY A, seeds 3-4 with B`` where the runs of ``group`` differ in ``key`` (the record's
    environment entry, or ``value`` of each record), else None."""
    values: dict[str, list[RunRecord]] = defaultdict(list)
    for r in group:
        values[str(r.environment[key] if value is None else value(r))].append(r)
    if len(values) < 2:
        return None
    (first_value, first_runs), *rest = sorted(values.items(), key=lambda kv: min(r.seed for r in kv[1]))
    return f"{_who(first_runs, everyone)} ran with {key} {first_value}, " + ", ".join(
        f"{_who(runs, everyone)} with {value}" for value, runs in rest
    )
