"""Per convolution of the perf ResNet-18 (nf = 20) on 28x28 inputs: what the exact Fisher's per-sample weight
gradients and their squares cost against the batch weight gradient a training step computes on the same tensors
(one batch of 128, 1 thread, best of 5). Why `fisher_vs_epoch` stays above 1.0 on a convolutional trunk.
With --profile, also torch.profiler's table of one whole exact Fisher pass over perf's 512 ResNet-18 samples (MNIST
under FORGETBENCH_DATA). Usage: OMP_NUM_THREADS=1 python scripts/fisher_layer_costs.py [--profile]"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch
from torch import nn

from forgetbench.strategies.importance import _accumulate_fast

BATCH = 128
LAYERS = ((20, 28), (40, 14), (80, 7), (160, 4))  # (channels, side) of each stage's 3x3 convolutions


def best_ms(work, repeats: int = 5) -> float:
    work()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(f"{'layer':<22}{'batch weight grad':>20}{'per-sample + squares':>24}{'ratio':>8}")
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
            _accumulate_fast(conv, [[a, delta]], sums, "")

        batch, fisher = best_ms(batch_gradient), best_ms(per_sample)
        print(f"{channels:>3} ch, {side}x{side}{'':<11}{batch:>17.1f} ms{fisher:>21.1f} ms{fisher / batch:>8.2f}")


def profile_pass() -> None:
    from torch.profiler import profile

    from forgetbench.benchmark.data.datasets import load_dataset
    from forgetbench.benchmark.front.measure.perf import PerfOptions, model_workload
    from forgetbench.strategies.importance import exact_fisher_diagonal

    opts = PerfOptions(data_root=Path(os.environ.get("FORGETBENCH_DATA", "../shared/data")), model="resnet18")
    workload = model_workload(opts, load_dataset("mnist", opts.data_root), "resnet18", tasks=1, train_per_task=512)
    model, task = workload.fresh_model(), workload.scenario.tasks[0]
    x, y = task.train_x[:512], task.train_y[:512]
    exact_fisher_diagonal(model, x, y, task.model_key, BATCH)  # warm-up
    with profile() as prof:
        exact_fisher_diagonal(model, x, y, task.model_key, BATCH)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
    if "--profile" in sys.argv[1:]:
        profile_pass()
