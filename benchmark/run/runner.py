"""One run: (scenario, strategy, seed) -> a result record.

The runner seeds everything, builds the scenario (data + model family) and the strategy, measures
the untrained model on every task, then trains the schedule turn by turn
(:func:`forgetbench.benchmark.run.schedule.train_schedule`); after each recorded turn i it evaluates every task j
to fill the accuracy matrix ``R[i][j]``, and after every turn it records the accuracy of the model
just trained (``turn_accuracy``). A scenario that asks for it gets ``standalone_accuracy`` (each
model trained alone), and the scenario's :meth:`~forgetbench.benchmark.data.scenarios.Scenario.summarize` adds its
own keys (e.g. the supernet's ``err1``/``err2``). An adaptive scenario (a NAS search) decides its turns
while training: whenever the turns so far are trained the runner asks it for more
(:meth:`~forgetbench.benchmark.data.scenarios.Scenario.next_turns`, handing it the harness's evaluation) until it has none. A raised exception or a non-finite loss ends the
run with status ``failed`` or ``diverged``; a run that ends at chance level on every task it trained is
``collapsed``. The caller decides what to do next.

``run`` is a pure function of its spec (plus the data it reads), so executors may ship specs to
other processes or machines and send the records back; only the driver writes result files. The
one side effect is the optional checkpoint (``training.checkpoint``, :mod:`forgetbench.benchmark.run.checkpoint`),
written atomically after each experience to the path the caller gives and read back to resume.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import platform
import random
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from forgetbench.benchmark.run import checkpoint as checkpoints
from forgetbench.benchmark import __version__
from forgetbench.benchmark.core import store
from forgetbench.benchmark.core.config import ComponentSpec, SuiteConfig, run_id, strategy_variants
from forgetbench.benchmark.train.harness import CurveRecorder, DivergedError, Harness, chance_message, collapse_message, evaluate, tasks_at_chance
from forgetbench.benchmark.core.record import SCHEMA_VERSION, Component, CurvePoint, Memory, RunRecord, TurnAccuracy
from forgetbench.benchmark.core.registries import SCENARIOS, STRATEGIES
from forgetbench.benchmark.data.scenarios import Retraining, Scenario, ScenarioInputs, Turn
from forgetbench.benchmark.run.schedule import build_strategy, scheduled_experiences, train_schedule, turn_steps
from forgetbench.benchmark.core.training import TrainingConfig, training_identity
from forgetbench.strategies.plugin import PluginProtocol

__all__ = ["RunSpec", "expand_suite", "run", "failure_record", "seeded_scenario", "standalone_accuracy"]


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines one run's numbers."""

    suite: str
    scenario: ComponentSpec
    strategy: ComponentSpec
    seed: int
    training: TrainingConfig
    device: str
    # None: evaluate on each task's test split. A fraction: hold out that share of each task's
    # *training* data (seeded) and evaluate on it instead (hyperparameter selection).
    validation_fraction: float | None = None

    @property
    def run_id(self) -> str:
        return run_id(self.scenario.display_name, self.strategy.display_name, self.seed)

    def resolved(self) -> dict[str, Any]:
        """The resolved configuration of this run (what resume compares).

        Execution-only training keys (checkpointing, resources) are left out: they do not change
        the numbers, so changing them must not rerun completed runs.
        """
        training = training_identity(self.training)
        resolved = {
            "scenario": self.scenario.model_dump(mode="json"),
            "strategy": self.strategy.model_dump(mode="json"),
            "seed": self.seed,
            "training": training,
            "device": self.device,
        }
        if self.validation_fraction is not None:
            resolved["validation_fraction"] = self.validation_fraction
        return resolved


def expand_suite(suite: SuiteConfig, seeds: list[int] | None = None) -> list[RunSpec]:
    """Every (scenario x strategy x grid combination x seed) of the suite, in that nesting order.

    Strategies with a ``selection`` are left out: their runs depend on the sweep's outcome
    (see :mod:`forgetbench.benchmark.run.selection`).
    """
    return [
        RunSpec(suite.name, scenario, variant, seed, suite.training, suite.device)
        for scenario in suite.scenarios
        for strategy in suite.strategies
        if strategy.selection is None
        for _, variant in strategy_variants(strategy)
        for seed in (seeds if seeds is not None else suite.seeds)
    ]


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def environment(device: torch.device) -> dict[str, str]:
    import avalanche


    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "avalanche": avalanche.__version__,
        "numpy": np.__version__,
        "forgetbench": __version__,
        "device": str(device),
        "platform": platform.platform(),
        "torch_threads": str(torch.get_num_threads()),
    }


