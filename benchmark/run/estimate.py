"""What a suite will cost, before it runs: every run it plans, and the wall time and memory to expect.

**The plan** counts what ``forgetbench run`` will execute: the ordinary runs; for a tuned entry its calibration
probes (the first ladder: a calibration that has to extend adds a decade at a time, so "at least"), the naive
references of its trials, its trials (budget x trial seeds) and its final runs (the suite's seeds at the chosen point
and each neighbour); with ``seeds: {start, max}`` the rounds' runs (up to, if no pair is ever decided). Runs already
complete in the results folder are counted as done.

**Before any timing** every distinct (scenario, strategy) is built once as the runner builds it, nothing trained: a
factory or strategy that raises is refused in seconds (exit 2), not after the pairs timed before it.

**The time** of a run is measured, not guessed: for each distinct (scenario, strategy) the runner executes two runs
of it as planned but with a step budget a turn (:func:`probe_steps`: the real scenario, model, strategy and device,
through the runner's own pipeline, on the torch threads every executor gives a run; nothing is written). A line
through their walls against their steps splits the time into what grows with the steps (training, forgetting-curve
points and their attribution) and what does not (building the scenario, each turn's evaluation, the importance
passes); the runs' own clock of their training (without importance passes) is the least a step can cost, so a
machine whose load moves the two walls cannot fit a step at nothing. A full run is then on that line at its own
number of steps (each turn's ``max_steps``, else ``iterations_per_task``, else epochs x batches). A scenario whose
turns carry their own step budget (a supernet) runs whole: that is its time. The first run of a process pays imports
and warm-ups, so a discarded warm-up run comes first. The wall divides the runs' total by the workers (process or Ray
executors), never below the longest single run.

**Seeds in a batch** (``batch_seeds``, :mod:`~forgetbench.benchmark.run.batching`): where a pair's planned seeds
train as one batch, :data:`BATCH_PROBE` of its seeds are also timed as one shortened batch, and a run in a batch costs
its share of that (the fixed part per seed as alone, the steps at the batch's rate); a batch is one task, so the
longest task may be a batch. A round adds ``step`` seeds a strategy: its batches hold ``step``.

**The estimate's own cost** is bounded: it measures each scenario's most planned pair first, then each strategy not
yet timed (in the scenario whose timed run was cheapest), then the other pairs by planned runs, and stops once it
has spent :data:`BUDGET_SHARE` of the wall it expects so far, or :data:`BUDGET_SECONDS` when that is more
(``forgetbench run --estimate`` counts from its process's start: its imports are part of the user's wait). A pair it
did not measure costs its scenario's timed run of another strategy times the two strategies' ratio where another
scenario timed both (naive preferred), else its scenario's mean (each line says which).
With seeds in rounds the wall is a range: the first round's runs alone, then every round up to ``max``.

**The machine's load** is measured while the estimate runs (the cores' busy time from ``/proc/stat``, less this
process's own): W workers beside ``other`` busy cores get ``cores x W / (W + other)`` cores when that is less than W,
so the runs' total divides by that, not by W. **The fixed costs** are measured too: a command's start (what the
run's command and, with the process or Ray executor, each worker pays: where the estimate is itself a command, its
own start, read from the kernel; else a fresh process importing the harness, timed once), and the report, slowed by
the same load.

**The memory** is the resident memory of this process after the timed runs (one run's footprint; each worker holds
about that much).

Checked against the measured wall in ``docs/studies/performance.md``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from forgetbench.benchmark.core import store
from forgetbench.benchmark.core.children import available_cores
from forgetbench.benchmark.core.config import ConfigError, SuiteConfig
from forgetbench.benchmark.core.units import format_bytes
from forgetbench.benchmark.run import tuning
from forgetbench.benchmark.core.record import RunRecord
from forgetbench.benchmark.run.assemble import seeded_scenario
from forgetbench.benchmark.run.executors import run_threads, torch_threads
from forgetbench.benchmark.run.batching import run_seeds
from forgetbench.benchmark.run.runner import build_problem, run
from forgetbench.benchmark.run.batching.groups import MAX_SEEDS, seed_groups
from forgetbench.benchmark.run.schedule import turn_steps
from forgetbench.benchmark.run.planned import planned_runs
from forgetbench.benchmark.run.spec import RunSpec

PROBE_STEPS = 5  # iterations a turn of a timed run trains
BATCH_PROBE = 3  # seeds of the shortened batch that times the seed-batched path (at the first timed run's steps)
BUDGET_SECONDS, BUDGET_SHARE = 20.0, 0.05  # the estimate measures for at most max(20 s, 5% of the wall it expects)
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
    batched_seconds: float | None = None  # a run's share of a batch of its seeds (None: not measured or refused)

    @property
    def run_seconds(self) -> float:
        return self.fixed_seconds + self.step_seconds * self.steps

    def seconds(self, batched: bool) -> float:
        """A run's seconds: alone, or as one of a batch of its seeds where that was measured."""
        return self.batched_seconds if batched and self.batched_seconds is not None else self.run_seconds


