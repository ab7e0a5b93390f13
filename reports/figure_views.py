"""The report's figures as specs submitted to the figure pool (:func:`forgetbench.reports.drawing.easel`): a
scenario's figures, its attribution and adapter sections, the turn-length sweep and the frontiers."""

from __future__ import annotations

from concurrent.futures import Executor, Future

import numpy as np
import pandas as pd

from forgetbench.reports.views import FrontierView, ScenarioView, SweepView
from forgetbench.benchmark.core.record import RunRecord
from forgetbench.reports import decisions as DC
from forgetbench.reports import frames
from forgetbench.reports.drawing import InProcess, drawn
from forgetbench.reports.attribution import attribution_sentence, attribution_summary
from forgetbench.reports.summary import (
    NAIVE,
)


SEARCH_PANELS_CAPTION = (
    "Multi-model forgetting during the search (the WPL paper's Figure 3): per search "
    "epoch, err2 − err1 in {unit} (error at the epoch's end minus right after the "
    "architecture's own turn) averaged over the architectures the epoch trained, the "
    "same over the 5 with lowest err1, the largest, and the controller's mean reward "
    "(c / perplexity for a language model, c × accuracy for images). Line = mean over "
    "seeds, band = min–max. Above 0 = forgetting."
)
SCORES_CAPTION = (
    "What the search sees against the truth: every ground-truth architecture's accuracy on the supernet's "
    "shared weights at the end (x; the validation data, the test split for a fixed schedule) and its "
    "accuracy trained alone (y), all seeds (a seeded sample of 2,000 "
    "points per strategy where there are more); ringed = the architecture "
    "each search picked. A search that ranks well puts its points on a rising line "
    "and its rings at the top."
)
ERR_GAP_CAPTION = (
    "err2 − err1 per architecture (training order): error at the end minus error "
    "right after the architecture's own turn, mean over rounds and seeds, whisker "
    "min–max over seeds. Above 0 = multi-model forgetting."
)
FIRST_MODEL_CAPTION = (
    "Accuracy of the first model while the later model(s) train (the WPL paper's "
    "Figure 1): line = mean, band = min–max over seeds; dotted lines separate later "
    "experiences."
)


def add_figures(
    view: ScenarioView,
    records: list[RunRecord],
    name: str,
    t: pd.DataFrame,
    order: list[str],
    colours,
    easel: Executor,
) -> dict[str, Future[str | None]]:
    """The headline figure (the search's four panels, its scatter, err2 - err1, or the first model's curve) and
    the scenario's other figures, each submitted to ``easel`` (:mod:`forgetbench.reports.drawing`)."""
    from forgetbench.reports import figures as F
    from forgetbench.reports import search_figures as SF

    curves, gaps = frames.curves_frame(records, name), frames.err_gap_frame(records, name)
    scores, epochs = frames.search_scores_frame(records, name), frames.search_epochs_frame(records, name)
    sampled = frames.sampled_search_unit(records, name)
    if not epochs.empty and sampled:
        unit, scale = sampled
        errors = ["fv_mean", "fv_top5", "fv_max", "fv_best5"]
        view.headline = easel.submit(
            SF.search_four_panels, epochs.assign(**{c: epochs[c] * scale for c in errors}), colours, unit
        )
        view.headline_caption = SEARCH_PANELS_CAPTION.format(unit=unit)
    fixed = frames.fixed_schedule(records, name)  # rounds over a list: its headline is where the forgetting is
    if not view.headline and not fixed and not scores.empty:
        view.headline = easel.submit(SF.search_scatter, scores, colours)
        view.headline_caption = SCORES_CAPTION
    elif not view.headline and not gaps.empty:
        view.headline = easel.submit(F.err_gap_per_architecture, gaps, colours)
        view.headline_caption = ERR_GAP_CAPTION
    elif not view.headline and not curves.empty:
        view.headline = easel.submit(F.first_model_curve, curves, colours)
        view.headline_caption = FIRST_MODEL_CAPTION
    view.many_experiences = frames.many_experiences(records, name)
    matrices, final = frames.mean_matrices(records, name), frames.final_accuracy_frame(records, name)
    figs = {
        "scatter": easel.submit(F.stability_plasticity, t, colours),
        "curves": easel.submit(F.forgetting_curves, curves, colours),
        "heatmaps": (
            easel.submit(F.accuracy_matrix_quantiles, matrices, colours)
            if view.many_experiences
            else easel.submit(F.heatmaps, matrices, order)
        ),
        "final": (
            easel.submit(F.final_accuracy_distribution, final, colours)
            if view.many_experiences
            else easel.submit(F.final_accuracy_bars, final, colours)
        ),
        "err_gap": easel.submit(F.err_gap_distribution, gaps, colours),
    }
    if fixed and not scores.empty:
        figs["search_scores"] = easel.submit(SF.search_scatter, scores, colours)
    view.scores_caption = SCORES_CAPTION
    # a sampled-architecture search shows these in its four-panel headline; one round has no course over epochs
    if not sampled and not epochs.empty and epochs.epoch.nunique() > 1:
        figs["search_forgetting"] = easel.submit(
            SF.search_over_epochs, epochs, colours, "fv_mean", "mean err2 - err1 (points; > 0 = forgetting)"
        )
        figs["search_reward"] = easel.submit(SF.search_over_epochs, epochs, colours, "reward", "controller reward (%)")
    return figs


