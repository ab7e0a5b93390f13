"""Build a strategy for a scenario and train it turn by turn: the one training loop of the harness.

The runner, the standalone references, :func:`forgetbench.benchmark.front.testing.check_strategy` and ``forgetbench
perf`` all train through :func:`train_schedule`, so what the contract test and the benchmark
measure is what the runner does.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch

from forgetbench.benchmark.train.harness import Harness, check_finite_weights
from forgetbench.benchmark.core.components import STRATEGIES
from forgetbench.benchmark.data.models import TaskRoutedModule
from forgetbench.benchmark.data.scenarios.base import Scenario, Turn
from forgetbench.benchmark.core.training import TrainingConfig
from forgetbench.strategies.base import StrategyContext


def build_strategy(
    name: str,
    params: dict[str, Any] | Any,
    scenario: Scenario,
    model: TaskRoutedModule,
    training: TrainingConfig,
    device: torch.device,
    seed: int,
    harness: Harness,
):
    """The registered strategy ``name`` built on ``model`` for ``scenario``, with the harness plugins.

    With ``training.channels_last`` the model's 4-D weights are converted in place first."""
    if training.channels_last:
        model.to(memory_format=torch.channels_last)
    ctx = StrategyContext(
        model=model,
        training=training,
        device=device,
        used_params=scenario.turn_used_params,
        seed=seed,
        harness_plugins=harness.plugins,
        adaptive=scenario.adaptive,
    )
    entry = STRATEGIES.get(name)
    return entry.factory(ctx, params if not isinstance(params, dict) else entry.parse_params(params))


def _step_budget(turn: Turn, training: TrainingConfig) -> int | None:
    return turn.max_steps or training.iterations_per_task


def turn_steps(turn: Turn, n_train: int, training: TrainingConfig) -> int:
    """Iterations a turn trains for: ``max_steps``, else ``iterations_per_task``, else epochs x batches per epoch."""
    return _step_budget(turn, training) or training.epochs * math.ceil(n_train / training.batch_size)


def set_turn_budget(strategy, harness: Harness, turn: Turn, training: TrainingConfig) -> None:
    """A turn runs ``turn.max_steps`` (or ``iterations_per_task``) iterations if set, else the suite's epochs."""
    budget = _step_budget(turn, training)
    harness.budget.budget = budget
    # With a step budget the budget alone ends the turn: as many epochs as steps always reach it, also when a
    # strategy trains on fewer samples than the experience holds (pic holds out a validation slice).
    strategy.train_epochs = budget if budget else training.epochs


@dataclass(frozen=True)
class TurnDone:
    """What one trained turn cost: training seconds (curve evaluation left out), curve seconds, steps."""

    index: int
    turn: Turn
    train_seconds: float
    curve_seconds: float
    steps: int


def train_schedule(
    strategy,
    harness: Harness,
    turns: Sequence[tuple[Turn, Any]],
    training: TrainingConfig,
    start: int = 0,
    tasks_before: Sequence[int] = (),
) -> Iterator[TurnDone]:
    """Train ``(turn, experience)`` pairs from index ``start`` on; yields after each turn.

    Each turn gets its budget, a fresh optimizer state (unless ``training.reset_optimizer`` is false), and a finite-weights check after it. The
    curve recorder (if any) watches every task trained so far (``tasks_before`` lists those of the
    turns before ``start``). The caller evaluates between turns: the generator resumes the next
    turn only when asked for it.
    """
    trained = list(dict.fromkeys(tasks_before))
    recorder = harness.recorder
    for index, (turn, experience) in enumerate(turns):
        if index < start:
            continue
        if turn.task not in trained:
            trained.append(turn.task)
        set_turn_budget(strategy, harness, turn, training)
        if recorder is not None:
            recorder.turn, recorder.watch = index, list(trained)
        curve_before = harness.inside_eval_seconds()
        t0 = time.perf_counter()
        strategy.train(experience, eval_streams=[], reset_optimizer_state=training.reset_optimizer)
        if strategy.device.type == "cuda":  # the clock must cover the queued kernels (one sync per turn)
            torch.cuda.synchronize(strategy.device)
        elapsed = time.perf_counter() - t0
        curve_seconds = harness.inside_eval_seconds() - curve_before
        check_finite_weights(strategy.model)
        yield TurnDone(index, turn, elapsed - curve_seconds, curve_seconds, harness.budget.steps)


def scheduled_experiences(scenario: Scenario, start: int = 0) -> list[tuple[Turn, Any]]:
    """The scenario's schedule from turn ``start`` on, paired with its Avalanche training experiences."""
    return list(zip(scenario.schedule[start:], scenario.train_experiences(start)))
