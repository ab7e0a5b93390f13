"""Does the quadratic premise hold on this network? The forgetting attribution's summary, per strategy, and the
sentence the report says (the numbers come from :func:`forgetbench.reports.frames.attribution_frame`).

* ``explained``: sum of the quadratic predictions / sum of the observed loss increases
  (:func:`~forgetbench.benchmark.core.metrics.quadratic_explained`), in percent;
* ``rho``: Spearman's rank correlation between predicted and observed over the points (an earlier model after a turn, or at a curve point inside a later one);
* ``first_order``: sum of the first-order terms / sum of the observed increases, in percent: far from 0 when
  the earlier models were not at a minimum of their held-out loss, where the quadratic alone cannot hold.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from forgetbench.benchmark.core.metrics import quadratic_explained, spearman_rho

SUMMARY = ["strategy", "points", "observed", "predicted", "first_order", "explained", "rho", "first_order_share"]
NEGLIGIBLE = 0.10  # a first-order term below 10% of the observed increase is called negligible


def _summary_row(strategy: str, part: pd.DataFrame) -> dict:
    rho = spearman_rho(part.predicted, part.observed) if len(part) >= 3 else float("nan")
    observed = float(part.observed.sum())
    return {
        "strategy": strategy,
        "points": len(part),
        "observed": float(part.observed.mean()),
        "predicted": float(part.predicted.mean()),
        "first_order": float(part.first_order.mean()),
        "explained": 100 * quadratic_explained(part.predicted, part.observed),
        "rho": rho,
        "first_order_share": 100 * float(part.first_order.sum()) / observed if observed > 0 else float("nan"),
    }


def attribution_summary(frame: pd.DataFrame, order: list[str] | None = None) -> pd.DataFrame:
    """One row per strategy (and ``all``): points, mean observed / predicted / first-order increase (nats),
    explained (%), rho, first_order_share (%)."""
    if frame.empty:
        return pd.DataFrame(columns=SUMMARY)
    strategies = [s for s in (order or []) if s in set(frame.strategy)] or list(dict.fromkeys(frame.strategy))
    rows = [_summary_row(s, frame[frame.strategy == s]) for s in strategies]
    return pd.DataFrame(rows + [_summary_row("all", frame)], columns=SUMMARY)


def attribution_sentence(frame: pd.DataFrame) -> str | None:
    """The report's plain sentence about the premise, over every strategy's points."""
    if frame.empty:
        return None
    row = _summary_row("all", frame)
    if not np.isfinite(row["explained"]):
        return (
            f"The earlier models' held-out loss did not rise over the {row['points']} points measured, so "
            "there is no forgetting for the quadratic prediction to explain."
        )
    rho = f"Spearman's rho {row['rho']:.2f}" if np.isfinite(row["rho"]) else "too few points for a rank correlation"
    first = row["first_order_share"]
    verdict = (
        "is not negligible: the earlier models were not at a minimum, where the quadratic alone cannot hold"
        if abs(first) >= 100 * NEGLIGIBLE
        else "is negligible"
    )
    return (
        f"On this network the quadratic prediction (1/2) sum F (theta - theta*)^2 explains "
        f"{row['explained']:.0f}% of the observed loss increase of the earlier models ({row['points']} points, "
        f"{rho}); the first-order term, {first:+.0f}% of it, {verdict}."
    )
