"""Per-step cost over naive of any registered strategies, on perf's MLP Split stream: the ``step_overhead``
section's measurement (same workload, rotation and medians) with the strategies named instead of perf's rows.
For families perf does not list (supsup, exssnet, replay, spg, pic), and for the before-figures of a change.

    forgetbench perf --only step_costs --set strategies=[naive,ewc,si,wpl] --repeats 9
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from forgetbench.benchmark.perf.measurements import Measurement, register


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    strategies: list[str] = Field(default_factory=lambda: ["naive", "ewc", "si", "wpl"], min_length=1)  # naive first

    @field_validator("strategies")
    @classmethod
    def _registered(cls, names: list[str]) -> list[str]:
        from forgetbench.strategies import STRATEGIES

        unknown = [n for n in names if n not in STRATEGIES]
        if unknown:
            raise ValueError(f"unknown strategies {', '.join(unknown)}; allowed: {', '.join(STRATEGIES.names())}")
        return names


def run(opts: Any, params: Params, data: Any) -> dict[str, Any]:
    from forgetbench.benchmark.perf.measurements.step_overhead import step_overhead

    overhead, importance = step_overhead(opts, data, params.strategies)
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
