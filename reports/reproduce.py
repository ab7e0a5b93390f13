"""Reproductions: a suite's obtained figures against the published ones (pure; pandas in, pandas out).

A suite with a ``reproduce`` block (see :class:`benchmark.config.ReproduceSpec`) names, per strategy
label, a published figure of one metric in percent points. :func:`reproduction_rows` compares it with
the summary table's mean over seeds (a fraction, so x100): a row passes when
``|obtained - published| <= max(tolerance, published std)``. ``forgetbench reproduce`` prints these
rows and the HTML report shows them.
"""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd

REPRODUCTION_COLUMNS = ["scenario", "strategy", "metric", "published", "published_std", "allowed", "obtained",
                        "ci_low", "ci_high", "n_seeds", "diff", "passed"]


def reproduction_rows(summary: pd.DataFrame, spec: Mapping[str, Any], scenario: str) -> pd.DataFrame:
    """One row per target of ``spec`` (the suite's ``reproduce`` block as a mapping) on ``scenario``.

    ``summary`` is :func:`reports.summary.summary_table`'s tidy frame (means as fractions). A target
    with no finished run gets ``obtained`` NaN and fails.
    """
    rows = []
    metric = spec.get("metric", "ACC")
    for strategy, target in spec["targets"].items():
        published, std = float(target["mean"]), target.get("std")
        allowed = max(float(spec.get("tolerance", 1.5)), float(std) if std is not None else 0.0)
        match = summary[(summary.scenario == scenario) & (summary.strategy == strategy) & (summary.metric == metric)]
        if match.empty:
            obtained = low = high = float("nan")
            n = 0
        else:
            row = match.iloc[0]
            obtained, low, high, n = 100 * row["mean"], 100 * row.ci_low, 100 * row.ci_high, int(row.n_seeds)
        diff = obtained - published
        rows.append({"scenario": scenario, "strategy": strategy, "metric": metric, "published": published,
                     "published_std": std, "allowed": allowed, "obtained": obtained, "ci_low": low, "ci_high": high,
                     "n_seeds": n, "diff": diff, "passed": bool(abs(diff) <= allowed)})
    return pd.DataFrame(rows, columns=REPRODUCTION_COLUMNS)


def format_row(row: Mapping[str, Any], name: str) -> str:
    """One terminal line: target, obtained mean [CI], pass / FAIL and by how much."""
    published = f"{row['published']:.2f}" + (f" ± {row['published_std']:.2f}" if row["published_std"] is not None
                                               and row["published_std"] == row["published_std"] else "")
    if row["n_seeds"] == 0:
        return f"{name} {row['strategy']}: {row['metric']} published {published}, obtained nothing (no run ok)  FAIL"
    verdict = "pass" if row["passed"] else "FAIL"
    return (f"{name} {row['strategy']}: {row['metric']} published {published}, obtained {row['obtained']:.2f} "
            f"[{row['ci_low']:.2f}, {row['ci_high']:.2f}] over {row['n_seeds']} seed(s); "
            f"diff {row['diff']:+.2f} (allowed ±{row['allowed']:.2f})  {verdict}")
