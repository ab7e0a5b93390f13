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
   With ``pruning: median`` (or ``quartile``), once ``pruning_startup`` trials have completed, a trial's first seed
   runs alone with a :class:`~forgetbench.benchmark.run.spec.PruneRule`: it stops after an experience where its
   objective so far is worse than half (three quarters) of the completed trials' there, for that seed. Then the
   trial is ``PRUNED`` (its per-experience values as intermediate values, which Optuna's samplers rank it by), its
   other seeds never run, it counts against the budget and is never chosen; else its other seeds run. One seed
   decides because every seed and experience checked is another chance to fall behind by noise (a rule on each
   seed pruned nearly every trial of the demo). The bounds come from the trials before it, so a rerun prunes the
   same runs (executor-agnostic: the rule travels in the spec). With ``pruning_points`` the first seed is also
   checked inside each experience (:mod:`forgetbench.benchmark.run.pruning`);
3. *final*: the suite's seeds run with the best trial's point on the train/test data, labelled with its values
   (``ewc[ewc_lambda=1234]``); ``OUT/tuning.json`` records every trial, the choice and the protocol.

The study is stored in ``OUT/tuning/study.db`` (SQLite) unless ``storage`` names another database Optuna
supports (several machines then share one study, one study per (scenario, entry) named after them).
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import numpy as np

from forgetbench.benchmark.core import store
from forgetbench.benchmark.core.config import (
    ConfigError,
    ComponentSpec,
    StrategySpec,
    SuiteConfig,
    TuneChoices,
    TuneRange,
    TuneSpec,
    refused_pairs,
    runs_on,
    strategy_variant,
)
from forgetbench.benchmark.core.metrics import run_metrics, running_metric
from forgetbench.benchmark.core.record import RunRecord
from forgetbench.benchmark.core.components import STRATEGIES
from forgetbench.benchmark.core.registry import strength_params
from forgetbench.benchmark.run import calibrate as calibrate_run
from forgetbench.benchmark.run.spec import PruneRule, RunSpec

TUNING_DIR = (
    store.ResultFolder.TUNING
)  # OUT/tuning/runs/<run_id>/result.json: the trials' runs; OUT/tuning/study.db: the study
TUNING_FILE = store.ResultFolder.TUNING_FILE
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
    tuned_on: ComponentSpec | None = None  # the scenario ``tune.scenario`` names; None: ``scenario`` itself

    @property
    def trial_scenario(self) -> ComponentSpec:
        return self.tuned_on or self.scenario

    @property
    def tune(self) -> TuneSpec:
        if self.strategy.tune is None:  # plan_tuning makes studies of tuned entries only
            raise ValueError(f"strategy {self.strategy.display_name!r} has no tune block")
        return self.strategy.tune

    @property
    def name(self) -> str:  # scenarios tuned on the same one share its study: it runs once
        tune = self.tune
        return (
            f"{self.trial_scenario.display_name}__{self.strategy.display_name}"
            + (f"__first{tune.first_tasks}" if tune.first_tasks else "")
            + (f"__{tune.pruning}{tune.pruning_startup}" if tune.pruning != "off" else "")
            + (f"p{tune.pruning_points}" if tune.pruning_points else "")
        )  # other trials: another study


# a trial's default seeds: the suite's first three. One seed ties points a seed's noise separates by chance (issue
# 76: all 3 trials of EWC, SI and WPL at 0.90625); three cut a mean's spread by 1.7 against one seed's. A suite of
# fewer than three seeds (a smoke test: its own intervals are not informative) tunes on its first
TRIAL_SEEDS = 3


def trial_seeds(seeds: list[int]) -> list[int]:
    """The default seeds of a trial (:data:`TRIAL_SEEDS`)."""
    return seeds[:TRIAL_SEEDS] if len(seeds) >= TRIAL_SEEDS else seeds[:1]


def plan_tuning(suite: SuiteConfig) -> list[Study]:
    refused = refused_pairs(suite)
    by_label = {s.display_name: s for s in suite.scenarios}
    return [
        Study(
            scenario,
            entry,
            list(entry.tune.seeds or trial_seeds(suite.seeds)),
            by_label.get(entry.tune.scenario or ""),
        )
        for scenario in suite.scenarios
        for entry in suite.strategies
        if entry.tune is not None and runs_on(scenario, entry, refused)
    ]


def storage_url(out: Path, storage: str | None) -> str:
    return storage or f"sqlite:///{(Path(out) / TUNING_DIR / 'study.db').resolve()}"


def _rounded(value: Any) -> Any:
    if isinstance(value, float) and math.isfinite(value) and value != 0:
        return float(f"{value:.{SIGNIFICANT}g}")
    return value


class NothingLearned(ValueError):
    """The calibration behind an ``auto`` range learned nothing at any strength: the study stops (one line saying
    what to check) instead of searching a range around no peak."""


def stopped_summary(study: Study, why: str) -> dict[str, Any]:
    """``tuning.json``'s entry for a study that stopped before any trial (no point chosen: no final runs)."""
    return {
        "scenario": study.scenario.display_name,
        "strategy": study.strategy.display_name,
        "study": study.name,
        "objective": study.tune.objective,
        "protocol": {"kind": "validation", "fraction": study.tune.fraction, "seeds": study.seeds},
        "sampler": sampler_kind(study.tune),
        "sampler_description": sampler_description(study.tune),
        "budget": study.tune.trials,
        "stopped": why,
        "notes": [why],
        "chosen": None,
        "chosen_on_edge": {},
        "chosen_trial": None,
        "chosen_value": None,
        "trials": [],
    }


def search_space(study: Study, calibrated: dict[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
    """Optuna distributions per tuned param, and notes (where a range came from when it was not given)."""
    import optuna

    space: dict[str, Any] = {}
    notes: list[str] = []
    for name, how in study.tune.params.items():
        if isinstance(how, TuneChoices):
            space[name] = optuna.distributions.CategoricalDistribution(how.choices)
            continue
        if isinstance(how, TuneRange):
            space[name] = optuna.distributions.FloatDistribution(how.low, how.high, log=how.log)
            continue
        entry = calibrate_run.calibration_entry(
            calibrated, study.trial_scenario.display_name, study.strategy.display_name, name, study.tune.objective
        )
        if entry is None:  # ensure_calibration wrote one for every auto param
            raise ValueError(f"{name}: no calibration under {study.tune.objective} for {study.name}")
        if entry.get("nothing_learned"):
            raise NothingLearned(f"{name}: {entry['verdict']}")
        found = entry.get("range")
        if found is None:
            values = [p["value"] for p in entry["probes"]]
            low, high = min(values), max(values)
            notes.append(
                f"{name}: calibration found no range ({entry['verdict']}); searched the whole probed range "
                f"{low:g} to {high:g}"
            )
        elif found[0] == found[1]:  # one good probe: the decade around it
            low, high = _rounded(found[0] / math.sqrt(10)), _rounded(found[1] * math.sqrt(10))
            notes.append(
                f"{name}: one calibrated strength, {found[0]:g}: searched the decade around it, "
                f"{low:g} to {high:g} (log scale)"
            )
        else:
            low, high = found
            source = (
                f"the calibrated bracket of {study.tune.objective}'s peak at {entry['best']:g}"
                if entry.get("best") is not None
                else "the calibrated range"
            )
            notes.append(f"{name}: {source}, {low:g} to {high:g} (log scale)")
            for side, reason in entry.get("open_ends", {}).items():
                notes.append(f"{name}: not bracketed {'below' if side == 'low' else 'above'}: {reason}")
        space[name] = optuna.distributions.FloatDistribution(low, high, log=True)
    return space, notes


TPE_MIN_TRIALS = 20  # `auto` below this budget: a quasi-random design (TPE would spend most of it at random)
EDGE = 0.05  # a chosen point within this share of its range's log width from an end sits on the edge


def study_seed(study: Study) -> int:
    """The study's sampler seed: ``tune.seed`` plus a number from its name (scenario and strategy labels), so two
    studies of one suite never receive the same proposals; the same on every machine and rerun."""
    return (study.tune.seed + zlib.crc32(study.name.encode())) % 2**31


def sampler_kind(tune: TuneSpec) -> str:
    """The sampler a study really uses (``auto`` resolved)."""
    if tune.sampler != "auto":
        return tune.sampler
    return "qmc" if tune.trials < TPE_MIN_TRIALS else "tpe"


def tpe_startup(trials: int) -> int:
    return min(trials, max(5, trials // 4))


def sampler_description(tune: TuneSpec) -> str:
    """What the report prints for a study's sampler: its real name, and for TPE how many trials were random."""
    kind = sampler_kind(tune)
    chose = " (auto)" if tune.sampler == "auto" else ""
    if kind == "tpe":
        startup = tpe_startup(tune.trials)
        modelled = tune.trials - startup
        return f"tpe{chose}: {startup} random start-up trial(s), {modelled} modelled"
    if kind == "qmc":
        return f"qmc{chose}: a scrambled Sobol design of {tune.trials} point(s)"
    if kind == "grid":
        size = grid_size(tune)
        ranged = any(not isinstance(how, TuneChoices) for how in tune.params.values())
        ranges = f" ({tune.trials} points per range)" if ranged else ""
        whole = "every one" if tune.trials >= size else f"{tune.trials} evenly spread"
        return f"grid{chose}: {whole} of its {size} combination(s){ranges}"
    return f"{kind}{chose}"


def grid_size(tune: TuneSpec) -> int:
    """Combinations of a grid study: each choice param's choices times ``trials`` points per range."""
    return math.prod(len(how.choices) if isinstance(how, TuneChoices) else tune.trials for how in tune.params.values())


def grid_point(study: Study, space: dict[str, Any], number: int) -> dict[str, Any]:
    """Trial ``number``'s combination of the study's grid: its choices, and ``trials`` points per range (log-spaced
    where the range is), in row-major order; a budget below the grid's size takes evenly spread combinations.

    Chosen by number, not by Optuna's grid sampler: that draws among the combinations it sees unvisited, and a study
    that is never told a trial ended (:class:`MirroredStudy`) could draw one twice."""
    import optuna

    axes = []
    for name, dist in space.items():
        if isinstance(dist, optuna.distributions.CategoricalDistribution):
            axes.append([(name, value) for value in dist.choices])
        else:
            spaced = np.geomspace if dist.log else np.linspace
            axes.append([(name, _rounded(float(v))) for v in spaced(dist.low, dist.high, study.tune.trials)])
    size = math.prod(len(axis) for axis in axes)
    budget = min(study.tune.trials, size)
    index = (number if budget == size else round(number * (size - 1) / max(budget - 1, 1))) % size
    picked = []
    for axis in reversed(axes):  # row-major: the last param varies fastest
        index, at = divmod(index, len(axis))
        picked.append(axis[at])
    return dict(reversed(picked))


def design_point(study: Study, space: dict[str, Any], number: int) -> dict[str, Any]:
    """Trial ``number``'s point of the study's scrambled Sobol design (scipy's; seeded by :func:`study_seed`): its
    first 2^k points put one point in each 2^-k-wide stratum of every range (log scale where the range is)."""
    import optuna
    from scipy.stats import qmc

    names = sorted(space)
    m = max(1, math.ceil(math.log2(max(number + 1, 2))))
    u = qmc.Sobol(d=len(names), scramble=True, seed=study_seed(study)).random_base2(m)[number]
    point: dict[str, Any] = {}
    for name, x in zip(names, u):
        dist = space[name]
        if isinstance(dist, optuna.distributions.CategoricalDistribution):
            point[name] = dist.choices[min(int(x * len(dist.choices)), len(dist.choices) - 1)]
        elif dist.log:
            point[name] = float(math.exp(math.log(dist.low) + x * (math.log(dist.high) - math.log(dist.low))))
        else:
            point[name] = float(dist.low + x * (dist.high - dist.low))
    return point


def _sampler(study: Study, space: dict[str, Any], number: int):
    import optuna

    tune = study.tune
    kind = sampler_kind(tune)
    seed = study_seed(study) + number
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind in ("qmc", "grid"):  # the trial's point is decided by its number: a design or the grid's order
        import warnings

        point = design_point(study, space, number) if kind == "qmc" else grid_point(study, space, number)
        with warnings.catch_warnings():  # "experimental" since Optuna 2.4; the trial's point is all it fixes
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.PartialFixedSampler(point, optuna.samplers.RandomSampler(seed=seed))
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=tpe_startup(tune.trials))


def on_edge(space: dict[str, Any], point: dict[str, Any]) -> dict[str, str]:
    """The ranged params of ``point`` within :data:`EDGE` of their range's width (log width for a log range) from
    an end: param -> ``low`` or ``high``."""
    import optuna

    edges = {}
    for name, dist in space.items():
        if not isinstance(dist, optuna.distributions.FloatDistribution) or name not in point:
            continue
        value = float(point[name])
        if dist.log:
            where = (math.log(value) - math.log(dist.low)) / (math.log(dist.high) - math.log(dist.low))
        else:
            where = (value - dist.low) / (dist.high - dist.low) if dist.high > dist.low else 0.5
        if where <= EDGE:
            edges[name] = "low"
        elif where >= 1 - EDGE:
            edges[name] = "high"
    return edges


def trial_specs(
    suite: SuiteConfig, study: Study, point: dict[str, Any], rules: dict[int, PruneRule] | None = None
) -> list[RunSpec]:
    """The runs of the trial at ``point``, one per tuning seed; ``rules`` (per seed) prune them."""
    variant = strategy_variant(study.strategy.model_copy(update={"tune": None}), point)
    tune = study.tune
    return [
        RunSpec(
            suite.name,
            study.trial_scenario,
            variant,
            seed,
            suite.training,
            suite.device,
            tune.fraction,
            tune.first_tasks,
            (rules or {}).get(seed),
        )
        for seed in study.seeds
    ]


PRUNING_SHARE = {"median": 0.5, "quartile": 0.25}  # the share of completed trials a pruned run is behind all but
PRUNING_BOUND = {"median": "median", "quartile": "quartile on the worse side"}


def pruning_bounds(curves: list[list[float]], share: float, maximise: bool) -> tuple[float | None, ...]:
    """Per experience k, the value a run's objective so far must not fall behind: the ``share`` quantile of the
    completed trials' values there (``curves``: one :func:`~forgetbench.benchmark.core.metrics.running_metric` list
    per trial; the 1 - ``share`` quantile when lower is better). None where no trial has a finite value, and after
    the last experience (pruning there saves nothing and would lose a finished trial)."""
    steps = max((len(curve) for curve in curves), default=0) - 1
    bounds: list[float | None] = []
    for k in range(max(steps, 0)):
        values = [curve[k] for curve in curves if k < len(curve) and math.isfinite(curve[k])]
        bounds.append(float(np.quantile(values, share if maximise else 1.0 - share)) if values else None)
    return tuple(bounds)


def inside_bounds(
    points: list[dict[tuple[int, int], float]], share: float, maximise: bool
) -> tuple[tuple[float | None, ...], ...]:
    """Per experience k and point c inside it, the bound a run's objective so far must not fall behind there: the
    ``share`` quantile (as :func:`pruning_bounds`) of the completed trials' values at (k, c) (``points``: one
    ``{(k, c): value}`` per trial, from its ``RunRecord.prune_points``). None where no trial has a value."""
    keys = {key for trial in points for key in trial}
    if not keys:
        return ()
    experiences, per = max(k for k, _ in keys) + 1, max(c for _, c in keys)
    bounds = []
    for k in range(experiences):
        row: list[float | None] = []
        for c in range(1, per + 1):
            values = [trial[(k, c)] for trial in points if (k, c) in trial]
            row.append(float(np.quantile(values, share if maximise else 1.0 - share)) if values else None)
        bounds.append(tuple(row))
    return tuple(bounds)


def pruned_after(records: list[RunRecord | None]) -> int | None:
    """The last experience a trial's pruned run completed (-1: it stopped inside the first; the earliest when several
    were pruned); None when none was."""
    steps = [len(r.accuracy_matrix) - 1 for r in records if r is not None and r.status == "pruned"]
    return min(steps) if steps else None


def objective(records: list[RunRecord | None], metric: str) -> float | None:
    """The objective's mean over the trial's ok runs; None when none finished ok (the trial then fails)."""
    values = [run_metrics(r)[metric] for r in records if r is not None and r.status == "ok"]
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else None


DRIVER = "forgetbench:driver"  # a trial's system attr: the driver (host:pid) that runs it
HEARTBEAT = "forgetbench:heartbeat"  # ... the time (epoch seconds) its driver last said it was still running it
LEASE_SECONDS = 120.0  # a RUNNING trial whose driver has not said so for this long has no driver any more
HEARTBEAT_SECONDS = 20.0  # how often a driver renews the lease of the trial it runs
WAIT_POLL_SECONDS = 2.0  # how often a finished driver looks at the trials other drivers still run
DRAWN_FOR = "forgetbench:drawn_for"  # ... the number its point was drawn for, stored with it in one transaction
SUPERSEDED = "forgetbench:superseded"  # ... set on a trial drawn for a number another driver took: never run


def driver_id() -> str:
    import os
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Resolution:
    """One binomial standard error of a trial's objective on its validation split: ``samples`` per task over
    ``tasks`` tasks, averaged over ``seeds``. A difference of an accuracy (forgetting, BWT) has twice the variance."""

    error: float
    samples: int  # per task (the smallest task's)
    tasks: int
    seeds: int
    factor: float  # variance of one accuracy at p, times 2 for a difference of accuracies

    @classmethod
    def of(cls, value: float, samples: list[int], seeds: int, objective: str) -> "Resolution":
        n, tasks = max(min(samples), 1), max(len(samples), 1)
        # a rate measured at 0 or 1 on N samples is not known exactly: kept half a sample inside (0, 1)
        edge = 0.5 / (n * tasks * max(seeds, 1))
        p = min(max(value, edge), 1.0 - edge) if objective in ("ACC", "LA") else 0.5  # 0.5: the widest spread
        factor = p * (1 - p) * (1.0 if objective in ("ACC", "LA") else 2.0)
        return cls(math.sqrt(factor / (n * tasks * max(seeds, 1))), n, tasks, seeds, factor)

    def samples_to_resolve(self, difference: float) -> int | None:
        """Validation samples per task at which one standard error is below ``difference`` (None for 0)."""
        if difference <= 0:
            return None
        return math.ceil(self.factor / (difference**2 * self.tasks * max(self.seeds, 1)))


TIE_RULE = "the best value, equal values to the lowest trial number (the same for every driver)"
TIE_SPLIT_LIMIT = 100  # a split this many times larger than the one used is named as a bound, not a number


def tie_notes(
    complete: list[dict[str, Any]], best: dict[str, Any], resolution: Resolution | None, objective: str
) -> list[str]:
    """Sentences for tuning.json's notes when the validation split cannot tell the best trial from others (their
    values within one standard error of the best's), with the rule that chose, and the split that would tell."""
    if resolution is None or len(complete) < 2:
        return []
    tied = [t for t in complete if abs(t["value"] - best["value"]) <= resolution.error]
    if len(tied) < 2:
        return []
    others = sorted({t["value"] for t in complete})
    # an objective moves in steps of one sample of one task and seed: a smaller gap is float rounding, no difference
    step = 1.0 / (resolution.samples * resolution.tasks * max(resolution.seeds, 1))
    gaps = [b - a for a, b in zip(others, others[1:]) if b - a >= step / 2]
    split = f"{resolution.samples} samples a task on {resolution.tasks} task(s), {resolution.seeds} seed(s)"
    needed = resolution.samples_to_resolve(min(gaps)) if gaps else None
    if needed is None:
        tell = "every trial scored the same: the split resolves no difference between these strengths"
    elif needed > TIE_SPLIT_LIMIT * resolution.samples:
        tell = (
            f"the smallest difference these trials show ({min(gaps):.4f}) would need a validation split over "
            f"{TIE_SPLIT_LIMIT} times this one ({resolution.samples:,} samples a task): these strengths are alike"
        )
    else:
        tell = (
            f"a validation split of about {needed:,} samples a task (or that many more seeds' worth) would resolve "
            f"the smallest difference these trials show ({min(gaps):.4f})"
        )
    return [
        f"tie: trials {', '.join(str(t['number']) for t in sorted(tied, key=lambda t: t['number']))} score within "
        f"one binomial standard error ({resolution.error:.4f} {objective}) of the best on the validation split "
        f"({split}); chosen by the rule: {TIE_RULE}. The split cannot tell these points apart: {tell}"
    ]


def _point_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def superseded(trial: Any) -> bool:
    """A trial whose point was drawn for another number than the one the storage gave it (another driver took that
    one first): decided by what was stored with it, so every driver sees it the moment it exists."""
    return trial.system_attrs.get(DRAWN_FOR, trial.number) != trial.number or bool(trial.system_attrs.get(SUPERSEDED))


def held_elsewhere(trial: Any, now: float | None = None) -> bool:
    """A RUNNING trial another driver still holds: started by a process of this machine that is alive and not this
    one, or on another machine whose driver renewed its lease (:data:`HEARTBEAT`) in the last :data:`LEASE_SECONDS`.
    A trial of a process that died (a killed driver), or whose lease expired, is not: it is run again or failed."""
    import os
    import socket

    host, _, pid = str(trial.system_attrs.get(DRIVER, "")).rpartition(":")
    if not host:  # written before trials named their driver: this driver's to resume, as before
        return False
    if host != socket.gethostname():
        beat = trial.system_attrs.get(HEARTBEAT)
        started = trial.datetime_start.timestamp() if trial.datetime_start else None
        last = beat if isinstance(beat, (int, float)) else started
        return last is None or (time.time() if now is None else now) - last < LEASE_SECONDS
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


class MirroredStudy:
    """An Optuna study in its storage (SQLite under OUT, or ``--storage``) and an in-memory copy its samplers read.

    A sampler reading the storage costs about 20 ms of SQLAlchemy per trial, the copy about 1 ms. A trial is
    written to the storage with its point in one transaction (a kill never leaves one without its point) and its
    end in another. Samplers are never told that a trial ended (``after_trial``): the budget ends a study, and
    Optuna's grid sampler would call ``Study.stop``, which raises outside ``optimize``.
    """

    def __init__(self, storage: Any, name: str, direction: Literal["maximize", "minimize"]):
        import optuna

        optuna.create_study(study_name=name, storage=storage, direction=direction, load_if_exists=True)
        self.storage, self.study_id = storage, storage.get_study_id_from_name(name)
        self.direction = direction
        self._copy()

    def _copy(self) -> None:
        import optuna

        self.memory_storage = optuna.storages.InMemoryStorage()
        self.memory = optuna.create_study(storage=self.memory_storage, direction=self.direction)
        self.ids: dict[int, tuple[int, int]] = {}  # trial number -> (its id in the storage, in the copy)
        for trial in self.storage.get_all_trials(self.study_id, deepcopy=True):
            self.memory.add_trial(trial)
            self.ids[trial.number] = (trial._trial_id, self.memory.get_trials(deepcopy=False)[-1]._trial_id)

    def trials(self, states: tuple | None = None) -> list[Any]:
        return self.memory.get_trials(deepcopy=False, states=states)

    def stored_trials(self) -> list[Any]:
        """The trials as the storage holds them (its clock's start and end times)."""
        return self.storage.get_all_trials(self.study_id, deepcopy=False)

    def ask(self, sampler_for: Callable[[int], Any], space: dict[str, Any], budget: int) -> Any:
        """A new trial's point, stored RUNNING with it in one transaction and marked with this driver; returns the
        trial (frozen). ``sampler_for(index)`` is the sampler of the trial that is the index-th of the study (its
        number among the trials not superseded).

        Two drivers sharing a study (``--storage``) may draw for the same number at once; the storage gives the
        second one the next number. That trial was drawn for a number it did not get, so it is never run: it is
        marked superseded (FAIL, with :data:`SUPERSEDED`), counts for nothing, and the driver draws again for the
        number it can have, unless the study has its ``budget`` of trials by then: None."""
        from optuna.trial import TrialState

        while True:
            index = sum(not superseded(t) for t in self.trials())
            if index >= budget:  # the other drivers took the rest of the budget
                return None
            self.memory.sampler = sampler_for(index)
            number = self.memory.ask(fixed_distributions=space).number
            memory_id = self.memory.get_trials(deepcopy=False)[number]._trial_id
            self.memory_storage.set_trial_system_attr(memory_id, DRIVER, driver_id())
            self.memory_storage.set_trial_system_attr(memory_id, DRAWN_FOR, number)
            frozen = self.memory.get_trials(deepcopy=False)[number]
            stored_id = self.storage.create_new_trial(self.study_id, template_trial=frozen)
            if self.storage.get_trial_number_from_id(stored_id) == number:
                self.ids[number] = (stored_id, memory_id)
                return frozen
            self.storage.set_trial_system_attr(stored_id, SUPERSEDED, True)
            self.storage.set_trial_state_values(stored_id, TrialState.FAIL)
            self._copy()

    def refresh(self) -> None:
        """Read the storage again (what other drivers did since)."""
        self._copy()

    @contextlib.contextmanager
    def lease(self, number: int) -> Iterator[None]:
        """Renew trial ``number``'s lease (:data:`HEARTBEAT`) while the block runs it: the other drivers sharing the
        study know it is still being run, and that it is not once the renewals stop."""
        stored_id = self.ids[number][0]
        done = threading.Event()

        def beat() -> None:
            while True:
                try:
                    self.storage.set_trial_system_attr(stored_id, HEARTBEAT, time.time())
                except Exception:  # noqa: BLE001 - the trial ended meanwhile (its attrs are then frozen), or the
                    return  # storage is gone: the run itself will say so
                if done.wait(HEARTBEAT_SECONDS):
                    return

        thread = threading.Thread(target=beat, name=f"lease-{number}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def finish(self, number: int, state: Any, value: float | None, intermediate: dict[int, float]) -> None:
        for storage, trial_id in zip((self.storage, self.memory_storage), self.ids[number]):
            for step, reported in intermediate.items():
                storage.set_trial_intermediate_value(trial_id, step, reported)
            storage.set_trial_state_values(trial_id, state, None if value is None else [value])


DRIVERS = {  # URL scheme -> the package its SQLAlchemy driver comes from
    "postgresql": "psycopg2-binary",
    "postgres": "psycopg2-binary",
    "mysql": "PyMySQL (and the URL mysql+pymysql://...)",
    "mariadb": "PyMySQL (and the URL mariadb+pymysql://...)",
    "oracle": "oracledb",
    "mssql": "pyodbc",
}


def _get_storage(url: str, attempts: int = 6) -> Any:
    """Optuna's storage at ``url``; two drivers creating one new database at once race on its schema (one of them
    meets a unique-constraint or lock error), so creation is tried again after a short wait."""
    import optuna

    for attempt in range(attempts):
        try:
            return optuna.storages.get_storage(url)
        except Exception as exc:  # noqa: BLE001 - only the schema race is retried; the caller names the others
            text = str(exc)
            racing = "alembic_version" in text or "database is locked" in text or "already exists" in text
            if not racing or attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def open_storage(out: Path, storage: str | None) -> Any:
    """The Optuna storage of the suite's studies, opened once (each opening checks the database's schema) and before
    any run: what is wrong with it is a :class:`ConfigError` naming the flag or the file and what to do."""

    url = storage_url(out, storage)
    flag = "--storage" if storage else f"the study file {Path(out) / TUNING_DIR / 'study.db'}"
    if storage is None:
        (Path(out) / TUNING_DIR).mkdir(parents=True, exist_ok=True)
    try:
        return _get_storage(url)
    except ImportError:
        scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
        package = DRIVERS.get(scheme, f"the SQLAlchemy driver for {scheme!r}")
        raise ConfigError(f"--storage {storage}: its database driver is not installed; pip install {package}") from None
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy's errors, named by what they mean here
        text = str(exc).splitlines()[0]
        kind = type(exc).__name__
        if kind == "ArgumentError":
            raise ConfigError(
                f"--storage {storage!r}: not a database URL (e.g. sqlite:///path/study.db, "
                "postgresql://user@host/db): " + text
            ) from None
        if "malformed" in text or "not a database" in text or kind == "DatabaseError":
            where = storage if storage else str(Path(out) / TUNING_DIR / "study.db")
            raise ConfigError(
                f"{flag}: the study database {where} is corrupt ({text}). Either move it aside (the study is "
                "rebuilt from the trials' runs already recorded under OUT/tuning/runs/, none of which trains "
                "again), or rerun with --fresh to run every trial again"
            ) from None
        if "unable to open database file" in text:
            raise ConfigError(
                f"--storage {storage!r}: the database file cannot be created there (its folder is missing or not "
                "writable)"
            ) from None
        raise ConfigError(f"{flag}: Optuna cannot open {url} ({kind}: {text})") from None


def run_study(
    suite: SuiteConfig, study: Study, out: Path, run_batch: RunBatch, storage: Any, calibrated: dict[str, Any] | None
) -> dict[str, Any]:
    """Continue ``study`` to its trial budget in ``storage`` (:func:`open_storage`); return its summary for
    ``tuning.json``."""
    run = StudyRun(suite, study, out, run_batch, storage, calibrated)
    run.finish_trials_left_running()
    run.run_to_budget()
    run.wait_for_other_drivers()
    return run.summary()


class StudyRun:
    """One invocation's work on a study: its trials through the executor, timed against Optuna's own time."""

    def __init__(
        self,
        suite: SuiteConfig,
        study: Study,
        out: Path,
        run_batch: RunBatch,
        storage: Any,
        calibrated: dict[str, Any] | None,
    ) -> None:
        import optuna

        optuna.logging.set_verbosity(logging.WARNING)
        # seconds in Optuna, its storage and the pruning rule; in the trials' runs
        self.clock = {"optuna": 0.0, "runs": 0.0}
        started = time.perf_counter()
        self.suite, self.study, self.tune, self.run_batch = suite, study, study.tune, run_batch
        self.folder = Path(out) / TUNING_DIR
        self.folder.mkdir(parents=True, exist_ok=True)
        self.space, self.notes = search_space(study, calibrated)
        direction: Literal["maximize", "minimize"] = "maximize" if MAXIMISE[self.tune.objective] else "minimize"
        self.mirrored = MirroredStudy(storage, study.name, direction)
        self.curves: dict[
            int, dict[int, list[float]]
        ] = {}  # completed trial -> seed -> objective after each experience
        self.inside: dict[int, dict[int, dict[tuple[int, int], float]]] = {}  # ... -> values inside them (k, point)
        self.clock["optuna"] += time.perf_counter() - started

    def trial_records(self, point: dict[str, Any]) -> list[RunRecord | None]:
        return [
            store.ResultFolder(self.folder).read(spec.run_id) for spec in trial_specs(self.suite, self.study, point)
        ]

    def pruning_rule(self, number: int) -> PruneRule | None:
        """Trial ``number``'s pruning rule for its first seed, from the trials completed before it (the same on a
        rerun)."""
        from optuna.trial import TrialState

        tune = self.tune
        if tune.pruning == "off":
            return None
        completed = [t for t in self.mirrored.trials((TrialState.COMPLETE,)) if t.number < number]
        maximise = MAXIMISE[tune.objective]
        if len(completed) < tune.pruning_startup:  # no bound yet; with inside points, the first seed records them
            return PruneRule(tune.objective, maximise, (), points=tune.pruning_points) if tune.pruning_points else None
        first = self.study.seeds[0]
        for t in completed:
            if t.number not in self.curves:
                ok = [
                    r
                    for r in self.trial_records({k: _rounded(v) for k, v in t.params.items()})
                    if r is not None and r.status == "ok" and r.accuracy_matrix
                ]
                self.curves[t.number] = {r.seed: running_metric(r.accuracy_matrix, tune.objective) for r in ok}
                self.inside[t.number] = {
                    r.seed: {(p.experience, p.point): p.value for p in r.prune_points or [] if p.value is not None}
                    for r in ok
                }
        return PruneRule(
            tune.objective,
            maximise,
            pruning_bounds(
                [self.curves[t.number][first] for t in completed if first in self.curves[t.number]],
                PRUNING_SHARE[tune.pruning],
                maximise,
            ),
            PRUNING_BOUND[tune.pruning],
            points=tune.pruning_points,
            inside=inside_bounds(
                [self.inside[t.number][first] for t in completed if first in self.inside[t.number]],
                PRUNING_SHARE[tune.pruning],
                maximise,
            ),
        )

    def evaluate(self, number: int, params: dict[str, Any]) -> None:
        """Run trial ``number`` at ``params`` and store how it ended."""
        from optuna.trial import TrialState

        begun = time.perf_counter()
        point = {k: _rounded(v) for k, v in params.items()}
        first_rule = self.pruning_rule(number)
        specs = trial_specs(
            self.suite, self.study, point, None if first_rule is None else {self.study.seeds[0]: first_rule}
        )
        self.clock["optuna"] += time.perf_counter() - begun  # the pruning rule's reading counts as tuning's overhead
        begun = time.perf_counter()
        with self.mirrored.lease(number) if number in self.mirrored.ids else contextlib.nullcontext():
            if first_rule is not None and first_rule.can_prune:  # the first seed alone: if pruned, the others need not
                self.run_batch([(self.folder, specs[0])])
                specs = specs[1:] if pruned_after(self.trial_records(point)[:1]) is None else []
            self.run_batch([(self.folder, spec) for spec in specs])
        records = self.trial_records(point)
        self.clock["runs"] += time.perf_counter() - begun
        begun = time.perf_counter()
        if pruned_after(records) is not None:  # Optuna's samplers rank a pruned trial by its intermediate values
            stopped = next(r for r in records if r is not None and r.status == "pruned")  # the first seed's
            values = running_metric(stopped.accuracy_matrix, self.tune.objective)
            self.mirrored.finish(
                number, TrialState.PRUNED, None, {k: v for k, v in enumerate(values) if math.isfinite(v)}
            )
        else:
            value = objective(records, self.tune.objective)
            self.mirrored.finish(number, TrialState.COMPLETE if value is not None else TrialState.FAIL, value, {})
        self.clock["optuna"] += time.perf_counter() - begun

    def finish_trials_left_running(self) -> None:
        """A trial a killed process left running: its own point (stored with it), run again (complete runs are read
        back); one that another live driver holds (--storage shared) is its to finish."""
        from optuna.trial import TrialState

        for frozen in self.mirrored.trials((TrialState.RUNNING,)):
            if superseded(frozen) or held_elsewhere(frozen):
                continue
            if set(frozen.params) == set(self.space):
                self.evaluate(frozen.number, frozen.params)
            else:  # not written by this module (it stores a trial with its point): nothing to run it at
                self.mirrored.finish(frozen.number, TrialState.FAIL, None, {})

    def wait_for_other_drivers(self, poll: float = WAIT_POLL_SECONDS) -> None:
        """Before choosing: wait until no trial of the study is RUNNING under another driver, saying once which trial,
        since when and whose; a trial whose driver is gone (dead here, or its lease expired) is marked failed, with
        a note. Every driver then chooses from the same finished trials, by the same rule (:meth:`best`)."""
        from optuna.trial import TrialState

        said: set[int] = set()
        while True:
            self.mirrored.refresh()
            running = [t for t in self.mirrored.trials((TrialState.RUNNING,)) if not superseded(t)]
            waiting = []
            for trial in running:
                if held_elsewhere(trial):
                    waiting.append(trial)
                    continue
                driver = trial.system_attrs.get(DRIVER, "an unnamed driver")
                self.mirrored.finish(trial.number, TrialState.FAIL, None, {})
                self.notes.append(
                    f"trial {trial.number} ({_point_text(trial.params)}) was marked failed: its driver {driver} is "
                    f"gone (no word from it for {LEASE_SECONDS:g} s, or its process has ended); it is not chosen from"
                )
            if not waiting:
                return
            for trial in waiting:
                if trial.number not in said:
                    said.add(trial.number)
                    since = trial.datetime_start.isoformat(timespec="seconds") if trial.datetime_start else "?"
                    print(
                        f"tuning {self.study.name}: the budget is taken; waiting for trial {trial.number} "
                        f"({_point_text(trial.params)}), run by driver {trial.system_attrs.get(DRIVER)} since {since}, "
                        "before choosing (every driver chooses from the same trials)",
                        file=sys.stderr,
                    )
            time.sleep(poll)

    def run_to_budget(self) -> None:
        """Ask for a point and run it until the study holds its budget of trials (this driver's and others')."""
        while True:
            begun = time.perf_counter()
            taken = [t for t in self.mirrored.trials() if not superseded(t)]  # finished, or running anywhere
            trial = (
                None
                if len(taken) >= self.tune.trials
                else self.mirrored.ask(
                    lambda index: _sampler(self.study, self.space, index), self.space, self.tune.trials
                )
            )
            self.clock["optuna"] += time.perf_counter() - begun
            if trial is None:
                return
            self.evaluate(trial.number, trial.params)

    def trial_rows(self) -> tuple[list[dict[str, Any]], list[Any]]:
        """``tuning.json``'s trials (those a reservation superseded left out), and every stored trial."""
        from optuna.trial import TrialState

        rows = []
        stored = self.mirrored.stored_trials()
        for frozen in [t for t in stored if not superseded(t)]:
            point = {k: _rounded(v) for k, v in frozen.params.items()}
            rows.append(
                {
                    "number": frozen.number,
                    "state": frozen.state.name,
                    "params": point,
                    "value": frozen.value if frozen.state != TrialState.PRUNED else None,
                    "pruned_after": pruned_after(self.trial_records(point))
                    if frozen.state == TrialState.PRUNED
                    else None,
                    "runs": [s.run_id for s in trial_specs(self.suite, self.study, point)],
                    "seconds": (frozen.datetime_complete - frozen.datetime_start).total_seconds()
                    if frozen.datetime_complete and frozen.datetime_start
                    else None,
                }
            )
        return rows, stored

    def best(self, trials: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The best complete trial (ties, equal values: the lowest trial number, the same for every driver of a shared
        study), with a note where it sits on its range's edge."""
        complete = [t for t in trials if t["state"] == "COMPLETE" and t["value"] is not None]
        if not complete:
            return None
        sign = 1.0 if MAXIMISE[self.tune.objective] else -1.0
        best = max(complete, key=lambda t: (sign * t["value"], -t["number"]))
        self.notes += tie_notes(complete, best, self.resolution(best), self.tune.objective)
        for name, side in on_edge(self.space, best["params"]).items():
            self.notes.append(
                f"{name}: the chosen {best['params'][name]:g} sits on the {side} edge of its searched range "
                f"({self.space[name].low:g} to {self.space[name].high:g}): the best strength may lie beyond it"
            )
        return best

    def resolution(self, trial: dict[str, Any]) -> Resolution | None:
        """How finely the validation split tells trials apart at ``trial``'s value: one binomial standard error of
        the objective (None where the trial's records do not say their split's size)."""
        records = [r for r in self.trial_records(trial["params"]) if r is not None and r.evaluated_on is not None]
        sizes = [r.evaluated_on.samples for r in records if r.evaluated_on is not None and r.evaluated_on.samples]
        if not sizes:
            return None
        return Resolution.of(float(trial["value"]), list(sizes[0]), len(records), self.tune.objective)

    def protocol(self) -> dict[str, Any]:
        tune = self.tune
        protocol: dict[str, Any] = {"kind": "validation", "fraction": tune.fraction, "seeds": self.study.seeds}
        if tune.scenario is not None:
            protocol = {**protocol, "kind": "scenario", "scenario": self.study.trial_scenario.display_name}
        if tune.first_tasks is not None:
            protocol = {**protocol, "first_tasks": tune.first_tasks}
        return protocol

    def summary(self) -> dict[str, Any]:
        """The study for ``tuning.json``: protocol, sampler, budget, search space, trials, choice and overhead."""
        import optuna

        tune, study, space = self.tune, self.study, self.space
        trials, stored = self.trial_rows()
        best = self.best(trials)
        return {
            "scenario": study.scenario.display_name,
            "strategy": study.strategy.display_name,
            "protocol": self.protocol(),
            "objective": tune.objective,
            "goal": "max" if MAXIMISE[tune.objective] else "min",
            "sampler": sampler_kind(tune),
            "sampler_description": sampler_description(tune),
            "seed": tune.seed,
            "study_seed": study_seed(study),
            "budget": tune.trials,
            "study": study.name,
            "pruning": {
                "rule": tune.pruning,
                "startup": tune.pruning_startup,
                "points": tune.pruning_points,
                "pruned": sum(t["state"] == "PRUNED" for t in trials),
            },
            # trials another driver's reservation made this one draw again (--storage shared): never run, not counted
            "superseded": sum(superseded(t) for t in stored),
            "search_space": {name: repr(dist) for name, dist in space.items()},
            "search_range": {
                name: [dist.low, dist.high]
                for name, dist in space.items()
                if isinstance(dist, optuna.distributions.FloatDistribution)
            },
            "notes": self.notes,
            "chosen": None if best is None else best["params"],
            "chosen_on_edge": {} if best is None else on_edge(space, best["params"]),
            "chosen_trial": None if best is None else best["number"],
            "chosen_value": None if best is None else best["value"],
            "trials": trials,
            # this invocation's time in Optuna and its storage against its time in the trials' runs
            "overhead": {
                "optuna_seconds": round(self.clock["optuna"], 4),
                "run_seconds": round(self.clock["runs"], 4),
            },
        }


def naive_references(suite: SuiteConfig, studies: list[Study]) -> list[RunSpec]:
    """One naive run per scenario, tuning seed and held-out fraction of the studies: the reference point of the
    trials' frontiers (the report compares methods at naive's plasticity minus 1, 2 and 5 points)."""
    wanted = dict.fromkeys(
        (s.trial_scenario.display_name, seed, s.tune.fraction, s.tune.first_tasks) for s in studies for seed in s.seeds
    )
    scenarios = {s.display_name: s for s in suite.scenarios}
    return [
        RunSpec(
            suite.name,
            scenarios[name],
            ComponentSpec(name="naive"),
            seed,
            suite.training,
            suite.device,
            fraction,
            first,
        )
        for name, seed, fraction, first in wanted
    ]


def ensure_calibration(
    suite: SuiteConfig, studies: list[Study], out: Path, run_batch: RunBatch
) -> dict[str, Any] | None:
    """``OUT/calibration.json``, with probes run first for every ``auto`` param it does not cover yet with the
    study's objective (an entry of another objective, or written before calibration bracketed the objective's
    peak, is calibrated again: its probes' records are read back, only extensions train)."""
    calibrated = calibrate_run.read_calibration(out)

    def covered(study: Study, name: str) -> bool:
        return any(
            (e.get("scenario"), e.get("strategy"), e.get("param"), e.get("objective"))
            == (study.trial_scenario.display_name, study.strategy.display_name, name, study.tune.objective)
            for e in (calibrated or {}).get("entries", [])
        )

    missing = [s for s in studies for name, how in s.tune.params.items() if how == "auto" and not covered(s, name)]
    if not missing:
        return calibrated
    result: dict[str, Any] | None = None
    for objective in dict.fromkeys(s.tune.objective for s in missing):  # one calibration per objective
        mine = [s for s in missing if s.tune.objective == objective]
        entries = list(dict.fromkeys(s.strategy.display_name for s in mine))
        strategies = [e.model_copy(update={"tune": None}) for e in suite.strategies if e.display_name in entries]
        scenarios = list({s.trial_scenario.display_name: s.trial_scenario for s in mine}.values())
        sub = suite.model_copy(update={"strategies": strategies, "scenarios": scenarios})
        first = mine[0].tune
        plan = calibrate_run.plan_calibration(sub, mine[0].seeds[0], first.decades, first.fraction)
        result, _ = calibrate_run.calibrate(plan, Path(out) / calibrate_run.CALIBRATION_DIR, run_batch, objective)
        if calibrated:  # keep what an earlier calibration found for other entries
            keys = {(e["scenario"], e["strategy"], e["param"], e["objective"]) for e in result["entries"]}
            result["entries"] = [
                e
                for e in calibrated.get("entries", [])
                if (e.get("scenario"), e.get("strategy"), e.get("param"), e.get("objective")) not in keys
                and "objective" in e
            ] + result["entries"]
        store.atomic_write_json(Path(out) / calibrate_run.CALIBRATION_FILE, result)
        calibrated = result
    return result


def final_points(study: Study, chosen: dict[str, Any]) -> list[dict[str, Any]]:
    """The points the suite's seeds run at: the chosen one, then its neighbours along the strength
    (``tune.neighbours`` multiples of the strategy's declared strength, where it is tuned) that the params accept;
    the neighbours give each method a front on the test split."""
    points = [chosen]
    tuned = [p for p in strength_params(STRATEGIES.get(study.strategy.name).params) if p in chosen]
    if not tuned or not isinstance(chosen[tuned[0]], (int, float)) or isinstance(chosen[tuned[0]], bool):
        return points
    param = tuned[0]
    for factor in study.tune.neighbours:
        point = {**chosen, param: _rounded(float(chosen[param]) * factor)}
        if point in points:
            continue
        try:
            strategy_variant(study.strategy.model_copy(update={"tune": None}), point)
        except ValueError:  # pydantic's ValidationError: a multiple the params refuse is not run
            continue
        points.append(point)
    return points


def final_specs(suite: SuiteConfig, study: Study, summary: dict[str, Any], seeds: list[int] | None) -> list[RunSpec]:
    """The suite's seeds at the chosen point, then at its neighbours (:func:`final_points`), on the test split (empty
    when no trial finished)."""
    if summary["chosen"] is None:
        return []
    entry = study.strategy.model_copy(update={"tune": None})
    return [
        RunSpec(suite.name, study.scenario, strategy_variant(entry, point), seed, suite.training, suite.device)
        for point in final_points(study, summary["chosen"])
        for seed in (seeds if seeds is not None else suite.seeds)
    ]