@dataclass
class Estimate:
    """A suite's plan and its expected cost."""

    counts: dict[str, int] = field(default_factory=dict)  # phase -> runs planned ("rounds": at most)
    done: int = 0  # runs already complete under the results folder
    seconds: dict[str, float] = field(default_factory=dict)  # phase -> expected seconds of its runs (summed)
    costs: dict[tuple[str, str], Cost] = field(default_factory=dict)
    workers: int = 1
    executor: str = "local"
    overhead_seconds: float = 0.0  # once a suite: start-up (the command's, the workers'), warm-up, the report
    capacity: float = 1.0  # the cores the runs get: the workers, fewer where other processes keep cores busy
    memory_bytes: int = 0
    timing_seconds: float = 0.0  # what the estimate itself took
    longest_seconds: float | None = None  # the longest task: one run, or a batch of seeds (None: the longest run)
    assumed: list[tuple[str, str]] = field(default_factory=list)  # pairs not measured (priced by :func:`_assumed`)
    how_assumed: dict[tuple[str, str], str] = field(default_factory=dict)  # each assumed pair: how it was priced

    @property
    def total_runs(self) -> int:
        return sum(self.counts.values())

    @property
    def wall_seconds(self) -> float:
        """The expected wall: every planned run (with rounds, every round up to ``max``)."""
        return self._wall(self.seconds)

    @property
    def first_round_seconds(self) -> float:
        """The expected wall without the rounds' runs (the suite stops there when every pair is decided)."""
        return self._wall({phase: s for phase, s in self.seconds.items() if phase != "rounds"})

    def _wall(self, seconds: dict[str, float]) -> float:
        single = max((c.run_seconds for c in self.costs.values()), default=0.0)
        longest = (self.longest_seconds if self.longest_seconds is not None else single) * max(
            self.workers / self.capacity, 1
        )
        return max(sum(seconds.values()) / max(self.capacity, 1e-9), longest) + self.overhead_seconds

    def lines(self) -> list[str]:
        """The estimate as ``forgetbench run --estimate`` prints it."""
        phases = ", ".join(
            f"{n} {phase}" + (" (at most: until every pair is decided)" if phase == "rounds" else "")
            for phase, n in self.counts.items()
            if n
        )
        wall = _duration(self.wall_seconds)
        if self.counts.get("rounds"):
            wall = f"{_duration(self.first_round_seconds)} (first round) to {wall} (every round up to max)"
        out = [
            f"Plan: {self.total_runs} runs ({phases}); {self.done} already complete.",
            f"Expected wall: about {wall} with the {self.executor} executor and "
            f"{self.workers} worker(s){self._load_words()} ({_duration(sum(self.seconds.values()))} of runs in all, "
            f"{_duration(self.overhead_seconds)} of start-up and report); memory about "
            f"{format_bytes(self.memory_bytes)} per worker. Measured in {self.timing_seconds:.1f} s from one run per "
            f"scenario and strategy (two shortened runs each: every scenario, then every strategy, then the most planned, within "
            "the estimate's budget):",
        ]
        for (scenario, strategy), cost in self.costs.items():
            if (scenario, strategy) in self.assumed:
                priced = self.how_assumed.get((scenario, strategy), "its scenario's measured mean")
                how = f"not measured: {priced}"
            elif cost.step_seconds == 0:  # its turns' own step budgets: it ran whole
                how = f"{cost.steps} steps, timed whole"
            else:
                how = (
                    f"{cost.steps} steps at {1000 * cost.step_seconds:.1f} ms, {cost.fixed_seconds:.1f} s evaluation, "
                    "importance and set-up"
                )
            batched = "" if cost.batched_seconds is None else f"; {_duration(cost.batched_seconds)} a seed in a batch"
            out.append(f"  {scenario} / {strategy}: {_duration(cost.run_seconds)} a run ({how}){batched}")
        return out

    def _load_words(self) -> str:
        if self.capacity >= self.workers - 0.05:
            return ""
        return f" (the machine's other work leaves them about {self.capacity:.1f} cores)"


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


