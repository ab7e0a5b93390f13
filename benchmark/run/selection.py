"""Hyperparameter selection on a validation split held out from the training data.

For a strategy entry with a grid and ``selection: {metric, on: validation, fraction, seeds}``:

1. *sweep*: every grid combination runs on every selection seed with ``validation_fraction`` set,
   so each task trains on ``1 - fraction`` of its training data and is evaluated on the held-out
   rest (the test split is never read);
2. *choice*: a combination's score is the mean over its ``ok`` seeds of the metric of its
   accuracy matrix (ACC, LA, BWT maximised; forgetting minimised); the best score wins, ties going
   to the combination listed first in the grid;
3. *final*: the suite's seeds run with the chosen combination on the usual train/test data, under
   the label that records the chosen values (``ewc[ewc_lambda=100]``).

The sweep's records live in ``OUT/selection/runs/``; the decision and every score in
``OUT/selection.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from forgetbench.benchmark.core.config import (
    ComponentSpec,
    SelectionSpec,
    StrategySpec,
    SuiteConfig,
    refused_pairs,
    strategy_variants,
)
from forgetbench.benchmark.run.spec import RunSpec
from forgetbench.benchmark.core.metrics import run_metrics
from forgetbench.benchmark.core.record import RunRecord

MAXIMISE = {"ACC": True, "LA": True, "BWT": True, "forgetting": False}


def metric_value(metric: str, record: RunRecord) -> float:
    """The selection metric of one run record (:func:`forgetbench.benchmark.core.metrics.run_metrics`; NaN when undefined)."""
    return run_metrics(record)[metric]


@dataclass
class Sweep:
    """The selection sweep of one (scenario, strategy entry)."""

    scenario: ComponentSpec
    strategy: StrategySpec
    selection: SelectionSpec
    seeds: list[int]
    variants: list[tuple[dict[str, Any], ComponentSpec]]
    specs: list[tuple[int, RunSpec]]  # (variant index, validation run)


def plan_sweeps(suite: SuiteConfig, seeds: list[int] | None = None) -> list[Sweep]:
    """The sweeps of every strategy entry that has a ``selection``, per scenario."""
    sweeps = []
    refused = refused_pairs(suite)
    for scenario in suite.scenarios:
        for strategy in suite.strategies:
            if strategy.selection is None or (scenario.display_name, strategy.display_name) in refused:
                continue
            sel = strategy.selection
            sweep_seeds = sel.seeds or seeds or suite.seeds
            variants = strategy_variants(strategy)
            specs = [
                (k, RunSpec(suite.name, scenario, variant, seed, suite.training, suite.device, sel.fraction))
                for k, (_, variant) in enumerate(variants)
                for seed in sweep_seeds
            ]
            sweeps.append(Sweep(scenario, strategy, sel, list(sweep_seeds), variants, specs))
    return sweeps


def decide(sweep: Sweep, records: dict[str, RunRecord | None]) -> dict[str, Any]:
    """Score every combination from the sweep's records (by run id) and pick the best.

    Returns the JSON-ready summary stored in ``selection.json``; ``chosen`` is None when no
    combination has a finite score (every run failed).
    """
    metric = sweep.selection.metric
    rows: list[dict[str, Any]] = []
    for k, (choice, variant) in enumerate(sweep.variants):
        per_seed = {}
        statuses = {}
        for index, spec in sweep.specs:
            if index != k:
                continue
            record = records.get(spec.run_id)
            statuses[str(spec.seed)] = record.status if record else "missing"
            if record and record.status == "ok":
                per_seed[str(spec.seed)] = metric_value(metric, record)
        finite = [v for v in per_seed.values() if np.isfinite(v)]
        score = float(np.mean(finite)) if finite else None
        rows.append(
            {"label": variant.display_name, "params": choice, "score": score, "scores": per_seed, "status": statuses}
        )
    sign = 1.0 if MAXIMISE[metric] else -1.0
    best: int | None = None
    for k, row in enumerate(rows):
        if row["score"] is not None and (best is None or sign * row["score"] > sign * rows[best]["score"]):
            best = k  # strict: ties keep the combination listed first
    return {
        "scenario": sweep.scenario.display_name,
        "strategy": sweep.strategy.display_name,
        "metric": metric,
        "goal": "max" if MAXIMISE[metric] else "min",
        "on": sweep.selection.on,
        "fraction": sweep.selection.fraction,
        "seeds": sweep.seeds,
        "chosen": None if best is None else rows[best]["params"],
        "chosen_label": None if best is None else rows[best]["label"],
        "sweep": rows,
    }


def final_specs(suite: SuiteConfig, sweep: Sweep, decision: dict[str, Any], seeds: list[int] | None) -> list[RunSpec]:
    """The suite's seeds with the chosen combination, on the test split (empty if none was chosen)."""
    if decision["chosen_label"] is None:
        return []
    variant = next(v for _, v in sweep.variants if v.display_name == decision["chosen_label"])
    return [
        RunSpec(suite.name, sweep.scenario, variant, seed, suite.training, suite.device)
        for seed in (seeds if seeds is not None else suite.seeds)
    ]
