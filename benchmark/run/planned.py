"""Every run a suite will execute, by phase, before it runs: what the progress bar counts and what
:mod:`forgetbench.benchmark.run.estimate` times (no training here: plans only)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from forgetbench.benchmark.core.config import SuiteConfig
from forgetbench.benchmark.run import calibrate as calibrate_run
from forgetbench.benchmark.run import tuning
from forgetbench.benchmark.run.spec import RunSpec, expand_suite


def planned_runs(suite: SuiteConfig, out: Path, seeds: list[int] | None = None) -> dict[str, list[RunSpec]]:
    """Phase -> the runs it plans (the rounds' at most), in the order the suite runs them."""
    seeds = seeds or suite.seeds
    phases: dict[str, list[RunSpec]] = {"runs": expand_suite(suite, seeds)}
    studies = tuning.plan_tuning(suite)
    if studies:
        calibrated = calibrate_run.read_calibration(out)
        probes: list[RunSpec] = []
        for study in studies:
            for name, how in study.tune.params.items():
                if (
                    how == "auto"
                    and calibrate_run.calibration_entry(
                        calibrated,
                        study.trial_scenario.display_name,
                        study.strategy.display_name,
                        name,
                        study.tune.objective,
                    )
                    is None
                ):
                    sub = suite.model_copy(
                        update={
                            "strategies": [study.strategy.model_copy(update={"tune": None})],
                            "scenarios": [study.trial_scenario],
                        }
                    )
                    plan = calibrate_run.plan_calibration(sub, study.seeds[0], study.tune.decades, study.tune.fraction)
                    probes += plan.specs
        phases["calibration probes"] = list({s.run_id: s for s in probes}.values())
        phases["naive references"] = tuning.naive_references(suite, studies)
        trial_specs: list[RunSpec] = []
        finals: list[RunSpec] = []
        for study in studies:
            entry = study.strategy.model_copy(update={"tune": None})
            for _ in range(study.tune.trials):  # a trial's point is drawn when it runs: its cost is the entry's
                trial_specs += [
                    RunSpec(
                        suite.name,
                        study.trial_scenario,
                        entry,
                        s,
                        suite.training,
                        suite.device,
                        study.tune.fraction,
                        study.tune.first_tasks,
                    )
                    for s in study.seeds
                ]
            finals += [
                RunSpec(suite.name, study.scenario, entry, s, suite.training, suite.device)
                for s in seeds
                for _ in range(1 + len(study.tune.neighbours))
            ]
        phases["tuning trials"] = trial_specs
        phases["final runs"] = finals
    if suite.until_decided is not None:
        extra = max(0, suite.until_decided.max - len(seeds))
        base = phases["runs"] + phases.get("final runs", [])
        groups = list({(s.scenario.display_name, s.strategy.display_name): s for s in base}.values())
        phases["rounds"] = [dataclasses.replace(spec, seed=-1) for spec in groups for _ in range(extra)]
    return phases
