"""``perf``'s ``step_overhead`` section (and ``importance_vs_epoch``): each regularizer's time per training step
over ``naive``'s on the same stream, and its importance pass over one epoch."""

from __future__ import annotations

from typing import Any, Sequence

from forgetbench.benchmark.data.datasets import TensorData

from forgetbench.benchmark.perf.measurements import NoParams, goal, section, row
from forgetbench.benchmark.perf.common import (
    NOT_AVAILABLE,
    PerfOptions,
    importance_ratio,
    median_of,
    seconds_per_step,
    ratio_of,
    harness_train,
    model_workload,
    target,
)


# regularizers that are not built on the quadratic core, measured beside it (a distillation penalty)
ALSO_MEASURED = ("lwf",)


def regularizers() -> list[str]:
    """Every registered strategy (built-in or a plug-in's) whose plugins include a regularizer of the quadratic core
    (:class:`~forgetbench.strategies.quadratic.QuadraticRegularizer`), with :data:`ALSO_MEASURED`: found by building
    each on a two-layer stand-in model (no training), so a strategy file added tomorrow is measured too."""
    import torch

    from forgetbench.benchmark.core.training import TrainingConfig
    from forgetbench.benchmark.data.models import TaskRoutedModule
    from forgetbench.strategies import STRATEGIES, StrategyContext
    from forgetbench.strategies.quadratic import QuadraticRegularizer

    class StandIn(TaskRoutedModule):
        def __init__(self) -> None:
            super().__init__()
            self.trunk, self.head = torch.nn.Linear(4, 4), torch.nn.Linear(4, 2)

        def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
            return self.head(self.trunk(x))

    used = [frozenset({"trunk.weight", "trunk.bias", "head.weight", "head.bias"})] * 2
    found = []
    for entry in STRATEGIES:
        if entry.name.startswith("avalanche.") or entry.extra.get("unavailable"):
            continue
        ctx = StrategyContext(StandIn(), TrainingConfig(), torch.device("cpu"), used, 0)
        try:
            template = entry.factory(ctx, entry.parse_params({}))
        except Exception:  # a strategy that needs another model (adapters, masks) is not a regularizer of this kind
            continue
        if any(isinstance(p, QuadraticRegularizer) for p in getattr(template, "plugins", [])):
            found.append(entry.name)
    return found + [name for name in ALSO_MEASURED if name in STRATEGIES and name not in found]


def _strategy_cases(strategies: Sequence[Any] | None = None) -> dict[str, tuple[str, dict]]:
    """perf's rows: naive and every regularizer (:func:`regularizers`), or naive and ``strategies`` (names, or
    ``(label, name, params)``)."""
    if strategies:
        cases: dict[str, tuple[str, dict]] = {"naive": ("naive", {})}
        for item in strategies:
            label, name, params = (item, item, {}) if isinstance(item, str) else item
            cases[label] = (name, dict(params))
        return cases
    return {"naive": ("naive", {}), **{name: (name, {}) for name in regularizers()}}


def step_overhead(
    opts: PerfOptions, data: TensorData, strategies: Sequence[Any] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per-step time of each strategy over ``naive`` and importance-pass time over one epoch; ``strategies``: these
    registered names instead of perf's rows (``perf --only step_costs``)."""
    model = opts.model or "mlp"
    workload = model_workload(opts, data, model)
    cases = _strategy_cases(strategies)
    per_step: dict[str, list[float]] = {k: [] for k in cases}
    importance: dict[str, list[float]] = {k: [] for k in cases}
    labels = list(cases)
    harness_train(workload, "naive", opts.training, opts.seed, device=opts.torch_device)  # warm-up, untimed
    for r in range(opts.repeats):
        rotation = labels[r % len(labels) :] + labels[: r % len(labels)]  # rotate who runs first
        for label in rotation:
            name, params = cases[label]
            run = harness_train(workload, name, opts.training, opts.seed, params, opts.torch_device)
            per_step[label].append(seconds_per_step(run))
            importance[label].append(importance_ratio(run))
    naive = median_of(per_step["naive"])
    overhead: dict[str, Any] = {
        "naive_step_seconds": naive,
        "model": model,
        "naive_step_seconds_all": per_step["naive"],
    }
    for label in labels:
        if label == "naive":
            continue
        overhead[label] = {
            "step_seconds": median_of(per_step[label]),
            "ratio": ratio_of(median_of(per_step[label]), naive),
            "target": target(opts.device, model, label),
            "step_seconds_all": per_step[label],
        }
    if "wpl" not in cases and not strategies:
        overhead["wpl"] = NOT_AVAILABLE
    imp: dict[str, Any] = {label: median_of(importance[label]) for label in labels if label != "naive"}
    if "wpl" not in cases and not strategies:
        imp["wpl"] = NOT_AVAILABLE
    return overhead, imp


def run(opts: PerfOptions, params: NoParams, data: Any) -> dict[str, Any]:
    per_step, importance = step_overhead(opts, data)
    return {"step_overhead": per_step, "importance_vs_epoch": importance}


def lines(result: Any) -> list[str]:
    """Its block of perf's table (``result``: its two keys, step_overhead and importance_vs_epoch)."""
    so = result["step_overhead"]
    out = ["step_overhead (per-step time / naive, experiences 2..T)"]
    out.append(row("naive", f"{so['naive_step_seconds'] * 1e3:.3f} ms/step"))
    for label, r in so.items():
        if label in ("naive_step_seconds", "model", "naive_step_seconds_all"):
            continue
        value = r if isinstance(r, str) else f"{r['step_seconds'] * 1e3:.3f} ms, ratio {r['ratio']:.3f}"
        out.append(row(label, value, "" if isinstance(r, str) else goal(r["target"])))
    out.append("importance_vs_epoch (after-experience work / one epoch)")
    for label, r in result["importance_vs_epoch"].items():
        wanted = "target <= 1.0" if label in ("ewc", "wpl") else ""
        out.append(row(label, r if isinstance(r, str) else f"{r:.3f}", wanted))
    return out


section(
    __name__,
    "each regularizer's time per step over naive's, and its importance pass over an epoch",
    run,
    lines,
    needs_data=True,
    rank=2,
    also=("importance_vs_epoch",),
)
