"""Per-step training cost of the isolation strategies against naive (seconds per iteration): each strategy runs
two experiences of Split ``--dataset`` (MLP 256-256, batch 128) through the normal runner, each turn capped at
``steps`` iterations; ExSSNeT's steps count both of its phases. The machine's load shows in these numbers:
compare ratios.

    forgetbench perf --only isolation_step_cost [--set steps=60] [--set strategies=[naive,supsup]]
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from forgetbench.benchmark.perf.measurements import Measurement, register


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: PositiveInt = 60  # iterations a turn
    strategies: list[str] = Field(default_factory=lambda: ["naive", "supsup", "exssnet", "pic"], min_length=1)


def run(opts: Any, params: Params, data: Any) -> dict[str, Any]:
    from forgetbench.benchmark.core.config import ComponentSpec
    from forgetbench.benchmark.core.training import TrainingConfig
    from forgetbench.benchmark.run.runner import RunSpec, run as run_one

    training = TrainingConfig(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=128, epochs=1, eval_batch_size=2000)
    scenario = ComponentSpec(
        name="split",
        params={
            "dataset": opts.dataset,
            "tasks": 2,
            "classes_per_task": 2,
            "widths": [256, 256],
            "max_train_per_task": params.steps * training.batch_size,
        },
    )
    rows = {}
    for name in dict.fromkeys(["naive", *params.strategies]):
        record = run_one(RunSpec("cost", scenario, ComponentSpec(name=name), 0, training, "cpu"), opts.data_root)
        if record.status != "ok":
            raise RuntimeError(f"isolation_step_cost: {name} {record.status}: {record.error}")
        rows[name] = {"steps": record.timing.steps, "step_seconds": record.timing.train_seconds / record.timing.steps}
    for row in rows.values():
        row["vs_naive"] = row["step_seconds"] / rows["naive"]["step_seconds"]
    return rows


def lines(result: dict[str, Any]) -> list[str]:
    out = [f"{'strategy':10s} {'steps':>6s} {'ms/step':>8s} {'x naive':>8s}"]
    for name, r in result.items():
        out.append(f"{name:10s} {r['steps']:6d} {1000 * r['step_seconds']:8.2f} {r['vs_naive']:8.2f}")
    return out


register(
    Measurement(
        "isolation_step_cost", "seconds per step of the isolation strategies over naive's", Params, run, lines, True
    )
)
