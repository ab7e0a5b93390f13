"""``perf``'s ``harness_vs_plain`` section: the harness's ``naive`` run against a hand-written loop doing
identical work (same weights, data order, steps), per model; the weights must end equal."""

from __future__ import annotations

from typing import Any

from forgetbench.benchmark.data.datasets import TensorData

from forgetbench.benchmark.perf.measurements import NoParams, goal, section, row, ratio_and_weights
from forgetbench.benchmark.perf.common import (
    against_plain,
    PerfOptions,
    harness_train,
    max_weight_diff,
    model_workload,
    plain_train,
    target,
)


def harness_vs_plain(opts: PerfOptions, data: TensorData) -> dict[str, Any]:
    """Harness ``naive`` vs the plain loop per model (medians, ratio, weights equal)."""
    device = opts.torch_device
    out: dict[str, Any] = {}
    for name in (opts.model,) if opts.model else ("mlp", "cnn"):
        case = opts.case(name)
        workload = model_workload(opts, data, name)
        harness_s, plain_s, diffs = [], [], []
        steps = steps_plain = 0
        plain_train(workload, opts.training, opts.seed, device)  # warm-up (kernels, allocator), untimed
        for r in range(opts.repeats):
            sides = ["plain", "harness"] if r % 2 == 0 else ["harness", "plain"]
            models = {}
            for side in sides:
                if side == "plain":
                    models["plain"], s, steps_plain = plain_train(workload, opts.training, opts.seed, device)
                    plain_s.append(s)
                else:
                    run = harness_train(workload, "naive", opts.training, opts.seed, device=device)
                    models["harness"], steps = run.model, run.steps
                    harness_s.append(run.train_seconds)
            diffs.append(max_weight_diff(models["plain"], models["harness"]))
        out[name] = {
            **against_plain(harness_s, plain_s, steps, steps_plain, diffs),
            "model": f"{name} {case['widths']}, {case['tasks']} tasks, batch {opts.training.batch_size}",
            "train_per_task": case["train_per_task"],
            "target": target(opts.device, name, "harness_vs_plain"),
        }
    return out


def run(opts: PerfOptions, params: NoParams, data: Any) -> Any:
    return harness_vs_plain(opts, data)


def lines(value: Any) -> list[str]:
    """Its block of perf's table."""
    return ["harness_vs_plain (harness naive / plain PyTorch loop)"] + [
        row(f"{name}: {r['harness_seconds']:.3f}s / {r['plain_seconds']:.3f}s", ratio_and_weights(r), goal(r["target"]))
        for name, r in value.items()
    ]


section(
    __name__,
    "the harness naive run against a plain PyTorch loop doing the same work",
    run,
    lines,
    needs_data=True,
    rank=1,
    deterministic=True,
)
