"""Reproductions: a suite's obtained figures against the published ones (pure; pandas in, pandas out).

A suite with a ``reproduce`` block (see :class:`forgetbench.benchmark.core.config.ReproduceSpec`) makes, per strategy
label, one or more published claims in percent points: a figure (``mean``, maybe ``std``) or a bound
(``at_least`` / ``at_most``, absolute or as fractions of another strategy's obtained mean, ``relative_to``).
:func:`reproduction_rows` compares each with the summary table's mean over seeds (a fraction, so x100): a
figure passes when ``|obtained - published| <= max(tolerance, published std)``, a bound when the obtained
mean meets it. ``forgetbench reproduce`` prints these rows and the HTML report shows them.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import pandas as pd

REPRODUCTION_COLUMNS = [
    "scenario",
    "strategy",
    "metric",
    "criterion",
    "published",
    "published_std",
    "allowed",
    "obtained",
    "ci_low",
    "ci_high",
    "n_seeds",
    "diff",
    "passed",
]


def _claims(target: Mapping[str, Any] | list) -> list[Mapping[str, Any]]:
    return list(target) if isinstance(target, list) else [target]


def _obtained(summary: pd.DataFrame, scenario: str, strategy: str, metric: str) -> tuple[float, float, float, int]:
    """Mean, CI low, CI high (points) and seed count of one summary row; NaNs and 0 when it is missing."""
    match = summary[(summary.scenario == scenario) & (summary.strategy == strategy) & (summary.metric == metric)]
    if match.empty:
        return math.nan, math.nan, math.nan, 0
    row = match.iloc[0]
    return 100 * row["mean"], 100 * row.ci_low, 100 * row.ci_high, int(row.n_seeds)


def _bound_check(claim: Mapping[str, Any], obtained: float, reference: float) -> tuple[str, bool, float]:
    """The criterion's text, whether ``obtained`` meets it, and how far inside (+) or outside (-) it is."""
    scale, suffix = 1.0, ""
    if claim.get("relative_to"):
        scale = reference
        suffix = f" x {claim['relative_to']} ({reference:.2f})"
    parts, passed, margin = [], True, math.inf
    for key, sign, word in (("at_least", 1, ">="), ("at_most", -1, "<=")):
        if claim.get(key) is None:
            continue
        limit = float(claim[key]) * scale
        parts.append(f"{word} {float(claim[key]):g}{suffix}" if suffix else f"{word} {limit:.2f}")
        slack = sign * (obtained - limit)
        passed = passed and slack >= 0
        margin = min(margin, slack)
    return " and ".join(parts), bool(passed and not math.isnan(obtained) and not math.isnan(scale)), margin


def reproduction_rows(summary: pd.DataFrame, spec: Mapping[str, Any], scenario: str) -> pd.DataFrame:
    """One row per claim of ``spec`` (the suite's ``reproduce`` block as a mapping) on ``scenario``.

    ``summary`` is :func:`forgetbench.reports.summary.summary_table`'s tidy frame (means as fractions). A claim about a
    strategy with no finished run gets ``obtained`` NaN and fails; so does a bound relative to one.
    ``diff`` is obtained - published for a figure, the margin inside (+) or outside (-) a bound.
    """
    rows = []
    for strategy, target in spec["targets"].items():
        for claim in _claims(target):
            metric = claim.get("metric") or spec.get("metric", "ACC")
            obtained, low, high, n = _obtained(summary, scenario, strategy, metric)
            published, std, allowed = claim.get("mean"), claim.get("std"), math.nan
            if published is not None:
                published = float(published)
                allowed = max(float(spec.get("tolerance", 1.5)), float(std) if std is not None else 0.0)
                diff = obtained - published
                passed = bool(abs(diff) <= allowed)
                criterion = f"{published:.2f} ± {allowed:.2f}"
            else:
                published = math.nan
                reference = (
                    _obtained(summary, scenario, claim["relative_to"], metric)[0] if claim.get("relative_to") else 1.0
                )
                criterion, passed, diff = _bound_check(claim, obtained, reference)
            rows.append(
                {
                    "scenario": scenario,
                    "strategy": strategy,
                    "metric": metric,
                    "criterion": criterion,
                    "published": published,
                    "published_std": std,
                    "allowed": allowed,
                    "obtained": obtained,
                    "ci_low": low,
                    "ci_high": high,
                    "n_seeds": n,
                    "diff": diff,
                    "passed": bool(passed),
                }
            )
    return pd.DataFrame(rows, columns=REPRODUCTION_COLUMNS)


def format_row(row: Mapping[str, Any], name: str) -> str:
    """One terminal line: the criterion, the obtained mean [CI], pass / FAIL and by how much."""
    head = f"{name} {row['strategy']}: {row['metric']}"
    if row["n_seeds"] == 0:
        return f"{head} target {row['criterion']}, obtained nothing (no run ok)  FAIL"
    verdict = "pass" if row["passed"] else "FAIL"
    if row["published"] == row["published"]:  # a published figure
        published = f"{row['published']:.2f}" + (
            f" ± {row['published_std']:.2f}"
            if row["published_std"] is not None and row["published_std"] == row["published_std"]
            else ""
        )
        return (
            f"{head} published {published}, obtained {row['obtained']:.2f} "
            f"[{row['ci_low']:.2f}, {row['ci_high']:.2f}] over {row['n_seeds']} seed(s); "
            f"diff {row['diff']:+.2f} (allowed ±{row['allowed']:.2f})  {verdict}"
        )
    return (
        f"{head} target {row['criterion']}, obtained {row['obtained']:.2f} "
        f"[{row['ci_low']:.2f}, {row['ci_high']:.2f}] over {row['n_seeds']} seed(s); "
        f"margin {row['diff']:+.2f}  {verdict}"
    )