ProgressCallback = Callable[[str], None]


def new_record(spec: RunSpec, device: torch.device | str | None = None) -> RunRecord:
    """The record of ``spec`` before anything ran (status ``ok``, empty results)."""
    device = resolve_device(spec.device) if device is None else device
    record = RunRecord(
        schema_version=SCHEMA_VERSION,
        run_id=spec.run_id,
        suite=spec.suite,
        scenario=Component(name=spec.scenario.name, label=spec.scenario.display_name, params=spec.scenario.params),
        strategy=Component(name=spec.strategy.name, label=spec.strategy.display_name, params=spec.strategy.params),
        seed=spec.seed,
        status="ok",
        error=None,
        config=spec.resolved(),
        environment=environment(device),
        experiences=[],
        accuracy_matrix=[],
        init_accuracy=[],
        timing={"train_seconds": 0.0, "eval_seconds": 0.0, "steps": 0},
        started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    if spec.validation_fraction is not None:
        record.evaluated_on = {"split": "validation", "fraction": spec.validation_fraction}
    return record


def failure_record(spec: RunSpec, error: str) -> dict[str, Any]:
    """A ``failed`` record for a run that could not report itself (e.g. its worker died)."""
    record = new_record(spec, device=spec.device)
    record.status, record.error = "failed", error
    record.finished_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return record.to_dict()


def run(
    spec: RunSpec,
    data_root: Path,
    progress: ProgressCallback | None = None,
    checkpoint: Path | None = None,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """Execute one run and return its result record (never raises for a failing strategy).

    With ``spec.training.checkpoint`` and a ``checkpoint`` path, the state after each experience
    is saved there and a matching checkpoint found there is resumed from. ``cache_dir`` is the
    results folder whose ground-truth cache the standalone references use (see :func:`standalone_accuracy`).
    """
    device = resolve_device(spec.device)
    record = new_record(spec, device)
    if not spec.training.checkpoint:
        checkpoint = None
    try:
        _execute(spec, data_root, device, record, progress, checkpoint, cache_dir)
    except DivergedError as exc:
        record.status, record.error = "diverged", str(exc)
    except Exception as exc:  # noqa: BLE001 - any strategy bug must be recorded, not fatal
        record.status, record.error = "failed", f"{type(exc).__name__}: {exc}"
        record.traceback = traceback.format_exc(limit=20)
    record.finished_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return record.to_dict()


def build_scenario(spec: RunSpec, data_root: Path) -> Scenario:
    entry = SCENARIOS.get(spec.scenario.name)
    return entry.factory(spec.scenario.typed_params(SCENARIOS), ScenarioInputs(spec.seed, data_root))


def seeded_scenario(spec: RunSpec, data_root: Path) -> Scenario:
    """The run's scenario: global RNG seeded first (model init), validation held out if asked."""
    seed_everything(spec.seed)
    scenario = build_scenario(spec, data_root)
    if spec.validation_fraction is not None:
        hold_out_validation(scenario, spec.validation_fraction, spec.seed)
    return scenario


def build_run_strategy(spec: RunSpec, scenario: Scenario, model: torch.nn.Module, device: torch.device,
                       harness: Harness, strategy: ComponentSpec | None = None):
    """The spec's strategy (or ``strategy``) on ``model`` with the run's training config and seed."""
    strategy = strategy or spec.strategy
    return build_strategy(strategy.name, strategy.typed_params(STRATEGIES), scenario, model, spec.training, device,
                          spec.seed, harness)


def hold_out_validation(scenario: Scenario, fraction: float, seed: int) -> None:
    """Replace each task's test data by a seeded ``fraction`` of its training data (removed from it).

    The test split is never read. Each task draws its own permutation from ``seed`` and the task
    index with a private generator, so the global RNG (model init, data order) is untouched and
    every strategy on the same seed sees the same split.
    """
    tasks = []
    for j, task in enumerate(scenario.tasks):
        n = len(task.train_y)
        n_val = min(max(1, round(n * fraction)), n - 1)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + j))
        val, train = order[:n_val].sort().values, order[n_val:].sort().values
        tasks.append(
            dataclasses.replace(
                task,
                train_x=task.train_x[train],
                train_y=task.train_y[train],
                test_x=task.train_x[val],
                test_y=task.train_y[val],
            )
        )
    scenario.tasks = tasks


