"""Supernet (weight-sharing NAS) summary: multi-model forgetting and ranking fidelity per strategy.

``python -m forgetbench.reports.supernet RESULTS_DIR`` prints, per (scenario, strategy), the mean over seeds of
``mean_err_gap`` (err2 - err1), the final round's mean accuracy and Kendall's tau between the supernet's ranking of
the ground truth's architectures and their standalone one (``search.ground_truth``). Runs without ``err1``/``err2``
are skipped.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from forgetbench.benchmark.core.record import RunRecord, as_records
from forgetbench.benchmark.core.store import load_results
from forgetbench.reports.summary import runs_long, summary_table

# the frame's column -> the metric it shows
COLUMNS = {"err_gap": "err_gap_mean", "final_acc": "ACC", "kendall_tau": "search_tau"}


def supernet_frame(records: Iterable[RunRecord | Mapping[str, Any]]) -> pd.DataFrame:
    """One row per ok supernet run (one with ``err1``/``err2``): err gap, final mean accuracy, Kendall tau
    (NaN without standalone), read from the one metrics path (:func:`runs_long`)."""
    runs = [r for r in as_records(records) if r.ok and r.err1 is not None]
    long = runs_long(runs)
    if long.empty:
        return pd.DataFrame(columns=["scenario", "strategy", "seed", *COLUMNS])
    wide = long.pivot_table(
        index=["scenario", "strategy", "seed"], columns="metric", values="value", sort=False, dropna=False
    )
    return pd.DataFrame(
        {
            "scenario": [k[0] for k in wide.index],
            "strategy": [k[1] for k in wide.index],
            "seed": [k[2] for k in wide.index],
            **{
                column: wide[metric].to_numpy() if metric in wide else float("nan")
                for column, metric in COLUMNS.items()
            },
        }
    )


def supernet_summary(records: Iterable[RunRecord | Mapping[str, Any]]) -> pd.DataFrame:
    """Mean and std over seeds per (scenario, strategy) of :func:`supernet_frame`'s columns, from the
    report's own aggregation (:func:`summary_table`)."""
    runs = [r for r in as_records(records) if r.ok and r.err1 is not None]
    table = summary_table(runs_long(runs))
    if table.empty:
        return pd.DataFrame()
    rows = []
    for (scenario, strategy), group in table.groupby(["scenario", "strategy"], sort=False):
        by_metric = group.set_index("metric")
        row: dict[str, Any] = {"scenario": scenario, "strategy": strategy}
        for column, metric in COLUMNS.items():
            found = metric in by_metric.index
            row[f"{column}_mean"] = by_metric.loc[metric, "mean"] if found else float("nan")
            row[f"{column}_std"] = by_metric.loc[metric, "std"] if found else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m forgetbench.reports.supernet RESULTS_DIR", file=sys.stderr)
        return 2
    table = supernet_summary(load_results(Path(args[0])))
    with pd.option_context("display.float_format", "{:.4f}".format, "display.width", 160):
        print(table.to_string(index=False) if not table.empty else "(no supernet runs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
