"""The zoo's table: ACC, forgetting, LA, train seconds and regularizer memory per (scenario, strategy), as Markdown.

    forgetbench run configs/zoo.yaml --out results/zoo --data-root ../shared/data --workers 2 \
        && python scripts/zoo_table.py results/zoo

Means over the seeds that finished ok (± the standard deviation for accuracies), from the report's own aggregation
(forgetbench.reports.summary), so the numbers are the report's. Pairs refused at config time have no row; a
strategy with runs not ok says how many.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import yaml

from forgetbench import load_results
from forgetbench.reports.summary import runs_long, summary_table

COLUMNS = [
    ("ACC", "ACC (pts)"),
    ("forgetting", "forgetting (pts)"),
    ("LA", "LA (pts)"),
    ("train_seconds", "train s"),
    ("regularizer_bytes", "memory"),
]


def _bytes(value: float) -> str:
    for unit, size in (("MiB", 2**20), ("KiB", 2**10)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


def _cell(metric: str, row: pd.Series | None) -> str:
    if row is None or pd.isna(row["mean"]):
        return "-"
    if metric == "train_seconds":
        return f"{row['mean']:.1f}"
    if metric == "regularizer_bytes":
        return _bytes(row["mean"])
    std = "" if pd.isna(row["std"]) else f" ± {100 * row['std']:.1f}"
    return f"{100 * row['mean']:.1f}{std}"


def zoo_table(folder: str) -> str:
    results = load_results(folder)
    summary = summary_table(runs_long(results.records)).set_index(["scenario", "strategy", "metric"])
    counts: dict[tuple[str, str], list[int]] = {}
    for record in results.records:
        key = (record.scenario.label, record.strategy.label)
        counts.setdefault(key, [0, 0])[0 if record.status == "ok" else 1] += 1
    suite = yaml.safe_load((Path(folder) / "suite.yaml").read_text())  # rows in the suite's own order
    rank = {
        (kind, spec.get("label") or spec["name"]): i
        for kind in ("scenarios", "strategies")
        for i, spec in enumerate(suite[kind])
    }
    order = sorted(counts, key=lambda key: (rank.get(("scenarios", key[0]), 0), rank.get(("strategies", key[1]), 0)))
    lines = [
        "| scenario | strategy | runs ok | " + " | ".join(title for _, title in COLUMNS) + " |",
        "|---|---|---|" + "---|" * len(COLUMNS),
    ]
    for scenario, strategy in order:
        ok, not_ok = counts[(scenario, strategy)]
        cells = [
            _cell(
                metric,
                summary.loc[(scenario, strategy, metric)] if (scenario, strategy, metric) in summary.index else None,
            )
            for metric, _ in COLUMNS
        ]
        lines.append(f"| {scenario} | {strategy} | {ok}/{ok + not_ok} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="a `forgetbench run --out` folder")
    print(zoo_table(parser.parse_args().results))
