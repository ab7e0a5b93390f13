"""Per-step cost over naive of any registered strategies, on `forgetbench perf`'s MLP Split MNIST stream: perf's own
`step_overhead` measurement (same workload, rotation and medians) with the strategies named on the command line
instead of perf's fixed rows. For families perf does not list (supsup, exssnet, replay, spg, pic), and for the
before-figures of a change: it runs unchanged on older commits that have perf's `step_overhead`.
Usage: OMP_NUM_THREADS=1 FORGETBENCH_DATA=../shared/data python scripts/step_costs.py naive,supsup,replay [--repeats 3]"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from forgetbench.benchmark.data.datasets import load_dataset
from forgetbench.benchmark.front.measure import perf
from forgetbench.benchmark.front.measure import step_overhead as section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("strategies", help="comma-separated registered names; naive is added first if missing")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    names = [n for n in args.strategies.split(",") if n]
    names = ["naive"] + [n for n in names if n != "naive"]
    opts = perf.PerfOptions(data_root=Path(os.environ.get("FORGETBENCH_DATA", "../shared/data")), repeats=args.repeats)
    data = load_dataset(opts.dataset, opts.data_root)
    section._strategy_cases = lambda: {name: (name, {}) for name in names}  # perf's rows, replaced by these
    overhead, importance = section.step_overhead(opts, data)
    print(f"naive {overhead['naive_step_seconds'] * 1e3:.3f} ms/step, {args.repeats} repeats (medians)")
    for name in names[1:]:
        print(
            f"{name:<10} step {overhead[name]['ratio']:.3f} x naive, after-experience work "
            f"{importance[name]:.3f} of an epoch"
        )


if __name__ == "__main__":
    main()
