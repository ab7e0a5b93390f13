"""Decide any per-seed table: ``forgetbench decide TABLE.csv`` and ``forgetbench.decide(frame)``, the decisions the
report makes for a results folder, for numbers from any tool (an Avalanche or Mammoth run's per-seed accuracies).

The table has one row per (method, seed): columns ``method``, ``seed``, ``value``; optionally ``scenario`` (one
family per scenario) and ``order`` (the round that added each seed, 0 for the first, or any increasing count; a
pair's seed counts from the later of its two runs). Every pair of a scenario's methods is decided as one family
(:mod:`forgetbench.benchmark.core.decide`) about its mean difference: A < B, A > B, equivalent within ``margin`` (in
the values' own unit), or undecided, the chance of any false claim at most ``alpha``. Without ``order`` the seeds
are one fixed set, looked at once (their order changes nothing); with it, each round is a look of a group-sequential
test planned to ``max_seeds`` (the rounds' budget; by default the most seeds a method has in the table).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from forgetbench.benchmark.core import decide as D
from forgetbench.reports import decisions as DC

REQUIRED = ("method", "seed", "value")
OPTIONAL = ("scenario", "order")
NAIVE = "naive"


class TableError(ValueError):
    """A table that cannot be decided: the column, row or value is named (one line; the CLI exits 2)."""


def _shown(value: object) -> str:
    """A cell as the table wrote it: ``0.5``, ``x``, ``empty``; never numpy's repr."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "empty"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):g}"
    return repr(str(value)) if isinstance(value, str) else str(value)


def _checked(frame: pd.DataFrame) -> pd.DataFrame:
    """The table, checked before any work: every refusal one line naming the column, row and value."""
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise TableError(
            f"missing column(s) {', '.join(missing)}; a table has {', '.join(REQUIRED)} (and optionally "
            f"{', '.join(OPTIONAL)}); it has {', '.join(map(str, frame.columns)) or 'none'}"
        )
    frame = frame.copy().reset_index(drop=True)
    blank = frame["method"].isna() | (frame["method"].astype(str).str.strip() == "")
    if blank.any():
        raise TableError(f"method: empty (row {int(np.argmax(blank)) + 1}); every row names its method")
    frame["scenario"] = frame["scenario"].astype(str) if "scenario" in frame.columns else "-"
    frame["method"] = frame["method"].astype(str)
    if "order" in frame.columns:  # records written before the first seeds said round 0 left it blank: round 0
        frame["order"] = frame["order"].where(frame["order"].notna(), 0)
    for column, kind in (("seed", "integer"), ("value", "number"), ("order", "integer")):
        if column not in frame.columns:
            continue
        numbers = pd.to_numeric(frame[column], errors="coerce")
        bad = numbers.isna() | ~np.isfinite(numbers.fillna(0.0))
        if bad.any():
            row = int(np.argmax(bad))
            what = "a finite number" if column == "value" else f"an {kind}"
            raise TableError(f"{column}: {_shown(frame[column][row])} (row {row + 1}) is not {what}")
        if column in ("seed", "order") and (numbers != numbers.round()).any():
            row = int(np.argmax(numbers != numbers.round()))
            raise TableError(f"{column}: {_shown(frame[column][row])} (row {row + 1}) is not an {kind}")
        frame[column] = numbers.astype(int) if column != "value" else numbers.astype(float)
    twice = frame[frame.duplicated(["scenario", "method", "seed"], keep=False)]
    if not twice.empty:
        row = twice.iloc[0]
        raise TableError(
            f"method {row['method']!r}, seed {row['seed']} appears {len(twice[(twice.method == row['method']) & (twice.seed == row['seed'])])} "
            "times: one value per method and seed (which one is right cannot be told)"
        )
    methods = frame.groupby("scenario", sort=False).method.unique()
    if frame.empty:
        raise TableError("nothing to compare: the table has no rows")
    if not any(len(m) >= 2 for m in methods):
        if len(methods) == 1:
            raise TableError(
                f"nothing to compare: one method ({methods.iloc[0][0]}); a decision needs two on the same seeds"
            )
        listed = "; ".join(f"{scenario}: {', '.join(m)}" for scenario, m in list(methods.items())[:5])
        raise TableError(f"nothing to compare: no scenario has two methods ({listed})")
    return frame


