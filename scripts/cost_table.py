"""Per scenario of a results folder: each strategy's training seconds against naive's (mean over seeds, and the
ratio of the means), its ACC and forgetting (a search: regret and Kendall's tau) with 95% t intervals over the
seeds, and the importance passes it skipped. Usage: python scripts/cost_table.py results/text_bbc_cost"""

from __future__ import annotations

import sys

import numpy as np
from scipy import stats

import forgetbench


# (metric, scale): accuracies and forgetting in points, a search's regret in points and its Kendall tau as is
OUTCOMES = (("ACC", 100), ("forgetting", 100), ("regret", 100), ("search_tau", 1))


def interval(values: list[float]) -> str:
    """mean [95% t interval] of per-seed values, in the values' unit."""
    a = np.asarray(values, dtype=float)
    if len(a) < 2:
        return f"{a.mean():.2f}"
    half = stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / np.sqrt(len(a))
    return f"{a.mean():.2f} [{a.mean() - half:.2f}, {a.mean() + half:.2f}]"


def main(folder: str) -> None:
    results = forgetbench.load_results(folder)
    table = results.frame().pivot_table(index=["scenario", "strategy", "seed"], columns="metric", values="value")
    for scenario in dict.fromkeys(r.scenario.label for r in results.records):
        runs = table.loc[scenario]
        naive_seconds = runs.loc["naive", "train_seconds"].mean()
        print(
            f"\n{scenario}: train seconds (mean of seeds) / naive's {naive_seconds:.1f} s; outcomes in points (tau as is)"
        )
        for strategy in dict.fromkeys(runs.index.get_level_values(0)):
            seconds = runs.loc[strategy, "train_seconds"]
            skipped = {
                str(r.model_extra.get(key))
                for r in results.records
                if r.scenario.label == scenario and r.strategy.label == strategy
                for key in (r.model_extra or {})
                if key.endswith("_skipped") and r.model_extra[key]
            }
            outcomes = "  ".join(
                f"{metric} {interval(scale * runs.loc[strategy, metric].dropna())}"
                for metric, scale in OUTCOMES
                if metric in runs.columns and runs.loc[strategy, metric].notna().any()
            )
            print(
                f"  {strategy:<16} {seconds.mean():6.1f} s  x{seconds.mean() / naive_seconds:.2f}  "
                f"(seeds {', '.join(f'{s:.1f}' for s in seconds)})  {outcomes}"
                + (f"  skipped after {', '.join(sorted(skipped))}" if skipped else "")
            )


if __name__ == "__main__":
    main(sys.argv[1])
