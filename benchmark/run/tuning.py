"""Tuning on Optuna: a strategy entry's ``tune:`` block, searched on held-out training data, then the suite's seeds.

For each scenario and each strategy entry with ``tune``:

1. *ranges*: a param given as ``auto`` searches its calibrated range (``OUT/calibration.json``, from
   ``forgetbench calibrate`` or, when it has no entry yet, from probes run here first into
   ``OUT/calibration/``), on a log scale; ``{low, high}`` a range; ``{choices}`` a categorical. A strength
   that acts nowhere in its probes is searched over the whole probed ladder, and ``tuning.json`` says so;
2. *trials*: Optuna asks for a point, the point runs as an ordinary run per tuning seed (through the suite's
   executor, into ``OUT/tuning/runs/``) on a validation split held out from each task's training data (the
   test split is never read), and the objective's mean over the seeds is told back. The sampler of trial n is
   seeded with ``seed + n``, and a trial left running by a killed process is run again with its own point, so
   a killed tuning rerun with the same command continues the study to the same trials and the same choice;
3. *final*: the suite's seeds run with the best trial's point on the train/test data, labelled with its values
   (``ewc[ewc_lambda=1234]``); ``OUT/tuning.json`` records every trial, the choice and the protocol.

The study is stored in ``OUT/tuning/study.db`` (SQLite) unless ``storage`` names another database Optuna
supports (several machines then share one study, one study per (scenario, entry) named after them).
"""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from forgetbench.benchmark.core import store
from forgetbench.benchmark.core.config import (ComponentSpec, StrategySpec, SuiteConfig, TuneChoices, TuneRange,
                                             refused_pairs, strategy_variant)
from forgetbench.benchmark.core.metrics import run_metrics
from forgetbench.benchmark.core.record import RunRecord
from forgetbench.benchmark.run import calibrate as calibrate_run
from forgetbench.benchmark.run.spec import RunSpec

TUNING_DIR = "tuning"  # OUT/tuning/runs/<run_id>/result.json: the trials' runs; OUT/tuning/study.db: the study
TUNING_FILE = "tuning.json"
MAXIMISE = {"ACC": True, "LA": True, "BWT": True, "forgetting": False}
SIGNIFICANT = 4  # a suggested number is rounded to this many significant digits (labels stay short)

RunBatch = Callable[[list[tuple[Path, RunSpec]]], None]


@dataclass
class Study:
    """The tuning of one strategy entry for one scenario: its trials run on ``trial_scenario`` (the scenario itself,
    or the one ``tune.scenario`` names), its final runs on ``scenario``."""

    scenario: ComponentSpec
    strategy: StrategySpec
    seeds: list[int]
    trial_scenario: ComponentSpec | None = None

    def __post_init__(self) -> None:
        self.trial_scenario = self.trial_scenario or self.scenario

    @property
    def name(self) -> str:  # scenarios tuned on the same one share its study: it runs once
        first = self.strategy.tune.first_tasks
        return f"{self.trial_scenario.display_name}__{self.strategy.display_name}" + (f"__first{first}" if first else "")


def plan_tuning(suite: SuiteConfig) -> list[Study]:
    refused = refused_pairs(suite)
    by_label = {s.display_name: s for s in suite.scenarios}
    return [Study(scenario, entry, list(entry.tune.seeds or suite.seeds[:1]), by_label.get(entry.tune.scenario or ""))
            for scenario in suite.scenarios for entry in suite.strategies
            if entry.tune is not None and (scenario.display_name, entry.display_name) not in refused]


def storage_url(out: Path, storage: str | None) -> str:
    return storage or f"sqlite:///{(Path(out) / TUNING_DIR / 'study.db').resolve()}"


def _rounded(value: Any) -> Any:
    if isinstance(value, float) and math.isfinite(value) and value != 0:
        return float(f"{value:.{SIGNIFICANT}g}")
    return value


