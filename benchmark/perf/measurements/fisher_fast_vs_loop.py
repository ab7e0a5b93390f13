"""``perf``'s ``fisher_fast_vs_loop`` section: the exact diagonal Fisher against the per-sample loop."""

from __future__ import annotations

import time
from typing import Any

from forgetbench.benchmark.data.datasets import TensorData

from forgetbench.benchmark.perf.measurements import NoParams, goal, section, row
from forgetbench.benchmark.perf.common import (
    NOT_AVAILABLE,
    PerfOptions,
    median_of,
    ratio_of,
    model_workload,
    plain_train,
    synchronize,
    target,
)


def fisher_fast_vs_loop(opts: PerfOptions, data: TensorData) -> dict[str, Any] | str:
    """Exact diagonal Fisher, fast vs per-sample loop (loop / fast), and fast vs one training epoch
    of the plain loop on the same samples (``fisher_vs_epoch``: the pass WPL and EWC-exact add per
    experience, against what one epoch of that experience costs)."""
    try:
        from forgetbench.strategies.importance import exact_fisher_diagonal, per_sample_fisher_loop
    except ImportError:
        return NOT_AVAILABLE
    model_name = opts.model or "mlp"
    samples = opts.fisher_samples if model_name == "mlp" or opts.quick else opts.case(model_name)["train_per_task"]
    workload = model_workload(opts, data, model_name, tasks=1, train_per_task=samples, name="fisher")
    device = opts.torch_device
    model = workload.fresh_model()
    task = workload.scenario.tasks[0]
    n = min(samples, len(task.train_y))
    x, y = task.train_x[:n].to(device), task.train_y[:n].to(device)
    batch = opts.training.batch_size
    times: dict[str, list[float]] = {"fast": [], "loop": [], "epoch": []}
    fast = loop = None
    sides = ["fast", "loop", "epoch"]
    for r in range(opts.repeats):
        for side in sides[r % 3 :] + sides[: r % 3]:
            synchronize(device)
            t0 = time.perf_counter()
            if side == "fast":
                fast = exact_fisher_diagonal(model, x, y, task.model_key, batch)
            elif side == "loop":
                loop = per_sample_fisher_loop(model, x, y, task.model_key)
            else:
                _, seconds, _ = plain_train(workload, opts.training, opts.seed, device)
            synchronize(device)
            times[side].append(seconds if side == "epoch" else time.perf_counter() - t0)
    # relative to each tensor's largest entry, floored at 1e-8 of the largest overall: a tensor whose Fisher is 0 in
    # exact arithmetic (attention's key bias: softmax ignores a shift) holds only rounding noise on both sides
    if fast is None or loop is None:  # every repeat runs both sides
        raise RuntimeError("fisher section: no repeat ran")
    floor = 1e-8 * max(float(v.abs().max()) for v in loop.values())
    max_rel = max(
        float((fast[k] - loop[k]).abs().max() / loop[k].abs().max().clamp_min(max(floor, 1e-30))) for k in loop
    )
    f, lo, ep = (median_of(times[k]) for k in sides)
    return {
        "model": model_name,
        "samples": n,
        "fast_seconds": f,
        "loop_seconds": lo,
        "epoch_seconds": ep,
        "speedup": ratio_of(lo, f),
        "fisher_vs_epoch": ratio_of(f, ep),
        "fisher_vs_epoch_target": target(opts.device, model_name, "fisher_vs_epoch"),
        "max_relative_diff": max_rel,
        "equal": bool(max_rel < 1e-3),
    }


def run(opts: PerfOptions, params: NoParams, data: Any) -> Any:
    return fisher_fast_vs_loop(opts, data)


def lines(value: Any) -> list[str]:
    """Its block of perf's table."""
    title = "fisher_fast_vs_loop (loop time / fast time)"
    if isinstance(value, str):
        return [title, row("exact Fisher", value)]
    r = value
    return [
        title,
        row(
            f"{r['samples']} samples",
            f"{r['speedup']:.1f}x ({'equal' if r['equal'] else 'DIFFER'})",
            "target >= 10" if r["model"] == "mlp" else "",
        ),
        row(
            f"fast pass / one epoch ({r['fast_seconds']:.3f}s / {r['epoch_seconds']:.3f}s)",
            f"{r['fisher_vs_epoch']:.3f}",
            goal(r["fisher_vs_epoch_target"]),
        ),
    ]


section(__name__, "the exact Fisher's fast path against the per-sample loop", run, lines, needs_data=True, rank=3)
