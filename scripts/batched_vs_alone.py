"""A suite's seeds trained as one stacked model (forgetbench/benchmark/run/batching/) against the same seeds one
after another, pair by pair: train and eval seconds each way, and whether every record's accuracy matrix is the same.

    .venv/bin/python scripts/batched_vs_alone.py CONFIG [--seeds K] [--strategies a,b] [--no-curves] [--allow-idle]

``--no-curves`` drops the suite's forgetting curves and attribution (tests/strategies/test_defaults.py trains the
demo so; an attributed run is refused a batch). ``--allow-idle`` lifts the CPU's idle-parameter refusal
(``IDLE_PARAMS_ON_CPU``), to time a batch the tool would refuse. One thread, as a run trains; run with
ATEN_CPU_CAPABILITY=default to compare the two ways under the portable kernels. Needs FORGETBENCH_DATA for MNIST.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from forgetbench.benchmark.core.config import load_config
from forgetbench.benchmark.run import batching
from forgetbench.benchmark.run.batching import refusals
from forgetbench.benchmark.run.runner import run
from forgetbench.benchmark.run.spec import expand_suite
from forgetbench.benchmark.perf.measurements.seed_batching import largest_difference


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--strategies", default=None, help="comma-separated strategy names (default: all)")
    parser.add_argument("--no-curves", action="store_true")
    parser.add_argument("--allow-idle", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.allow_idle:
        refusals.IDLE_PARAMS_ON_CPU = sys.maxsize
    suite = load_config(args.config)
    if args.no_curves:
        suite = suite.model_copy(update={"training": suite.training.model_copy(update={"eval_every": None,
                                                                                      "attribution": None})})  # fmt: skip
    data_root = Path(os.environ["FORGETBENCH_DATA"]) if "FORGETBENCH_DATA" in os.environ else None
    chosen = None if args.strategies is None else set(args.strategies.split(","))
    pairs: dict[tuple[str, str], list] = {}
    for spec in expand_suite(suite, list(range(args.seeds))):
        if chosen is None or spec.strategy.name in chosen:
            pairs.setdefault((spec.scenario.display_name, spec.strategy.display_name), []).append(spec)
    for (scenario, strategy), specs in pairs.items():
        began = time.perf_counter()
        alone = [run(spec, data_root) for spec in specs]
        alone_wall, began = time.perf_counter() - began, time.perf_counter()
        together = batching.run_seeds(specs, data_root)
        together_wall = time.perf_counter() - began
        same = all(a.status == b.status and a.accuracy_matrix == b.accuracy_matrix for a, b in zip(alone, together))
        apart = max(largest_difference(a.accuracy_matrix, b.accuracy_matrix) for a, b in zip(alone, together))
        batch = together[0].batch
        how = (
            f"batched {batch.seeds}" if batch is not None and batch.seeds else f"alone: {batch.alone if batch else '?'}"
        )
        print(
            f"{scenario} / {strategy}, {len(specs)} seeds: one after another {alone_wall:.1f} s (train "
            f"{sum(r.timing.train_seconds for r in alone):.1f}, eval {sum(r.timing.eval_seconds for r in alone):.1f}); "
            f"as one batch {together_wall:.1f} s (train {sum(r.timing.train_seconds for r in together):.1f}, eval "
            f"{sum(r.timing.eval_seconds for r in together):.1f}); records {'the same' if same else 'DIFFER'} (largest "
            f"accuracy difference {apart:.2g}); {how}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
