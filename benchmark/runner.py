"""One run: (scenario, strategy, seed) -> a result record.

The runner seeds everything, builds the scenario (data + model family) and the strategy, measures
the untrained model on every task, then after each recorded training turn i evaluates every task j
to fill the accuracy matrix ``R[i][j]``. A raised exception or a non-finite loss ends the run with
status ``failed`` or ``diverged``; the caller decides what to do next.
"""

from __future__ import annotations

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
from benchmark.scenarios import SCENARIOS, Scenario, ScenarioInputs, Task
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
    ctx = StrategyContext(
        model=model,
        training=spec.training,
        device=device,
        used_params=scenario.turn_used_params,
        seed=spec.seed,
        harness_plugins=[watch, budget],
    )
    entry = STRATEGIES.get(spec.strategy.name)
    strategy = entry.factory(ctx, entry.parse_params(spec.strategy.params))

    timing = record["timing"]
    t0 = time.perf_counter()
    record["init_accuracy"] = [evaluate(strategy.model, task, batch, device) for task in scenario.tasks]
    timing["eval_seconds"] += time.perf_counter() - t0

    bench = scenario.avalanche_benchmark()
    for turn, experience in zip(scenario.schedule, bench.train_stream):
        if progress is not None:
            progress(f"{spec.run_id}: {scenario.tasks[turn.task].name}")
        n_train = len(scenario.tasks[turn.task].train_y)
        batches_per_epoch = math.ceil(n_train / spec.training.batch_size)
        budget.budget = turn.max_steps
        strategy.train_epochs = (
            math.ceil(turn.max_steps / batches_per_epoch) if turn.max_steps else spec.training.epochs
        )
        t0 = time.perf_counter()
        strategy.train(experience, eval_streams=[], reset_optimizer_state=True)
        timing["train_seconds"] += time.perf_counter() - t0
        timing["steps"] += budget.steps
        _check_weights(strategy.model)
        if turn.record:
            t0 = time.perf_counter()
            row = [evaluate(strategy.model, task, batch, device) for task in scenario.tasks]
            timing["eval_seconds"] += time.perf_counter() - t0
            record["accuracy_matrix"].append(row)
    record["memory"] = {"regularizer_bytes": regularizer_bytes(strategy)}


def regularizer_bytes(strategy) -> int:
    """Bytes of tensors held by the strategy's plugins that report them (``state_bytes()``)."""
    return sum(int(p.state_bytes()) for p in strategy.plugins if callable(getattr(p, "state_bytes", None)))


def _check_weights(model: torch.nn.Module) -> None:
    finite = torch.stack([torch.isfinite(p).all() for p in model.parameters()]).all()
    if not bool(finite):
        raise DivergedError("non-finite weights after training")
