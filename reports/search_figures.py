"""The figures of a weight-sharing search: the architectures it scored against their ground truth, its measures
over epochs (one panel each), and a sweep of a search setting."""

from __future__ import annotations


import matplotlib

matplotlib.use("Agg")  # headless: never try to open a window

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator
from forgetbench.reports.figures import POINTS_SHOWN, new_figure, sample_points, to_data_uri


def search_scatter(scores: pd.DataFrame, colours: dict[str, tuple]) -> str | None:
    """Supernet validation accuracy (x) against standalone accuracy (y) of every candidate, one panel per
    strategy (every seed's points, a seeded sample of 2,000 where there are more); the architecture each search
    picked is ringed (a sample of 500 of them)."""
    if scores.empty:
        return None
    order = [s for s in colours if s in set(scores.strategy)]
    fig = new_figure(0.6 + 3.2 * len(order), 3.3)
    axes = fig.subplots(1, len(order), sharex=True, sharey=True, squeeze=False)[0]
    for ax, strategy in zip(axes, order):
        data = scores[scores.strategy == strategy]
        points = sample_points(data, 4 * POINTS_SHOWN)
        ax.scatter(points.supernet * 100, points.standalone * 100, s=8, color=colours[strategy], alpha=0.6)
        chosen = sample_points(data[data.chosen])
        ax.scatter(
            chosen.supernet * 100,
            chosen.standalone * 100,
            s=70,
            facecolors="none",
            edgecolors="black",
            linewidths=1.2,
            label="chosen",
        )
        ax.set_title(strategy, fontsize=10)
        ax.set_xlabel("accuracy on the shared weights (%)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("standalone accuracy (%)")
    axes[0].legend(fontsize=8, loc="lower right")
    return to_data_uri(fig)


def search_over_epochs(epochs: pd.DataFrame, colours: dict[str, tuple], column: str, ylabel: str) -> str | None:
    """``column`` of :func:`forgetbench.reports.summary.search_epochs_frame` per search epoch: mean over seeds, band min-max."""
    data = epochs.dropna(subset=[column]) if not epochs.empty else epochs
    if data.empty:
        return None
    fig = new_figure(6.4, 3.0)
    ax = fig.add_subplot()
    agg = data.groupby(["strategy", "epoch"])[column].agg(["mean", "min", "max"]) * 100
    top5 = data.groupby(["strategy", "epoch"])["fv_top5"].mean() * 100 if column == "fv_mean" else None
    for strategy in [s for s in colours if s in set(data.strategy)]:
        a = agg.loc[strategy]
        ax.plot(a.index, a["mean"], color=colours[strategy], lw=2, marker="o", ms=3, label=strategy)
        ax.fill_between(a.index, a["min"], a["max"], color=colours[strategy], alpha=0.2, lw=0)
        if top5 is not None:
            ax.plot(top5.loc[strategy].index, top5.loc[strategy], color=colours[strategy], lw=1.2, ls="--")
    if column.startswith("fv"):
        ax.axhline(0, color="black", lw=0.8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("search epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return to_data_uri(fig)


FOUR_PANELS = (
    ("fv_mean", "mean err2 - err1"),
    ("fv_best5", "err2 - err1, 5 lowest err1"),
    ("fv_max", "max err2 - err1"),
    ("reward", "controller reward"),
)


def search_four_panels(epochs: pd.DataFrame, colours: dict[str, tuple], unit: str) -> str | None:
    """The WPL paper's Figure 3 for a search suite: per search epoch, the mean err2 - err1 over the models
    it trained, the same over the 5 with lowest err1, the max, and the controller's mean reward; one line
    per strategy (mean over seeds), band = min-max over seeds. ``unit`` labels the err axis."""
    if epochs.empty:
        return None
    fig = new_figure(10.5, 6.2)
    axes = fig.subplots(2, 2, sharex=True).ravel()
    strategies = [s for s in colours if s in set(epochs.strategy)]
    for ax, (column, title) in zip(axes, FOUR_PANELS):
        data = epochs.dropna(subset=[column])
        if data.empty:
            ax.text(
                0.5,
                0.5,
                "no controller" if column == "reward" else "no data",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="grey",
            )
        else:
            agg = data.groupby(["strategy", "epoch"])[column].agg(["mean", "min", "max"])
            for strategy in [s for s in strategies if s in set(data.strategy)]:
                a = agg.loc[strategy]
                ax.plot(a.index, a["mean"], color=colours[strategy], lw=1.8, label=strategy)
                ax.fill_between(a.index, a["min"], a["max"], color=colours[strategy], alpha=0.18, lw=0)
            if column != "reward":
                ax.axhline(0, color="black", lw=0.8)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(unit if column != "reward" else "reward")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[2:]:
        ax.set_xlabel("search epoch")
    axes[0].legend(fontsize=8)
    return to_data_uri(fig)


SWEEP_PANELS = (
    ("forgetting_value_mean", "forgetting value: mean err2 - err1 (points)", 100.0),
    ("search_tau", "Kendall tau (supernet vs standalone)", 1.0),
    ("regret", "regret (points)", 100.0),
)


def search_sweep(sweep: pd.DataFrame, colours: dict[str, tuple], setting_label: str) -> str | None:
    """:func:`forgetbench.reports.summary.search_sweep_frame` against its setting (log x axis): forgetting value, tau and
    regret, one line per series, mean over seeds with its 95% interval as error bars."""
    if sweep.empty:
        return None
    fig = new_figure(12.0, 3.4)
    axes = fig.subplots(1, len(SWEEP_PANELS))
    series = [s for s in colours if s in set(sweep.series)]
    settings = sorted(sweep.setting.unique())
    # a small multiplicative offset per series keeps overlapping error bars apart on the log axis
    offsets = {s: 1.0 + 0.06 * (k - (len(series) - 1) / 2) for k, s in enumerate(series)}
    for ax, (metric, title, scale) in zip(axes, SWEEP_PANELS):
        data = sweep[sweep.metric == metric]
        for s in series:
            line = data[data.series == s].sort_values("setting")
            if line.empty:
                continue
            x = line.setting.astype(float) * offsets[s]
            y = line["mean"].astype(float) * scale
            err = np.vstack([y - line.ci_low.astype(float) * scale, line.ci_high.astype(float) * scale - y])
            err = np.clip(np.where(np.isfinite(err), err, 0.0), 0.0, None)
            ax.errorbar(x, y, yerr=err, color=colours[s], marker="o", ms=4, lw=1.6, capsize=3, label=s)
        if metric == "forgetting_value_mean":
            ax.axhline(0, color="black", lw=0.8)
        ax.set_xscale("log")
        ax.set_xticks(settings, [str(v) for v in settings])
        ax.minorticks_off()
        ax.set_xlabel(setting_label)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return to_data_uri(fig)
