"""A results folder's table with 95% intervals, as Markdown: per scenario and strategy, each metric's mean [95%
t-interval] over the seeds (in its unit: accuracies and errors in points, seconds as seconds, anything else to two
decimals) and one metric's paired difference against naive (mean [95% interval], p), read from the report's own
summary.csv and comparisons.csv (``forgetbench run`` or ``forgetbench report`` writes them).

    python scripts/interval_table.py /tmp/bbc
    python scripts/interval_table.py results/nas_search --metrics regret search_tau precision_at_k --compare regret
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from forgetbench.benchmark.core.metric_registry import METRICS
from forgetbench.benchmark.core.units import display_scale

DEFAULT_METRICS = ("ACC", "forgetting", "LA")


def interval(metric: str, mean: str, low: str, high: str) -> str:
    """``mean [low, high]`` in ``metric``'s display unit (its registered ``unit``)."""
    unit = METRICS[metric].unit if metric in METRICS else None
    scale, spec = display_scale(unit), {"accuracy": ".1f", "seconds": ".1f"}.get(str(unit), ".2f")
    return f"{scale * float(mean):{spec}} [{scale * float(low):{spec}}, {scale * float(high):{spec}}]"


def interval_table(folder: Path, metrics: tuple[str, ...] = DEFAULT_METRICS, compare: str = "forgetting") -> str:
    summary = list(csv.DictReader((folder / "summary.csv").open()))
    compared = {
        (r["scenario"], r["strategy"], r["metric"]): r for r in csv.DictReader((folder / "comparisons.csv").open())
    }
    cells = {(r["scenario"], r["strategy"], r["metric"]): r for r in summary}
    lines = [
        "| scenario | strategy | " + " | ".join(metrics) + f" | {compare} vs naive (p) |",
        "|---" * (len(metrics) + 3) + "|",
    ]
    for scenario, strategy in dict.fromkeys((r["scenario"], r["strategy"]) for r in summary):
        row = [scenario, strategy]
        for metric in metrics:
            r = cells.get((scenario, strategy, metric))
            row.append(interval(metric, r["mean"], r["ci_low"], r["ci_high"]) if r else "-")
        d = compared.get((scenario, strategy, compare))
        row.append(
            f"{interval(compare, d['diff'], d['ci_low'], d['ci_high'])} ({float(d['p_value']):.3f})" if d else "-"
        )
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS), help="summary.csv metric keys")
    parser.add_argument("--compare", default="forgetting", help="the metric compared with naive, paired by seed")
    args = parser.parse_args()
    print(interval_table(args.folder, tuple(args.metrics), args.compare))


if __name__ == "__main__":
    main()
