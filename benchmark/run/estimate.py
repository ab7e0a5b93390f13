"""What a suite will cost, before it runs: every run it plans, and the wall time and memory to expect.

**The plan** counts what ``forgetbench run`` will execute: the ordinary runs; for a tuned entry its calibration
probes (the first ladder: a calibration that has to extend adds a decade at a time, so "at least"), the naive
references of its trials, its trials (budget x trial seeds) and its final runs (the suite's seeds at the chosen point
and each neighbour); with ``seeds: {start, max}`` the rounds' runs (up to, if no pair is ever decided). Runs already
complete in the results folder are counted as done.

**The time** of a run is measured, not guessed: for each distinct (scenario, strategy) the runner executes two runs
of it as planned but with a step budget a turn (:func:`probe_steps`: the real scenario, model, strategy and device,
through the runner's own pipeline; nothing is written). A line through their walls against their steps splits the
time into what grows with the steps (training, forgetting-curve points and their attribution) and what does not
(building the scenario, each turn's evaluation, the importance passes). A full run is then on that line at its own
number of steps (each turn's ``max_steps``, else ``iterations_per_task``, else epochs x batches). A scenario whose
turns carry their own step budget (a supernet) runs whole: that is its time. The first run of a process pays imports and
warm-ups, so a discarded warm-up run comes first. The wall divides the runs' total by the workers (process or Ray
executors), never below the longest single run.

**The memory** is the resident memory of this process after the timed runs (one run's footprint; each worker holds
about that much).

Checked against the measured wall in ``docs/studies/performance.md``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from forgetbench.benchmark.core import store
from forgetbench.benchmark.core.children import available_cores
from forgetbench.benchmark.core.config import SuiteConfig
from forgetbench.benchmark.core.units import format_bytes
from forgetbench.benchmark.run import tuning
from forgetbench.benchmark.run.assemble import seeded_scenario
from forgetbench.benchmark.run.runner import run
from forgetbench.benchmark.run.schedule import turn_steps
from forgetbench.benchmark.run.planned import planned_runs
from forgetbench.benchmark.run.spec import RunSpec

PROBE_STEPS = 5  # iterations a turn of a timed run trains
ESTIMATE_FROM_RUNS = 50  # `run` estimates first (and prints it when over a minute) from this many planned runs
# the report at a suite's end: its imports and page, and reading each record (docs/studies/performance.md: the demo's
# 40 runs in 2.9 s, 10,000 runs in 12-15 s)
REPORT_SECONDS, REPORT_SECONDS_A_RUN = 2.5, 0.0013


@dataclass
class Cost:
    """One distinct (scenario, strategy)'s measured cost: seconds a step, seconds that do not grow with the steps, and
    the steps a full run of it takes."""

    step_seconds: float
    fixed_seconds: float
    steps: int

    @property
    def run_seconds(self) -> float:
        return self.fixed_seconds + self.step_seconds * self.steps


@dataclass
class Estimate:
    """A suite's plan and its expected cost."""

    counts: dict[str, int] = field(default_factory=dict)  # phase -> runs planned ("rounds": at most)
    done: int = 0  # runs already complete under the results folder
    seconds: dict[str, float] = field(default_factory=dict)  # phase -> expected seconds of its runs (summed)
    costs: dict[tuple[str, str], Cost] = field(default_factory=dict)
    workers: int = 1
    executor: str = "local"
    overhead_seconds: float = 0.0  # once a suite: imports and warm-up (the timed warm-up run's extra), the report
    memory_bytes: int = 0
    timing_seconds: float = 0.0  # what the estimate itself took

    @property
    def total_runs(self) -> int:
        return sum(self.counts.values())

    @property
    def wall_seconds(self) -> float:
        longest = max((c.run_seconds for c in self.costs.values()), default=0.0)
        return max(sum(self.seconds.values()) / max(self.workers, 1), longest) + self.overhead_seconds

    def lines(self) -> list[str]:
        """The estimate as ``forgetbench run --estimate`` prints it."""
        phases = ", ".join(
            f"{n} {phase}" + (" (at most: until every pair is decided)" if phase == "rounds" else "")
            for phase, n in self.counts.items()
            if n
        )
        out = [
            f"Plan: {self.total_runs} runs ({phases}); {self.done} already complete.",
            f"Expected wall: about {_duration(self.wall_seconds)} with the {self.executor} executor and "
            f"{self.workers} worker(s) ({_duration(sum(self.seconds.values()))} of runs in all, "
            f"{_duration(self.overhead_seconds)} of start-up and report); memory about "
            f"{format_bytes(self.memory_bytes)} per worker. Measured in {self.timing_seconds:.1f} s from one run per "
            f"scenario and strategy (two shortened runs each):",
        ]
        for (scenario, strategy), cost in self.costs.items():
            out.append(
                f"  {scenario} / {strategy}: {_duration(cost.run_seconds)} a run ({cost.steps} steps at "
                f"{1000 * cost.step_seconds:.1f} ms, {cost.fixed_seconds:.1f} s evaluation, importance and set-up)"
            )
        return out


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _steps(spec: RunSpec, data_root: Path) -> int:
    """The iterations a full run of ``spec`` trains (every turn of its schedule)."""
    scenario = seeded_scenario(spec, data_root)
    return sum(turn_steps(turn, len(scenario.tasks[turn.task].train_y), spec.training) for turn in scenario.schedule)


