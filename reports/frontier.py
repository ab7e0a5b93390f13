"""Frontiers from result records: every strength a method ran at, its Pareto front per seed, and the methods'
forgetting at matched plasticity (:mod:`forgetbench.benchmark.core.frontier` does the maths).

A *method* is a strategy entry's label without its grid suffix (``ewc[ewc_lambda=10]`` -> ``ewc``): the
runs of a strength sweep (a grid on the strength, ``ewc_lambda: [1, 10, 100, 1000]``) are one method's
points. A scenario has a frontier comparison when some method ran at two or more settings and naive ran too
(its plasticity per seed sets the targets: naive's LA minus 1, 2 and 5 points).

What plasticity and forgetting are depends on the runs (:data:`AXES`): LA and forgetting for a task sequence;
for a search, the derived architecture's validation perplexity (retrained alone where it was) or accuracy
against err2 - err1 over the search.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from forgetbench.benchmark.core import decide as D
from forgetbench.benchmark.core.frontier import matched_forgetting, pareto_front
from forgetbench.benchmark.core.metrics import run_metrics
from forgetbench.benchmark.core.record import RunRecord
from forgetbench.benchmark.core.stats import summarize
from forgetbench.reports import decisions as DC

NAIVE = "naive"
DROPS = (1.0, 2.0, 5.0)  # plasticity below naive's (in its axes' unit) at which methods are compared
COLUMNS = [
    "scenario",
    "method",
    "setting",
    "value",
    "seed",
    "plasticity",
    "forgetting",
    "on_front",
    "axes",
    "plasticity_metric",
]


@dataclass(frozen=True)
class Axes:
    """A frontier's two axes, in display units. ``sign`` is +1 when a higher plasticity is better (LA), -1 when a
    lower one is (perplexity): fronts and matched targets are computed on ``sign * plasticity``, and tables and
    figures show the value itself."""

    kind: str  # the frontier.csv ``axes`` column
    plasticity: tuple[str, ...]  # run metrics, the first one finite in a run is its plasticity
    forgetting: str  # the run metric that is its forgetting
    scale: float  # metric value -> display unit (fractions to points)
    sign: float
    name: str  # plasticity in sentences: "naive's LA - 2 points"
    unit: str  # of plasticity
    forgetting_unit: str
    plasticity_label: str  # the figure's axes
    forgetting_label: str
    digits: int = 1  # of forgetting in sentences


TASKS = Axes(
    "tasks",
    ("LA",),
    "forgetting",
    100.0,
    1.0,
    "LA",
    "points",
    "points",
    "LA: accuracy just after learning (%)",
    "Forgetting (accuracy points, lower is better)",
)
LANGUAGE_SEARCH = Axes(
    "language-model search",
    ("retrained_valid_ppl", "derived_valid_ppl"),
    "lm_forgetting_mean",
    1.0,
    -1.0,
    "perplexity",
    "perplexity",
    "nats",
    "validation perplexity, lower is better\n(the derived architecture)",
    "err2 - err1 over the search (nats, lower is better)",
    digits=3,
)
IMAGE_SEARCH = Axes(
    "image search",
    ("retrained_valid_accuracy", "derived_valid_accuracy"),
    "forgetting_value_mean",
    100.0,
    1.0,
    "derived accuracy",
    "points",
    "points",
    "validation accuracy (%)\n(the derived architecture)",
    "err2 - err1 over the search (points, lower is better)",
)
AXES = (TASKS, LANGUAGE_SEARCH, IMAGE_SEARCH)  # the first whose metrics a run has decides its point
AXES_BY_KIND = {a.kind: a for a in AXES}


def run_point(metrics: Mapping[str, float]) -> tuple[Axes, dict[str, float], float] | None:
    """A run's frontier point from its metrics: its axes, every plasticity metric of those axes it has (finite, in
    display units) and its forgetting; None when it has no finite pair."""
    for axes in AXES:
        forgetting = float(metrics.get(axes.forgetting, np.nan))
        candidates = {key: axes.scale * float(metrics.get(key, np.nan)) for key in axes.plasticity}
        candidates = {key: value for key, value in candidates.items() if np.isfinite(value)}
        if candidates and np.isfinite(forgetting):
            return axes, candidates, axes.scale * forgetting
    return None


def _one_plasticity_metric(candidates: Sequence[Mapping[str, float]], axes: Axes) -> str:
    """The plasticity metric a scenario's points use: the first of its axes' that every run has, else the one
    most runs have (a front that mixed retrained and shared-weight perplexities would compare unlike things)."""
    keys = [k for k in axes.plasticity if all(k in c for c in candidates)]
    return keys[0] if keys else max(axes.plasticity, key=lambda k: sum(k in c for c in candidates))


def scenario_axes(frame: pd.DataFrame, scenario: str) -> Axes:
    """The axes of ``scenario``'s points (the most common, should runs disagree)."""
    kinds = frame.loc[frame.scenario == scenario, "axes"]
    return AXES_BY_KIND[kinds.mode().iloc[0]] if len(kinds) else TASKS