def _execute(
    spec: RunSpec, data_root: Path, device: torch.device, record: RunRecord, progress, checkpoint: Path | None,
    cache_dir: Path | None = None,
) -> None:
    scenario = seeded_scenario(spec, data_root)
    model = scenario.model.to(device)
    record.experiences = [task.name for task in scenario.tasks]
    if scenario.meta.get("scenario_type"):
        record.scenario_type = str(scenario.meta["scenario_type"])
    batch = spec.training.eval_batch_size

    harness = Harness()
    if spec.training.eval_every:
        harness.recorder = CurveRecorder(
            spec.training.eval_every, lambda net, j: evaluate(net, scenario.tasks[j], batch, device)
        )
    strategy = build_run_strategy(spec, scenario, model, device, harness)

    t0 = time.perf_counter()
    record.init_accuracy = [evaluate(strategy.model, task, batch, device) for task in scenario.tasks]
    record.timing.eval_seconds += time.perf_counter() - t0
    record.turn_accuracy = []
    if harness.recorder is not None:
        record.curves = []

    start = 0
    if checkpoint is not None and scenario.adaptive and scenario.state_dict() is None:
        record.warnings = [*(record.warnings or []),
                           f"checkpointing off: the scenario decides its turns while training (a search), and "
                           f"{type(scenario).__name__} declares no state_dict()/load_state_dict()"]
        checkpoint = None
    if checkpoint is not None:
        start, checkpoint = _resume(checkpoint, spec, scenario, strategy, harness, record)
    timing = record.timing  # after a resume: the interrupted part's, which this part adds to
    turns = scheduled_experiences(scenario)
    before = [turn.task for turn, _ in turns[:start]]
    while True:
        _train_turns(spec, scenario, strategy, harness, turns, start, before, record, progress, checkpoint, device)
        if not scenario.adaptive:
            break
        t0 = time.perf_counter()  # the search's own work (e.g. its controller's updates), apart from training
        more = scenario.next_turns(lambda task: evaluate(strategy.model, task, batch, device))
        timing.search_seconds = getattr(timing, "search_seconds", 0.0) + time.perf_counter() - t0
        if not more:
            break
        start, before = len(turns), [turn.task for turn, _ in turns]
        scenario.schedule.extend(more)
        turns = turns + scheduled_experiences(scenario, start)

    if scenario.adaptive:  # a search may add tasks while it runs (each newly sampled architecture)
        record.experiences = [task.name for task in scenario.tasks]
    if scenario.standalone:
        t0 = time.perf_counter()
        record.standalone_accuracy = standalone_accuracy(spec, data_root, device, cache_dir)
        timing.standalone_seconds = time.perf_counter() - t0
    retraining = scenario.retraining()
    if retraining is not None:
        t0 = time.perf_counter()
        scores = retrained_scores(spec, data_root, device, retraining)
        timing.retrain_seconds = time.perf_counter() - t0
        retraining.report(scores)
    for key, value in scenario.summarize(record.to_dict()).items():
        setattr(record, key, value)
    record.memory = Memory(regularizer_bytes=regularizer_bytes(strategy))
    for key, value in strategy_extra_results(strategy, record.to_dict()).items():
        setattr(record, key, value)
    if record.accuracy_matrix:
        seen = sorted({turn.task for turn, _ in turns})
        collapsed = collapse_message(record.accuracy_matrix[-1], scenario.tasks, seen)
        if collapsed is not None:  # a finite loss, but nothing learned: its metrics would mislead
            record.status, record.error = "collapsed", collapsed
        else:  # some tasks at chance while others are fine: kept and averaged, but never silently
            at = tasks_at_chance(record.accuracy_matrix[-1], scenario.tasks, seen)
            if at:
                record.tasks_at_chance = at
                record.warnings = [*(record.warnings or []),
                                   chance_message(record.accuracy_matrix, scenario.tasks, seen, at)]


