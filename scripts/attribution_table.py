"""Per scenario of a results folder: A's accuracy, the forgetting attribution's summary (how much of the observed
loss increase the quadratic prediction explains, Spearman's rho, the first-order share) and each strategy's
forgetting cut against naive. Usage: python scripts/attribution_table.py results/wpl_relaxed"""

from __future__ import annotations

import sys

import numpy as np

import forgetbench
from forgetbench.reports.attribution import attribution_summary
from forgetbench.reports.frames import attribution_frame


def main(folder: str) -> None:
    results = forgetbench.load_results(folder)
    summary = results.summary().set_index(["scenario", "strategy"])
    scenarios = dict.fromkeys(r.scenario.label for r in results.records)
    for scenario in sorted(
        scenarios,
        key=lambda s: -np.mean([r.accuracy_matrix[0][0] for r in results.records if r.scenario.label == s and r.ok]),
    ):
        runs = [r for r in results.records if r.scenario.label == scenario and r.ok]
        first = [r.accuracy_matrix[0][0] for r in runs if r.strategy.label == "naive"]
        print(
            f"\n{scenario}: model A's accuracy after its training {100 * np.mean(first):.1f}% "
            f"(seeds {', '.join(f'{100 * a:.1f}' for a in first)})"
        )
        table = attribution_summary(attribution_frame(results.records, scenario), ["naive", "wpl"])
        print(
            table.round(
                {"observed": 4, "predicted": 4, "first_order": 4, "explained": 1, "rho": 2, "first_order_share": 0}
            ).to_string(index=False)
        )
        naive = 100 * summary.loc[(scenario, "naive"), "forgetting_mean"]  # fractions in the frame, points here
        for strategy in [s for (sc, s) in summary.index if sc == scenario and s != "naive"]:
            mine = 100 * summary.loc[(scenario, strategy), "forgetting_mean"]
            print(f"forgetting: naive {naive:.1f}, {strategy} {mine:.1f} points: cut {100 * (1 - mine / naive):.0f}%")


if __name__ == "__main__":
    main(sys.argv[1])
