"""One run: (scenario, strategy, seed) -> a result record.

The runner seeds everything, builds the scenario (data + model family) and the strategy, measures
the untrained model on every task, then after each recorded training turn i evaluates every task j
to fill the accuracy matrix ``R[i][j]``. After every turn it also records the accuracy of the model
just trained (``turn_accuracy``); a scenario that asks for it gets ``standalone_accuracy`` (each model
trained alone), and the scenario's :meth:`~benchmark.scenarios.Scenario.summarize` adds its own keys
(e.g. the supernet's ``err1``/``err2``). A raised exception or a non-finite loss ends the run with
status ``failed`` or ``diverged``; the caller decides what to do next.

``run`` is a pure function of its spec (plus the data it reads), so executors may ship specs to
other processes or machines and send the records back; only the driver writes result files. The
one side effect is the optional checkpoint (``training.checkpoint``), written atomically after
each experience to the path the caller gives, and read back to resume an interrupted run.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import platform
import random
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from avalanche.core import SupervisedPlugin

from benchmark.config import EXECUTION_KEYS, ComponentSpec, SuiteConfig, TrainingConfig, strategy_variants
from benchmark.scenarios import SCENARIOS, Scenario, ScenarioInputs, Task, Turn
from strategies import STRATEGIES, StrategyContext

SCHEMA_VERSION = 1


class DivergedError(RuntimeError):
    """Training produced a non-finite loss or non-finite weights."""


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
        return f"{self.scenario.display_name}__{self.strategy.display_name}__seed{self.seed}"

    def resolved(self) -> dict[str, Any]:
        """The resolved configuration of this run (what resume compares).

        Execution-only training keys (checkpointing, resources) are left out: they do not change
        the numbers, so changing them must not rerun completed runs.
        """
        training = self.training.model_dump(mode="json", exclude=set(EXECUTION_KEYS))
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
    (see :mod:`benchmark.selection`).
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

    from benchmark import __version__

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


@torch.no_grad()
def evaluate(model: torch.nn.Module, task: Task, batch_size: int, device: torch.device) -> float:
    """Top-1 accuracy of ``task``'s model on its test data."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(task.test_y), batch_size):
        x = task.test_x[start : start + batch_size].to(device)
        y = task.test_y[start : start + batch_size].to(device)
        correct += int((model.forward_single_task(x, task.model_key).argmax(1) == y).sum())
    model.train(was_training)
    return correct / max(len(task.test_y), 1)


class LossWatch(SupervisedPlugin):
    """Flags a non-finite loss without a host sync per step (checked once per epoch)."""

    def __init__(self) -> None:
        super().__init__()
        self._loss_sum: torch.Tensor | None = None

    def before_training_exp(self, strategy, **kwargs) -> None:
        self._loss_sum = torch.zeros((), device=strategy.device)

    def after_backward(self, strategy, **kwargs) -> None:
        # one in-place add per step: a NaN or inf loss makes the running sum non-finite
        self._loss_sum += strategy.loss.detach().sum()

    def after_training_epoch(self, strategy, **kwargs) -> None:
        if not bool(torch.isfinite(self._loss_sum)):
            raise DivergedError(
                f"non-finite loss in experience {strategy.clock.train_exp_counter}, "
                f"epoch {strategy.clock.train_exp_epochs}"
            )


class StepBudget(SupervisedPlugin):
    """Stops an experience after ``budget`` iterations (for turns with ``max_steps``)."""

    def __init__(self) -> None:
        super().__init__()
        self.budget: int | None = None
        self.steps = 0

    def before_training_exp(self, strategy, **kwargs) -> None:
        self.steps = 0

    def after_training_iteration(self, strategy, **kwargs) -> None:
        self.steps += 1
        if self.budget is not None and self.steps >= self.budget:
            strategy.stop_training()


