"""Supernet (weight-sharing NAS) summary: multi-model forgetting and ranking fidelity per strategy.

``python -m forgetbench.reports.supernet RESULTS_DIR`` prints, per (scenario, strategy), the mean over seeds of
``mean_err_gap`` (err2 - err1), the final round's mean accuracy and Kendall's tau between the final
round's accuracies and ``standalone_accuracy``. Runs without ``err1``/``err2`` are skipped.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from forgetbench.benchmark.core.metrics import run_metrics
from forgetbench.benchmark.core.store import load_results


def supernet_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per ok supernet run: err gap, final mean accuracy, Kendall tau (NaN without standalone)."""
    rows = []
    for rec in records:
        if rec.get("status") != "ok" or "err1" not in rec:
            continue
        values = run_metrics(rec)
        rows.append(
            {
                "scenario": rec["scenario"]["label"],
                "strategy": rec["strategy"]["label"],
                "seed": rec["seed"],
                "err_gap": values.get("err_gap_mean", float("nan")),
                "final_acc": values["ACC"],
                "kendall_tau": values.get("kendall_tau", float("nan")),
            }
        )
    return pd.DataFrame(rows)


def supernet_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per (scenario, strategy)."""
    if frame.empty:
        return frame
    table = frame.groupby(["scenario", "strategy"], sort=False)[["err_gap", "final_acc", "kendall_tau"]].agg(
        ["mean", "std"]
    )
    table.columns = [f"{m}_{s}" for m, s in table.columns]
    return table.reset_index()


def main(argv: list[str] | None = None) -> int:

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m forgetbench.reports.supernet RESULTS_DIR", file=sys.stderr)
        return 2
    frame = supernet_frame(load_results(Path(args[0])))
    with pd.option_context("display.float_format", "{:.4f}".format, "display.width", 160):
        print(supernet_summary(frame).to_string(index=False) if not frame.empty else "(no supernet runs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
