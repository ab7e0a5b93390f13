"""Per-seed figures of a demo results folder (the numbers quoted for issue 15):

    .venv/bin/forgetbench run configs/demo.yaml --out results/demo --quiet
    .venv/bin/python scripts/demo_figures.py results/demo

two-model: points of A's accuracy lost while B trains and B's final accuracy; supernet: mean err2 - err1.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from forgetbench.benchmark.front.api import load_results  # noqa: E402
from forgetbench.benchmark.core.stats import paired_difference  # noqa: E402


def main(folder: str) -> None:
    records = load_results(folder).records
    runs: dict[tuple[str, str], dict[int, dict]] = {}
    for r in records:
        runs.setdefault((r["scenario"]["label"], r["strategy"]["label"]), {})[r["seed"]] = r
    drops = {}
    for (scenario, strategy), by_seed in runs.items():
        if scenario == "two-model":
            drops[strategy] = {
                s: 100 * (r["accuracy_matrix"][0][0] - r["accuracy_matrix"][1][0]) for s, r in by_seed.items()
            }
            b = np.mean([100 * r["accuracy_matrix"][1][1] for r in by_seed.values()])
            print(
                f"two-model {strategy:6} A drop per seed {[round(v, 1) for v in drops[strategy].values()]} "
                f"mean {np.mean(list(drops[strategy].values())):.1f}  B final {b:.1f}"
            )
        elif scenario == "supernet":
            gaps = [float(100 * np.nanmean(np.subtract(r["err2"], r["err1"]))) for r in by_seed.values()]
            print(f"supernet  {strategy:6} err2-err1 per seed {[round(g, 1) for g in gaps]} mean {np.mean(gaps):.2f}")
    if "naive" in drops and "wpl" in drops:
        p = paired_difference(drops["wpl"], drops["naive"])
        cut = 100 * (1 - np.mean(list(drops["wpl"].values())) / np.mean(list(drops["naive"].values())))
        print(f"two-model wpl vs naive: A-drop cut {cut:.0f}%, paired p = {p.p_value:.3f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results/demo")
