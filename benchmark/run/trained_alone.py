"""What a run is compared with, trained apart from it: a model trained *alone* from the run's initial weights (a
search's ground truth, cached, and its derived architecture retrained)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path

import torch

from forgetbench.benchmark.core import store
from forgetbench.benchmark.core.config import ComponentSpec
from forgetbench.benchmark.core.training import training_identity
from forgetbench.benchmark.data.models import TaskRoutedModule
from forgetbench.benchmark.data.scenarios import Retraining, Scenario, Turn
from forgetbench.benchmark.run.assemble import build_run_strategy, seeded_scenario
from forgetbench.benchmark.run.schedule import scheduled_experiences, train_schedule
from forgetbench.benchmark.run.spec import RunSpec
from forgetbench.benchmark.train.harness import Harness, evaluate

__all__ = ["retrained_scores"]


def _train_alone(
    spec: RunSpec, scenario: Scenario, model: TaskRoutedModule, device: torch.device, task: int, steps: int
) -> None:
    """Train ``model`` on ``task`` alone for ``steps`` steps: the suite's optimizer, no regularizer (``naive``),
    through the same :func:`train_schedule` as every run."""
    scenario.schedule = [Turn(task=task, max_steps=steps)]
    harness = Harness()
    strategy = build_run_strategy(spec, scenario, model, device, harness, strategy=ComponentSpec(name="naive"))
    for _ in train_schedule(strategy, harness, scheduled_experiences(scenario), spec.training):
        pass


def retrained_scores(
    spec: RunSpec, data_root: Path, device: torch.device, retraining: Retraining, cache_dir: Path | None = None
) -> dict[str, float]:
    """Train :class:`~forgetbench.benchmark.data.scenarios.base.Retraining`'s model alone from the run's initial weights (a
    fresh scenario from the spec and seed) with the suite's optimizer, no regularizer; its scores. A retraining with a
    ``cache_key`` (scores that do not depend on the strategy) is computed once per process and, with ``cache_dir``,
    once per results folder (locked; :func:`forgetbench.benchmark.core.store.ground_truth_entries`)."""
    if retraining.cache_key is None:
        return _retrain(spec, data_root, device, retraining)
    key = {
        "retraining": retraining.cache_key,
        "seed": spec.seed,
        "training": training_identity(spec.training),
        "device": str(device),
        "validation_fraction": spec.validation_fraction,
    }
    names = sorted(retraining.evaluate_on)
    memo = json.dumps(key, sort_keys=True, default=str)
    if memo in RETRAINED_CACHE:
        return dict(RETRAINED_CACHE[memo])
    path = store.ground_truth_path(cache_dir, key) if cache_dir is not None else None
    cached: contextlib.AbstractContextManager[dict[int, float]] = (
        store.ground_truth_entries(path, key) if path is not None else contextlib.nullcontext({})
    )
    with cached as entries:
        if not all(i in entries for i in range(len(names))):
            scores = _retrain(spec, data_root, device, retraining)
            entries.update({i: scores[name] for i, name in enumerate(names)})
            if path is not None:
                store.save_ground_truth(path, key, entries)
        result = {name: entries[i] for i, name in enumerate(names)}
    RETRAINED_CACHE[memo] = result
    return dict(result)


RETRAINED_CACHE: dict[str, dict[str, float]] = {}


def _retrain(spec: RunSpec, data_root: Path, device: torch.device, retraining: Retraining) -> dict[str, float]:
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        fresh = seeded_scenario(spec, data_root)
        task = retraining.task_in(fresh)
        model = fresh.model.to(device)
        index = next(j for j, t in enumerate(fresh.tasks) if t is task)  # Task holds tensors: no == lookup
        _train_alone(spec, fresh, model, device, index, retraining.steps)
        batch = spec.training.eval_batch_size
        return {
            name: evaluate(model, dataclasses.replace(task, test_x=x, test_y=y), batch, device)
            for name, (x, y) in retraining.evaluate_on.items()
        }
