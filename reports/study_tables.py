"""The tables the study pages quote, computed from result folders' records: one function per kind, each returning
DataFrames of display strings (the numbers in their units), and one Markdown renderer. ``forgetbench table KIND
RESULTS...`` prints them; every table in docs/studies/ that one of these writes names that command.

* ``interval``: per scenario and strategy, each metric's mean [95% t-interval] over the seeds, and one metric's
  paired difference against naive (mean [95% interval], p): the report's own summary and comparisons.
* ``cost``: per scenario and strategy, the training seconds (mean, each seed's, the ratio of the means to naive's),
  the outcomes with 95% t-intervals, and the importance passes skipped.
* ``zoo``: per scenario and strategy, runs ok, ACC / forgetting / LA (mean +- std), train seconds and the
  regularizer's memory: the strategy zoo's table.
* ``plm``: the zoo's columns (without memory), forgetting's paired difference against naive and each adapter
  method's diagnostics (entries a task trains, the largest overlap of a later adapter's subspace).
* ``strength``: a search strength sweep, per strategy label: whether the penalty acted, err2 - err1 and the
  retrained architecture's score (mean [95% interval] and paired against naive), the last reward.
* ``frontier``: per scenario with a frontier, each method's forgetting at naive's plasticity minus 1, 2 and 5, and
  the matched-plasticity verdicts (the report's frontier.csv, recomputed from the records).
* ``attribution``: per scenario, the forgetting attribution's summary (how much of the loss increase the quadratic
  prediction explains) and each strategy's forgetting cut against naive.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from forgetbench.benchmark.core.store import MissingRun, ResultFolder
from forgetbench.benchmark.core import metrics as run_metrics
from forgetbench.benchmark.core.calibration import median_ratio
from forgetbench.benchmark.core.metric_registry import METRICS
from forgetbench.benchmark.core.record import RunRecord
from forgetbench.benchmark.core.stats import paired_difference, summarize, t_interval
from forgetbench.benchmark.core.units import display_scale
from forgetbench.reports import frontier as FT
from forgetbench.reports.attribution import attribution_summary
from forgetbench.reports.frames import attribution_frame
from forgetbench.reports.decisions import fmt_p
from forgetbench.reports.summary import (
    NAIVE,
    comparisons_table,
    how_ran,
    runs_long,
    summary_table,
    time_unlike_naive,
)

DEFAULT_METRICS = ("ACC", "forgetting", "LA")
COST_OUTCOMES = ("ACC", "forgetting", "regret", "search_tau")  # a continual-learning suite's, a search's


def _in_unit(metric: str, *values: float) -> list[str]:
    """``values`` written in ``metric``'s display unit: accuracies and errors in points, seconds to one decimal,
    anything else to two."""
    unit = METRICS[metric].unit if metric in METRICS else None
    scale, spec = display_scale(unit), {"accuracy": ".1f", "seconds": ".1f"}.get(str(unit), ".2f")
    return [f"{scale * float(v):{spec}}" for v in values]


def _bracketed(mean: str, low: str | None = None, high: str | None = None) -> str:
    """``mean [low, high]``, or the mean alone where there is no interval."""
    return mean if low is None or high is None else f"{mean} [{low}, {high}]"


def _interval_text(metric: str, mean: float, low: float, high: float) -> str:
    if not (np.isfinite(low) and np.isfinite(high)):
        return _in_unit(metric, mean)[0]
    return _bracketed(*_in_unit(metric, mean, low, high))


def interval_frame(
    records: Sequence[RunRecord],
    folders: Sequence[Path] = (),
    metrics: Sequence[str] = DEFAULT_METRICS,
    compare: str = "forgetting",
) -> pd.DataFrame:
    """Per (scenario, strategy), in the records' order: each of ``metrics`` as mean [95% t-interval] over the seeds,
    and ``compare``'s paired difference against naive, mean [95% interval] (p); "-" where there is none."""
    long = runs_long(records)
    summary = summary_table(long).set_index(["scenario", "strategy", "metric"])
    compared = comparisons_table(long, unlike=time_unlike_naive(records)).set_index(["scenario", "strategy", "metric"])
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
            "-" if d is None else f"{_interval_text(compare, d['diff'], d.ci_low, d.ci_high)} ({fmt_p(d.p_value)})"
        )
        rows.append(row)
    return pd.DataFrame(rows)