def decide(
    frame: pd.DataFrame,
    margin: float = 0.0,
    alpha: float = D.ALPHA,
    direction: Literal["lower", "higher"] = "lower",
    baseline: str | None = None,
    metric: str = "value",
    max_seeds: int | None = None,
) -> pd.DataFrame:
    """Every pair of every scenario's methods decided as one family per scenario (module docstring): the report's
    decisions frame (:data:`forgetbench.reports.decisions.COLUMNS`), in the values' own unit. The methods are
    paired in the report's order: ``baseline`` first (``naive`` where present when none is named; a named one must be
    a method of the table), then best first (``direction``: which is better); ``first`` minus ``second`` is the
    difference each row decides. Every row is checked first: an empty or non-finite value, an empty method, a
    seed or order that is not an integer, or a table with nothing to compare is refused, naming it."""
    if direction not in ("lower", "higher"):
        raise TableError(f"direction: {direction!r}; allowed: lower, higher")
    if not (0.0 < alpha < 0.5):
        raise TableError(f"alpha: {alpha!r}; allowed: a number in (0, 0.5)")
    if not (np.isfinite(margin) and margin >= 0):
        raise TableError(f"margin: {margin!r}; allowed: a number >= 0 in the values' unit")
    if max_seeds is not None and max_seeds < 1:
        raise TableError(f"max seeds: {max_seeds!r}; allowed: a whole number >= 1 (the rounds' planned most seeds)")
    frame = _checked(frame)
    if baseline is not None and baseline not in set(frame.method):
        methods = ", ".join(sorted(set(frame.method))[:10])
        raise TableError(f"baseline: {baseline!r} is not a method of the table (its methods: {methods})")
    baseline = NAIVE if baseline is None else baseline
    sequential = "order" in frame.columns
    most = int(frame.groupby(["scenario", "method"]).size().max()) if len(frame) else 0
    if sequential and max_seeds is not None and max_seeds < most:
        raise TableError(f"max seeds: {max_seeds} is below the {most} seeds a method has in the table")
    options = DC.DecisionOptions(
        method="sequential" if sequential else "fixed", alpha=alpha, planned=(max_seeds or most) if sequential else None
    )
    out = []
    for scenario, group in frame.groupby("scenario", sort=False):
        values = {
            str(method): {int(s): float(v) for s, v in zip(g.seed, g.value)}
            for method, g in group.groupby("method", sort=False)
        }
        rounds = (
            {str(method): dict(zip(g.seed.astype(int), g.order.astype(int))) for method, g in group.groupby("method")}
            if "order" in group.columns
            else None
        )
        sign = 1.0 if direction == "lower" else -1.0
        order = sorted(values, key=lambda m: (m != baseline, sign * float(np.mean(list(values[m].values())))))
        decisions = DC.family(values, margin, options, order, rounds)
        out += DC.rows(str(scenario), DC.DEFAULT_LEVEL, metric, decisions)
    return DC.frame_of(out)


def read_table(path: Path) -> pd.DataFrame:
    """A per-seed table from CSV (lines starting with # are comments)."""
    try:
        return pd.read_csv(path, comment="#")
    except FileNotFoundError:
        raise TableError("no such file") from None
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise TableError(f"not a readable CSV table ({str(exc).splitlines()[0]})") from None


def sentences(
    frame: pd.DataFrame, alpha: float = D.ALPHA, digits: int = 3, direction: Literal["lower", "higher"] = "lower"
) -> list[str]:
    """One sentence per scenario, as the report's verdicts word a family's decisions (``direction``: which values
    are better, the method a claim names first)."""
    lines = []
    for scenario, group in frame.groupby("scenario", sort=False):
        decisions = [
            D.Decision(
                first=r.first,
                second=r.second,
                outcome=r.outcome,
                diff=r.diff,
                ci_low=r.ci_low,
                ci_high=r.ci_high,
                ci_level=r.ci_level,
                p_value=r.p_value,
                p_adjusted=r.p_adjusted,
                p_equivalence_adjusted=r.p_equivalence_adjusted,
                n=int(r.n),
                seeds=tuple(r.seeds),
                margin=r.margin,
                method=r.method,
                family=int(r.family),
                more_seeds=None if pd.isna(r.more_seeds) else int(r.more_seeds),
                note=r.note or "",
                decided_at=None if pd.isna(r.decided_at) else int(r.decided_at),
                planned=None if pd.isna(r.planned) else int(r.planned),
            )  # fmt: skip
            for r in group.itertuples()
        ]
        text = DC.family_sentence(decisions, "the values", 1.0, "as given", digits, alpha, direction == "lower")
        lines.append(text if scenario == "-" else f"{scenario}: {text}")
    return lines