def _timed(spec: RunSpec, data_root: Path, steps_a_turn: int) -> tuple[float, RunRecord]:
    """(wall seconds, record) of ``spec`` with ``steps_a_turn`` iterations a turn, on the torch threads every executor
    gives a run (:func:`~forgetbench.benchmark.run.executors.run_threads`: the process's own count, all the cores,
    thrashed beside a busy process and timed another run than the suite's); nothing written."""
    short = dataclasses.replace(
        spec, training=spec.training.model_copy(update={"iterations_per_task": steps_a_turn, "checkpoint": False})
    )
    with torch_threads(run_threads(spec)):
        begun = time.perf_counter()
        record = run(short, data_root)
        return time.perf_counter() - begun, record


def _batched_share(spec: RunSpec, data_root: Path, steps_a_turn: int, cost: Cost) -> float | None:
    """A run's share of a batch of its seeds (:mod:`~forgetbench.benchmark.run.batching`): :data:`BATCH_PROBE` seeds
    shortened as the first timed run, trained as one batch; its wall per seed on the line of :func:`measure` (the
    fixed part per seed as alone, the steps at the batch's rate). None where the batch was refused."""
    short = dataclasses.replace(
        spec, training=spec.training.model_copy(update={"iterations_per_task": steps_a_turn, "checkpoint": False})
    )
    specs = [dataclasses.replace(short, seed=spec.seed + k) for k in range(BATCH_PROBE)]
    with torch_threads(run_threads(spec)):
        begun = time.perf_counter()
        records = run_seeds(specs, data_root)
        per_seed = (time.perf_counter() - begun) / BATCH_PROBE
    if not all(r.batch is not None and r.batch.seeds for r in records):
        return None
    if cost.step_seconds == 0:  # it ran whole: its wall is its cost
        return per_seed
    steps = max(records[0].timing.steps, 1)
    return cost.fixed_seconds + max(per_seed - cost.fixed_seconds, 0.0) / steps * cost.steps


def measure(spec: RunSpec, data_root: Path, batched: bool = False) -> Cost:
    """Two shortened runs of ``spec`` (:func:`probe_steps`; nothing written), a line through their walls against their
    steps (what grows with the steps: training, forgetting-curve points and their attribution; what does not:
    building, each turn's evaluation, importance passes), and the cost of a full run on that line. A scenario whose
    turns carry their own step budget runs whole both times: its wall is its cost."""
    low, high = probe_steps(spec)
    full = _steps(spec, data_root)
    wall_low, record_low = _timed(spec, data_root, low)
    steps_low = max(record_low.timing.steps, 1)
    if steps_low >= full:  # the turns' own budgets (or a short run anyway): it ran whole, its wall is its cost
        cost = Cost(0.0, wall_low, steps_low)
        if batched:
            cost.batched_seconds = _batched_share(spec, data_root, low, cost)
        return cost
    wall_high, record_high = _timed(spec, data_root, high)
    steps_high = max(record_high.timing.steps, 1)
    fitted = (wall_high - wall_low) / max(steps_high - steps_low, 1)
    timing = record_high.timing
    trained = (timing.train_seconds - (timing.importance_seconds or 0.0)) / steps_high  # the run's own clock
    step_seconds = max(fitted, trained, 0.0)
    fixed = max(wall_low - step_seconds * steps_low, 0.0)
    cost = Cost(step_seconds, fixed, full)
    if batched:
        cost.batched_seconds = _batched_share(spec, data_root, low, cost)
    return cost


