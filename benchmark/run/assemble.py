"""A run's parts from its spec: the seeded scenario (with a validation hold-out when selecting) and the
strategy on its model."""

from __future__ import annotations

from pathlib import Path

import torch

from forgetbench.benchmark.core.config import ComponentSpec
from forgetbench.benchmark.core.components import SCENARIOS, STRATEGIES
from forgetbench.benchmark.data.models import TaskRoutedModule
from forgetbench.benchmark.data.scenarios import Scenario, ScenarioInputs
from forgetbench.benchmark.run.schedule import build_strategy
from forgetbench.benchmark.run.spec import RunSpec, seed_everything
from forgetbench.benchmark.train.harness import Harness

__all__ = ["build_scenario", "seeded_scenario", "hold_out_validation", "keep_first_tasks", "build_run_strategy"]


def build_scenario(spec: RunSpec, data_root: Path) -> Scenario:
    entry = SCENARIOS.get(spec.scenario.name)
    return entry.factory(spec.scenario.typed_params(SCENARIOS), ScenarioInputs(spec.seed, data_root))


def seeded_scenario(spec: RunSpec, data_root: Path) -> Scenario:
    """The run's scenario: global RNG seeded first (model init), validation held out if asked."""
    seed_everything(spec.seed)
    scenario = build_scenario(spec, data_root)
    if spec.validation_fraction is not None:
        hold_out_validation(scenario, spec.validation_fraction, spec.seed)
    if spec.first_tasks is not None:
        keep_first_tasks(scenario, spec.first_tasks)
    return scenario


def keep_first_tasks(scenario: Scenario, k: int) -> None:
    """Cut the scenario to its first ``k`` tasks and the turns that train them (a tuning protocol: choose on the
    first tasks, run on all). A search, whose turns are decided while training, cannot be cut."""
    if scenario.adaptive:
        raise ValueError(
            f"first_tasks: {scenario.name} decides its turns while training (a search); it cannot be "
            "cut to its first tasks"
        )
    if not 1 <= k <= len(scenario.tasks):
        raise ValueError(f"first_tasks: {k} is not between 1 and the scenario's {len(scenario.tasks)} tasks")
    scenario.tasks = scenario.tasks[:k]
    scenario.schedule = [turn for turn in scenario.schedule if turn.task < k]


def build_run_strategy(
    spec: RunSpec,
    scenario: Scenario,
    model: TaskRoutedModule,
    device: torch.device,
    harness: Harness,
    strategy: ComponentSpec | None = None,
):
    """The spec's strategy (or ``strategy``) on ``model`` with the run's training config and seed."""
    strategy = strategy or spec.strategy
    return build_strategy(
        strategy.name, strategy.typed_params(STRATEGIES), scenario, model, spec.training, device, spec.seed, harness
    )


def hold_out_validation(scenario: Scenario, fraction: float, seed: int) -> None:
    """Replace each task's test data by a seeded ``fraction`` of its training data, removed from it
    (:meth:`~forgetbench.benchmark.data.scenarios.base.Scenario.hold_out_validation`; a search holds out one split of
    the training data its architectures share, for those it adds later too). The test split is never read."""
    scenario.hold_out_validation(fraction, seed)
