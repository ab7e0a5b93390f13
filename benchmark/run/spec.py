"""What one run is: :class:`RunSpec` (everything that determines its numbers), the suite's expansion into
specs, the seeding and device, and the record a run starts from (or a worker's failure ends in)."""

from __future__ import annotations

import platform
import random
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from forgetbench.benchmark import __version__
from forgetbench.benchmark.core.config import ComponentSpec, SuiteConfig, refused_pairs, run_id, strategy_variants
from forgetbench.benchmark.core.record import SCHEMA_VERSION, Component, EvaluatedOn, RunRecord, Timing
from forgetbench.benchmark.core.training import TrainingConfig, training_identity

__all__ = ["RunSpec", "expand_suite", "resolve_device", "seed_everything", "environment", "new_record",
           "failure_record"]


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
        resolved = {
            "scenario": self.scenario.model_dump(mode="json"),
            "strategy": self.strategy.model_dump(mode="json"),
            "seed": self.seed,
            "training": training_identity(self.training),
            "device": self.device,
        }
        if self.validation_fraction is not None:
            resolved["validation_fraction"] = self.validation_fraction
        return resolved


def expand_suite(suite: SuiteConfig, seeds: list[int] | None = None) -> list[RunSpec]:
    """Every (scenario x strategy x grid combination x seed) of the suite, in that nesting order.

    Strategies with a ``selection`` are left out: their runs depend on the sweep's outcome
    (see :mod:`forgetbench.benchmark.run.selection`); so are the pairs refused at config time
    (:func:`~forgetbench.benchmark.core.config.refused_pairs`).
    """
    refused = refused_pairs(suite)
    return [
        RunSpec(suite.name, scenario, variant, seed, suite.training, suite.device)
        for scenario in suite.scenarios
        for strategy in suite.strategies
        if strategy.selection is None and (scenario.display_name, strategy.display_name) not in refused
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


def environment(device: torch.device | str) -> dict[str, str]:
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


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


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
        timing=Timing(train_seconds=0.0, eval_seconds=0.0, steps=0),
        started_at=now(),
    )
    if spec.validation_fraction is not None:
        record.evaluated_on = EvaluatedOn(split="validation", fraction=spec.validation_fraction)
    return record


def failure_record(spec: RunSpec, error: str) -> RunRecord:
    """A ``failed`` record for a run that could not report itself (e.g. its worker died)."""
    record = new_record(spec, device=spec.device)
    record.status, record.error = "failed", error
    record.finished_at = now()
    return record
