"""The PLM suite's table: ACC, forgetting, LA, train seconds (the zoo's columns), the paired test of forgetting
against naive, and the adapters' diagnostics (parameters each task trains in its adapter, the largest overlap of a
task's adapter subspace with the earlier ones), as Markdown.

    forgetbench run configs/text_bbc_plm.yaml --out results/text_bbc_plm --executor process --workers 2 \
        && python scripts/plm_table.py results/text_bbc_plm

Means over the seeds that finished ok, from the report's aggregation; p is the two-sided paired t-test over the
seeds (forgetbench.benchmark.core.stats.paired_difference, the verdict's test); "-" where a strategy keeps no adapter.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import yaml
from zoo_table import _cell

from forgetbench import load_results
from forgetbench.benchmark.core.stats import paired_difference
from forgetbench.reports.summary import runs_long, summary_table

COLUMNS = [("ACC", "ACC (pts)"), ("forgetting", "forgetting (pts)"), ("LA", "LA (pts)"), ("train_seconds", "train s")]


def _adapter_cells(records) -> tuple[str, str]:
    """Mean adapter entries a task trains, and the mean over seeds of the largest overlap of a later adapter."""
    trained, overlaps = [], []
    for record in records:
        rows = ((record.model_extra or {}).get("adapters") or {}).get("per_task") or []
        trained += [row["trainable_params"] for row in rows]
        later = [row["overlap"] for row in rows if row["overlap"] is not None]
        if later:
            overlaps.append(max(later))
    return (f"{np.mean(trained):,.0f}" if trained else "-", f"{np.mean(overlaps):.3f}" if overlaps else "-")


def plm_table(folder: str) -> str:
    results = load_results(folder)
    long = runs_long(results.records)
    summary = summary_table(long).set_index(["scenario", "strategy", "metric"])
    suite = yaml.safe_load((Path(folder) / "suite.yaml").read_text())
    scenarios = [s.get("label") or s["name"] for s in suite["scenarios"]]
    strategies = [s.get("label") or s["name"] for s in suite["strategies"]]
    lines = [
        "| scenario | strategy | runs ok | "
        + " | ".join(t for _, t in COLUMNS)
        + " | forgetting vs naive (p) | adapter params / task | max overlap |",
        "|---|---|---|" + "---|" * (len(COLUMNS) + 3),
    ]
    for scenario in scenarios:
        forgetting = long[(long.scenario == scenario) & (long.metric == "forgetting")]
        naive = dict(
            zip(forgetting[forgetting.strategy == "naive"].seed, forgetting[forgetting.strategy == "naive"].value)
        )
        for strategy in strategies:
            records = [r for r in results.records if r.scenario.label == scenario and r.strategy.label == strategy]
            if not records:
                continue
            ok = [r for r in records if r.status == "ok"]
            cells = [
                _cell(m, summary.loc[(scenario, strategy, m)] if (scenario, strategy, m) in summary.index else None)
                for m, _ in COLUMNS
            ]
            mine = forgetting[forgetting.strategy == strategy]
            test = paired_difference(dict(zip(mine.seed, mine.value)), naive) if strategy != "naive" else None
            versus = (
                "-"
                if test is None or not np.isfinite(test.diff)
                else f"{100 * test.diff:+.1f} (p = {test.p_value:.3f})"
            )
            lines.append(
                f"| {scenario} | {strategy} | {len(ok)}/{len(records)} | "
                + " | ".join(cells)
                + f" | {versus} | "
                + " | ".join(_adapter_cells(ok))
                + " |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="a `forgetbench run --out` folder")
    print(plm_table(parser.parse_args().results))
