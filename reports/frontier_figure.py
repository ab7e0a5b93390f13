"""The frontier figure: each method's forgetting against its plasticity across the strengths it ran, the
matched-plasticity targets drawn across, so a method is read where it keeps the plasticity the others keep."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: never try to open a window

import pandas as pd

from forgetbench.reports.frontier import TASKS, Axes
from forgetbench.benchmark.core.frontier import pareto_front
from forgetbench.reports.figures import NAIVE_GREY, new_figure, to_data_uri


def _plasticity_edges(points: pd.DataFrame, targets: dict[float, float], sign: float) -> tuple[float, float]:
    """The plasticity axis's limits: naive's plasticity down to the lowest target, with a margin, and up to the best
    mean a method reached."""
    naive_rows = points[points.method == "naive"]
    naive_level = float(naive_rows.plasticity.mean()) if len(naive_rows) else float(points.plasticity.max())
    levels = [naive_level, *targets.values()]
    span = max(abs(level - naive_level) for level in levels) or 5.0
    margin = 0.4 * span
    low_edge = min(levels) - margin if sign > 0 else min(levels) - margin / 4
    high_edge = max(levels) + margin / 4 if sign > 0 else max(levels) + margin
    setting_means = points.groupby(["method", "setting"]).plasticity.mean()  # what is drawn: means over seeds
    best_seen = setting_means.max() if sign > 0 else setting_means.min()
    if sign > 0:
        high_edge = max(high_edge, float(best_seen) + margin / 4)
    else:
        low_edge = min(low_edge, float(best_seen) - margin / 4)
    return low_edge, high_edge


def _draw_front(
    ax: Any,
    method: str,
    mean: pd.DataFrame,
    colour: tuple,
    edges: tuple[float, float],
    sign: float,
    placed: list[tuple[float, float]],
) -> int:
    """One method's front over its settings' means (faint where dominated, triangles on the edge for points beyond
    the compared region, its two ends labelled with their strength unless that would overlap ``placed``); the
    number of points beyond the region."""
    low_edge, high_edge = edges

    def inside(value: float) -> bool:
        return low_edge <= value <= high_edge

    front = pareto_front(sign * mean.plasticity.to_numpy(float), mean.forgetting.to_numpy(float))
    on_front = mean.iloc[front]
    dominated = mean.drop(index=on_front.index)
    visible = on_front[[inside(v) for v in on_front.plasticity]]
    every = pd.concat([on_front, dominated])
    beyond_edge = every[[not inside(v) for v in every.plasticity]]
    faint = dominated[[inside(v) for v in dominated.plasticity]]
    ax.plot(visible.forgetting, visible.plasticity, marker="o", ms=5, lw=1.8, color=colour, label=method)
    if len(faint):
        ax.plot(faint.forgetting, faint.plasticity, marker="o", ms=4, ls="none", color=colour, alpha=0.25)
    for below, group in beyond_edge.groupby(beyond_edge.plasticity < low_edge):
        ax.plot(
            group.forgetting,
            [low_edge if below else high_edge] * len(group),
            marker="v" if below == (sign > 0) else "^",
            ms=6,
            ls="none",
            color=colour,
            alpha=0.4,
            clip_on=False,
        )
    ends = [visible.iloc[0], visible.iloc[-1]] if len(visible) > 1 else list(visible.itertuples(index=False))
    for end in ends if visible.value.notna().all() else []:  # the front's ends: the direction of strength reads
        x, y = ax.transData.transform((end.forgetting, end.plasticity))
        if any(abs(x - px) < 38 and abs(y - py) < 11 for px, py in placed):
            continue  # it would overlap a label already placed
        placed.append((x, y))
        ax.annotate(
            f"{end.value:g}",
            (end.forgetting, end.plasticity),
            xytext=(4, 3),
            textcoords="offset points",
            fontsize=7,
            color=colour,
        )
    return len(beyond_edge)


def _draw_targets(ax: Any, targets: dict[float, float], axes: Axes) -> None:
    """The matched-plasticity targets as dotted lines, named at the right."""
    worse = "-" if axes.sign > 0 else "+"
    for drop, level in targets.items():
        ax.axhline(level, color=NAIVE_GREY, lw=0.8, ls=":")
        ax.text(
            0.99,
            level,
            f"naive {axes.name} {worse} {drop:g}",
            transform=ax.get_yaxis_transform(),
            ha="right",
            va="bottom",
            fontsize=7,
            color=NAIVE_GREY,
        )


def frontier(
    points: pd.DataFrame, colours: dict[str, tuple], targets: dict[float, float], axes: Axes = TASKS
) -> str | None:
    """One scenario's stability-plasticity frontiers (:func:`forgetbench.reports.frontier.frontier_frame`), read at a
    glance: per method, the mean over seeds of plasticity (y) and forgetting (x) at each setting; its Pareto front
    over those means as one line in order of plasticity, the points it dominates faint; naive as a grey star; dotted
    lines at the matched-plasticity targets (``targets``: drop -> plasticity). The plasticity axis covers the region
    the comparison reads (naive's plasticity down to the lowest target, with a margin): a point beyond it is drawn on
    the edge as a faint triangle pointing out, and counted in the title. Each front's two ends carry their strength,
    a label that would overlap one already placed is left out. ``axes`` (:class:`forgetbench.reports.frontier.Axes`,
    default LA against forgetting) labels them; a plasticity where lower is better (perplexity) is drawn downwards,
    so the best corner stays top left."""
    if points.empty:
        return None
    fig = new_figure(6.4, 4.4)
    ax = fig.add_subplot()
    sign = axes.sign
    low_edge, high_edge = _plasticity_edges(points, targets, sign)
    means = {
        method: points[points.method == method]
        .groupby("setting", sort=False)
        .agg(plasticity=("plasticity", "mean"), forgetting=("forgetting", "mean"), value=("value", "first"))
        .reset_index(drop=True)
        for method in colours
        if method in set(points.method)
    }
    shown = [
        f for mean in means.values() for f, p in zip(mean.forgetting, mean.plasticity) if low_edge <= p <= high_edge
    ]
    if shown:  # limits first: labels are kept apart in display pixels
        lo, hi = min(min(shown), 0.0), max(shown)
        pad = 0.06 * (hi - lo or 1.0)
        ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(low_edge, high_edge)
    outside = 0
    placed: list[tuple[float, float]] = []  # labels already drawn, in display pixels
    for method, mean in means.items():
        if method == "naive":
            ax.plot(mean.forgetting, mean.plasticity, marker="*", ms=14, ls="none", color=colours[method], label=method)
        else:
            outside += _draw_front(ax, method, mean, colours[method], (low_edge, high_edge), sign, placed)
    _draw_targets(ax, targets, axes)
    if sign < 0:
        ax.invert_yaxis()
    metric = str(points.plasticity_metric.iloc[0]) if "plasticity_metric" in points else ""
    ax.set_ylabel(axes.plasticity_label + (f", {metric}" if axes is not TASKS and metric else ""))
    ax.set_xlabel(axes.forgetting_label)
    title = "Pareto fronts over each method's strengths (best: top left; faint: dominated)"
    if outside:
        title += f"\n{outside} point(s) beyond the compared region, drawn on its edge as triangles"
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return to_data_uri(fig)