def estimate(
    suite: SuiteConfig,
    out: Path,
    data_root: Path,
    seeds: list[int] | None = None,
    executor: str = "local",
    workers: int | None = None,
    new_process: bool = False,
    command_age: float | None = None,
) -> Estimate:
    """The suite's plan and its expected wall and memory (module docstring); ``new_process``: the run is a command of
    its own (it pays a start), not this process. ``command_age``: this process is a command started for the estimate
    (``forgetbench run --estimate``), these seconds ago: its start is what a new command's costs, and the budget
    counts from it, as the user's wait does."""
    begun, started = _start(executor, new_process, command_age)
    load = _Load()
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
    planned: dict[tuple[str, str], int] = {}
    for specs in phases.values():
        for spec in specs:
            key = (spec.scenario.display_name, spec.strategy.name)
            distinct.setdefault(key, spec)
            planned[key] = planned.get(key, 0) + 1
    runs = sum(planned.values())
    _check_builds(distinct, data_root)
    warm_up = 0.0
    batched_pairs = {  # the pairs some of whose planned seeds train as one batch: timed as a batch too
        (batch[0].scenario.display_name, batch[0].strategy.name)
        for phase, specs in phases.items()
        for batch in _batches(phase, specs, suite)
        if len(batch) > 1
    }
    last = 0.0  # what measuring the previous pair took: the next one is not begun where it would overrun the budget
    for i, key in enumerate(_measuring_order(distinct, planned, result.costs)):
        spent = time.perf_counter() - begun
        budget = max(BUDGET_SECONDS, BUDGET_SHARE * _expected(result, distinct, planned, result.costs))
        if i and spent + last > budget:
            break
        pair_begun = time.perf_counter()
        spec = dataclasses.replace(distinct[key], seed=max(distinct[key].seed, 0))  # a round's placeholder seed
        if i == 0:  # the warm-up: imports, first allocations; what it costs over the measured run is paid once
            warm_begun = time.perf_counter()
            _timed(spec, data_root, probe_steps(spec)[0])
            warm_up = time.perf_counter() - warm_begun
        result.costs[key] = measure(spec, data_root, batched=key in batched_pairs)
        if i == 0:
            warm_up = max(warm_up - _timed(spec, data_root, probe_steps(spec)[0])[0], 0.0)
        last = time.perf_counter() - pair_begun
    result.capacity = _capacity(result.workers, load.other_cores())
    _price_the_rest(result, list(distinct))
    slowed = result.workers / result.capacity if result.capacity < result.workers else 1.0
    workers_start = started if executor in ("process", "ray") else 0.0
    report = (REPORT_SECONDS + REPORT_SECONDS_A_RUN * runs) * slowed
    result.overhead_seconds = (started if new_process else 0.0) + workers_start + warm_up + report
    tasks: list[float] = []  # each job's seconds: one run, or a batch of seeds
    for phase, specs in phases.items():
        batches = _batches(phase, specs, suite)
        for batch in batches:
            batched = len(batch) > 1
            tasks.append(sum(result.costs[(s.scenario.display_name, s.strategy.name)].seconds(batched) for s in batch))
        result.seconds[phase] = sum(tasks[-len(batches) :]) if batches else 0.0
    result.longest_seconds = max(tasks, default=0.0)
    if result.done:  # complete runs cost nothing: scaled by the share left
        total = max(result.total_runs - result.counts.get("rounds", 0), 1)
        left = 1 - result.done / total
        result.seconds = {p: v * (left if p != "rounds" else 1.0) for p, v in result.seconds.items()}
    result.memory_bytes = _resident_bytes()
    result.timing_seconds = time.perf_counter() - begun
    return result


def _price_the_rest(result: Estimate, pairs: list[tuple[str, str]]) -> None:
    """The pairs the budget left unmeasured, priced (:func:`_assumed`) and named as such; costs in the plan's order."""
    result.assumed = [key for key in pairs if key not in result.costs]
    priced = {key: _assumed(key, result.costs) for key in result.assumed}
    result.costs.update({key: cost for key, (cost, _) in priced.items()})
    result.how_assumed = {key: how for key, (_, how) in priced.items()}
    result.costs = {key: result.costs[key] for key in pairs}


def _check_builds(distinct: dict[tuple[str, str], RunSpec], data_root: Path) -> None:
    """Every pair's scenario and strategy built once, nothing trained, before any is timed: a factory or strategy
    that raises is refused in the seconds a build takes, not after the pairs timed before it."""
    for (scenario, strategy), spec in distinct.items():
        problem = build_problem(spec, data_root)
        if problem is not None:
            raise ConfigError(
                f"--estimate: {scenario} / {strategy} cannot be built ({problem}); every run of it would fail"
            )


class _Load:
    """The cores other processes keep busy, from ``/proc/stat`` between this object's making and the call (none
    where there is no ``/proc``)."""

    def __init__(self) -> None:
        self.wall, self.own, self.ticks = time.perf_counter(), time.process_time(), _cpu_ticks()

    def other_cores(self) -> float:
        ticks = _cpu_ticks()
        if self.ticks is None or ticks is None:
            return 0.0
        total, busy = ticks[0] - self.ticks[0], ticks[1] - self.ticks[1]
        wall = max(time.perf_counter() - self.wall, 1e-9)
        own = (time.process_time() - self.own) / wall
        return max(busy / max(total, 1) * available_cores() - own, 0.0)


