"""The metric catalogue: every metric's key, label, direction, unit, definition and range, in one table.

The report, ``summary.csv``, the paired comparisons, the verdicts, tuning objectives and the
terminal table all read :data:`METRICS`, so a metric is declared once. The built-in metrics are
computed together in :func:`forgetbench.benchmark.core.metrics.run_metrics` (they share the accuracy
matrix); a metric added with :func:`register_metric` brings its own function of one run's record and
then appears everywhere the built-ins do::

    @forgetbench.register_metric("first_task_final", better="higher", unit="accuracy", bounds=(0, 1),
                                 terminal="first (pts)")
    def first_task_final(record):
        "Accuracy on the first experience at the end."
        return record.accuracy_matrix[-1][0]

Other distributions can declare their metrics' modules in the entry-point group ``forgetbench.metrics``;
they are imported the first time a run's metrics are computed.
"""

from __future__ import annotations

import importlib.metadata
import logging
from dataclasses import dataclass
from typing import Callable, Literal

from forgetbench.benchmark.core.record import RunRecord

log = logging.getLogger(__name__)

Unit = Literal["accuracy", "percent", "seconds", "rate", "bytes", "tau", "area", "nats", "ppl", "score"]
Section = Literal["stability", "curves", "supernet", "search", "cost"]


@dataclass(frozen=True)
class Metric:
    """One metric: how it is named, read (``better``, ``unit``, ``bounds``) and shown; see the module docstring."""

    key: str
    label: str
    better: Literal["higher", "lower"]
    unit: Unit
    definition: str
    section: Section
    bounds: tuple[float, float] = (-float("inf"), float("inf"))  # the metric's range; CIs are clipped to it
    terminal: str | None = None  # its column header in the terminal table (`forgetbench run`); None: report only
    terminal_rank: float = float("inf")  # columns are ordered by rank, then by registration
    compute: Callable[[RunRecord], float] | None = None  # a registered metric's value from an ok record


