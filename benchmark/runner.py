"""One run: (scenario, strategy, seed) -> a result record.

The runner seeds everything, builds the scenario (data + model family) and the strategy, measures
the untrained model on every task, then after each recorded training turn i evaluates every task j
to fill the accuracy matrix ``R[i][j]``. After every turn it also records the accuracy of the model
just trained (``turn_accuracy``); a scenario that asks for it gets ``standalone_accuracy`` (each model
trained alone), and the scenario's :meth:`~benchmark.scenarios.Scenario.summarize` adds its own keys
(e.g. the supernet's ``err1``/``err2``). A raised exception or a non-finite loss ends the run with
status ``failed`` or ``diverged``; the caller decides what to do next.
"""

from __future__ import annotations

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

from benchmark.config import ComponentSpec, SuiteConfig, TrainingConfig
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

    @property
    def run_id(self) -> str:
        return f"{self.scenario.display_name}__{self.strategy.display_name}__seed{self.seed}"

    def resolved(self) -> dict[str, Any]:
        """The resolved configuration of this run (what resume compares)."""
        return {
            "scenario": self.scenario.model_dump(mode="json"),
            "strategy": self.strategy.model_dump(mode="json"),
            "seed": self.seed,
            "training": self.training.model_dump(mode="json"),
            "device": self.device,
        }


def expand_suite(suite: SuiteConfig, seeds: list[int] | None = None) -> list[RunSpec]:
    """Every (scenario x strategy x seed) of the suite, in that nesting order."""
    return [
        RunSpec(suite.name, scenario, strategy, seed, suite.training, suite.device)
        for scenario in suite.scenarios
        for strategy in suite.strategies
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
        self._finite: torch.Tensor | None = None

    def before_training_exp(self, strategy, **kwargs) -> None:
        self._finite = torch.ones((), dtype=torch.bool, device=strategy.device)

    def after_backward(self, strategy, **kwargs) -> None:
        self._finite &= torch.isfinite(strategy.loss.detach()).all()

    def after_training_epoch(self, strategy, **kwargs) -> None:
        if not bool(self._finite):
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


def run(spec: RunSpec, data_root: Path, progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Execute one run and return its result record (never raises for a failing strategy)."""
    device = resolve_device(spec.device)
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
    try:
        _execute(spec, data_root, device, record, progress)
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


def _execute(spec: RunSpec, data_root: Path, device: torch.device, record: dict, progress) -> None:
    seed_everything(spec.seed)
    scenario = build_scenario(spec, data_root)
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
    ctx = StrategyContext(
        model=model,
        training=spec.training,
        device=device,
        used_params=scenario.turn_used_params,
        seed=spec.seed,
        harness_plugins=harness_plugins,
    )
    entry = STRATEGIES.get(spec.strategy.name)
    strategy = entry.factory(ctx, entry.parse_params(spec.strategy.params))

    timing = record["timing"]
    t0 = time.perf_counter()
    record["init_accuracy"] = [evaluate(strategy.model, task, batch, device) for task in scenario.tasks]
    timing["eval_seconds"] += time.perf_counter() - t0

    bench = scenario.avalanche_benchmark()
    trained: list[int] = []
    record["turn_accuracy"] = []
    for index, (turn, experience) in enumerate(zip(scenario.schedule, bench.train_stream)):
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

    if scenario.standalone:
        t0 = time.perf_counter()
        record["standalone_accuracy"] = standalone_accuracy(spec, data_root, device)
        timing["standalone_seconds"] = time.perf_counter() - t0
    record.update(scenario.summarize(record))


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
        [spec.scenario.name, spec.scenario.params, spec.seed, spec.training.model_dump(mode="json"), str(device)],
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
    seed_everything(spec.seed)
    scenario = build_scenario(spec, data_root)
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
        ctx = StrategyContext(
            model=model,
            training=spec.training,
            device=device,
            used_params=scenario.turn_used_params,
            seed=spec.seed,
            harness_plugins=[LossWatch(), budget],
        )
        strategy = ctx.build()
        if j not in first_turn:  # a task no turn trains: its standalone model is the untrained one
            accuracies.append(evaluate(model, task, spec.training.eval_batch_size, device))
            continue
        _set_turn_budget(strategy, budget, Turn(task=j, max_steps=steps[j]), len(task.train_y), spec.training)
        strategy.train(bench.train_stream[first_turn[j]], eval_streams=[], reset_optimizer_state=True)
        _check_weights(model)
        accuracies.append(evaluate(model, task, spec.training.eval_batch_size, device))
    _STANDALONE_CACHE[key] = accuracies
    return list(accuracies)


def _check_weights(model: torch.nn.Module) -> None:
    finite = torch.stack([torch.isfinite(p).all() for p in model.parameters()]).all()
    if not bool(finite):
        raise DivergedError("non-finite weights after training")