def _cpu_ticks() -> tuple[int, int] | None:
    """(all, busy) clock ticks of every core since boot, from the first line of ``/proc/stat``."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle and iowait
    return sum(fields), sum(fields) - idle


def _capacity(workers: int, other: float) -> float:
    """The cores ``workers`` busy processes get beside ``other`` busy cores (the scheduler shares fairly)."""
    cores = available_cores()
    if workers + other <= cores:
        return float(workers)
    return cores * workers / (workers + other)


def _start(executor: str, new_process: bool, command_age: float | None) -> tuple[float, float]:
    """When the estimate's budget began, and what a command's start costs: this command's own where the estimate is
    one, else a fresh process's import where a start is paid, timed first so that the budget counts it (and before
    the load is read: the child's cores are this estimate's, not other work's)."""
    if command_age is not None:
        return time.perf_counter() - command_age, command_age
    begun = time.perf_counter()
    return begun, _import_seconds() if new_process or executor in ("process", "ray") else 0.0


def _import_seconds() -> float:
    """Seconds a fresh Python process takes to import the harness (a command's start, a worker's)."""
    import subprocess
    import sys

    begun = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import forgetbench.benchmark.run.runner"], capture_output=True, check=False)
    return time.perf_counter() - begun


def _batches(phase: str, specs: list[RunSpec], suite: SuiteConfig) -> list[list[RunSpec]]:
    """The jobs ``specs`` run as (:func:`~forgetbench.benchmark.run.batching.groups.seed_groups`, as the driver groups
    them): each run's seeds as one batch of at most ``MAX_SEEDS``, where a round adds ``step`` seeds a strategy, so a
    round's batch has ``step``; every other run alone."""
    if not suite.batch_seeds:
        return [[spec] for spec in specs]
    size = MAX_SEEDS
    if phase == "rounds":
        size = suite.until_decided.step if suite.until_decided is not None else 1
    return [[specs[i] for i in group] for group in seed_groups(specs, [phase] * len(specs), size)]


def _measuring_order(
    distinct: dict[tuple[str, str], RunSpec], planned: dict[tuple[str, str], int], measured: dict[tuple[str, str], Cost]
) -> Iterator[tuple[str, str]]:
    """The pairs in the order the estimate times them, so that a budget that runs out has priced every scenario and
    every strategy: each scenario's most planned pair; then each strategy not yet timed, in the scenario whose timed
    run was cheapest (read from ``measured`` as it fills); then the rest, the most planned first."""
    by_planned = sorted(distinct, key=lambda k: -planned[k])
    scenarios = list(dict.fromkeys(scenario for scenario, _ in by_planned))
    done: set[tuple[str, str]] = set()
    for scenario in scenarios:
        key = next(k for k in by_planned if k[0] == scenario)
        done.add(key)
        yield key
    for strategy in dict.fromkeys(strategy for _, strategy in by_planned):
        if any(k[1] == strategy for k in done):
            continue
        timed = {k[0]: measured[k].run_seconds for k in done if k in measured}
        where = sorted((k for k in by_planned if k[1] == strategy), key=lambda k: timed.get(k[0], float("inf")))
        done.add(where[0])
        yield where[0]
    for key in by_planned:
        if key not in done:
            yield key


def _assumed(key: tuple[str, str], measured: dict[tuple[str, str], Cost]) -> tuple[Cost, str]:
    """A pair the budget left unmeasured, priced, and how: its scenario's timed run of another strategy times the
    two strategies' ratio where another scenario timed both (naive's run preferred); else the mean run of its
    scenario's timed pairs (else of every timed pair)."""
    scenario, strategy = key
    mine = {s: c for (sc, s), c in measured.items() if sc == scenario}
    for reference in sorted(mine, key=lambda s: s != "naive"):
        for (other, s), cost in measured.items():
            base = measured.get((other, reference))
            if s == strategy and other != scenario and base is not None and base.run_seconds > 0:
                ratio = cost.run_seconds / base.run_seconds
                batched = mine[reference].batched_seconds
                priced = Cost(0.0, mine[reference].run_seconds * ratio, 0, None if batched is None else batched * ratio)
                return priced, f"its scenario's {reference} x {ratio:.2f}, {strategy}'s ratio to {reference} in {other}"
    alike = list(mine.values()) or list(measured.values())
    return Cost(0.0, sum(c.run_seconds for c in alike) / len(alike), 0), "its scenario's measured mean"


def _expected(
    result: Estimate, distinct: dict[tuple[str, str], RunSpec], planned: dict[tuple[str, str], int], costs: dict
) -> float:
    """The wall the pairs measured so far lead to expect (the others at their scenario's mean): the budget's base."""
    if not costs:
        return 0.0
    total = sum(planned[key] * (costs.get(key) or _assumed(key, costs)[0]).run_seconds for key in distinct)
    return total / max(result.workers, 1)


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
