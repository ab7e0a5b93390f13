"""Per-step training cost of the isolation strategies against naive (seconds per iteration).

    .venv/bin/python scripts/isolation_step_cost.py [--data-root DIR] [--dataset mnist] [--steps 60]

Runs each strategy for two experiences of split <dataset> (MLP 256-256, batch 128) through the
normal runner, each turn capped at ``--steps`` iterations, and prints train_seconds / steps (ExSSNeT's
steps count both of its phases). The machine's load shows in these numbers; compare ratios.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from forgetbench.benchmark.core.config import ComponentSpec, TrainingConfig
from forgetbench.benchmark.run.runner import RunSpec, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-root", default=os.environ.get("FORGETBENCH_DATA", str(Path.home() / ".cache/forgetbench"))
    )
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    training = TrainingConfig(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=128, epochs=1, eval_batch_size=2000)
    per_task = args.steps * training.batch_size
    scenario = ComponentSpec(
        name="split",
        params={
            "dataset": args.dataset,
            "tasks": 2,
            "classes_per_task": 2,
            "widths": [256, 256],
            "max_train_per_task": per_task,
        },
    )
    rows = []
    for name in ("naive", "supsup", "exssnet", "pic"):
        record = run(RunSpec("cost", scenario, ComponentSpec(name=name), 0, training, "cpu"), Path(args.data_root))
        assert record["status"] == "ok", record["error"]
        timing = record["timing"]
        rows.append((name, timing["steps"], timing["train_seconds"] / timing["steps"]))
    base = rows[0][2]
    print(f"{'strategy':10s} {'steps':>6s} {'ms/step':>8s} {'x naive':>8s}")
    for name, steps, seconds in rows:
        print(f"{name:10s} {steps:6d} {1000 * seconds:8.2f} {seconds / base:8.2f}")


if __name__ == "__main__":
    main()
