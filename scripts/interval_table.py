"""A results folder's table with 95% intervals, as Markdown: per scenario and strategy, ACC, forgetting and LA
(mean [95% t-interval] over the seeds, points) and forgetting's paired difference against naive (mean [95%
interval], p), read from the report's own summary.csv and comparisons.csv (``forgetbench run`` or ``forgetbench
report`` writes them).

    python scripts/interval_table.py /tmp/bbc
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

METRICS = ("ACC", "forgetting", "LA")


def _interval(mean: str, low: str, high: str) -> str:
    return f"{100 * float(mean):.1f} [{100 * float(low):.1f}, {100 * float(high):.1f}]"


def interval_table(folder: Path) -> str:
    summary = list(csv.DictReader((folder / "summary.csv").open()))
    compared = {
        (r["scenario"], r["strategy"], r["metric"]): r for r in csv.DictReader((folder / "comparisons.csv").open())
    }
    cells = {(r["scenario"], r["strategy"], r["metric"]): r for r in summary}
    lines = [
        "| scenario | strategy | " + " | ".join(METRICS) + " | forgetting vs naive (p) |",
        "|---" * (len(METRICS) + 3) + "|",
    ]
    for scenario, strategy in dict.fromkeys((r["scenario"], r["strategy"]) for r in summary):
        row = [scenario, strategy]
        for metric in METRICS:
            r = cells.get((scenario, strategy, metric))
            row.append(_interval(r["mean"], r["ci_low"], r["ci_high"]) if r else "-")
        d = compared.get((scenario, strategy, "forgetting"))
        row.append(f"{_interval(d['diff'], d['ci_low'], d['ci_high'])} ({float(d['p_value']):.3f})" if d else "-")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    print(interval_table(parser.parse_args().folder))


if __name__ == "__main__":
    main()