def _train_turns(spec: RunSpec, scenario: Scenario, strategy, harness: Harness, turns, start: int,
                 before: list[int], record: RunRecord, progress, checkpoint: Path | None,
                 device: torch.device) -> None:
    """Train ``turns[start:]``, filling the record's accuracy rows, turn accuracies, timing and curves."""
    timing, batch = record.timing, spec.training.eval_batch_size
    for done in train_schedule(strategy, harness, turns, spec.training, start=start, tasks_before=before):
        turn = done.turn
        if progress is not None:
            progress(f"{spec.run_id}: {scenario.tasks[turn.task].name}")
        timing.train_seconds += done.train_seconds
        timing.eval_seconds += done.curve_seconds
        timing.steps += done.steps
        if harness.recorder is not None:
            record.curves = [CurvePoint(**point) for point in harness.recorder.curves]
        t0 = time.perf_counter()
        if turn.record:
            row = [evaluate(strategy.model, task, batch, device) for task in scenario.tasks]
            record.accuracy_matrix.append(row)
            just_trained = row[turn.task]
        else:
            just_trained = evaluate(strategy.model, scenario.tasks[turn.task], batch, device)
        # Accuracy of the model trained in this turn, right after it (the supernet's err1).
        record.turn_accuracy.append(TurnAccuracy(turn=done.index, task=turn.task, accuracy=just_trained))
        timing.eval_seconds += time.perf_counter() - t0
        if checkpoint is not None:
            checkpoints.save(checkpoint, spec.resolved(), done.index, strategy, harness, record, scenario.state_dict())


def _resume(path: Path, spec: RunSpec, scenario: Scenario, strategy, harness: Harness,
            record: RunRecord) -> tuple[int, Path | None]:
    """Restore a matching checkpoint; returns (experience to start at, where to keep checkpointing).

    A strategy with a plugin that declares no state cannot be checkpointed: the run goes on
    without checkpoints and says so. An unusable checkpoint is discarded and the run starts over.
    """
    missing = checkpoints.unsupported_plugins(strategy, harness)
    if missing:
        record.warnings = [*(record.warnings or []),
                           f"checkpointing off: plugins {missing} declare no state_dict()/load_state_dict()"]
        return 0, None
    try:
        state = checkpoints.load(path, spec.resolved(), strategy, harness)
    except checkpoints.CheckpointError as exc:
        record.warnings = [*(record.warnings or []), checkpoints.discard(path, str(exc))]
        return 0, path
    if state is None:
        return 0, path
    return checkpoints.restore(state, strategy, harness, record, scenario), path


# Standalone references depend only on (the scenario params they read, seed, training, device), not
# on the strategy: computed once per process, and once per results folder when the caller gives one.
_STANDALONE_CACHE: dict[str, list[float]] = {}


def _standalone_key(spec: RunSpec, scenario: Scenario, device: torch.device, steps: list[int]) -> dict[str, Any]:
    params = scenario.ground_truth_params if scenario.ground_truth_params is not None else spec.scenario.params
    return {
        "scenario": spec.scenario.name,
        "params": json.loads(json.dumps(params, default=str)),
        "seed": spec.seed,
        "training": training_identity(spec.training),
        "device": str(device),
        "validation_fraction": spec.validation_fraction,
        "steps": steps,
    }


