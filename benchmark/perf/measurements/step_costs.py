"""Per-step cost over naive of any registered strategies, on perf's MLP Split stream: the ``step_overhead``
section's measurement (same workload, rotation and medians) with the strategies named instead of perf's rows.
For families perf does not list (supsup, exssnet, replay, spg, pic), a plug-in's strategy at the params it is
used with, and the before-figures of a change. An entry is a name (default params) or ``{name, params, label}``:

    forgetbench perf --only step_costs --set strategies=[naive,ewc,si,wpl] --repeats 9
    forgetbench --import mystrats perf --only step_costs --set 'strategies=[{name: rwalk_like, params: {lam: 3}}]'
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from forgetbench.benchmark.perf.measurements import Measurement, register


class Entry(BaseModel):
    """One strategy to measure: its registered name, its params (validated by its own model) and its row's label."""

    model_config = ConfigDict(extra="forbid")

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    label: str | None = None

    @model_validator(mode="after")
    def _registered(self) -> "Entry":
        from forgetbench.strategies import STRATEGIES

        if self.name not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.name}; allowed: {', '.join(STRATEGIES.names())}")
        STRATEGIES.get(self.name).parse_params(self.params)  # a wrong key or value names the field
        return self

    def case(self) -> tuple[str, str, dict[str, Any]]:
        params = ",".join(f"{k}={v}" for k, v in self.params.items())
        return self.label or (f"{self.name}[{params}]" if params else self.name), self.name, self.params


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    strategies: list[Entry] = Field(  # naive is measured first in any case
        default_factory=lambda: [Entry(name=n) for n in ("naive", "ewc", "si", "wpl")], min_length=1
    )

    @field_validator("strategies", mode="before")
    @classmethod
    def _names_are_entries(cls, items: Any) -> Any:
        return (
            [{"name": item} if isinstance(item, str) else item for item in items] if isinstance(items, list) else items
        )


def run(opts: Any, params: Params, data: Any) -> dict[str, Any]:
    from forgetbench.benchmark.perf.measurements.step_overhead import step_overhead

    overhead, importance = step_overhead(opts, data, [entry.case() for entry in params.strategies])
    return {
        "naive_step_seconds": overhead["naive_step_seconds"],
        "repeats": opts.repeats,
        "strategies": {
            name: {"ratio": overhead[name]["ratio"], "importance_vs_epoch": importance[name]}
            for name in overhead
            if name not in ("naive_step_seconds", "model", "naive_step_seconds_all")
        },
    }


def lines(result: dict[str, Any]) -> list[str]:
    out = [f"naive {result['naive_step_seconds'] * 1e3:.3f} ms/step, {result['repeats']} repeats (medians)"]
    for name, r in result["strategies"].items():
        out.append(
            f"{name:<10} step {r['ratio']:.3f} x naive, after-experience work {r['importance_vs_epoch']:.3f} of an epoch"
        )
    return out


register(Measurement("step_costs", "per-step cost over naive of the strategies named", Params, run, lines, True))