METRICS: dict[str, Metric] = {
    m.key: m
    for m in [
        Metric(
            "ACC",
            "ACC",
            "higher",
            "accuracy",
            "mean_j R[T-1][j]: final accuracy averaged over experiences",
            "stability",
            (0, 1),
            terminal="ACC (pts)",
            terminal_rank=0,
        ),
        Metric(
            "LA",
            "LA (plasticity)",
            "higher",
            "accuracy",
            "mean_j R[j][j]: accuracy on each experience right after learning it (a supernet without that diagonal: "
            "mean 1 - err1, each architecture right after its own turn)",
            "stability",
            (0, 1),
            terminal="LA (pts)",
            terminal_rank=2,
        ),
        Metric(
            "last",
            "Last",
            "higher",
            "accuracy",
            "R[T-1][T-1]: the newest experience's accuracy at the end (model B's in a two-model study)",
            "stability",
            (0, 1),
        ),
        Metric(
            "forgetting",
            "Forgetting",
            "lower",
            "accuracy",
            "mean_{j<T-1} (max_{l<T-1} R[l][j] - R[T-1][j]) (Chaudhry et al., 2018); a supernet without that "
            "diagonal: mean err2 - err1 over every turn but each round's last",
            "stability",
            (-1, 1),
            terminal="forgetting (pts)",
            terminal_rank=1,
        ),
        Metric(
            "BWT",
            "BWT",
            "higher",
            "accuracy",
            "mean_{j<T-1} (R[T-1][j] - R[j][j]); negative = forgetting",
            "stability",
            (-1, 1),
        ),
        Metric(
            "FWT",
            "FWT",
            "higher",
            "accuracy",
            "mean_{j>=1} (R[j-1][j] - b_j), b_j the untrained model's accuracy on j",
            "stability",
            (-1, 1),
        ),
        Metric(
            "intransigence",
            "Intransigence",
            "lower",
            "accuracy",
            "mean_j (a*_j - R[j][j]), a*_j = mean over seeds of the joint (else standalone) run's R[j][j] "
            "in the same scenario",
            "stability",
            (-1, 1),
        ),
        Metric(
            "forgetting_reduction",
            "Forgetting cut vs naive",
            "higher",
            "percent",
            "per seed 100 (1 - F_strategy / F_naive) against naive on the same seed (the WPL paper's "
            "headline); seeds where naive did not forget are left out. Above 100 where the strategy's own "
            "forgetting is negative (a later model improved an earlier one)",
            "stability",
            (-float("inf"), float("inf")),
        ),
        Metric(
            "curve_max_drop",
            "Max drop (curves)",
            "lower",
            "accuracy",
            "largest fall of an earlier model's accuracy below its value before a later experience "
            "started, over every evaluation while later experiences train",
            "curves",
            (0, 1),
        ),
        Metric(
            "curve_drop_area",
            "Drop area (curves)",
            "lower",
            "area",
            "area under max(0, baseline - accuracy) over the iterations of each later experience "
            "(accuracy x iterations), averaged over (earlier model, later experience) pairs",
            "curves",
            (0, float("inf")),
        ),
        Metric(
            "err_gap_mean",
            "Mean err2 - err1",
            "lower",
            "accuracy",
            "supernet: mean over rounds and architectures of err2 - err1 (error at the end of the round "
            "minus error right after the architecture's turn)",
            "supernet",
            (-1, 1),
        ),
        Metric(
            "err_gap_max",
            "Max err2 - err1",
            "lower",
            "accuracy",
            "supernet: the largest err2 - err1",
            "supernet",
            (-1, 1),
        ),
        Metric(
            "kendall_tau",
            "Kendall tau",
            "higher",
            "tau",
            "supernet records written before every supernet became a custom_supernet search (newer ones: "
            "search_tau): Kendall's tau-b between the final accuracies of the architectures and their "
            "standalone accuracies (1 = the supernet ranks them as training alone would)",
            "supernet",
            (-1, 1),
        ),
        Metric(
            "search_tau",
            "Search tau",
            "higher",
            "tau",
            "search: Kendall's tau-b between the supernet's validation accuracy of every candidate (what the "
            "search ranks by) and its standalone accuracy (the ground truth)",
            "search",
            (-1, 1),
        ),
        Metric(
            "search_rho",
            "Search rho",
            "higher",
            "tau",
            "search: Spearman's rho between the same two scorings",
            "search",
            (-1, 1),
        ),
        Metric(
            "precision_at_k",
            "Precision@K",
            "higher",
            "accuracy",
            "search: share of the K best candidates by standalone accuracy that are among the supernet's K best "
            "(K = the scenario's top_k)",
            "search",
            (0, 1),
        ),
        Metric(
            "regret",
            "Regret",
            "lower",
            "accuracy",
            "search: best standalone accuracy in the space minus the standalone accuracy of the architecture "
            "the search picked (its best by supernet validation accuracy)",
            "search",
            (0, 1),
        ),
        Metric(
            "forgetting_value_mean",
            "Forgetting value (mean)",
            "lower",
            "accuracy",
            "search: per epoch, the mean of err2 - err1 over the architectures it trained (error at the epoch's "
            "end minus right after the architecture's turn); averaged over epochs (from measure_from_epoch on where the "
            "search sets it)",
            "search",
            (-1, 1),
        ),
        Metric(
            "forgetting_value_top5",
            "Forgetting value (top-5)",
            "lower",
            "accuracy",
            "search: per epoch, the mean of the 5 largest err2 - err1; averaged over epochs",
            "search",
            (-1, 1),
        ),
        Metric(
            "forgetting_value_max",
            "Forgetting value (max)",
            "lower",
            "accuracy",
            "search: per epoch, the largest err2 - err1; averaged over epochs",
            "search",
            (-1, 1),
        ),
        Metric(
            "controller_reward",
            "Controller reward",
            "higher",
            "accuracy",
            "search (controller): mean reward (supernet validation accuracy of the sampled architecture) over "
            "the controller's steps in the last epoch",
            "search",
            (0, 1),
        ),
        Metric(
            "lm_forgetting_mean",
            "Forgetting (nats, mean)",
            "lower",
            "nats",
            "language-model search: per epoch, the mean of err2 - err1 (validation log-perplexity at the epoch's end "
            "minus right after the architecture's turn) over the architectures it trained; averaged over the epochs "
            "from measure_from_epoch on",
            "search",
        ),
        Metric(
            "lm_forgetting_whole_search",
            "Forgetting (nats, every epoch)",
            "lower",
            "nats",
            "language-model search: lm_forgetting_mean over every epoch, the warm-up before measure_from_epoch "
            "included",
            "search",
        ),
        Metric(
            "lm_forgetting_best5",
            "Forgetting (nats, best 5)",
            "lower",
            "nats",
            "language-model search: per epoch, the mean err2 - err1 of the 5 architectures with the lowest err1; "
            "averaged over epochs",
            "search",
        ),
        Metric(
            "lm_forgetting_max",
            "Forgetting (nats, max)",
            "lower",
            "nats",
            "language-model search: per epoch, the largest err2 - err1; averaged over epochs",
            "search",
        ),
        Metric(
            "lm_controller_reward",
            "Reward (c / ppl)",
            "higher",
            "score",
            "language-model search (controller): the mean reward c / validation perplexity of the controller's "
            "steps, averaged over epochs",
            "search",
            (0, float("inf")),
        ),
        Metric(
            "derived_valid_ppl",
            "Derived valid ppl",
            "lower",
            "ppl",
            "the derived architecture's validation perplexity on the shared weights",
            "search",
            (1, float("inf")),
        ),
        Metric(
            "derived_test_ppl",
            "Derived test ppl",
            "lower",
            "ppl",
            "the derived architecture (best of the controller's samples by validation perplexity on the shared "
            "weights): test perplexity on the shared weights",
            "search",
            (1, float("inf")),
        ),
        Metric(
            "retrained_valid_ppl",
            "Retrained valid ppl",
            "lower",
            "ppl",
            "the derived architecture trained alone from the run's initial weights for retrain_steps steps (no "
            "shared weights, no regularizer): validation perplexity",
            "search",
            (1, float("inf")),
        ),
        Metric(
            "retrained_test_ppl",
            "Retrained test ppl",
            "lower",
            "ppl",
            "the derived architecture trained alone from the run's initial weights for retrain_steps steps: test "
            "perplexity (what the search's choice is worth)",
            "search",
            (1, float("inf")),
        ),
        Metric(
            "forgetting_value_whole_search",
            "Forgetting value (every epoch)",
            "lower",
            "accuracy",
            "search: forgetting_value_mean over every epoch, the warm-up before measure_from_epoch included",
            "search",
            (-1, 1),
        ),
        Metric(
            "derived_valid_accuracy",
            "Derived valid acc",
            "higher",
            "accuracy",
            "the derived architecture's validation accuracy on the shared weights",
            "search",
            (0, 1),
        ),
        Metric(
            "derived_test_accuracy",
            "Derived test acc",
            "higher",
            "accuracy",
            "the derived architecture (best of the controller's samples by validation error on the shared weights): "
            "test accuracy on the shared weights",
            "search",
            (0, 1),
        ),
        Metric(
            "retrained_valid_accuracy",
            "Retrained valid acc",
            "higher",
            "accuracy",
            "the derived architecture trained alone from the run's initial weights for retrain_steps steps (no shared "
            "weights, no regularizer): validation accuracy",
            "search",
            (0, 1),
        ),
        Metric(
            "retrained_test_accuracy",
            "Retrained test acc",
            "higher",
            "accuracy",
            "the derived architecture trained alone from the run's initial weights for retrain_steps steps: test "
            "accuracy (what the search's choice is worth)",
            "search",
            (0, 1),
        ),
        Metric(
            "train_seconds",
            "Train time",
            "lower",
            "seconds",
            "wall-clock seconds spent training (no eval)",
            "cost",
            (0, float("inf")),
            terminal="train s",
            terminal_rank=3,
        ),
        Metric(
            "importance_seconds",
            "Importance time",
            "lower",
            "seconds",
            "wall-clock seconds of the regularizer's importance passes (EWC's and WPL's Fisher, MAS's Omega), part "
            "of the train time",
            "cost",
            (0, float("inf")),
        ),
        Metric(
            "steps_per_second",
            "Steps / s",
            "higher",
            "rate",
            "optimiser steps per training second",
            "cost",
            (0, float("inf")),
        ),
        Metric(
            "regularizer_bytes",
            "Regularizer memory",
            "lower",
            "bytes",
            "bytes of tensors the strategy's regularizer holds after the run",
            "cost",
            (0, float("inf")),
        ),
    ]
}


