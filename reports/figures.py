"""Figures for the HTML report, drawn with matplotlib's Agg canvas (no display, no pyplot state).

Each function takes tidy frames from :mod:`forgetbench.reports.summary` and returns a ``data:image/png;base64``
URI, so the report is one self-contained file. Matplotlib alone: seaborn's import (with pyplot and scipy.stats,
1.1 s here) was a quarter of ``forgetbench report``'s wall for four bar and box plots that are a few lines here;
the colours are seaborn's colorblind palette.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Iterable

import matplotlib

matplotlib.use("Agg")  # headless: never try to open a window

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


NAIVE_GREY = (0.498, 0.498, 0.498)  # #7f7f7f
DPI = 96
# seaborn's "colorblind" palette (Waskom, after Wong 2011, Nature Methods 8:441), reordered so that neighbours in the
# order are far apart (orange and vermillion were the 2nd and 4th: MAS and WPL looked alike), then Paul Tol's "muted"
# set; a colour and a marker together are never repeated within a figure (markers cycle once the colours run out)
COLORBLIND = (
    "#0173b2",
    "#de8f05",
    "#029e73",
    "#cc78bc",
    "#d55e00",
    "#56b4e9",
    "#ece133",
    "#ca9161",
    "#fbafe4",
    "#000000",
    "#332288",
    "#88ccee",
    "#44aa99",
    "#117733",
    "#999933",
    "#ddcc77",
    "#cc6677",
    "#882255",
    "#aa4499",
)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
FAINT = 0.35  # the alpha of a method's other strengths (neighbours, a sweep's other points) beside its chosen one
WHISKER = "0.26"  # error bars: dark grey, as seaborn draws them


def method_of(label: str) -> str:
    """A strategy label without its grid suffix (``ewc[ewc_lambda=10]`` -> ``ewc``): its method."""
    return label.partition("[")[0]


def palette(
    strategies: list[str],
    naive: str | None = None,
    emphasised: Iterable[str] | None = None,
    methods: list[str] | None = None,
) -> dict[str, tuple]:
    """One hue per *method*, the same in every figure of a report when ``methods`` (the report's methods, in order) is
    given, and one shade of it per strength (lighter to darker in order of strength), so that every label has its own
    colour and a method's strengths still read as one family; naive is grey (the baseline). Where a method ran at
    several strengths and one is ``emphasised`` (a tuned method's chosen point), its other strengths are drawn faint
    (alpha :data:`FAINT`)."""
    chosen = set(emphasised or ())
    own = [method_of(s) for s in strategies if s != naive]
    methods = [m for m in dict.fromkeys([*(methods or []), *own]) if m != naive and m != "naive"]
    rgb = {m: matplotlib.colors.to_rgb(COLORBLIND[i % len(COLORBLIND)]) for i, m in enumerate(methods)}
    variants: dict[str, list[str]] = {}
    for s in strategies:
        variants.setdefault(method_of(s), []).append(s)
    out: dict[str, tuple] = {}
    for s in strategies:
        if s == naive:
            out[s] = NAIVE_GREY
            continue
        siblings = sorted(variants[method_of(s)], key=_strength)
        colour = _shade(rgb[method_of(s)], siblings.index(s), len(siblings))
        faint = len(siblings) > 1 and any(v in chosen for v in siblings) and s not in chosen
        out[s] = (*colour, FAINT) if faint else colour
    return out


def _shade(rgb: tuple[float, float, float], rank: int, count: int) -> tuple[float, float, float]:
    """The ``rank``-th of ``count`` shades of ``rgb``: from mixed half-way to white (weakest) to a third of the way
    to black (strongest); ``rgb`` itself for a single strength."""
    if count == 1:
        return rgb
    t = -0.5 + 0.85 * rank / (count - 1)  # -0.5 (light) .. 0.35 (dark)
    target = 1.0 if t < 0 else 0.0
    return tuple(float(c + abs(t) * (target - c)) for c in rgb)  # type: ignore[return-value]


def markers(strategies: list[str], naive: str | None = None, methods: list[str] | None = None) -> dict[str, str]:
    """One marker per method, so that a method is told by its shape as well as its colour (and a colour repeated
    beyond :data:`COLORBLIND`'s length never repeats with the same marker); naive's is a circle. ``methods``: as
    :func:`palette`'s."""
    own = [method_of(s) for s in strategies if s != naive]
    methods = [m for m in dict.fromkeys([*(methods or []), *own]) if m != naive and m != "naive"]
    # the marker moves on by one each time the colours start over: (colour, marker) never repeats within 190 methods
    shape = {m: MARKERS[(i % len(COLORBLIND) + i // len(COLORBLIND)) % len(MARKERS)] for i, m in enumerate(methods)}
    return {s: "o" if s == naive else shape[method_of(s)] for s in strategies}


def _strength(label: str) -> float:
    """The value a strategy label names (``ewc[ewc_lambda=709.7]`` -> 709.7), for ordering a method's strengths; inf
    where it names none or several."""
    _, _, inside = label.partition("[")
    values = [part.partition("=")[2] for part in inside.rstrip("]").split(",") if "=" in part]
    try:
        return float(values[0]) if len(values) == 1 else math.inf
    except ValueError:
        return math.inf


def is_faint(colour: tuple) -> bool:
    return len(colour) == 4 and colour[3] < 1


def sequential_colours(n: int) -> list[tuple]:
    """``n`` colours along viridis, its two ends left out (seaborn's sampling of a continuous colour map)."""
    return [tuple(c[:3]) for c in matplotlib.colormaps["viridis"](np.linspace(0, 1, n + 2)[1:-1])]


def _grouped_bars(ax, data: pd.DataFrame, x: str, y: str, order: list[str], colours: dict[str, tuple]) -> None:
    """Per category of ``x`` (sorted), one bar per strategy side by side: the mean of ``y`` over the rows (seeds),
    whisker min-max. A strategy is named by its method where that is the only strength of it shown."""
    methods = [method_of(s) for s in order]
    names = {s: method_of(s) if methods.count(method_of(s)) == 1 else s for s in order}
    stats = data.groupby([x, "strategy"])[y].agg(["mean", "min", "max"])
    categories = sorted(data[x].unique())
    width = 0.8 / max(len(order), 1)
    for i, strategy in enumerate(order):
        bars = stats.xs(strategy, level="strategy").reindex(categories)
        at = np.arange(len(categories)) - 0.4 + width * (i + 0.5)
        ax.bar(at, bars["mean"], width, color=colours[strategy], label=names[strategy])
        spread = [bars["mean"] - bars["min"], bars["max"] - bars["mean"]]
        ax.errorbar(at, bars["mean"], yerr=spread, fmt="none", ecolor=WHISKER, elinewidth=1, capsize=2)
    ax.set_xticks(np.arange(len(categories)), [str(c) for c in categories])


def _boxes(ax, data: pd.DataFrame, y: str, order: list[str], colours: dict[str, tuple]) -> None:
    """One box per strategy at x = 0, 1, ... (quartiles, whiskers to 1.5 IQR, no outlier marks: the points are
    drawn over it)."""
    boxes = ax.boxplot(
        [data.loc[data.strategy == s, y].dropna() for s in order],
        positions=range(len(order)),
        widths=0.6,
        patch_artist=True,
        showfliers=False,
        medianprops={"color": WHISKER, "linewidth": 1.2},
        whiskerprops={"color": WHISKER},
        capprops={"color": WHISKER},
        boxprops={"edgecolor": WHISKER},
    )
    for box, strategy in zip(boxes["boxes"], order):
        box.set_facecolor(colours[strategy])
    ax.set_xticks(range(len(order)), order)


def _boxes_and_points(
    ax, data: pd.DataFrame, y: str, order: list[str], colours: dict[str, tuple], points: pd.DataFrame, spread: float,
    size: float,
) -> None:  # fmt: skip
    """Boxes of ``y`` per strategy, and ``points`` over them in black, jittered by up to ``spread`` with a fixed
    generator (the same results draw the same picture)."""
    _boxes(ax, data, y, order, colours)
    jitter = np.random.default_rng(0).uniform(-spread, spread, len(points))
    x = points.strategy.map({s: i for i, s in enumerate(order)}) + jitter
    ax.scatter(x, points[y], s=size, c="black", alpha=0.5, zorder=3)


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def to_data_uri(fig: Figure) -> str:
    """The figure as a PNG data URI. The canvas prints it (constrained layout, then one draw) where ``savefig`` would
    first draw it once more with rendering disabled to lay it out: the same bytes in about two thirds of the time."""
    buffer = io.BytesIO()
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)  # _figure's is Agg
    canvas.print_png(buffer)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


CROWDED = 8  # labels beyond which the stability figure's legend goes beside the axes


def stability_plasticity(summary: pd.DataFrame, colours: dict[str, tuple]) -> str | None:
    """LA (y) against forgetting (x), one point per strategy label, best corner top-left. Each label has its own shade
    of its method's hue (:func:`palette`) and the method's marker, and the legend names every label with its strength
    (no text on the axes: 15 labels never overlap); a method's strengths are joined in order of strength; a point
    carries its 95% t bars where it has 3 seeds or more (none faint)."""
    wide = summary[summary.metric.isin(["LA", "forgetting"])].pivot(index="strategy", columns="metric")
    if wide.empty or "LA" not in wide["mean"] or "forgetting" not in wide["mean"]:
        return None
    shown = [s for s in colours if s in wide.index]
    shapes = markers(shown, next((s for s in shown if colours[s] == NAIVE_GREY), None))
    methods = list(dict.fromkeys(method_of(s) for s in shown))
    crowded = len(shown) > CROWDED  # many labels: the legend beside the axes, a column of them
    fig = new_figure(5.2 + (2.8 if crowded else 0.0), 3.6 + (0.12 * (len(shown) - CROWDED) if crowded else 0.0))
    ax = fig.add_subplot()
    for method in methods:
        mine = [s for s in shown if method_of(s) == method]
        points = [(s, wide.loc[s][("mean", "forgetting")], wide.loc[s][("mean", "LA")]) for s in mine]
        points = sorted(
            ((s, x, y) for s, x, y in points if np.isfinite(x) and np.isfinite(y)), key=lambda p: _strength(p[0])
        )
        if len(points) > 1:  # the method's strengths, in order of strength (their labels' order)
            base = colours[points[-1][0]][:3]
            ax.plot(
                [100 * x for _, x, _ in points], [100 * y for _, _, y in points], color=(*base, FAINT), lw=1, zorder=1
            )
        for strategy, x, y in points:
            faint = is_faint(colours[strategy])
            row = wide.loc[strategy]

            def err(metric: str, centre: float, row: pd.Series = row) -> list[list[float]] | None:
                low, high = row[("ci_low", metric)], row[("ci_high", metric)]
                # never negative: an interval clipped to the metric's range can sit beside a mean it does not hold
                return [[max(0.0, centre - low)], [max(0.0, high - centre)]] if np.isfinite(low) else None

            ax.errorbar(
                x * 100,
                y * 100,
                xerr=None if faint else _scaled(err("forgetting", x)),
                yerr=None if faint else _scaled(err("LA", y)),
                fmt=shapes[strategy],
                ms=5 if faint else 7,
                capsize=3,
                color=colours[strategy],
                markeredgecolor=WHISKER if len(points) > 1 else colours[strategy],
                markeredgewidth=0.5,
                label=strategy,
                zorder=2 if faint else 3,
            )
    title = "Stability vs plasticity (best: top left)"
    if any(is_faint(colours[s]) for s in shown):
        title += "; faint: other strengths"
    return _stability_plasticity_axes(ax, fig, title, legend_beside=crowded)


def _stability_plasticity_axes(ax, fig: Figure, title: str, legend_beside: bool = False) -> str:
    """Forgetting (x) against LA (y), the best corner top-left: the axes both stability figures share."""
    ax.set_xlabel("Forgetting (accuracy points, lower is better)")
    ax.set_ylabel("LA: accuracy just after learning (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if legend_beside:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    else:
        ax.legend(fontsize=8, loc="best", framealpha=0.9)
    return to_data_uri(fig)


def _scaled(err: list[list[float]] | None) -> list[list[float]] | None:
    return None if err is None else [[err[0][0] * 100], [err[1][0] * 100]]


def heatmaps(matrices: dict[str, np.ndarray], order: list[str]) -> str | None:
    """One accuracy-matrix heatmap per strategy (mean over seeds), rows = after training i."""
    names = [s for s in order if s in matrices]
    if not names:
        return None
    cols = min(len(names), 4)
    rows = math.ceil(len(names) / cols)
    n_rows, n_cols = matrices[names[0]].shape
    cell = 0.42 if max(n_rows, n_cols) <= 8 else 0.25
    fig = new_figure(max(2.6, cell * n_cols + 1.2) * cols, max(2.4, cell * n_rows + 1.1) * rows)
    annotate = max(n_rows, n_cols) <= 10
    # imshow + text rather than seaborn.heatmap: seaborn draws the whole figure once per heatmap to
    # pick annotation colours, which made this the slowest figure of a 100-run report.
    cmap = matplotlib.colormaps["viridis"]
    for k, strategy in enumerate(names):
        ax = fig.add_subplot(rows, cols, k + 1)
        values = matrices[strategy] * 100
        ax.imshow(values, cmap=cmap, vmin=0, vmax=100, aspect="equal")
        if annotate:
            for (i, j), v in np.ndenumerate(values):
                ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7, color="black" if v > 55 else "white")
        ax.set_xticks(range(values.shape[1]))
        ax.set_yticks(range(values.shape[0]))
        ax.set_title(strategy, fontsize=10)
        ax.set_xlabel("evaluated on j", fontsize=8)
        ax.set_ylabel("after training i", fontsize=8)
        ax.tick_params(labelsize=7, length=0)
    return to_data_uri(fig)


def forgetting_curves(curves: pd.DataFrame, colours: dict[str, tuple]) -> str | None:
    """Accuracy of each earlier model against iterations of later training; seeds as min-max bands."""
    if curves.empty:
        return None
    models = sorted(curves.eval_exp.unique())[:12]
    cols = min(len(models), 3)
    rows = math.ceil(len(models) / cols)
    fig = new_figure(4.2 * cols, 2.8 * rows)
    boundaries = sorted(curves.groupby("train_exp").step.min())
    for k, model in enumerate(models):
        ax = fig.add_subplot(rows, cols, k + 1)
        data = curves[curves.eval_exp == model]
        # mean line and min-max band over seeds at each step (aggregated here: cheaper than seaborn)
        agg = data.groupby(["strategy", "step"]).accuracy.agg(["mean", "min", "max"]) * 100
        for strategy in [s for s in colours if s in set(data.strategy)]:
            a = agg.loc[strategy]
            ax.plot(a.index, a["mean"], color=colours[strategy], lw=1.5, label=strategy)
            ax.fill_between(a.index, a["min"], a["max"], color=colours[strategy], alpha=0.2, lw=0)
        if k == 0:
            ax.legend(fontsize=8)
        for b in boundaries[1:]:
            ax.axvline(b, color="black", lw=0.6, ls=":")
        ax.set_title(f"model {model} while later experiences train", fontsize=9)
        ax.set_xlabel("iteration of later training", fontsize=8)
        ax.set_ylabel("accuracy (%)", fontsize=8)
        ax.grid(alpha=0.3)
    return to_data_uri(fig)


POINTS_SHOWN = 500  # per strategy: beyond this a figure draws a seeded sample of its points (boxes use every value)


def sample_points(data: pd.DataFrame, limit: int = POINTS_SHOWN) -> pd.DataFrame:
    """At most ``limit`` rows per strategy: a seeded sample where there are more (the same results draw the same
    picture), so thousands of runs do not paint a box black."""
    if data.empty or data.groupby("strategy").size().max() <= limit:
        return data
    return pd.concat(
        [
            part.sample(limit, random_state=0) if len(part) > limit else part
            for _, part in data.groupby("strategy", sort=False)
        ]
    )


def final_accuracy_bars(final: pd.DataFrame, colours: dict[str, tuple]) -> str | None:
    """Final accuracy on each experience, one bar per strategy label (each its own shade: :func:`palette`), mean with
    min-max over seeds; a tuned method's neighbours (faint in the palette) are left to the tables."""
    if final.empty:
        return None
    order = [s for s in colours if s in set(final.strategy) and not is_faint(colours[s])]
    final = final[final.strategy.isin(order)]
    n_exp = final.experience.nunique()
    fig = new_figure(min(12, 1.2 + 0.35 * n_exp * len(order) + 2), 3.0)
    ax = fig.add_subplot()
    _grouped_bars(ax, final.assign(accuracy=final.accuracy * 100), "experience", "accuracy", order, colours)
    ax.set_ylim(0, 100)
    ax.set_xlabel("experience j")
    ax.set_ylabel("final accuracy (%)")
    ax.legend(
        fontsize=7 if len(order) > 6 else 8,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncols=min(len(order), 5),
        frameon=False,
    )
    ax.grid(axis="y", alpha=0.3)
    return to_data_uri(fig)


def err_gap_distribution(gaps: pd.DataFrame, colours: dict[str, tuple]) -> str | None:
    """Distribution of err2 - err1 per strategy (every round x architecture x seed; points: at most
    :data:`POINTS_SHOWN` per strategy, :func:`sample_points`)."""
    if gaps.empty:
        return None
    order = [s for s in colours if s in set(gaps.strategy)]
    fig = new_figure(1.6 + 1.3 * len(order), 3.0)
    ax = fig.add_subplot()
    data = gaps.assign(gap=gaps.gap * 100)
    _boxes_and_points(ax, data, "gap", order, colours, sample_points(data), 0.15, 5)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylabel("err2 - err1 (points; > 0 = forgetting)")
    ax.set_xlabel("")
    ax.grid(axis="y", alpha=0.3)
    return to_data_uri(fig)


def first_model_curve(curves: pd.DataFrame, colours: dict[str, tuple]) -> str | None:
    """The headline of a multi-model run (the WPL paper's Figure 1): accuracy of the first model
    (experience 0, model A) while the later models train; one line per strategy, mean over seeds
    with a min-max band."""
    data = curves[curves.eval_exp == 0] if not curves.empty else curves
    if data.empty:
        return None
    fig = new_figure(7.6, 3.4)
    ax = fig.add_subplot()
    agg = data.groupby(["strategy", "step"]).accuracy.agg(["mean", "min", "max"]) * 100
    for strategy in [s for s in colours if s in set(data.strategy)]:
        a = agg.loc[strategy]
        ax.plot(a.index, a["mean"], color=colours[strategy], lw=2, label=strategy)
        ax.fill_between(a.index, a["min"], a["max"], color=colours[strategy], alpha=0.2, lw=0)
    for b in sorted(data.groupby("train_exp").step.min())[1:]:
        ax.axvline(b, color="black", lw=0.6, ls=":")
    ax.set_title("Accuracy of the first model (A) while the later model(s) train", fontsize=11)
    ax.set_xlabel("iteration of the later model's training")
    ax.set_ylabel("accuracy of A (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="lower left", ncols=min(len(agg.index.unique(0)), 4))
    return to_data_uri(fig)


def err_gap_per_architecture(gaps: pd.DataFrame, colours: dict[str, tuple]) -> str | None:
    """The headline of a supernet run: err2 - err1 per architecture (mean over rounds and seeds, whisker
    min-max over seeds), one bar per strategy; above 0 = the architecture lost accuracy while the others trained."""
    if gaps.empty:
        return None
    per_seed = gaps.groupby(["strategy", "seed", "architecture"], as_index=False).gap.mean()
    order = [s for s in colours if s in set(per_seed.strategy)]
    n_arch = per_seed.architecture.nunique()
    fig = new_figure(min(12, 2.5 + 0.3 * n_arch * len(order)), 3.4)
    ax = fig.add_subplot()
    _grouped_bars(ax, per_seed.assign(gap=per_seed.gap * 100), "architecture", "gap", order, colours)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_title("err2 - err1 per architecture: accuracy lost while the other architectures trained", fontsize=11)
    ax.set_xlabel("architecture (training order)")
    ax.set_ylabel("err2 - err1 (points)")
    ax.legend(fontsize=8, loc="upper right", ncols=min(len(order), 6))
    ax.grid(axis="y", alpha=0.3)
    return to_data_uri(fig)


def final_accuracy_distribution(final: pd.DataFrame, colours: dict[str, tuple]) -> str | None:
    """Final accuracy on every experience as one distribution per strategy (for many experiences, e.g. a
    search's candidates): each point is one experience's mean over seeds, the box its quartiles."""
    if final.empty:
        return None
    per_experience = final.groupby(["strategy", "experience"], as_index=False).accuracy.mean()
    order = [s for s in colours if s in set(per_experience.strategy)]
    fig = new_figure(1.8 + 1.4 * len(order), 3.2)
    ax = fig.add_subplot()
    data = per_experience.assign(accuracy=per_experience.accuracy * 100)
    _boxes_and_points(ax, data, "accuracy", order, colours, data, 0.18, 6)
    ax.set_xlabel("")
    ax.set_ylabel(f"final accuracy (%), {per_experience.experience.nunique()} experiences")
    ax.grid(axis="y", alpha=0.3)
    return to_data_uri(fig)


def accuracy_matrix_quantiles(matrices: dict[str, np.ndarray], colours: dict[str, tuple]) -> str | None:
    """Many-column accuracy matrices summarised row by row: after training row i (an epoch of a search),
    the median accuracy over the columns (experiences, e.g. every candidate architecture), a band from
    the 25th to the 75th percentile and a dotted line at the minimum; one line per strategy."""
    names = [s for s in colours if s in matrices]
    if not names:
        return None
    fig = new_figure(6.8, 3.2)
    ax = fig.add_subplot()
    for strategy in names:
        values = np.asarray(matrices[strategy], dtype=float) * 100
        rows = np.arange(values.shape[0])
        low, median, high = np.nanpercentile(values, [25, 50, 75], axis=1)
        ax.plot(rows, median, color=colours[strategy], lw=2, marker="o", ms=3, label=strategy)
        ax.fill_between(rows, low, high, color=colours[strategy], alpha=0.2, lw=0)
        ax.plot(rows, np.nanmin(values, axis=1), color=colours[strategy], lw=1, ls=":")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("after training row i (epoch / experience)")
    ax.set_ylabel("accuracy over all j (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return to_data_uri(fig)


def attribution_layers(layers: pd.DataFrame, order: list[str]) -> str | None:
    """Which layers carried the forgetting: per strategy, the predicted loss increase of the earlier models
    summed over the earlier models after each later turn, mean over seeds, stacked by layer."""
    if layers.empty:
        return None
    mean = layers.groupby(["strategy", "layer"], sort=False).predicted.mean().unstack("layer").fillna(0.0)
    mean = mean.reindex([s for s in order if s in mean.index])
    fig = new_figure(7.6, 3.4)
    ax = fig.add_subplot()
    bottom = np.zeros(len(mean))
    colours = sequential_colours(max(len(mean.columns), 1))
    for colour, layer in zip(colours, mean.columns):
        ax.bar(mean.index, mean[layer], bottom=bottom, color=colour, label=layer)
        bottom += mean[layer].to_numpy()
    ax.set_title("Where the forgetting lives: predicted loss increase per shared layer", fontsize=11)
    ax.set_ylabel("(1/2) Σ F Δθ² (nats), mean over seeds")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, title="layer", title_fontsize=8, ncols=min(len(mean.columns), 4))
    return to_data_uri(fig)


def attribution_scatter(frame: pd.DataFrame, colours: dict[str, tuple]) -> str | None:
    """Predicted (x) against observed (y) loss increase, one point per (run, turn, earlier model); the
    diagonal is a perfect quadratic prediction."""
    if frame.empty:
        return None
    fig = new_figure(5.6, 4.4)
    ax = fig.add_subplot()
    for strategy in [s for s in colours if s in set(frame.strategy)]:
        part = frame[frame.strategy == strategy]
        ax.scatter(part.predicted, part.observed, color=colours[strategy], s=22, alpha=0.8, label=strategy)
    low = float(min(frame.predicted.min(), frame.observed.min(), 0.0))
    high = float(max(frame.predicted.max(), frame.observed.max()))
    ax.plot([low, high], [low, high], color="black", lw=0.8, ls="--", label="observed = predicted")
    ax.set_xlabel("predicted increase (1/2) Σ F Δθ² (nats)")
    ax.set_ylabel("observed loss increase (nats)")
    ax.set_title("The quadratic premise: predicted against observed", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return to_data_uri(fig)