def _method(label: str) -> tuple[str, str]:
    base, _, rest = label.partition("[")
    return base, rest.rstrip("]")


def frontier_frame(
    records: Sequence[RunRecord], computed: Mapping[str, Mapping[str, float]] | None = None
) -> pd.DataFrame:
    """One row per ok run with a frontier point (:func:`run_point`): scenario, method, setting (the grid suffix),
    value (the swept param's value when exactly one param varies within the method), seed, plasticity and
    forgetting in their axes' units, whether the point is on its seed's Pareto front, the axes and the plasticity
    metric. ``computed`` (run id -> metrics, as :func:`forgetbench.reports.summary.load_records` gives them) saves
    measuring the runs again."""
    rows = []
    computed = computed or {}
    for r in records:
        if r.status != "ok":
            continue
        point = run_point(computed.get(r.run_id) or run_metrics(r))
        if point is None:
            continue
        axes, candidates, forgetting = point
        method, setting = _method(r.strategy.label or r.strategy.name)
        rows.append(
            {
                "scenario": r.scenario.label or r.scenario.name,
                "method": method,
                "setting": setting,
                "params": json.dumps(r.strategy.params, sort_keys=True, default=str),
                "seed": r.seed,
                "candidates": candidates,
                "forgetting": forgetting,
                "axes": axes.kind,
            }
        )
    frame = pd.DataFrame(
        rows,
        columns=[
            "scenario",
            "method",
            "setting",
            "params",
            "seed",
            "candidates",
            "forgetting",
            "axes",
        ],
    )
    frame["plasticity_metric"] = ""
    for (_, kind), group in frame.groupby(["scenario", "axes"]):
        frame.loc[group.index, "plasticity_metric"] = _one_plasticity_metric(list(group.candidates), AXES_BY_KIND[kind])
    frame["plasticity"] = [c.get(k, np.nan) for c, k in zip(frame.candidates, frame.plasticity_metric)]
    frame = frame[frame.plasticity.notna()].reset_index(drop=True)  # runs without the scenario's metric
    frame["value"] = np.nan
    for _, group in frame.groupby(["scenario", "method"]):
        params = [json.loads(p) for p in group.params]
        varying = [k for k in set().union(*params) if len({json.dumps(p.get(k), default=str) for p in params}) > 1]
        if len(varying) == 1:
            values = pd.to_numeric(pd.Series([p.get(varying[0]) for p in params], index=group.index), errors="coerce")
            frame.loc[group.index, "value"] = values
    on_front = np.zeros(len(frame), dtype=bool)
    sign = frame["axes"].map(lambda kind: AXES_BY_KIND[kind].sign).to_numpy(dtype=float)
    plasticity, forgetting = sign * frame.plasticity.to_numpy(dtype=float), frame.forgetting.to_numpy(dtype=float)
    for positions in frame.groupby(["scenario", "method", "seed"]).indices.values():
        on_front[positions[pareto_front(plasticity[positions], forgetting[positions])]] = True
    frame["on_front"] = on_front
    return frame[COLUMNS].reset_index(drop=True)


def has_frontier(frame: pd.DataFrame, scenario: str) -> bool:
    """Some method of ``scenario`` ran at two or more settings, and naive ran."""
    mine = frame[frame.scenario == scenario]
    return NAIVE in set(mine.method) and bool(
        (mine[mine.method != NAIVE].groupby("method").setting.nunique() >= 2).any()
    )


