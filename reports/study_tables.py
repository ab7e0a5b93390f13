"""The tables the study pages quote, computed from result folders' records: one function per kind, each returning a
DataFrame of display strings (the numbers in their units), and one Markdown renderer. ``forgetbench table KIND
RESULTS...`` prints them; every table in docs/studies/ that one of these writes names that command.

* ``interval``: per scenario and strategy, each metric's mean [95% t-interval] over the seeds, and one metric's
  paired difference against naive (mean [95% interval], p): the report's own summary and comparisons.
* ``cost``: per scenario and strategy, the training seconds (mean, each seed's, the ratio of the means to naive's),
  the outcomes with 95% t-intervals, and the importance passes skipped.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd

from forgetbench.benchmark.core.metric_registry import METRICS
from forgetbench.benchmark.core.record import RunRecord
from forgetbench.benchmark.core.stats import t_interval
from forgetbench.benchmark.core.units import display_scale
from forgetbench.reports.summary import NAIVE, comparisons_table, runs_long, summary_table

DEFAULT_METRICS = ("ACC", "forgetting", "LA")
COST_OUTCOMES = ("ACC", "forgetting", "regret", "search_tau")  # a continual-learning suite's, a search's


def _in_unit(metric: str, *values: float) -> list[str]:
    """``values`` written in ``metric``'s display unit: accuracies and errors in points, seconds to one decimal,
    anything else to two."""
    unit = METRICS[metric].unit if metric in METRICS else None
    scale, spec = display_scale(unit), {"accuracy": ".1f", "seconds": ".1f"}.get(str(unit), ".2f")
    return [f"{scale * float(v):{spec}}" for v in values]


def _interval_text(metric: str, mean: float, low: float, high: float) -> str:
    if not (np.isfinite(low) and np.isfinite(high)):
        return _in_unit(metric, mean)[0]
    shown = _in_unit(metric, mean, low, high)
    return f"{shown[0]} [{shown[1]}, {shown[2]}]"


def interval_frame(
    records: Sequence[RunRecord], metrics: Sequence[str] = DEFAULT_METRICS, compare: str = "forgetting"
) -> pd.DataFrame:
    """Per (scenario, strategy), in the records' order: each of ``metrics`` as mean [95% t-interval] over the seeds,
    and ``compare``'s paired difference against naive, mean [95% interval] (p); "-" where there is none."""
    long = runs_long(records)
    summary = summary_table(long).set_index(["scenario", "strategy", "metric"])
    compared = comparisons_table(long).set_index(["scenario", "strategy", "metric"])
    rows = []
    for scenario, strategy in dict.fromkeys(zip(long.scenario, long.strategy)):
        row = {"scenario": scenario, "strategy": strategy}
        for metric in metrics:
            key = (scenario, strategy, metric)
            cell = summary.loc[key] if key in summary.index else None
            row[metric] = "-" if cell is None else _interval_text(metric, cell["mean"], cell.ci_low, cell.ci_high)
        key = (scenario, strategy, compare)
        d = compared.loc[key] if key in compared.index else None
        row[f"{compare} vs naive (p)"] = (
            "-" if d is None else f"{_interval_text(compare, d['diff'], d.ci_low, d.ci_high)} ({d.p_value:.3f})"
        )
        rows.append(row)
    return pd.DataFrame(rows)


def cost_frame(records: Sequence[RunRecord], outcomes: Sequence[str] = COST_OUTCOMES) -> pd.DataFrame:
    """Per (scenario, strategy): training seconds (mean over seeds, each seed's, mean / naive's mean), each outcome
    the runs have as mean [95% t-interval] over the seeds (one seed: its value), and the experiences whose
    importance pass was skipped (``*_importance_skipped``)."""
    long = runs_long(records)
    rows = []
    for scenario, runs in long.groupby("scenario", sort=False):
        seconds = runs[runs.metric == "train_seconds"]
        naive = seconds[seconds.strategy_name == NAIVE].value.mean()
        for strategy, mine in runs.groupby("strategy", sort=False):
            own = seconds[seconds.strategy == strategy].sort_values("seed").value
            row = {
                "scenario": scenario,
                "strategy": strategy,
                "train s": f"{own.mean():.1f}",
                "seeds": ", ".join(f"{v:.1f}" for v in own),
                "/ naive": f"{own.mean() / naive:.2f}" if np.isfinite(naive) and naive > 0 else "-",
            }
            for metric in outcomes:
                values = mine[mine.metric == metric].value.dropna()
                if len(values):
                    low, high = t_interval(values)
                    row[metric] = _interval_text(metric, float(values.mean()), low, high)
            skipped = sorted(
                {
                    str(value)
                    for r in records
                    if r.scenario.label == scenario and r.strategy.label == strategy
                    for key, value in (r.model_extra or {}).items()
                    if key.endswith("_importance_skipped") and value
                }
            )
            row["passes skipped"] = ", ".join(skipped) or "-"
            rows.append(row)
    return pd.DataFrame(rows).fillna("-")


def markdown(frame: pd.DataFrame) -> str:
    """``frame`` as a Markdown table (its columns as the header, every cell as written)."""
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|---" * len(frame.columns) + "|"]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


TABLES: dict[str, Callable[..., pd.DataFrame]] = {"interval": interval_frame, "cost": cost_frame}
