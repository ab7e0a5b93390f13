"""cProfile of K seeds of one of perf's seed_batching runs trained as one batch (or one after another): where a
batch's time goes, function by function.

    FORGETBENCH_DATA=../shared/data .venv/bin/python scripts/profile_batch.py two-model ewc [--seeds 20] [--alone]
        [--sort tottime] [--lines 45]

The scenario and strategy are perf's (``forgetbench/benchmark/perf/measurements/seed_batching.py``: decide_demo's
sizes and strengths); one thread, as a run trains; a warm-up batch of 2 seeds first (imports, the dataset cache).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
from pathlib import Path

import torch

from forgetbench.benchmark.perf.measurements.seed_batching import SCENARIOS, STRATEGIES, _specs
from forgetbench.benchmark.run.batching import run_seeds
from forgetbench.benchmark.run.runner import run


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=list(SCENARIOS))
    parser.add_argument("strategy", choices=list(STRATEGIES))
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--alone", action="store_true", help="the seeds one after another instead")
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--lines", type=int, default=45)
    args = parser.parse_args(argv)
    data = Path(os.environ.get("FORGETBENCH_DATA", "../shared/data"))
    specs = _specs(None, args.scenario, args.strategy, args.seeds)  # type: ignore[arg-type]
    run_seeds(specs[:2], data)
    torch.set_num_threads(1)
    profile = cProfile.Profile()
    profile.enable()
    if args.alone:
        for spec in specs:
            run(spec, data)
    else:
        run_seeds(specs, data)
    profile.disable()
    pstats.Stats(profile).sort_stats(args.sort).print_stats(args.lines)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