def standalone_accuracy(
    spec: RunSpec, data_root: Path, device: torch.device, cache_dir: Path | None = None
) -> list[float]:
    """Accuracy of each task's model trained *alone*: fresh init, plain fine-tuning, a fixed step budget.

    The scenario is rebuilt from the run's seed, so every model starts from the weights it had at the
    start of the shared run. Model ``j`` then trains on its own data for
    :meth:`~forgetbench.benchmark.data.scenarios.Scenario.standalone_steps` iterations (by default as many as all of
    ``j``'s turns in the schedule add up to), with the suite's optimizer and no regularizer (the
    ``naive`` strategy, through the same :func:`train_schedule` as every run), and is evaluated on
    its test data. Cached in this process, and with ``cache_dir`` on disk there
    (:func:`forgetbench.benchmark.core.store.ground_truth_entries`: shared by every run of a suite, locked, written
    after each model so an interrupted computation resumes).
    """
    memo = json.dumps([spec.scenario.name, spec.scenario.params, spec.seed, spec.training.model_dump(mode="json"),
                       str(device), spec.validation_fraction], sort_keys=True, default=str)
    if memo in _STANDALONE_CACHE:
        return list(_STANDALONE_CACHE[memo])
    scenario = seeded_scenario(spec, data_root)  # the same initial weights and evaluation data
    steps = scenario.standalone_steps(lambda turn, n_train: turn_steps(turn, n_train, spec.training))
    key = _standalone_key(spec, scenario, device, steps)
    path = store.ground_truth_path(cache_dir, key) if cache_dir is not None else None
    with store.ground_truth_entries(path, key) if path is not None else contextlib.nullcontext({}) as entries:
        model = scenario.model.to(device)
        initial = {k: v.clone() for k, v in model.state_dict().items()}
        naive = ComponentSpec(name="naive")
        for j, task in enumerate(scenario.tasks):
            if j in entries:
                continue
            model.load_state_dict(initial)
            if steps[j] > 0:  # a task with no budget: its standalone model is the untrained one
                scenario.schedule = [Turn(task=j, max_steps=steps[j])]
                harness = Harness()
                strategy = build_run_strategy(spec, scenario, model, device, harness, strategy=naive)
                for _ in train_schedule(strategy, harness, scheduled_experiences(scenario), spec.training):
                    pass
            entries[j] = evaluate(model, task, spec.training.eval_batch_size, device)
            if path is not None:
                store.save_ground_truth(path, key, entries)
        accuracies = [entries[j] for j in range(len(scenario.tasks))]
    _STANDALONE_CACHE[memo] = accuracies
    return list(accuracies)


def retrained_scores(spec: RunSpec, data_root: Path, device: torch.device, retraining: Retraining) -> dict[str, float]:
    """Train :class:`~forgetbench.benchmark.data.scenarios.base.Retraining`'s model alone from the run's initial weights (a
    fresh scenario from the spec and seed) with the suite's optimizer, no regularizer; its scores."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        fresh = seeded_scenario(spec, data_root)
        task = retraining.task_in(fresh)
        model = fresh.model.to(device)
        index = next(j for j, t in enumerate(fresh.tasks) if t is task)  # Task holds tensors: no == lookup
        fresh.schedule = [Turn(task=index, max_steps=retraining.steps)]
        harness = Harness()
        strategy = build_run_strategy(spec, fresh, model, device, harness, strategy=ComponentSpec(name="naive"))
        for _ in train_schedule(strategy, harness, scheduled_experiences(fresh), spec.training):
            pass
        batch = spec.training.eval_batch_size
        return {name: evaluate(model, dataclasses.replace(task, test_x=x, test_y=y), batch, device)
                for name, (x, y) in retraining.evaluate_on.items()}


def strategy_extra_results(strategy, record: dict[str, Any]) -> dict[str, Any]:
    """Extra result keys the template and its plugins report through ``extra_results()``.

    Keys may not overwrite the record's own (a clash is a strategy bug and fails the run).
    """
    extras: dict[str, Any] = {}
    for source in (strategy, *strategy.plugins):
        if isinstance(source, PluginProtocol) or callable(getattr(source, "extra_results", None)):
            extras.update(source.extra_results())
    clash = sorted(set(extras) & set(record))
    if clash:
        raise ValueError(f"extra_results() may not overwrite result keys {clash}")
    return extras


def regularizer_bytes(strategy) -> int:
    """Bytes the strategy's plugins must keep between experiences (their ``state_bytes()``)."""
    return sum(int(p.state_bytes()) for p in strategy.plugins if isinstance(p, PluginProtocol))
