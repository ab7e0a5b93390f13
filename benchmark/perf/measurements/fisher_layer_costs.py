"""Per convolution of perf's ResNet-18 (nf = 20) on 28x28 inputs: what the exact Fisher's per-sample weight
gradients and their squares cost against the batch weight gradient a training step computes on the same tensors
(one batch of 128, best of perf's ``--repeats``): why ``fisher_vs_epoch`` stays above 1.0 on a convolutional trunk.
With ``profile``, also torch.profiler's table of one whole exact Fisher pass over perf's 512 ResNet-18 samples.

    OMP_NUM_THREADS=1 forgetbench perf --only fisher_layer_costs [--set profile=true]
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from forgetbench.benchmark.perf.measurements import Measurement, best_seconds, register

BATCH = 128
LAYERS = ((20, 28), (40, 14), (80, 7), (160, 4))  # (channels, side) of each stage's 3x3 convolutions


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    profile: bool = False  # also profile one whole exact Fisher pass (reads --dataset from the data root)


def run(opts: Any, params: Params, data: Any) -> dict[str, Any]:
    import torch
    from torch import nn

    from forgetbench.strategies.squares import accumulate_squares

    torch.manual_seed(0)
    layers = []
    for channels, side in LAYERS:
        conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        a = torch.randn(BATCH, channels, side, side)
        delta = torch.randn(BATCH, channels, side, side)
        sums = {"weight": torch.zeros_like(conv.weight)}

        def batch_gradient(conv=conv, a=a, delta=delta):
            torch.ops.aten.convolution_backward(
                delta, a, conv.weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [False, True, False]
            )

        def per_sample(conv=conv, a=a, delta=delta, sums=sums):
            accumulate_squares(conv, [[a, delta]], sums, "")

        batch, fisher = best_seconds(batch_gradient, opts.repeats), best_seconds(per_sample, opts.repeats)
        layers.append({"channels": channels, "side": side, "batch_ms": 1e3 * batch, "per_sample_ms": 1e3 * fisher})
    result: dict[str, Any] = {"layers": layers}
    if params.profile:
        result["profile"] = _profile_pass(opts)
    return result


def _profile_pass(opts: Any) -> str:
    from torch.profiler import profile

    from forgetbench.benchmark.data.datasets import load_dataset
    from forgetbench.benchmark.perf.common import PerfOptions, model_workload
    from forgetbench.strategies.importance import exact_fisher_diagonal

    resnet = PerfOptions(data_root=opts.data_root, model="resnet18")
    workload = model_workload(
        resnet, load_dataset(opts.dataset, opts.data_root), "resnet18", tasks=1, train_per_task=512
    )
    model, task = workload.fresh_model(), workload.scenario.tasks[0]
    x, y = task.train_x[:512], task.train_y[:512]
    exact_fisher_diagonal(model, x, y, task.model_key, BATCH)  # warm-up
    with profile() as prof:
        exact_fisher_diagonal(model, x, y, task.model_key, BATCH)
    return str(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def lines(result: dict[str, Any]) -> list[str]:
    out = [f"{'layer':<22}{'batch weight grad':>20}{'per-sample + squares':>24}{'ratio':>8}"]
    for r in result["layers"]:
        out.append(
            f"{r['channels']:>3} ch, {r['side']}x{r['side']}{'':<11}{r['batch_ms']:>17.1f} ms"
            f"{r['per_sample_ms']:>21.1f} ms{r['per_sample_ms'] / r['batch_ms']:>8.2f}"
        )
    return out + (result["profile"].splitlines() if "profile" in result else [])


register(
    Measurement(
        "fisher_layer_costs",
        "the exact Fisher's per-sample work per convolution vs the batch gradient",
        Params,
        run,
        lines,
    )
)