class CurveRecorder(SupervisedPlugin):
    """Forgetting curves: every ``every`` iterations, accuracy of the watched tasks' models.

    Records ``{train_exp, iteration, eval_exp, accuracy}`` at iteration 0 (before the turn trains), every
    ``every`` iterations, and at the turn's last iteration. Its evaluation time is kept apart so the
    runner can leave it out of the training time.
    """

    def __init__(self, every: int, evaluate_task: Callable[[torch.nn.Module, int], float]) -> None:
        super().__init__()
        self.every = every
        self.evaluate_task = evaluate_task
        self.curves: list[dict[str, Any]] = []
        self.turn = 0
        self.watch: list[int] = []
        self.steps = 0
        self.eval_seconds = 0.0

    def _record(self, model: torch.nn.Module) -> None:
        t0 = time.perf_counter()
        for task in self.watch:
            self.curves.append(
                {
                    "train_exp": self.turn,
                    "iteration": self.steps,
                    "eval_exp": task,
                    "accuracy": self.evaluate_task(model, task),
                }
            )
        self.eval_seconds += time.perf_counter() - t0

    def before_training_exp(self, strategy, **kwargs) -> None:
        self.steps = 0
        self._record(strategy.model)

    def after_training_iteration(self, strategy, **kwargs) -> None:
        self.steps += 1
        if self.steps % self.every == 0:
            self._record(strategy.model)

    def after_training_exp(self, strategy, **kwargs) -> None:
        if self.steps % self.every != 0:
            self._record(strategy.model)


ProgressCallback = Callable[[str], None]


def new_record(spec: RunSpec, device: torch.device | str | None = None) -> dict[str, Any]:
    """The record of ``spec`` before anything ran (status ``ok``, empty results)."""
    device = resolve_device(spec.device) if device is None else device
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run_id": spec.run_id,
        "suite": spec.suite,
        "scenario": {
            "name": spec.scenario.name,
            "label": spec.scenario.display_name,
            "params": spec.scenario.params,
        },
        "strategy": {
            "name": spec.strategy.name,
            "label": spec.strategy.display_name,
            "params": spec.strategy.params,
        },
        "seed": spec.seed,
        "status": "ok",
        "error": None,
        "config": spec.resolved(),
        "environment": environment(device),
        "experiences": [],
        "accuracy_matrix": [],
        "init_accuracy": [],
        "timing": {"train_seconds": 0.0, "eval_seconds": 0.0, "steps": 0},
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if spec.validation_fraction is not None:
        record["evaluated_on"] = {"split": "validation", "fraction": spec.validation_fraction}
    return record