def matched_plasticity(frame: pd.DataFrame, scenario: str, drops: Sequence[float] = DROPS) -> pd.DataFrame:
    """Per method and drop d: the forgetting of each seed's front at that seed's naive plasticity made worse by d
    (LA - d points; perplexity + d), with at least that plasticity
    (:func:`forgetbench.benchmark.core.frontier.forgetting_at`), and its mean with a 95% t-interval over the seeds
    where the front reaches that plasticity. Naive is one of the methods: its one point per seed is more plastic than
    every level, so its value there is its own forgetting, and a method swept or tuned alone beside it is compared
    with it (without naive a lone method had no pair: nothing was decided at matched plasticity)."""
    mine = frame[frame.scenario == scenario].assign(
        signed=lambda f: scenario_axes(frame, scenario).sign * f.plasticity.astype(float)
    )
    naive_la = mine[mine.method == NAIVE].groupby("seed").signed.mean().to_dict()
    rows = []
    groups = dict(list(mine.groupby("method", sort=False)))
    for method in sorted(groups, key=lambda m: m == NAIVE):  # naive too (last): its point is each level's reference
        group = groups[method]
        points = {seed: (g.signed.to_numpy(), g.forgetting.to_numpy()) for seed, g in group.groupby("seed")}
        for drop in drops:
            per_seed = matched_forgetting(points, {s: la - drop for s, la in naive_la.items()})
            stat = summarize(list(per_seed.values()))
            rows.append(
                {
                    "scenario": scenario,
                    "method": method,
                    "drop": drop,
                    "mean": stat.mean,
                    "ci_low": stat.ci_low,
                    "ci_high": stat.ci_high,
                    "n": stat.n,
                    "seeds": len(per_seed),
                    "per_seed": {int(s): v for s, v in per_seed.items()},
                }
            )
    return pd.DataFrame(
        rows, columns=["scenario", "method", "drop", "mean", "ci_low", "ci_high", "n", "seeds", "per_seed"]
    )


def level_name(axes: Axes, drop: float) -> str:
    """A plasticity level in words: ``naive's LA - 1 points``."""
    return f"naive's {axes.name} {'-' if axes.sign > 0 else '+'} {drop:g} {axes.unit}"


def _family_at(group: pd.DataFrame, axes: Axes, options: DC.DecisionOptions, levels: int = 1) -> list[D.Decision]:
    """The methods reaching one plasticity level (on two or more seeds), decided on their per-seed forgetting there
    (in the metric's own unit: display units / ``axes.scale``) in one family of every pair of the methods the suite
    ran (``group``: each of them at this level) at each of the ``levels`` the verdict states: which ones reach a
    level is data, and never shrinks the family, and the claims at every level share one alpha."""
    reached = group[group.n >= 2].sort_values("mean")
    values = {
        str(r.method): {int(seed): float(v) / axes.scale for seed, v in r.per_seed.items() if np.isfinite(v)}
        for r in reached.itertuples()
    }
    planned = group.method.nunique()
    if len(values) < 2:
        return []
    size = levels * planned * (planned - 1) // 2
    return DC.family(values, options.margin(axes.forgetting), options, list(values), size=size)


def matched_decisions(
    points: pd.DataFrame, scenario: str, options: DC.DecisionOptions | None = None, drops: Sequence[float] = DROPS
) -> list[tuple[str, str, list[D.Decision]]]:
    """(level, metric, decisions) per plasticity level of ``scenario``'s front (:func:`matched_plasticity`)."""
    options = options or DC.DecisionOptions()
    axes = scenario_axes(points, scenario)
    matched = matched_plasticity(points, scenario, drops)
    levels = matched["drop"].nunique()
    return [
        (level_name(axes, drop), axes.forgetting, _family_at(group, axes, options, levels))
        for drop, group in matched.groupby("drop", sort=False)
    ]


def matched_verdicts(matched: pd.DataFrame, axes: Axes = TASKS, options: DC.DecisionOptions | None = None) -> list[str]:
    """One sentence per drop: each method's forgetting at that plasticity, and every pair of methods decided as one
    family (:mod:`forgetbench.reports.decisions`: paired tests of the mean, Holm's step-down, one alpha)."""
    options = options or DC.DecisionOptions()
    lines = []
    levels = matched["drop"].nunique()
    for drop, group in matched.groupby("drop", sort=False):
        reached = group[group.n >= 2].sort_values("mean")
        missing = sorted(set(group.method) - set(reached.method))
        if reached.empty:
            lines.append(
                f"At {level_name(axes, drop)} no method's front reaches that plasticity on two or more "
                "seeds: widen the strength range."
            )
            continue
        d = axes.digits
        ranking = ", ".join(
            f"{r.method} {r.mean:.{d}f} [{r.ci_low:.{d}f}, {r.ci_high:.{d}f}] ({r.n} seeds)"
            if r.n >= D.MIN_PAIRED
            else f"{r.method} {r.mean:.{d}f} ({r.n} seeds: too few for an interval)"
            for r in reached.itertuples()
        )
        line = f"At {level_name(axes, drop)}, forgetting ({axes.forgetting_unit}, mean [95% t interval, descriptive]): {ranking}."
        decisions = _family_at(group, axes, options, levels)
        if decisions:
            line += " " + DC.family_sentence(
                decisions, "forgetting there", axes.scale, axes.forgetting_unit, d, options.alpha
            )
        if missing:
            line += f" Not reached on two seeds: {', '.join(missing)}."
        lines.append(line)
    return lines