def probe_steps(spec: RunSpec) -> tuple[int, int]:
    """The two step budgets a turn of the timed runs trains: enough for two forgetting-curve points at the suite's
    ``eval_every``, and twice that."""
    low = max(PROBE_STEPS, 2 * (spec.training.eval_every or 0))
    return low, 2 * low


def _timed(spec: RunSpec, data_root: Path, steps_a_turn: int) -> tuple[float, int]:
    """(wall seconds, steps trained) of ``spec`` with ``steps_a_turn`` iterations a turn; nothing written."""
    short = dataclasses.replace(
        spec, training=spec.training.model_copy(update={"iterations_per_task": steps_a_turn, "checkpoint": False})
    )
    begun = time.perf_counter()
    record = run(short, data_root)
    return time.perf_counter() - begun, max(record.timing.steps, 1)


def measure(spec: RunSpec, data_root: Path) -> Cost:
    """Two shortened runs of ``spec`` (:func:`probe_steps`; nothing written), a line through their walls against their
    steps (what grows with the steps: training, forgetting-curve points and their attribution; what does not:
    building, each turn's evaluation, importance passes), and the cost of a full run on that line. A scenario whose
    turns carry their own step budget runs whole both times: its wall is its cost."""
    low, high = probe_steps(spec)
    full = _steps(spec, data_root)
    wall_low, steps_low = _timed(spec, data_root, low)
    if steps_low >= full:  # the turns' own budgets (or a short run anyway): it ran whole, its wall is its cost
        return Cost(0.0, wall_low, steps_low)
    wall_high, steps_high = _timed(spec, data_root, high)
    step_seconds = max((wall_high - wall_low) / max(steps_high - steps_low, 1), 0.0)
    fixed = max(wall_low - step_seconds * steps_low, 0.0)
    return Cost(step_seconds, fixed, full)


def estimate(
    suite: SuiteConfig,
    out: Path,
    data_root: Path,
    seeds: list[int] | None = None,
    executor: str = "local",
    workers: int | None = None,
) -> Estimate:
    """The suite's plan and its expected wall and memory (module docstring)."""
    begun = time.perf_counter()
    phases = planned_runs(suite, out, seeds)
    result = Estimate(executor=executor, workers=1 if executor == "local" else (workers or available_cores()))
    result.counts = {phase: len(specs) for phase, specs in phases.items()}
    result.done = sum(
        store.ResultFolder(_folder(out, phase)).complete(s) is not None
        for phase, specs in phases.items()
        if phase != "rounds"
        for s in specs
    )
    distinct: dict[tuple[str, str], RunSpec] = {}
    for specs in phases.values():
        for spec in specs:
            distinct.setdefault((spec.scenario.display_name, spec.strategy.name), spec)
    warm_up = 0.0
    for i, (key, spec) in enumerate(distinct.items()):
        spec = dataclasses.replace(spec, seed=max(spec.seed, 0))  # a round's placeholder seed
        if i == 0:  # the warm-up: imports, first allocations; what it costs over the measured run is paid once
            started = time.perf_counter()
            _timed(spec, data_root, probe_steps(spec)[0])
            warm_up = time.perf_counter() - started
        result.costs[key] = measure(spec, data_root)
        if i == 0:
            warm_up = max(warm_up - _timed(spec, data_root, probe_steps(spec)[0])[0], 0.0)
    runs = sum(len(specs) for specs in phases.values())
    result.overhead_seconds = warm_up + REPORT_SECONDS + REPORT_SECONDS_A_RUN * runs
    for phase, specs in phases.items():
        result.seconds[phase] = sum(result.costs[(s.scenario.display_name, s.strategy.name)].run_seconds for s in specs)
    if result.done:  # complete runs cost nothing: scaled by the share left
        total = max(result.total_runs - result.counts.get("rounds", 0), 1)
        left = 1 - result.done / total
        result.seconds = {p: v * (left if p != "rounds" else 1.0) for p, v in result.seconds.items()}
    result.memory_bytes = _resident_bytes()
    result.timing_seconds = time.perf_counter() - begun
    return result


def _folder(out: Path, phase: str) -> Path:
    return {
        "calibration probes": Path(out) / store.CALIBRATION_DIR,
        "naive references": Path(out) / tuning.TUNING_DIR,
        "tuning trials": Path(out) / tuning.TUNING_DIR,
    }.get(phase, Path(out))


def _resident_bytes() -> int:
    try:
        with open(f"/proc/{os.getpid()}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):  # the peak resident set
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def worth_estimating(suite: SuiteConfig, out: Path, seeds: list[int] | None = None) -> bool:
    """Whether ``run`` estimates before it starts: a suite that plans :data:`ESTIMATE_FROM_RUNS` runs or more."""
    return sum(len(specs) for specs in planned_runs(suite, out, seeds).values()) >= ESTIMATE_FROM_RUNS