def failure_record(spec: RunSpec, error: str) -> dict[str, Any]:
    """A ``failed`` record for a run that could not report itself (e.g. its worker died)."""
    record = new_record(spec, device=spec.device)
    record.update(status="failed", error=error, finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    return record


def run(
    spec: RunSpec,
    data_root: Path,
    progress: ProgressCallback | None = None,
    checkpoint: Path | None = None,
) -> dict[str, Any]:
    """Execute one run and return its result record (never raises for a failing strategy).

    With ``spec.training.checkpoint`` and a ``checkpoint`` path, the state after each experience
    is saved there and a matching checkpoint found there is resumed from.
    """
    device = resolve_device(spec.device)
    record = new_record(spec, device)
    if not spec.training.checkpoint:
        checkpoint = None
    try:
        _execute(spec, data_root, device, record, progress, checkpoint)
    except DivergedError as exc:
        record.update(status="diverged", error=str(exc))
    except Exception as exc:  # noqa: BLE001 - any strategy bug must be recorded, not fatal
        record.update(
            status="failed",
            error=f"{type(exc).__name__}: {exc}",
            traceback=traceback.format_exc(limit=20),
        )
    record["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return record


def build_scenario(spec: RunSpec, data_root: Path) -> Scenario:
    entry = SCENARIOS.get(spec.scenario.name)
    return entry.factory(entry.parse_params(spec.scenario.params), ScenarioInputs(spec.seed, data_root))


def seeded_scenario(spec: RunSpec, data_root: Path) -> Scenario:
    """The run's scenario: global RNG seeded first (model init), validation held out if asked."""
    seed_everything(spec.seed)
    scenario = build_scenario(spec, data_root)
    if spec.validation_fraction is not None:
        hold_out_validation(scenario, spec.validation_fraction, spec.seed)
    return scenario


def strategy_context(
    spec: RunSpec, scenario: Scenario, model: torch.nn.Module, device: torch.device, harness_plugins: list
) -> StrategyContext:
    """What a strategy factory receives for this run."""
    return StrategyContext(
        model=model,
        training=spec.training,
        device=device,
        used_params=scenario.turn_used_params,
        seed=spec.seed,
        harness_plugins=harness_plugins,
    )


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
    spec: RunSpec, data_root: Path, device: torch.device, record: dict, progress, checkpoint: Path | None
) -> None:
    scenario = seeded_scenario(spec, data_root)
    model = scenario.model.to(device)
    record["experiences"] = [task.name for task in scenario.tasks]
    batch = spec.training.eval_batch_size

    budget, watch = StepBudget(), LossWatch()
    harness_plugins: list[SupervisedPlugin] = [watch, budget]
    recorder = None
    if spec.training.eval_every:
        recorder = CurveRecorder(
            spec.training.eval_every,
            lambda net, j: evaluate(net, scenario.tasks[j], batch, device),
        )
        # First of the harness plugins: its iteration-0 point precedes any step of the experience.
        harness_plugins.insert(0, recorder)
    ctx = strategy_context(spec, scenario, model, device, harness_plugins)
    entry = STRATEGIES.get(spec.strategy.name)
    strategy = entry.factory(ctx, entry.parse_params(spec.strategy.params))

    timing = record["timing"]
    t0 = time.perf_counter()
    record["init_accuracy"] = [evaluate(strategy.model, task, batch, device) for task in scenario.tasks]
    timing["eval_seconds"] += time.perf_counter() - t0

    start = 0
    if checkpoint is not None:
        start = _restore_checkpoint(checkpoint, spec, strategy, record, harness=(watch, budget))
        if recorder is not None and "curves" in record:
            recorder.curves = list(record["curves"])
    bench = scenario.avalanche_benchmark()
    trained: list[int] = []
    record["turn_accuracy"] = []
    for index, (turn, experience) in enumerate(zip(scenario.schedule, bench.train_stream)):
        if index < start:
            if turn.task not in trained:
                trained.append(turn.task)
            continue  # done before the interruption; its state is in the checkpoint
        if progress is not None:
            progress(f"{spec.run_id}: {scenario.tasks[turn.task].name}")
        _set_turn_budget(strategy, budget, turn, len(scenario.tasks[turn.task].train_y), spec.training)
        if turn.task not in trained:
            trained.append(turn.task)
        curve_seconds = 0.0
        if recorder is not None:
            recorder.turn, recorder.watch = index, list(trained)
            curve_seconds = recorder.eval_seconds
        t0 = time.perf_counter()
        strategy.train(experience, eval_streams=[], reset_optimizer_state=True)
        elapsed = time.perf_counter() - t0
        if recorder is not None:
            curve_seconds = recorder.eval_seconds - curve_seconds
            record["curves"] = recorder.curves
        timing["train_seconds"] += elapsed - curve_seconds
        timing["eval_seconds"] += curve_seconds
        timing["steps"] += budget.steps
        _check_weights(strategy.model)
        t0 = time.perf_counter()
        if turn.record:
            row = [evaluate(strategy.model, task, batch, device) for task in scenario.tasks]
            record["accuracy_matrix"].append(row)
            just_trained = row[turn.task]
        else:
            just_trained = evaluate(strategy.model, scenario.tasks[turn.task], batch, device)
        # Accuracy of the model trained in this turn, right after it (the supernet's err1).
        record["turn_accuracy"].append({"turn": index, "task": turn.task, "accuracy": just_trained})
        timing["eval_seconds"] += time.perf_counter() - t0
        if checkpoint is not None:
            _save_checkpoint(checkpoint, spec, index, strategy, record, harness=(watch, budget))

    if scenario.standalone:
        t0 = time.perf_counter()
        record["standalone_accuracy"] = standalone_accuracy(spec, data_root, device)
        timing["standalone_seconds"] = time.perf_counter() - t0
    record.update(scenario.summarize(record))
    record["memory"] = {"regularizer_bytes": regularizer_bytes(strategy)}
    record.update(strategy_extra_results(strategy, record))


def _set_turn_budget(strategy, budget: StepBudget, turn: Turn, n_train: int, training: TrainingConfig) -> None:
    """A turn runs ``turn.max_steps`` iterations if set, else the suite's epochs."""
    budget.budget = turn.max_steps
    batches_per_epoch = math.ceil(n_train / training.batch_size)
    strategy.train_epochs = math.ceil(turn.max_steps / batches_per_epoch) if turn.max_steps else training.epochs


def turn_steps(turn: Turn, n_train: int, training: TrainingConfig) -> int:
    """Iterations a turn trains for: ``max_steps``, else epochs x batches per epoch."""
    return turn.max_steps or training.epochs * math.ceil(n_train / training.batch_size)


# Standalone references depend only on (scenario spec, seed, training, device), not on the
# strategy: computed once per process and reused by every strategy of a suite.
_STANDALONE_CACHE: dict[str, list[float]] = {}


def _standalone_key(spec: RunSpec, device: torch.device) -> str:
    return json.dumps(
        [spec.scenario.name, spec.scenario.params, spec.seed, spec.training.model_dump(mode="json"), str(device),
         spec.validation_fraction],
        sort_keys=True,
    )


def standalone_accuracy(spec: RunSpec, data_root: Path, device: torch.device) -> list[float]:
    """Accuracy of each task's model trained *alone*: fresh init, plain fine-tuning, same step budget.

    The scenario is rebuilt from the run's seed, so every model starts from the weights it had at the
    start of the shared run. Model ``j`` then trains on its own data for as many iterations as all of
    ``j``'s turns in the schedule add up to, with the suite's optimizer and no regularizer, and is
    evaluated on its test data. Cached per (scenario spec, seed, training, device) in this process.
    """
    key = _standalone_key(spec, device)
    if key in _STANDALONE_CACHE:
        return list(_STANDALONE_CACHE[key])
    scenario = seeded_scenario(spec, data_root)  # the same initial weights and evaluation data
    model = scenario.model.to(device)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    steps = [0] * len(scenario.tasks)
    for turn in scenario.schedule:
        steps[turn.task] += turn_steps(turn, len(scenario.tasks[turn.task].train_y), spec.training)
    bench = scenario.avalanche_benchmark()
    first_turn = {}
    for index, turn in enumerate(scenario.schedule):
        first_turn.setdefault(turn.task, index)
    accuracies = []
    for j, task in enumerate(scenario.tasks):
        model.load_state_dict(initial)
        budget = StepBudget()
        strategy = strategy_context(spec, scenario, model, device, [LossWatch(), budget]).build()
        if j not in first_turn:  # a task no turn trains: its standalone model is the untrained one
            accuracies.append(evaluate(model, task, spec.training.eval_batch_size, device))
            continue
        _set_turn_budget(strategy, budget, Turn(task=j, max_steps=steps[j]), len(task.train_y), spec.training)
        strategy.train(bench.train_stream[first_turn[j]], eval_streams=[], reset_optimizer_state=True)
        _check_weights(model)
        accuracies.append(evaluate(model, task, spec.training.eval_batch_size, device))
    _STANDALONE_CACHE[key] = accuracies
    return list(accuracies)


def strategy_extra_results(strategy, record: dict[str, Any]) -> dict[str, Any]:
    """Extra result keys a strategy reports: ``extra_results() -> dict`` on the template or a plugin.

    Keys may not overwrite the record's own (a clash is a strategy bug and fails the run).
    """
    extras: dict[str, Any] = {}
    for source in (strategy, *getattr(strategy, "plugins", ())):
        report = getattr(source, "extra_results", None)
        if callable(report):
            extras.update(report())
    clash = sorted(set(extras) & set(record))
    if clash:
        raise ValueError(f"extra_results() may not overwrite result keys {clash}")
    return extras


def regularizer_bytes(strategy) -> int:
    """Bytes of tensors held by the strategy's plugins that report them (``state_bytes()``)."""
    return sum(int(p.state_bytes()) for p in strategy.plugins if callable(getattr(p, "state_bytes", None)))


# Per-record keys a checkpoint carries over (any key a run fills while training experiences).
_RESUMED_KEYS = ("accuracy_matrix", "init_accuracy", "timing", "curves", "turn_accuracy")


def _plugin_states(strategy, harness) -> list[tuple[str, dict | None]]:
    """Each plugin's attributes (EWC importances, SI trajectories, the clock...), in plugin order.

    The evaluator (loggers, metrics) and the harness's own plugins are left out: they hold no
    training state. Plugins are restored by position, which is stable because the strategy is
    rebuilt from the same spec.
    """
    from avalanche.training.plugins import EvaluationPlugin

    states = []
    for plugin in strategy.plugins:
        skip = isinstance(plugin, EvaluationPlugin) or any(plugin is h for h in harness)
        attrs = None if skip else {k: _picklable(v) for k, v in vars(plugin).items()}
        states.append((type(plugin).__qualname__, attrs))
    return states


class _GeneratorState:
    """A torch.Generator's state in a checkpoint (generators themselves do not pickle)."""

    def __init__(self, generator: torch.Generator) -> None:
        self.state = generator.get_state()


def _picklable(value: Any) -> Any:
    return _GeneratorState(value) if isinstance(value, torch.Generator) else value


def _restore_attr(current: Any, saved: Any) -> Any:
    if isinstance(saved, _GeneratorState) and isinstance(current, torch.Generator):
        current.set_state(saved.state)
        return current
    return saved


def _save_checkpoint(path: Path, spec: RunSpec, index: int, strategy, record: dict, harness) -> None:
    from benchmark.store import atomic_write_bytes

    state = {
        "config": spec.resolved(),
        "completed": index,  # index of the last completed experience
        "model": strategy.model.state_dict(),
        "optimizer": strategy.optimizer.state_dict(),
        "plugins": _plugin_states(strategy, harness),
        "rng": {
            "torch": torch.get_rng_state(),
            "numpy": np.random.get_state(),
            "python": random.getstate(),
            "data": strategy.data_generator.get_state(),
        },
        "record": {k: record[k] for k in _RESUMED_KEYS if k in record},
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _restore_checkpoint(path: Path, spec: RunSpec, strategy, record: dict, harness) -> int:
    """Load a checkpoint matching ``spec`` into ``strategy``; returns the experience to start at."""
    try:
        state = torch.load(path, map_location=strategy.device, weights_only=False)
    except (OSError, EOFError, RuntimeError, ValueError, AttributeError, ImportError):
        return 0  # missing or unreadable: start over (writes are atomic, so this is rare)
    if state.get("config") != spec.resolved():
        return 0  # a checkpoint of another configuration
    strategy.model.load_state_dict(state["model"])
    strategy.optimizer.load_state_dict(state["optimizer"])
    current = _plugin_states(strategy, harness)
    if [name for name, _ in current] != [name for name, _ in state["plugins"]]:
        return 0
    for plugin, (_, attrs) in zip(strategy.plugins, state["plugins"]):
        if attrs is not None:
            current = vars(plugin)
            current.update({k: _restore_attr(current.get(k), v) for k, v in attrs.items()})
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    strategy.data_generator.set_state(rng["data"])
    record.update(state["record"])
    record["resumed_from_experience"] = state["completed"] + 1
    return state["completed"] + 1


def _check_weights(model: torch.nn.Module) -> None:
    finite = torch.stack([torch.isfinite(p).all() for p in model.parameters()]).all()
    if not bool(finite):
        raise DivergedError("non-finite weights after training")
