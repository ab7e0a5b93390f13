"""A run's parts from its spec: the seeded scenario (with a validation hold-out when selecting) and the
strategy on its model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from forgetbench.benchmark.core.config import ComponentSpec
from forgetbench.benchmark.core.registries import SCENARIOS, STRATEGIES
from forgetbench.benchmark.data.scenarios import Scenario, ScenarioInputs
from forgetbench.benchmark.run.schedule import build_strategy
from forgetbench.benchmark.run.spec import RunSpec, seed_everything
from forgetbench.benchmark.train.harness import Harness

__all__ = ["build_scenario", "seeded_scenario", "hold_out_validation", "build_run_strategy"]


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