def cost_frame(
    records: Sequence[RunRecord], folders: Sequence[Path] = (), outcomes: Sequence[str] = COST_OUTCOMES
) -> pd.DataFrame:
    """Per (scenario, strategy): how its runs trained (:func:`how_ran`), training seconds (mean over seeds, each
    seed's; a batched run's is its 1/K share of the batch's wall), mean / naive's mean where both trained the same
    way (else said: a share of a batch and a run alone are not one cost), each outcome the runs have as mean [95%
    t-interval] over the seeds (one seed: its value), and the experiences whose importance pass was skipped
    (``*_importance_skipped``)."""
    long = runs_long(records)
    ran = {
        key: how_ran([r for r in records if r.ok and (r.scenario.label, r.strategy.label) == key])
        for key in {(r.scenario.label, r.strategy.label) for r in records}
    }
    unlike = time_unlike_naive(records)  # the one rule the paired time rows follow too
    rows = []
    for scenario, runs in long.groupby("scenario", sort=False):
        seconds = runs[runs.metric == "train_seconds"]
        naive_rows = seconds[seconds.strategy_name == NAIVE]
        naive = naive_rows.value.mean()
        naive_ran = ran.get((scenario, str(naive_rows.strategy.iloc[0]))) if len(naive_rows) else None
        for strategy, mine in runs.groupby("strategy", sort=False):
            own = seconds[seconds.strategy == strategy].sort_values("seed").value
            mine_ran = ran.get((scenario, strategy), "alone")
            like = naive_ran is not None and (scenario, strategy) not in unlike
            row = {
                "scenario": scenario,
                "strategy": strategy,
                "ran": mine_ran,
                "train s": f"{own.mean():.1f}",
                "seeds": ", ".join(f"{v:.1f}" for v in own),
                "/ naive": f"{own.mean() / naive:.2f}"
                if like and np.isfinite(naive) and naive > 0
                else ("-" if like or naive_ran is None else f"- (naive: {naive_ran})"),
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


ZOO_COLUMNS = {"ACC": "ACC (pts)", "forgetting": "forgetting (pts)", "LA": "LA (pts)", "train_seconds": "train s"}


def _suite_rank(folders: Sequence[Path]) -> dict[tuple[str, str], int]:
    """(``scenarios``|``strategies``, label) -> its place in the folders' suite.yaml (rows in the suite's order)."""
    import yaml

    rank: dict[tuple[str, str], int] = {}
    for folder in folders:
        path = ResultFolder(Path(folder)).suite
        suite = yaml.safe_load(path.read_text()) if path.is_file() else None
        for kind in ("scenarios", "strategies"):
            for spec in (suite or {}).get(kind) or []:
                rank.setdefault((kind, spec.get("label") or spec["name"]), len(rank))
    return rank


def _pairs_in_order(records: Sequence[RunRecord], folders: Sequence[Path]) -> list[tuple[str, str]]:
    """Every (scenario, strategy) that has a record, in the suite's order (else the records')."""
    pairs = list(dict.fromkeys((r.scenario.label, r.strategy.label) for r in records))
    rank = _suite_rank(folders)
    return sorted(
        pairs, key=lambda p: (rank.get(("scenarios", p[0]), len(rank)), rank.get(("strategies", p[1]), len(rank)))
    )


def _bytes(value: float) -> str:
    for unit, size in (("MiB", 2**20), ("KiB", 2**10)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


def _mean_std(metric: str, row: pd.Series | None) -> str:
    """A summary row as the zoo writes it: seconds to one decimal, bytes in their unit, accuracies in points
    with +- the standard deviation over the seeds."""
    if row is None or pd.isna(row["mean"]):
        return "-"
    if metric == "train_seconds":
        return f"{row['mean']:.1f}"
    if metric == "regularizer_bytes":
        return _bytes(row["mean"])
    std = "" if pd.isna(row["std"]) else f" ± {100 * row['std']:.1f}"
    return f"{100 * row['mean']:.1f}{std}"


def zoo_frame(
    records: Sequence[RunRecord],
    folders: Sequence[Path] = (),
    memory: bool = True,
    versus_naive: bool = False,
    missing: Sequence[MissingRun] = (),
) -> pd.DataFrame:
    """Per (scenario, strategy) in the suite's order: runs ok / all (``missing``: planned runs with no record, in
    the all), ACC, forgetting, LA (points, mean +- std over the ok seeds), train seconds and (``memory``) the
    regularizer's bytes; with ``versus_naive``, forgetting's paired difference against naive over the seeds (points,
    p of the two-sided paired t-test)."""
    long = runs_long(records)
    summary = summary_table(long).set_index(["scenario", "strategy", "metric"])
    compared = comparisons_table(long).set_index(["scenario", "strategy", "metric"]) if versus_naive else None
    columns = ZOO_COLUMNS | ({"regularizer_bytes": "memory"} if memory else {})
    runs = _runs_by_pair(records)
    rows = []
    for scenario, strategy in _pairs_in_order(records, folders):
        mine = runs[(scenario, strategy)]
        planned = len(mine) + sum(run.scenario == scenario and run.strategy == strategy for run in missing)
        row = {"scenario": scenario, "strategy": strategy, "runs ok": f"{sum(r.ok for r in mine)}/{planned}"}
        for metric, title in columns.items():
            key = (scenario, strategy, metric)
            row[title] = _mean_std(metric, summary.loc[key] if key in summary.index else None)
        if compared is not None:
            key = (scenario, strategy, "forgetting")
            d = compared.loc[key] if key in compared.index else None
            row["forgetting vs naive (p)"] = "-" if d is None else f"{100 * d['diff']:+.1f} (p = {fmt_p(d.p_value)})"
        rows.append(row)
    return pd.DataFrame(rows)


def _runs_by_pair(records: Sequence[RunRecord]) -> dict[tuple[str, str], list[RunRecord]]:
    runs: dict[tuple[str, str], list[RunRecord]] = {}
    for r in records:
        runs.setdefault((r.scenario.label, r.strategy.label), []).append(r)
    return runs


def _adapter_cells(records: Sequence[RunRecord]) -> tuple[str, str]:
    """Mean adapter entries a task trains, and the mean over seeds of the largest overlap of a later adapter."""
    trained, overlaps = [], []
    for record in records:
        rows = ((record.model_extra or {}).get("adapters") or {}).get("per_task") or []
        trained += [row["trainable_params"] for row in rows]
        later = [row["overlap"] for row in rows if row["overlap"] is not None]
        if later:
            overlaps.append(max(later))
    return (f"{np.mean(trained):,.0f}" if trained else "-", f"{np.mean(overlaps):.3f}" if overlaps else "-")


def plm_frame(
    records: Sequence[RunRecord], folders: Sequence[Path] = (), missing: Sequence[MissingRun] = ()
) -> pd.DataFrame:
    """The zoo's rows without memory, forgetting against naive (paired by seed), and the adapters' diagnostics
    ("-" where a strategy keeps no adapter)."""
    frame = zoo_frame(records, folders, memory=False, versus_naive=True, missing=missing)
    runs = _runs_by_pair(records)
    cells = [_adapter_cells([r for r in runs[(row.scenario, row.strategy)] if r.ok]) for row in frame.itertuples()]
    return frame.assign(**{"adapter params / task": [c[0] for c in cells], "max overlap": [c[1] for c in cells]})


# ----------------------------------------------------------------------------- a search's strength sweep

_NUMBER = re.compile(r"(\d+(?:\.\d+)?(?:e[+-]?\d+)?)")
LAST_REWARD = "last_reward"  # the controller's mean reward in the search's last epoch (metrics.search_epochs)


@dataclass(frozen=True)
class _SearchUnits:
    """A language-model search reports err in nats and perplexities; an image search points of error and
    accuracies."""

    forgetting: str
    score: str
    derived: str
    scale: float  # err2 - err1 to its display unit
    shown: float  # scores to theirs
    forgetting_format: str
    score_format: str
    unit: str
    score_name: str


LANGUAGE = _SearchUnits(
    "lm_forgetting_mean", "retrained_test_ppl", "derived_test_ppl", 1.0, 1.0, "{:.3f}", "{:.1f}", "nats", "ppl"
)
IMAGES = _SearchUnits(
    "forgetting_value_mean",
    "retrained_test_accuracy",
    "derived_test_accuracy",
    100.0,
    100.0,
    "{:.2f}",
    "{:.1f}",
    "points",
    "acc (%)",
)


def _natural(label: str) -> list[Any]:
    """``ewc[ewc_lambda=600]`` after ``ewc[ewc_lambda=60]``: numbers compared as numbers."""
    return [(0, float(part), "") if _NUMBER.fullmatch(part) else (1, 0.0, part) for part in _NUMBER.split(label)]


def _inert_share(record: RunRecord) -> tuple[int, int]:
    extras: dict[str, Any] = record.model_extra or {}
    ratios = [v for k, s in extras.items() if k.endswith("_penalty_to_data_gradient") for v in s or [] if v is not None]
    inert = sum(len(s or []) for k, s in extras.items() if k.endswith("_penalty_inert"))
    return inert, len(ratios)


def _mean_text(values: list[float], scale: float, fmt: str) -> str:
    s = summarize(values)
    if s.n == 0:
        return "–"
    if s.n < 2 or not math.isfinite(s.ci_low):
        return fmt.format(scale * s.mean)
    return _bracketed(*(fmt.format(scale * v) for v in (s.mean, s.ci_low, s.ci_high)))


def _paired_text(values: dict[int, float], naive: dict[int, float], scale: float, fmt: str) -> str:
    p = paired_difference(values, naive)
    if p.n == 0:
        return "–"
    if p.n < 2:
        return f"{fmt.format(scale * p.diff)} (1 seed)"
    return _bracketed(*(fmt.format(scale * v) for v in (p.diff, p.ci_low, p.ci_high))) + f", p = {p.p_value:.2g}"


def from_epoch(record: RunRecord, epoch: int) -> float:
    """Mean err2 - err1 over the search epochs from ``epoch`` on (the mean over each epoch's architectures, then over
    the epochs, as the forgetting value itself): the measure over the epochs a penalty started later was on."""
    gaps = run_metrics.search_epochs(record)["mean_gap"][epoch:]
    return float(sum(gaps) / len(gaps)) if gaps else math.nan


def strength_frame(
    records: Sequence[RunRecord], folders: Sequence[Path] = (), naive: str = NAIVE, from_epoch_on: int | None = None
) -> pd.DataFrame:
    """Per strategy label (one per strength; naive first, then in natural order) of the ok search runs: the seeds,
    the median penalty-to-data gradient ratio, the turns where the penalty was inert, err2 - err1 (over the epochs
    from ``from_epoch_on`` when given, else the scenario's own measure) and the retrained architecture's test score,
    each as mean [95% t-interval] and paired against ``naive`` on the same seeds (mean [95% interval], p), the
    controller's last-epoch reward, and the derived architecture's test score on the shared weights."""
    ok = [r for r in records if r.status == "ok"]  # a search run may have no accuracy matrix
    language = any("log-perplexity" in str(r.search.error if r.search else "") for r in ok)
    u = LANGUAGE if language else IMAGES
    by_label: dict[str, dict[int, dict[str, float]]] = {}
    ratios: dict[str, list[float]] = {}
    inert: dict[str, list[int]] = {}
    for r in ok:
        label = r.strategy.label or r.strategy.name
        rewards = run_metrics.search_epochs(r)["reward"]
        seed = by_label.setdefault(label, {})[r.seed] = run_metrics.search_metrics(r) | {
            LAST_REWARD: rewards[-1] if rewards else math.nan
        }
        if from_epoch_on is not None:
            seed[u.forgetting] = from_epoch(r, from_epoch_on)
        ratio = median_ratio(r.model_extra or {})
        if ratio is not None:
            ratios.setdefault(label, []).append(ratio)
        a, b = _inert_share(r)
        counts = inert.setdefault(label, [0, 0])
        counts[0], counts[1] = counts[0] + a, counts[1] + b

    def column(runs: Mapping[int, Mapping[str, float]], key: str) -> dict[int, float]:
        return {seed: m[key] for seed, m in runs.items() if key in m and math.isfinite(m[key])}

    base = by_label.get(naive, {})
    epochs = f", epochs {from_epoch_on}+" if from_epoch_on is not None else ""
    rows = []
    for label in sorted(by_label, key=lambda x: (x != naive, _natural(x))):
        runs = by_label[label]
        mine = sorted(ratios.get(label, []))
        shares = inert.get(label, [0, 0])
        forgetting, score = column(runs, u.forgetting), column(runs, u.score)
        rows.append(
            {
                "strategy": label,
                "seeds": str(len(runs)),
                "median penalty / data gradient": f"{mine[len(mine) // 2]:.3g}" if mine else "–",
                "inert turns": f"{shares[0]} / {shares[1]}" if shares[1] else "–",
                f"err2 - err1 ({u.unit}{epochs})": _mean_text(list(forgetting.values()), u.scale, u.forgetting_format),
                "vs naive": "–"
                if label == naive
                else _paired_text(forgetting, column(base, u.forgetting), u.scale, u.forgetting_format),
                f"retrained test {u.score_name}": _mean_text(list(score.values()), u.shown, u.score_format),
                "vs naive ": "–"
                if label == naive
                else _paired_text(score, column(base, u.score), u.shown, u.score_format),
                "last reward": _mean_text(list(column(runs, LAST_REWARD).values()), 1.0, "{:.2f}"),
                f"derived test {u.score_name} (shared weights)": _mean_text(
                    list(column(runs, u.derived).values()), u.shown, u.score_format
                ),
            }
        )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- sections with a title and notes


@dataclass(frozen=True)
class Section:
    """One titled table of a kind that writes one per scenario, with the sentences that follow it."""

    title: str
    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def frontier_sections(records: Sequence[RunRecord], folders: Sequence[Path] = ()) -> list[Section]:
    """:func:`matched_sections` of the records' frontier points (the rows of the report's frontier.csv)."""
    return matched_sections(FT.frontier_frame(records))


def matched_sections(points: pd.DataFrame) -> list[Section]:
    """Per scenario of ``points`` with a frontier (a method at two or more strengths beside naive): each method's
    forgetting at naive's plasticity minus 1, 2 and 5, mean [95% t-interval] over the seeds whose front reaches it
    (how many do), under a title with naive's own forgetting, then the report's matched-plasticity verdicts."""
    sections = []
    for scenario in dict.fromkeys(points.scenario):
        if not FT.has_frontier(points, scenario):
            continue
        axes = FT.scenario_axes(points, scenario)
        matched = FT.matched_plasticity(points, scenario)
        naive = points[(points.scenario == scenario) & (points.method == FT.NAIVE)].forgetting.mean()
        d = axes.digits
        rows = []
        for method, found in matched.groupby("method", sort=False):
            row = {"method": method}
            for r in found.itertuples():
                bounds = (f"{r.ci_low:.{d}f}", f"{r.ci_high:.{d}f}") if r.n >= 2 else ()  # one seed: no interval
                row[f"naive {axes.name} - {r.drop:g}"] = (
                    "not reached" if r.n < 1 else f"{_bracketed(f'{r.mean:.{d}f}', *bounds)} ({r.n}/{r.seeds})"
                )
            rows.append(row)
        sections.append(
            Section(
                f"{scenario} (naive forgets {naive:.{d}f})",
                pd.DataFrame(rows),
                FT.matched_verdicts(matched, axes),
            )
        )
    return sections


ATTRIBUTION_DIGITS = {"observed": 4, "predicted": 4, "first_order": 4, "explained": 1, "rho": 2, "first_order_share": 0}


def attribution_sections(records: Sequence[RunRecord], folders: Sequence[Path] = ()) -> list[Section]:
    """Per scenario with an attribution, model A's accuracy after its training (naive's seeds) in the title, the
    attribution's summary (observed / predicted / first-order loss increase in nats, explained %, rho, first-order
    share %), then each strategy's forgetting cut against naive. Scenarios by A's accuracy, highest first."""
    ok = [r for r in records if r.ok]
    forgetting = runs_long(ok)
    forgetting = forgetting[forgetting.metric == "forgetting"].groupby(["scenario", "strategy"]).value.mean()
    scenarios = dict.fromkeys(r.scenario.label for r in ok)
    first = {
        s: [r.accuracy_matrix[0][0] for r in ok if r.scenario.label == s and r.strategy.label == NAIVE]
        for s in scenarios
    }
    sections = []
    for scenario in sorted(scenarios, key=lambda s: -np.mean(first[s]) if first[s] else 0.0):
        summary = attribution_summary(attribution_frame(ok, scenario), [NAIVE, "wpl"])
        if summary.empty:
            continue
        shown = summary.assign(
            **{c: [f"{v:.{n}f}" for v in summary[c]] for c, n in ATTRIBUTION_DIGITS.items() if c in summary}
        )
        notes = []
        if (scenario, NAIVE) in forgetting.index:
            naive = 100 * forgetting[(scenario, NAIVE)]
            for strategy in [s for (sc, s) in forgetting.index if sc == scenario and s != NAIVE]:
                mine = 100 * forgetting[(scenario, strategy)]
                notes.append(
                    f"forgetting: naive {naive:.1f}, {strategy} {mine:.1f} points: cut {100 * (1 - mine / naive):.0f}%"
                )
        seeds = ", ".join(f"{100 * a:.1f}" for a in first[scenario])
        accuracy = f"{100 * np.mean(first[scenario]):.1f}% (seeds {seeds})" if first[scenario] else "-"
        sections.append(Section(f"{scenario}: model A's accuracy after its training {accuracy}", shown, notes))
    return sections


# ----------------------------------------------------------------------------- Markdown (the kinds: table_kinds.py)


def markdown(frame: pd.DataFrame) -> str:
    """``frame`` as a Markdown table (its columns as the header, every cell as written)."""
    lines = ["| " + " | ".join(str(c).strip() for c in frame.columns) + " |", "|---" * len(frame.columns) + "|"]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def render(table: pd.DataFrame | list[Section]) -> str:
    """A kind's output as Markdown: one table, or each section's title (a level-2 heading), table and notes."""
    if isinstance(table, pd.DataFrame):
        return markdown(table)
    parts = []
    for section in table:
        parts += [f"## {section.title}", "", markdown(section.frame), ""]
        parts += [*section.notes, ""] if section.notes else []
    return "\n".join(parts).rstrip("\n")
