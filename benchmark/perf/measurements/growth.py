"""``perf``'s ``growth`` section: per-step time and regularizer memory as the number of experiences grows."""

from __future__ import annotations

from typing import Any

from torch import nn

from forgetbench.benchmark.data.datasets import TensorData

from forgetbench.benchmark.perf.measurements import NoParams, section, row
from forgetbench.benchmark.perf.common import (
    GROWTH_RESNET_PER_TASK,
    NOT_AVAILABLE,
    PerfOptions,
    TEXT_MODELS,
    median_of,
    seconds_per_step,
    ratio_of,
    harness_train,
    model_workload,
)


def growth(opts: PerfOptions, data: TensorData) -> dict[str, Any] | str:
    """Per-step time and regularizer bytes for T experiences, per strategy (medians); a sentence when it cannot run."""
    from forgetbench.strategies import STRATEGIES

    if opts.model in TEXT_MODELS:
        return f"{NOT_AVAILABLE}: the text corpus has too few classes for T = {opts.growth_tasks}"

    cases: dict[str, tuple[str, dict[str, Any]]] = {
        "naive": ("naive", {}),
        "ewc_separate": ("ewc", {"mode": "separate"}),
        "ewc_online": ("ewc", {"mode": "online", "decay_factor": 1.0}),
        "si": ("si", {}),
    }
    if "wpl" in STRATEGIES:
        cases["wpl"] = ("wpl", {})
    out: dict[str, Any] = {"tasks": list(opts.growth_tasks), "train_per_task": opts.growth_train_per_task}
    results: dict[str, dict[int, dict[str, float]]] = {label: {} for label in cases}
    model = opts.model or "mlp"
    out["model"] = model
    # one ResNet-18 step costs ~1.7 s on one CPU thread: one step per task keeps T = 20 affordable
    per_task = GROWTH_RESNET_PER_TASK if model == "resnet18" and not opts.quick else opts.growth_train_per_task
    out["train_per_task"] = per_task
    for T in opts.growth_tasks:
        workload = model_workload(opts, data, model, tasks=T, train_per_task=per_task, name=f"growth{T}")
        trunk, heads = _parameter_bytes(workload.scenario.model)
        out.setdefault("trunk_bytes", trunk)
        out.setdefault("head_bytes", {})[str(T)] = heads
        times: dict[str, list[float]] = {label: [] for label in cases}
        memory: dict[str, int] = {}
        labels = list(cases)
        for r in range(opts.repeats):
            for label in labels[r % len(labels) :] + labels[: r % len(labels)]:
                name, params = cases[label]
                run = harness_train(workload, name, opts.training, opts.seed, params, opts.torch_device)
                times[label].append(seconds_per_step(run))
                memory[label] = run.regularizer_bytes
        for label in cases:
            results[label][T] = {"step_seconds": median_of(times[label]), "regularizer_bytes": memory[label]}
    first, last = opts.growth_tasks[0], opts.growth_tasks[-1]
    for label, by_t in results.items():
        for T, v in by_t.items():  # naive runs interleaved at the same T: cancels machine-load drift
            v["vs_naive"] = ratio_of(v["step_seconds"], results["naive"][T]["step_seconds"])
        out[label] = {
            "per_T": {str(T): v for T, v in by_t.items()},
            "step_ratio_last_vs_first": ratio_of(by_t[last]["step_seconds"], by_t[first]["step_seconds"]),
            "vs_naive_ratio_last_vs_first": ratio_of(by_t[last]["vs_naive"], by_t[first]["vs_naive"]),
            "bytes_ratio_last_vs_first": ratio_of(by_t[last]["regularizer_bytes"], by_t[first]["regularizer_bytes"])
            if by_t[first]["regularizer_bytes"]
            else None,
        }
    if "wpl" not in cases:
        out["wpl"] = NOT_AVAILABLE
    return out


def _parameter_bytes(model: nn.Module) -> tuple[int, int]:
    """(bytes of the trunk's parameters, bytes of all heads' parameters) of a multi-head model."""
    trunk = sum(p.nbytes for name, p in model.named_parameters() if name.startswith("trunk."))
    total = sum(p.nbytes for p in model.parameters())
    return trunk, total - trunk


def run(opts: PerfOptions, params: NoParams, data: Any) -> Any:
    return growth(opts, data)


def lines(value: Any) -> list[str]:
    """Its block of perf's table."""
    if isinstance(value, str):
        return ["growth", row("growth", value)]
    g = value
    out = [f"growth (T = {g['tasks']}; ms/step and regularizer bytes; T={g['tasks'][-1]} / T={g['tasks'][0]})"]
    for label, r in g.items():
        if label in ("tasks", "train_per_task", "model", "trunk_bytes", "head_bytes"):
            continue
        if isinstance(r, str):
            out.append(row(label, r))
            continue
        cells = ", ".join(
            f"T={T}: {v['step_seconds'] * 1e3:.2f}ms ({v['vs_naive']:.2f}x naive) {v['regularizer_bytes']}B"
            for T, v in r["per_T"].items()
        )
        br = r["bytes_ratio_last_vs_first"]
        times = f"time x{r['step_ratio_last_vs_first']:.2f} (vs naive x{r['vs_naive_ratio_last_vs_first']:.2f})"
        out.append(row(label, f"{times}, bytes x{br:.2f}" if br else times))
        out.append(f"      {cells}")
    last = str(g["tasks"][-1])
    out.append(
        f"      (2 x (trunk + heads) at T={last}: 2 x ({g['trunk_bytes']} + {g['head_bytes'][last]}) = "
        f"{2 * (g['trunk_bytes'] + g['head_bytes'][last])}B)"
    )
    return out


section(
    __name__,
    "per-step time and regularizer bytes as the number of experiences grows",
    run,
    lines,
    needs_data=True,
    rank=4,
)