def search_space(study: Study, calibrated: dict[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
    """Optuna distributions per tuned param, and notes (where a range came from when it was not given)."""
    import optuna

    space, notes = {}, []
    for name, how in study.strategy.tune.params.items():
        if isinstance(how, TuneChoices):
            space[name] = optuna.distributions.CategoricalDistribution(how.choices)
            continue
        if isinstance(how, TuneRange):
            space[name] = optuna.distributions.FloatDistribution(how.low, how.high, log=how.log)
            continue
        found = calibrate_run.calibrated_range(calibrated, study.trial_scenario.display_name,
                                               study.strategy.display_name, name)
        if found is None:
            entry = next(e for e in (calibrated or {}).get("entries", [])
                         if (e["scenario"], e["strategy"], e["param"]) ==
                         (study.trial_scenario.display_name, study.strategy.display_name, name))
            values = [p["value"] for p in entry["probes"]]
            low, high = min(values), max(values)
            notes.append(f"{name}: calibration found no strength that acts without crushing learning "
                         f"({entry['verdict']}); searched the whole probed range {low:g} to {high:g}")
        elif found[0] == found[1]:  # one good probe: the decade around it
            low, high = _rounded(found[0] / math.sqrt(10)), _rounded(found[1] * math.sqrt(10))
            notes.append(f"{name}: one calibrated strength, {found[0]:g}: searched the decade around it, "
                         f"{low:g} to {high:g} (log scale)")
        else:
            low, high = found
            notes.append(f"{name}: the calibrated range {low:g} to {high:g} (log scale)")
        space[name] = optuna.distributions.FloatDistribution(low, high, log=True)
    return space, notes


@functools.cache
def _grid_within_budget() -> type:
    import optuna

    class GridWithinBudget(optuna.samplers.GridSampler):
        """Optuna's grid sampler, less its stop when the grid is spent: ``Study.stop`` works only inside
        ``optimize`` (this module asks and tells), and the trial budget, not the grid, ends a study."""

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            return None

    return GridWithinBudget


def _sampler(study: Study, space: dict[str, Any], number: int):
    import optuna

    tune = study.strategy.tune
    seed = tune.seed + number
    if tune.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if tune.sampler == "grid":
        grid = {}
        for name, dist in space.items():
            if isinstance(dist, optuna.distributions.CategoricalDistribution):
                grid[name] = list(dist.choices)
            else:
                points = np.geomspace(dist.low, dist.high, tune.trials) if dist.log else \
                    np.linspace(dist.low, dist.high, tune.trials)
                grid[name] = [_rounded(float(v)) for v in points]
        return _grid_within_budget()(grid, seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(5, tune.trials))


def trial_specs(suite: SuiteConfig, study: Study, point: dict[str, Any]) -> list[RunSpec]:
    variant = strategy_variant(study.strategy.model_copy(update={"tune": None}), point)
    tune = study.strategy.tune
    return [RunSpec(suite.name, study.trial_scenario, variant, seed, suite.training, suite.device, tune.fraction,
                    tune.first_tasks) for seed in study.seeds]


def objective(records: list[RunRecord | None], metric: str) -> float | None:
    """The objective's mean over the trial's ok runs; None when none finished ok (the trial then fails)."""
    values = [run_metrics(r)[metric] for r in records if r is not None and r.status == "ok"]
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else None


def replayed_trial(optuna_study: Any, number: int, sampler: Any, space: dict[str, Any]) -> Any:
    """Trial ``number`` as it was asked, point and sampler's marks (the grid sampler's ``grid_id``): the same
    sampler (seeded by the trial's number) asks again on an in-memory copy of the trials before it, which is all a
    sampler reads."""
    import optuna

    copy = optuna.create_study(direction=optuna_study.direction, sampler=sampler)
    copy.add_trials(optuna_study.get_trials(deepcopy=True)[:number])
    asked = copy.ask(fixed_distributions=space)
    return copy.get_trials(deepcopy=False)[asked.number]


def run_study(suite: SuiteConfig, study: Study, out: Path, run_batch: RunBatch, storage: str | None,
              calibrated: dict[str, Any] | None) -> dict[str, Any]:
    """Continue ``study`` to its trial budget; return its summary for ``tuning.json``."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(logging.WARNING)
    clock = {"optuna": 0.0, "runs": 0.0}  # seconds in Optuna and its storage, and in the trials' runs
    started = time.perf_counter()
    tune = study.strategy.tune
    folder = Path(out) / TUNING_DIR
    folder.mkdir(parents=True, exist_ok=True)
    space, notes = search_space(study, calibrated)
    direction = "maximize" if MAXIMISE[tune.objective] else "minimize"
    stored = optuna.storages.get_storage(storage_url(out, storage))
    optuna_study = optuna.create_study(study_name=study.name, storage=stored, direction=direction,
                                       load_if_exists=True)

    clock["optuna"] += time.perf_counter() - started

    def evaluate(point: dict[str, Any]) -> tuple[float | None, list[str]]:
        begun = time.perf_counter()
        specs = trial_specs(suite, study, point)
        run_batch([(folder, spec) for spec in specs])
        records = [store.read_result(store.result_path(folder, spec.run_id)) for spec in specs]
        clock["runs"] += time.perf_counter() - begun
        return objective(records, tune.objective), [spec.run_id for spec in specs]

    def told(trial: Any, value: float | None) -> None:
        begun = time.perf_counter()
        optuna_study.tell(trial, value, state=None if value is not None else TrialState.FAIL)
        clock["optuna"] += time.perf_counter() - begun

    # a trial a killed process left running: its own point, run again (complete runs are read back)
    for frozen in optuna_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if set(frozen.params) != set(space):  # killed between Optuna's creating the trial and storing its point
            trial_id = stored.get_trial_id_from_study_id_trial_number(
                stored.get_study_id_from_name(study.name), frozen.number)
            replayed = replayed_trial(optuna_study, frozen.number, _sampler(study, space, frozen.number), space)
            for key, mark in replayed.system_attrs.items():
                if key not in frozen.system_attrs:
                    stored.set_trial_system_attr(trial_id, key, mark)
            for name, value in replayed.params.items():
                if name not in frozen.params:
                    stored.set_trial_param(trial_id, name, space[name].to_internal_repr(value), space[name])
            frozen = optuna_study.get_trials(deepcopy=False)[frozen.number]
        value, _ = evaluate({k: _rounded(v) for k, v in frozen.params.items()})
        told(frozen.number, value)
    while True:
        begun = time.perf_counter()
        finished = optuna_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))
        if len(finished) >= tune.trials:
            clock["optuna"] += time.perf_counter() - begun
            break
        optuna_study.sampler = _sampler(study, space, len(optuna_study.trials))
        trial = optuna_study.ask(fixed_distributions=space)
        clock["optuna"] += time.perf_counter() - begun
        value, _ = evaluate({k: _rounded(v) for k, v in trial.params.items()})
        told(trial, value)

    trials = []
    for frozen in optuna_study.get_trials(deepcopy=False):
        point = {k: _rounded(v) for k, v in frozen.params.items()}
        trials.append({"number": frozen.number, "state": frozen.state.name, "params": point,
                       "value": frozen.value, "runs": [s.run_id for s in trial_specs(suite, study, point)],
                       "seconds": (frozen.datetime_complete - frozen.datetime_start).total_seconds()
                       if frozen.datetime_complete and frozen.datetime_start else None})
    complete = [t for t in trials if t["state"] == "COMPLETE" and t["value"] is not None]
    best = None
    if complete:
        sign = 1.0 if MAXIMISE[tune.objective] else -1.0
        best = max(complete, key=lambda t: (sign * t["value"], -t["number"]))  # ties: the earlier trial
    protocol = {"kind": "validation", "fraction": tune.fraction, "seeds": study.seeds}
    if tune.scenario is not None:
        protocol = {**protocol, "kind": "scenario", "scenario": study.trial_scenario.display_name}
    if tune.first_tasks is not None:
        protocol = {**protocol, "first_tasks": tune.first_tasks}
    return {"scenario": study.scenario.display_name, "strategy": study.strategy.display_name,
            "protocol": protocol,
            "objective": tune.objective, "goal": "max" if MAXIMISE[tune.objective] else "min",
            "sampler": tune.sampler, "seed": tune.seed, "budget": tune.trials, "study": study.name,
            "search_space": {name: repr(dist) for name, dist in space.items()}, "notes": notes,
            "chosen": None if best is None else best["params"], "chosen_trial": None if best is None else best["number"],
            "chosen_value": None if best is None else best["value"], "trials": trials,
            # this invocation's time in Optuna and its storage against its time in the trials' runs
            "overhead": {"optuna_seconds": round(clock["optuna"], 4), "run_seconds": round(clock["runs"], 4)}}


def naive_references(suite: SuiteConfig, studies: list[Study]) -> list[RunSpec]:
    """One naive run per scenario, tuning seed and held-out fraction of the studies: the reference point of the
    trials' frontiers (the report compares methods at naive's plasticity minus 1, 2 and 5 points)."""
    wanted = dict.fromkeys((s.trial_scenario.display_name, seed, s.strategy.tune.fraction, s.strategy.tune.first_tasks)
                           for s in studies for seed in s.seeds)
    scenarios = {s.display_name: s for s in suite.scenarios}
    return [RunSpec(suite.name, scenarios[name], ComponentSpec(name="naive"), seed, suite.training, suite.device,
                    fraction, first) for name, seed, fraction, first in wanted]


def ensure_calibration(suite: SuiteConfig, studies: list[Study], out: Path, run_batch: RunBatch) -> dict[str, Any] | None:
    """``OUT/calibration.json``, with probes run first for every ``auto`` param it does not cover yet."""
    calibrated = calibrate_run.read_calibration(out)
    missing = [s for s in studies for name, how in s.strategy.tune.params.items()
               if how == "auto" and not any((e.get("scenario"), e.get("strategy"), e.get("param")) ==
                                            (s.trial_scenario.display_name, s.strategy.display_name, name)
                                            for e in (calibrated or {}).get("entries", []))]
    if not missing:
        return calibrated
    entries = list(dict.fromkeys(s.strategy.display_name for s in missing))
    strategies = [e.model_copy(update={"tune": None}) for e in suite.strategies if e.display_name in entries]
    scenarios = list({s.trial_scenario.display_name: s.trial_scenario for s in missing}.values())
    sub = suite.model_copy(update={"strategies": strategies, "scenarios": scenarios})
    first = missing[0].strategy.tune
    plan = calibrate_run.plan_calibration(sub, missing[0].seeds[0], first.decades, first.fraction)
    folder = Path(out) / calibrate_run.CALIBRATION_DIR
    run_batch([(folder, spec) for spec in plan.specs])
    records = {spec.run_id: store.read_result(store.result_path(folder, spec.run_id)) for spec in plan.specs}
    result = calibrate_run.decide(plan, records)
    if calibrated:  # keep what an earlier calibration found for other entries
        keys = {(e["scenario"], e["strategy"], e["param"]) for e in result["entries"]}
        result["entries"] = [e for e in calibrated.get("entries", [])
                             if (e["scenario"], e["strategy"], e["param"]) not in keys] + result["entries"]
    store.atomic_write_json(Path(out) / calibrate_run.CALIBRATION_FILE, result)
    return result


def final_specs(suite: SuiteConfig, study: Study, summary: dict[str, Any], seeds: list[int] | None) -> list[RunSpec]:
    """The suite's seeds at the chosen point, on the test split (empty when no trial finished)."""
    if summary["chosen"] is None:
        return []
    variant = strategy_variant(study.strategy.model_copy(update={"tune": None}), summary["chosen"])
    return [RunSpec(suite.name, study.scenario, variant, seed, suite.training, suite.device)
            for seed in (seeds if seeds is not None else suite.seeds)]
