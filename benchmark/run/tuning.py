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
3. *final*: the suite's seeds run with the best trial's point among those whose penalty acts (an inert trial's
   objective is naive's plus noise; where none acts the best is taken and ``tuning.json`` says so) on the train/test data, labelled with its values
   (``ewc[ewc_lambda=1234]``); ``OUT/tuning.json`` records every trial, the choice and the protocol.

The study is stored in ``OUT/tuning/study.db`` (SQLite) unless ``storage`` names another database Optuna
supports (several machines then share one study, one study per (scenario, entry) named after them).
"""

from __future__ import annotations

import contextlib
import logging
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Literal


from forgetbench.benchmark.core import calibration, store
from forgetbench.benchmark.core.config import (
    ComponentSpec,
    SuiteConfig,
    refused_pairs,
    runs_on,
    strategy_variant,
)
from forgetbench.benchmark.core.metrics import running_metric
from forgetbench.benchmark.core.record import RunRecord
from forgetbench.benchmark.core.components import STRATEGIES
from forgetbench.benchmark.core.registry import strength_params
from forgetbench.benchmark.run import calibrate as calibrate_run
from forgetbench.benchmark.run.spec import PruneRule, RunSpec
from forgetbench.benchmark.run.tuning_space import (
    MAXIMISE,
    Study,
    trial_seeds,
    rounded,
    search_space,
    study_seed,
    sampler_kind,
    sampler_description,
    sampler_of,
    on_edge,
)
from forgetbench.benchmark.run.study_store import (
    DRIVER,
    LEASE_SECONDS,
    WAIT_POLL_SECONDS,
    superseded,
    held_elsewhere,
    MirroredStudy,
)
from forgetbench.benchmark.run.trial_stats import (
    PRUNING_SHARE,
    PRUNING_BOUND,
    pruning_bounds,
    inside_bounds,
    pruned_after,
    objective,
    Resolution,
    tie_notes,
    point_text,
)

TUNING_DIR = (
    store.ResultFolder.TUNING
)  # OUT/tuning/runs/<run_id>/result.json: the trials' runs; OUT/tuning/study.db: the study
TUNING_FILE = store.ResultFolder.TUNING_FILE

RunBatch = Callable[[list[tuple[Path, RunSpec]]], None]


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
                    for r in self.trial_records({k: rounded(v) for k, v in t.params.items()})
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
        point = {k: rounded(v) for k, v in params.items()}
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
                    f"trial {trial.number} ({point_text(trial.params)}) was marked failed: its driver {driver} is "
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
                        f"({point_text(trial.params)}), run by driver {trial.system_attrs.get(DRIVER)} since {since}, "
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
                    lambda index: sampler_of(self.study, self.space, index), self.space, self.tune.trials
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
            point = {k: rounded(v) for k, v in frozen.params.items()}
            records = self.trial_records(point)  # read once: its pruning and its penalty ratio
            rows.append(
                {
                    "number": frozen.number,
                    "state": frozen.state.name,
                    "params": point,
                    "value": frozen.value if frozen.state != TrialState.PRUNED else None,
                    "pruned_after": pruned_after(records) if frozen.state == TrialState.PRUNED else None,
                    "runs": [s.run_id for s in trial_specs(self.suite, self.study, point)],
                    "penalty_ratio": penalty_ratio(records),
                    "seconds": (frozen.datetime_complete - frozen.datetime_start).total_seconds()
                    if frozen.datetime_complete and frozen.datetime_start
                    else None,
                }
            )
        return rows, stored

    def acting(self, complete: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The complete trials whose penalty acts (ratio at least calibration's ACTS; a strategy that records no
        ratio cannot be judged and keeps every trial): an inert trial trains as naive does, its objective naive's
        plus noise, so it is never chosen while one acts. Notes say which were left out, or that none acts."""
        inert = [t for t in complete if t.get("penalty_ratio") is not None and t["penalty_ratio"] < calibration.ACTS]
        if not inert:
            return complete
        if len(inert) == len(complete):
            largest = max(t["penalty_ratio"] for t in inert)
            self.notes.append(
                f"no trial's penalty acts (largest penalty ratio {largest:.3g} < {calibration.ACTS:g}): the best "
                "objective was chosen, a strength that trains as naive does; search stronger strengths"
            )
            return complete
        self.notes.append(
            f"inert, never chosen (penalty ratio below {calibration.ACTS:g}): "
            + ", ".join(
                f"trial {t['number']} ({point_text(t['params'])}, ratio {t['penalty_ratio']:.3g})" for t in inert
            )
        )
        return [t for t in complete if t not in inert]

    def best(self, trials: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The best complete trial among those whose penalty acts (:meth:`acting`; ties, equal values: the lowest
        trial number, the same for every driver of a shared study), with a note where it sits on its range's edge."""
        complete = [t for t in trials if t["state"] == "COMPLETE" and t["value"] is not None]
        if not complete:
            return None
        complete = self.acting(complete)
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


def penalty_ratio(records: list[RunRecord | None]) -> float | None:
    """A trial's penalty-to-data gradient ratio: the median over its seeds of each record's median
    (:func:`~forgetbench.benchmark.core.calibration.median_ratio`); None where its records carry none."""
    ratios = [calibration.median_ratio(r.model_extra or {}) for r in records if r is not None]
    found = [r for r in ratios if r is not None]
    return statistics.median(found) if found else None


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
    for metric in dict.fromkeys(s.tune.objective for s in missing):  # one calibration per objective
        mine = [s for s in missing if s.tune.objective == metric]
        entries = list(dict.fromkeys(s.strategy.display_name for s in mine))
        strategies = [e.model_copy(update={"tune": None}) for e in suite.strategies if e.display_name in entries]
        scenarios = list({s.trial_scenario.display_name: s.trial_scenario for s in mine}.values())
        sub = suite.model_copy(update={"strategies": strategies, "scenarios": scenarios})
        first = mine[0].tune
        plan = calibrate_run.plan_calibration(sub, mine[0].seeds[0], first.decades, first.fraction)
        result, _ = calibrate_run.calibrate(plan, Path(out) / calibrate_run.CALIBRATION_DIR, run_batch, metric)
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
        point = {**chosen, param: rounded(float(chosen[param]) * factor)}
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
    first_round = 0 if suite.until_decided is not None else None  # the rounds' first seeds are round 0
    return [
        RunSpec(
            suite.name,
            study.scenario,
            strategy_variant(entry, point),
            seed,
            suite.training,
            suite.device,
            round=first_round,
        )
        for point in final_points(study, summary["chosen"])
        for seed in (seeds if seeds is not None else suite.seeds)
    ]