_plugins_loaded = False


def register_metric(
    key: str,
    *,
    better: Literal["higher", "lower"],
    unit: Unit = "score",
    label: str | None = None,
    definition: str | None = None,
    section: Section = "stability",
    bounds: tuple[float, float] = (-float("inf"), float("inf")),
    terminal: str | None = None,
    terminal_rank: float = float("inf"),
) -> Callable[[Callable[[RunRecord], float]], Callable[[RunRecord], float]]:
    """Decorator adding a metric computed by ``fn(record) -> float`` from one ok run's record (a
    :class:`~forgetbench.benchmark.core.record.RunRecord`: ``record.accuracy_matrix``, ``record.timing.steps``...; return NaN where it is undefined). ``definition`` defaults to the function's docstring's
    first line, ``label`` to the key; ``unit: accuracy`` values are fractions, shown in points; ``terminal``
    names its column in the terminal table (None: the report and ``summary.csv`` only)."""

    def decorator(fn: Callable[[RunRecord], float]) -> Callable[[RunRecord], float]:
        if key in METRICS and METRICS[key].compute is not fn:
            raise ValueError(f"metric {key!r} is already registered")
        lines = (fn.__doc__ or "").strip().splitlines()
        METRICS[key] = Metric(
            key,
            label or key,
            better,
            unit,
            definition or (lines[0].strip() if lines else key),
            section,
            bounds,
            terminal,
            terminal_rank,
            fn,
        )
        return fn

    return decorator


def registered_metrics() -> list[Metric]:
    """The metrics that bring their own function (registered, not built in), after loading the entry points."""
    global _plugins_loaded
    if not _plugins_loaded:
        _plugins_loaded = True
        for ep in importlib.metadata.entry_points(group="forgetbench.metrics"):
            try:
                ep.load()  # importing the module runs its @register_metric decorators
            except Exception as exc:  # a broken plug-in must not take the harness down
                log.warning("could not load metric entry point %r: %s", ep.name, exc)
    return [m for m in METRICS.values() if m.compute is not None]


def terminal_metrics() -> list[Metric]:
    """The terminal table's metric columns, in order."""
    registered_metrics()
    shown = [(m.terminal_rank, i, m) for i, m in enumerate(METRICS.values()) if m.terminal]
    return [m for _, _, m in sorted(shown, key=lambda t: t[:2])]
