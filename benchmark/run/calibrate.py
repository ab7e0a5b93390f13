"""``forgetbench calibrate``: probe every strategy's strength over decades, on held-out training data, until the
objective tuning maximises has peaked.

For each scenario of a suite and each strategy entry whose params declare a strength
(:func:`forgetbench.strategies.base.strength`: ewc_lambda, si_lambda, wpl's alpha, ...), one run per value of
a ladder of decades around the entry's own value (``value x 10^k``, k = -decades..decades), and one naive run
per scenario, all on one seed and on a validation split held out from each task's training data (the test
split is never read). Where a ladder's best probe (by the objective: ACC unless tuning says otherwise) is at its
end, the ladder extends a decade on that side, and again, until the peak is bracketed or the cap is reached
(:func:`forgetbench.benchmark.core.calibration.bracket`); each wave of extensions runs as one batch. The bracket
(the best probe's neighbours) is written to ``OUT/calibration.json``, where tuning reads its default search range,
with each probe's objective and its diagnostics (does its penalty act, does it crush learning); the probes'
records are ordinary result files under ``OUT/calibration/runs/`` (a rerun resumes them, extensions included).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from forgetbench.benchmark.core import calibration, store
from forgetbench.benchmark.core.config import (
    ComponentSpec,
    ConfigError,
    StrategySpec,
    SuiteConfig,
    refused_pairs,
    runs_on,
    strategy_variant,
)
from forgetbench.benchmark.core.grid import grid_axes
from forgetbench.benchmark.core.metrics import run_metrics
from forgetbench.benchmark.core.record import RunRecord
from forgetbench.benchmark.core.components import STRATEGIES
from forgetbench.benchmark.core.registry import strength_params
from forgetbench.benchmark.run.spec import RunSpec

CALIBRATION_DIR = store.CALIBRATION_DIR
CALIBRATION_FILE = store.ResultFolder.CALIBRATION_FILE
OBJECTIVES = {"ACC": True, "LA": True, "BWT": True, "forgetting": False}  # objective -> maximised
RunBatch = Callable[[list[tuple[Path, RunSpec]]], None]


@dataclass
class Ladder:
    """The probes of one strength of one strategy entry on one scenario; ``cap``: the lowest and highest strength
    it may extend to (:data:`~forgetbench.benchmark.core.calibration.MAX_EXTENSION` decades beyond its first span)."""

    scenario: ComponentSpec
    strategy: StrategySpec
    param: str
    centre: float
    specs: list[tuple[float, RunSpec]]  # (strength, probe), in the order they were added
    cap: tuple[float, float]
    base: StrategySpec  # the entry without its strength: each probe is a variant of it
    suite: SuiteConfig
    seed: int
    fraction: float
    initial: int = 0  # probes of the first span; the others extended it

    def spec_at(self, value: float) -> RunSpec:
        try:
            variant = strategy_variant(self.base, {self.param: value})
        except ValidationError as exc:
            raise ConfigError(
                f"strategies[{self.strategy.display_name}].params.{self.param}: {value:g} is refused "
                f"({exc.errors()[0]['msg']})"
            ) from None
        suite = self.suite
        return RunSpec(suite.name, self.scenario, variant, self.seed, suite.training, suite.device, self.fraction)

    def add(self, value: float) -> RunSpec | None:
        """Probe ``value`` too (None when it is refused by the params' bounds: the ladder cannot go there)."""
        try:
            spec = self.spec_at(value)
        except ConfigError:
            return None
        self.specs.append((value, spec))
        return spec


@dataclass
class Plan:
    naive: dict[str, RunSpec]  # scenario label -> the naive probe
    ladders: list[Ladder]
    without_strength: list[str]  # strategy entries that declare none (not probed)

    @property
    def specs(self) -> list[RunSpec]:
        return [*self.naive.values(), *(spec for ladder in self.ladders for _, spec in ladder.specs)]


def _centre(entry: StrategySpec, param: str) -> float:
    given = entry.params.get(param)
    if isinstance(given, (int, float)) and not isinstance(given, bool):
        return float(given)
    default = STRATEGIES.get(entry.name).params.model_fields[param].default
    return float(default) if isinstance(default, (int, float)) and not isinstance(default, bool) else 1.0


def plan_calibration(suite: SuiteConfig, seed: int, decades: int, fraction: float) -> Plan:
    """Every probe of the suite (raises :class:`ConfigError` for an entry calibrate cannot probe)."""
    if not 0 < fraction < 1:
        raise ConfigError(f"--fraction: the share of each task's training data held out, in (0, 1); got {fraction}")
    if not 1 <= decades <= 6:
        raise ConfigError(f"--decades: probes span 10^-N to 10^N times each strength, N in 1..6; got {decades}")
    refused = refused_pairs(suite)
    naive, ladders, without = {}, [], []
    for entry in suite.strategies:
        if not strength_params(STRATEGIES.get(entry.name).params):
            without.append(entry.display_name)
    for scenario in suite.scenarios:
        naive[scenario.display_name] = RunSpec(
            suite.name, scenario, ComponentSpec(name="naive"), seed, suite.training, suite.device, fraction
        )
        for entry in suite.strategies:
            if not runs_on(scenario, entry, refused):
                continue
            params_model = STRATEGIES.get(entry.name).params
            for param in strength_params(params_model):
                base = {k: v for k, v in entry.params.items() if k != param}
                others = grid_axes(params_model, base)
                if others:
                    raise ConfigError(
                        f"strategies[{entry.display_name}].params.{next(iter(others))}: calibrate "
                        "probes one setting of the other params; give it one value, not a grid"
                    )
                centre = _centre(entry, param)
                widest = calibration.ladder(centre, decades + calibration.MAX_EXTENSION)
                ladder = Ladder(
                    scenario,
                    entry,
                    param,
                    centre,
                    [],
                    (widest[0], widest[-1]),
                    entry.model_copy(update={"params": base}),
                    suite,
                    seed,
                    fraction,
                )
                for value in calibration.ladder(centre, decades):
                    ladder.specs.append((value, ladder.spec_at(value)))  # the first span must be valid
                ladder.initial = len(ladder.specs)
                ladders.append(ladder)
    return Plan(naive, ladders, without)


def probe(record: RunRecord | None, value: float, objective: str = "ACC") -> calibration.Probe:
    """A probe's figures from its record (a missing or unreadable record counts as a failed run)."""
    if record is None:
        return calibration.Probe(value, "missing", None, float("nan"), float("nan"))
    metrics = run_metrics(record)
    return calibration.Probe(
        value,
        record.status,
        calibration.median_ratio(record.model_extra or {}),
        float(metrics["LA"]),
        float(metrics["forgetting"]),
        float(metrics.get(objective, float("nan"))),
    )


def _ladder_bracket(
    plan: Plan, ladder: Ladder, records: dict[str, RunRecord | None], objective: str
) -> tuple[calibration.Probe, list[calibration.Probe], calibration.Bracket]:
    base = plan.naive[ladder.scenario.display_name]
    naive = probe(records.get(base.run_id), 0.0, objective)
    probes = [probe(records.get(spec.run_id), value, objective) for value, spec in ladder.specs]
    return naive, probes, calibration.bracket(probes, naive, ladder.cap, OBJECTIVES[objective])


def calibrate(
    plan: Plan, folder: Path, run_batch: RunBatch, objective: str = "ACC"
) -> tuple[dict[str, Any], dict[str, RunRecord | None]]:
    """Run the plan's probes and extend each ladder until its peak is bracketed (module doc); the JSON of
    ``calibration.json`` and the probes' records. A rerun reads every probe back, extensions included, and takes
    the same decisions."""
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective: {objective!r}; allowed: {', '.join(OBJECTIVES)}")
    wave = plan.specs
    records: dict[str, RunRecord | None] = {}
    while wave:
        run_batch([(folder, spec) for spec in wave])
        records.update({spec.run_id: store.ResultFolder(folder).read(spec.run_id) for spec in wave})
        wave = []
        for ladder in plan.ladders:
            for value in _ladder_bracket(plan, ladder, records, objective)[2].extend:
                added = ladder.add(value)
                if added is not None:
                    wave.append(added)
                else:  # the params refuse it: the cap is the params' bound
                    ladder.cap = (value * 10, ladder.cap[1]) if value < ladder.centre else (ladder.cap[0], value / 10)
    return decide(plan, records, objective), records


def decide(plan: Plan, records: dict[str, RunRecord | None], objective: str = "ACC") -> dict[str, Any]:
    """The JSON of ``calibration.json`` from the probes' records (by run id)."""
    entries = []
    for ladder in plan.ladders:
        naive, probes, found = _ladder_bracket(plan, ladder, records, objective)
        order = sorted(range(len(probes)), key=lambda i: probes[i].value)
        learned = not calibration.nothing_learned(probes, naive)
        fallback = calibration.acting_range(probes, naive) if found.best is None else None
        searched = (found.range or fallback) if learned else None
        entries.append(
            {
                "scenario": ladder.scenario.display_name,
                "strategy": ladder.strategy.display_name,
                "name": ladder.strategy.name,
                "param": ladder.param,
                "centre": ladder.centre,
                "objective": objective,
                "range": list(searched) if searched else None,
                "best": found.best if learned else None,
                "nothing_learned": not learned,
                "bracketed": {"low": found.low_bracketed, "high": found.high_bracketed},
                "open_ends": {k: v for k, v in (("low", found.low_reason), ("high", found.high_reason)) if v},
                "extended": sorted(value for value, _ in ladder.specs[ladder.initial :]),
                "cap": list(ladder.cap),
                "verdict": calibration.bracket_verdict(found, probes, naive, objective),
                "naive": naive.as_dict() | {"run_id": plan.naive[ladder.scenario.display_name].run_id},
                "probes": [
                    probes[i].as_dict()
                    | {
                        "run_id": ladder.specs[i][1].run_id,
                        "acts": calibration.acts(probes[i], naive),
                        "crushes": calibration.crushes(probes[i], naive),
                    }
                    for i in order
                ],
            }
        )
    first = next(iter(plan.naive.values()), None)
    return {
        "criteria": {
            "objective": objective,
            "goal": "max" if OBJECTIVES[objective] else "min",
            "max_extension_decades": calibration.MAX_EXTENSION,
            "acts_ratio": calibration.ACTS,
            "crushes_ratio": calibration.CRUSHES,
            "la_drop": calibration.LA_DROP,
            "forgetting_cut": calibration.FORGETTING_CUT,
        },
        "seed": first.seed if first else None,
        "validation_fraction": first.validation_fraction if first else None,
        "without_strength": plan.without_strength,
        "entries": entries,
    }


def read_calibration(out: Path) -> dict[str, Any] | None:
    """``OUT/calibration.json`` as written by :func:`decide`, or None when there is none (or it is unreadable)."""
    import json

    try:
        return json.loads(store.ResultFolder(Path(out)).calibration_file.read_text())
    except (OSError, ValueError):
        return None


def calibration_entry(
    calibration_json: dict[str, Any] | None, scenario: str, strategy: str, param: str, objective: str = "ACC"
) -> dict[str, Any] | None:
    """The calibration of ``param`` for a strategy entry on a scenario (labels) under ``objective``, if any."""
    for entry in (calibration_json or {}).get("entries", []):
        if (entry.get("scenario"), entry.get("strategy"), entry.get("param"), entry.get("objective")) == (
            scenario,
            strategy,
            param,
            objective,
        ):
            return entry
    return None


def calibrated_range(
    calibration_json: dict[str, Any] | None, scenario: str, strategy: str, param: str, objective: str = "ACC"
) -> tuple[float, float] | None:
    """The calibrated ``(low, high)`` of ``param`` for a strategy entry on a scenario (labels), if any."""
    entry = calibration_entry(calibration_json, scenario, strategy, param, objective)
    found = (entry or {}).get("range")
    return (float(found[0]), float(found[1])) if found else None


def format_calibration(result: dict[str, Any]) -> str:
    """The table ``forgetbench calibrate`` prints: one line per probe, one verdict per ladder."""

    def points(value: float | None) -> str:  # None: a run that did not finish has no figure
        return "    -" if value is None else f"{100 * value:5.1f}"

    lines = []
    for entry in result["entries"]:
        naive = entry["naive"]
        objective = entry.get("objective", "ACC")
        lines.append(
            f"{entry['scenario']} / {entry['strategy']}.{entry['param']} (naive: {objective} "
            f"{points(naive.get('objective')).strip()}, LA {points(naive['la']).strip()}, "
            f"forgetting {points(naive['forgetting']).strip()}): {entry['verdict']}"
        )
        for p in entry["probes"]:
            ratio = "-" if p["ratio"] is None else f"{p['ratio']:.3g}"
            marks = [m for m, on in (("crushes", p["crushes"]), ("acts", p["acts"] and not p["crushes"])) if on]
            where = (
                "peak"
                if p["value"] == entry.get("best")
                else ("end" if p["value"] in (entry.get("range") or []) else "")
            )
            extended = "extended" if p["value"] in entry.get("extended", []) else ""
            lines.append(
                f"  {p['value']:>10g}  {p['status']:<9} {objective} {points(p.get('objective'))}  ratio {ratio:>8}  "
                f"LA {points(p['la'])}  forgetting {points(p['forgetting'])}  "
                + " ".join(m for m in (marks[0] if marks else "inert", where, extended) if m)
            )
    if result["without_strength"]:
        lines.append(f"no strength declared, not probed: {', '.join(result['without_strength'])}")
    return "\n".join(lines)
