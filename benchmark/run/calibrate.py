"""``forgetbench calibrate``: probe every strategy's strength over decades, on held-out training data.

For each scenario of a suite and each strategy entry whose params declare a strength
(:func:`forgetbench.strategies.base.strength`: ewc_lambda, si_lambda, wpl's alpha, ...), one run per value of
a ladder of decades around the entry's own value (``value x 10^k``, k = -decades..decades), and one naive run
per scenario, all on one seed and on a validation split held out from each task's training data (the test
split is never read, as in ``selection:``). Each probe is judged by :mod:`forgetbench.benchmark.core.calibration`:
does its penalty act (penalty-to-data gradient ratio >= 0.05), does it crush learning (LA more than 5 points
below naive's, ratio > 20, or a run that is not ``ok``)? The range between the lowest and the highest strength
that acts without crushing is written to ``OUT/calibration.json``, where tuning reads its default search range;
the probes' records are ordinary result files under ``OUT/calibration/runs/`` (a rerun resumes them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from forgetbench.benchmark.core import calibration, store
from forgetbench.benchmark.core.config import (
    ComponentSpec,
    ConfigError,
    StrategySpec,
    SuiteConfig,
    refused_pairs,
    strategy_variant,
)
from forgetbench.benchmark.core.grid import grid_axes
from forgetbench.benchmark.core.metrics import run_metrics
from forgetbench.benchmark.core.record import RunRecord
from forgetbench.benchmark.core.registries import STRATEGIES
from forgetbench.benchmark.core.registry import strength_params
from forgetbench.benchmark.run.spec import RunSpec

CALIBRATION_DIR = store.CALIBRATION_DIR
CALIBRATION_FILE = "calibration.json"


@dataclass
class Ladder:
    """The probes of one strength of one strategy entry on one scenario."""

    scenario: ComponentSpec
    strategy: StrategySpec
    param: str
    centre: float
    specs: list[tuple[float, RunSpec]]  # (strength, probe)


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
            if (scenario.display_name, entry.display_name) in refused:
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
                base_entry = entry.model_copy(update={"params": base})
                specs = []
                for value in calibration.ladder(centre, decades):
                    try:
                        variant = strategy_variant(base_entry, {param: value})
                    except ValidationError as exc:
                        raise ConfigError(
                            f"strategies[{entry.display_name}].params.{param}: {value:g} is refused "
                            f"({exc.errors()[0]['msg']})"
                        ) from None
                    specs.append(
                        (value, RunSpec(suite.name, scenario, variant, seed, suite.training, suite.device, fraction))
                    )
                ladders.append(Ladder(scenario, entry, param, centre, specs))
    return Plan(naive, ladders, without)


def probe(record: RunRecord | None, value: float) -> calibration.Probe:
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
    )


def decide(plan: Plan, records: dict[str, RunRecord | None]) -> dict[str, Any]:
    """The JSON of ``calibration.json`` from the probes' records (by run id)."""
    entries = []
    for ladder in plan.ladders:
        base = plan.naive[ladder.scenario.display_name]
        naive = probe(records.get(base.run_id), 0.0)
        probes = [probe(records.get(spec.run_id), value) for value, spec in ladder.specs]
        found = calibration.acting_range(probes, naive)
        entries.append(
            {
                "scenario": ladder.scenario.display_name,
                "strategy": ladder.strategy.display_name,
                "name": ladder.strategy.name,
                "param": ladder.param,
                "centre": ladder.centre,
                "range": list(found) if found else None,
                "verdict": calibration.range_verdict(probes, naive),
                "naive": naive.as_dict() | {"run_id": base.run_id},
                "probes": [
                    p.as_dict()
                    | {
                        "run_id": spec.run_id,
                        "acts": calibration.acts(p, naive),
                        "crushes": calibration.crushes(p, naive),
                    }
                    for p, (_, spec) in zip(probes, ladder.specs)
                ],
            }
        )
    first = next(iter(plan.naive.values()), None)
    return {
        "criteria": {
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
        return json.loads((Path(out) / CALIBRATION_FILE).read_text())
    except (OSError, ValueError):
        return None


def calibrated_range(
    calibration_json: dict[str, Any] | None, scenario: str, strategy: str, param: str
) -> tuple[float, float] | None:
    """The calibrated ``(low, high)`` of ``param`` for a strategy entry on a scenario (labels), if any."""
    for entry in (calibration_json or {}).get("entries", []):
        if (entry.get("scenario"), entry.get("strategy"), entry.get("param")) == (scenario, strategy, param):
            found = entry.get("range")
            return (float(found[0]), float(found[1])) if found else None
    return None


def format_calibration(result: dict[str, Any]) -> str:
    """The table ``forgetbench calibrate`` prints: one line per probe, one verdict per ladder."""

    def points(value: float | None) -> str:  # None: a run that did not finish has no figure
        return "    -" if value is None else f"{100 * value:5.1f}"

    lines = []
    for entry in result["entries"]:
        naive = entry["naive"]
        lines.append(
            f"{entry['scenario']} / {entry['strategy']}.{entry['param']} (naive: LA {points(naive['la']).strip()}, "
            f"forgetting {points(naive['forgetting']).strip()}): {entry['verdict']}"
        )
        for p in entry["probes"]:
            ratio = "-" if p["ratio"] is None else f"{p['ratio']:.3g}"
            mark = "crushes" if p["crushes"] else ("acts" if p["acts"] else "inert")
            lines.append(
                f"  {p['value']:>10g}  {p['status']:<9} ratio {ratio:>8}  LA {points(p['la'])}  "
                f"forgetting {points(p['forgetting'])}  {mark}"
            )
    if result["without_strength"]:
        lines.append(f"no strength declared, not probed: {', '.join(result['without_strength'])}")
    return "\n".join(lines)
