"""Time report generation on N synthetic-but-realistic result records.

    python -m forgetbench.benchmark.perf.timing 100

writes N result files to a temporary folder, in the agreed schema with every optional key
(forgetting curves, regularizer memory, a supernet scenario with err1/err2 and standalone
accuracies, joint reference runs), then times ``forgetbench report`` on it in-process and prints
the seconds. Nothing is left behind unless ``--keep DIR`` is given.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from forgetbench.benchmark.core.record import RunRecord
from forgetbench.benchmark.core.store import write_result

STRATEGIES = ["naive", "ewc", "si", "wpl", "joint"]


def synthetic_record(
    scenario: str,
    strategy: str,
    seed: int,
    supernet: bool = False,
    tasks: int = 5,
    points: int = 20,
    iterations: int = 400,
) -> dict[str, Any]:
    """A plausible result record: strategies differ in how fast earlier models decay."""
    rng = np.random.default_rng([seed, STRATEGIES.index(strategy), int(supernet)])
    decay = {"naive": 0.25, "ewc": 0.12, "si": 0.15, "wpl": 0.06, "joint": 0.0}[strategy]
    learn = 0.95 - 0.02 * STRATEGIES.index(strategy) + rng.normal(0, 0.01, tasks)
    rows = 3 if supernet else tasks
    R = np.zeros((rows, tasks))
    for i in range(rows):
        for j in range(tasks):
            if supernet:
                R[i, j] = learn[j] - decay * 0.3 * rng.random() + 0.02 * i
            elif j < i:
                R[i, j] = learn[j] - decay * (i - j) / tasks * (1 + rng.normal(0, 0.2))
            elif j == i:
                R[i, j] = learn[j]
            else:
                R[i, j] = 0.5 + rng.normal(0, 0.03)
    R = np.clip(R, 0, 1)
    record: dict[str, Any] = {
        "schema_version": 1,
        "run_id": f"{scenario}__{strategy}__seed{seed}",
        "suite": "timing",
        "scenario": {"name": "supernet" if supernet else "split", "label": scenario, "params": {}},
        "strategy": {"name": strategy, "label": strategy, "params": {}},
        "seed": seed,
        "status": "ok",
        "error": None,
        "config": {"seed": seed},
        "environment": {"python": "3.11", "torch": "2.15.0", "avalanche": "0.6.0", "device": "cpu"},
        "experiences": [f"task{j}" for j in range(tasks)],
        "accuracy_matrix": R.tolist(),
        "init_accuracy": (0.5 + rng.normal(0, 0.02, tasks)).tolist(),
        "timing": {"train_seconds": float(20 * (1 + decay) + rng.random()), "eval_seconds": 2.0, "steps": 2000},
        "memory": {
            "regularizer_bytes": 0 if strategy == "naive" else int(4 * 270_000 * (2 if strategy == "ewc" else 1))
        },
    }
    if supernet:
        err1 = 1 - R
        record["err1"] = err1.tolist()
        record["err2"] = (err1 + decay * rng.random((rows, tasks))).tolist()
        record["standalone_accuracy"] = (learn + rng.normal(0, 0.01, tasks)).tolist()
    else:
        curves = []
        for t in range(1, tasks):
            for e in range(t):
                start = R[t - 1, e]
                for k in range(1, points + 1):
                    it = k * iterations // points
                    acc = start - (start - R[t, e]) * (1 - np.exp(-4 * k / points)) + rng.normal(0, 0.005)
                    curves.append({"train_exp": t, "iteration": it, "eval_exp": e, "accuracy": float(acc)})
        record["curves"] = curves
    return record


def write_synthetic(out: Path, n: int) -> None:
    """N records: two scenarios (split with curves, supernet) x 5 strategies x ceil(n / 10) seeds."""
    written = 0
    seed = 0
    while written < n:
        for supernet in (False, True):
            for strategy in STRATEGIES:
                if written < n:
                    write_result(
                        out,
                        RunRecord.from_dict(
                            synthetic_record("supernet" if supernet else "split5", strategy, seed, supernet)
                        ),
                    )
                    written += 1
        seed += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, nargs="?", default=100, help="number of result records (default 100)")
    parser.add_argument("--keep", help="write the records and report here and keep them")
    args = parser.parse_args(argv)
    from forgetbench.reports.html import write_report  # what `forgetbench report FOLDER` calls

    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="forgetbench-timing-"))
    try:
        write_synthetic(folder, args.n)
        t0, c0 = time.perf_counter(), time.process_time()
        write_report([folder])
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        # CPU seconds too: on a shared machine the wall clock mostly measures the other jobs
        print(f"forgetbench report on {args.n} runs: {seconds:.1f} s wall, {cpu:.1f} s CPU")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