def add_attribution(
    view: ScenarioView,
    figs: dict[str, Future[str | None]],
    records: list[RunRecord],
    name: str,
    order: list[str],
    colours,
    easel: Executor,
) -> None:
    """Attribution's sentence, table and figures (training.attribution)."""
    from forgetbench.reports import figures as F

    attribution = frames.attribution_frame(records, name)
    if not attribution.empty:
        view.attribution_sentence = attribution_sentence(attribution)
        view.attribution_rows = [
            {
                "strategy": row.strategy,
                "points": int(row.points),
                "observed": f"{row.observed:.4f}",
                "predicted": f"{row.predicted:.4f}",
                "first_order": f"{row.first_order:+.4f}",
                "explained": f"{row.explained:.0f}%" if np.isfinite(row.explained) else "–",
                "rho": f"{row.rho:.2f}" if np.isfinite(row.rho) else "–",
                "first_order_share": f"{row.first_order_share:+.0f}%" if np.isfinite(row.first_order_share) else "–",
            }
            for row in attribution_summary(attribution, order).itertuples()
        ]
        figs["attribution_layers"] = easel.submit(
            F.attribution_layers, frames.attribution_layers_frame(records, name), order
        )
        figs["attribution_scatter"] = easel.submit(F.attribution_scatter, attribution, colours)


def add_adapters(view: ScenarioView, records: list[RunRecord], name: str, order: list[str]) -> None:
    """Per strategy and task: the adapters' norm, overlap and size."""
    view.adapter_rows = [
        {
            "strategy": row.strategy,
            "task": int(row.task),
            "seeds": int(row.seeds),
            "norm": f"{row.norm:.3f}",
            "overlap": f"{row.overlap:.3f}" if np.isfinite(row.overlap) else "–",
            "trainable": f"{row.trainable_params:,.0f}",
            "total": f"{row.total_params:,.0f}",
        }
        for row in frames.adapter_summary(frames.adapters_frame(records, name), order).itertuples()
    ]


def sweep_view(records: list[RunRecord], table: pd.DataFrame, easel: Executor) -> SweepView | None:
    from forgetbench.reports import figures as F
    from forgetbench.reports import search_figures as SF

    sweep = frames.search_sweep_frame(table, records, "steps_per_turn")
    if sweep.empty:
        return None
    series = list(dict.fromkeys(sweep.sort_values(["strategy", "series"]).series))
    naive = NAIVE if NAIVE in series else None
    figure = drawn(easel.submit(SF.search_sweep, sweep, F.palette(series, naive), "steps per turn (log scale)"))
    seeds = int(sweep.n_seeds.max())
    caption = (
        "The search scenarios of this suite differ in how many shared steps each sampled architecture "
        "trains before the next is drawn (scenarios "
        + ", ".join(dict.fromkeys(sweep.sort_values("setting").scenario))
        + "). "
        "Left: the forgetting value (per search epoch the mean of err2 − err1 over the architectures it "
        "trained, averaged over epochs; above 0 = forgetting); middle: Kendall tau between the supernet's "
        "ranking and the standalone ground truth; right: regret of the architecture the search picked. "
        f"Point = mean over seeds (up to {seeds}), bar = 95% t-interval."
    )
    return SweepView("steps_per_turn", figure, caption) if figure else None


def frontier_views(
    records: list[RunRecord],
    source: str = "",
    computed: dict[str, dict[str, float]] | None = None,
    easel: Executor | None = None,
    options: DC.DecisionOptions | None = None,
    methods: list[str] | None = None,
) -> tuple[list[FrontierView], pd.DataFrame]:
    """Per scenario with a strength sweep beside naive: its frontier figure, matched-plasticity table and verdicts;
    and every point (``frontier.csv``). ``source`` names where the points come from when not the suite's runs;
    ``computed`` are the runs' metrics (``ResultScan.metrics``). The figures are submitted to ``easel`` (drawn here
    when none is given): read each with :func:`forgetbench.reports.drawing.drawn`."""
    from forgetbench.reports import figures as F
    from forgetbench.reports import frontier_figure
    from forgetbench.reports import frontier as FT

    points = FT.frontier_frame(records, computed)
    views = []
    for scenario in dict.fromkeys(points.scenario):
        if not FT.has_frontier(points, scenario):
            continue
        mine = points[points.scenario == scenario]
        matched = FT.matched_plasticity(points, scenario)
        axes = FT.scenario_axes(points, scenario)
        naive = float(mine[mine.method == FT.NAIVE].plasticity.mean())
        present = list(dict.fromkeys(mine.method))
        figure = (easel or InProcess()).submit(
            frontier_figure.frontier,
            mine,
            F.palette(present, FT.NAIVE, methods=methods),
            {d: naive - axes.sign * d for d in FT.DROPS},
            axes,
        )
        rows = [
            {
                "method": r.method,
                "drop": r.drop,
                "mean": r.mean,
                "ci_low": r.ci_low,
                "ci_high": r.ci_high,
                "n": r.n,
                "seeds": r.seeds,
            }
            for r in matched.itertuples()
        ]
        anchor = ("tuning-" if source else "") + "frontier-" + "".join(c if c.isalnum() else "-" for c in scenario)
        views.append(
            FrontierView(
                scenario,
                anchor,
                figure,
                rows,
                FT.matched_verdicts(matched, axes, options),
                source,
                target=f"naive {axes.name} {'-' if axes.sign > 0 else '+'}",
                forgetting_unit=axes.forgetting_unit,
                number=f"%.{axes.digits + 1}f",
            )
        )
    return views, points
