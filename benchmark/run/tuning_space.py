"""A tuning study and the space it searches: the study (one scenario and strategy entry with ``tune:``), its
search space (calibrated, a range or choices), its samplers (grid, a scrambled quasi-random design, TPE) and the
rounding of the points it suggests."""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from forgetbench.benchmark.core.config import (
    ComponentSpec,
    StrategySpec,
    TuneChoices,
    TuneRange,
    TuneSpec,
)
from forgetbench.benchmark.run import calibrate as calibrate_run


class NothingLearned(ValueError):
    """The calibration behind an ``auto`` range learned nothing at any strength: the study stops (one line saying
    what to check) instead of searching a range around no peak."""


MAXIMISE = {"ACC": True, "LA": True, "BWT": True, "forgetting": False}


SIGNIFICANT = 4  # a suggested number is rounded to this many significant digits (labels stay short)


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


def rounded(value: Any) -> Any:
    if isinstance(value, float) and math.isfinite(value) and value != 0:
        return float(f"{value:.{SIGNIFICANT}g}")
    return value


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
            low, high = rounded(found[0] / math.sqrt(10)), rounded(found[1] * math.sqrt(10))
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
            axes.append([(name, rounded(float(v))) for v in spaced(dist.low, dist.high, study.tune.trials)])
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


def sampler_of(study: Study, space: dict[str, Any], number: int):
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
