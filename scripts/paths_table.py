"""The seeds' forgetting on two numeric paths, as the table ``forgetbench decide`` reads: one row per (scenario and
strategy, path, seed), ``value`` the run's forgetting in points.

    .venv/bin/python scripts/paths_table.py BATCHED_OUT ALONE_OUT > paths.csv
    forgetbench decide paths.csv --margin 1 --baseline alone

Each scenario-and-strategy is one ``scenario`` of the table (one family), its two methods ``batched`` and ``alone``:
``decide`` then says, pair by pair, whether the paths' mean forgetting is equivalent within the margin (issue 96's
check of a GPU's batched records against its per-seed ones, where their rounding differs). Only seeds present on
both paths are written.
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

from forgetbench.benchmark.core.metrics import run_metrics
from forgetbench.benchmark.core.store import load_results


def forgetting_by_run(folder: Path) -> dict[tuple[str, int], float]:
    """``(scenario/strategy, seed) -> forgetting in points`` of every finished run in ``folder``."""
    found = {}
    for record in load_results(folder):
        value = run_metrics(record).get("forgetting", float("nan"))
        if record.status == "ok" and math.isfinite(value):
            found[(f"{record.scenario.label}/{record.strategy.label}", record.seed)] = 100.0 * value
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.splitlines()[2].strip(), file=sys.stderr)
        return 2
    paths = {"batched": forgetting_by_run(Path(argv[0])), "alone": forgetting_by_run(Path(argv[1]))}
    both = sorted(set(paths["batched"]) & set(paths["alone"]))
    writer = csv.writer(sys.stdout)
    writer.writerow(["scenario", "method", "seed", "value"])
    for key in both:
        for method, values in paths.items():
            writer.writerow([key[0], method, key[1], f"{values[key]:.6f}"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
