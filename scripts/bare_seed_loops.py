"""The issue's own measurement of batching seeds (issue 83's "Why"), with no harness: K seeds of decide_demo's MLP
trained one after another against the same K trained as one model with ``torch.func`` (``stack_module_state``,
``vmap``, ``functional_call``). It bounds what stacking alone buys on this machine, for comparing with perf's
seed_batching figures (the harness's two paths).

    .venv/bin/python scripts/bare_seed_loops.py [--seeds 20] [--steps 500] [--repeats 3]

The loop of each seed: an MLP 64-128-128-10, mini-batches of 32 of a fixed random dataset, SGD (lr 0.01, momentum
0.9) and an EWC-style penalty ``0.5 * sum F (theta - theta*)^2`` through autograd; one thread, as a run trains. The
two loops alternate, so a busy spell slows both; each repeat prints its seconds and the ratio, then the medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

BATCH, ROWS, WIDTHS = 32, 2048, (64, 128, 128, 10)


def _mlp() -> nn.Sequential:
    (a, b, c, d) = WIDTHS
    return nn.Sequential(nn.Linear(a, b), nn.ReLU(), nn.Linear(b, c), nn.ReLU(), nn.Linear(c, d))


def _window(step: int) -> slice:
    start = (step * BATCH) % (ROWS - BATCH)
    return slice(start, start + BATCH)


def one_after_another(x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    started = time.perf_counter()
    for k in range(x.shape[0]):
        torch.manual_seed(k)
        model = _mlp()
        anchors = [p.detach().clone() for p in model.parameters()]
        fisher = [torch.rand_like(p) for p in model.parameters()]
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        for step in range(steps):
            rows = _window(step)
            loss = nn.functional.cross_entropy(model(x[k, rows]), y[k, rows])
            loss = loss + 0.5 * sum((f * (p - a) ** 2).sum() for f, p, a in zip(fisher, model.parameters(), anchors))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return time.perf_counter() - started


def as_one_model(x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    started = time.perf_counter()
    models = []
    for k in range(x.shape[0]):
        torch.manual_seed(k)
        models.append(_mlp())
    params, _ = stack_module_state(models)
    skeleton = _mlp().to("meta")
    anchors = {name: p.detach().clone() for name, p in params.items()}
    fisher = {name: torch.rand_like(p) for name, p in params.items()}
    optimizer = torch.optim.SGD(list(params.values()), lr=0.01, momentum=0.9)

    def seed_loss(p: dict[str, torch.Tensor], inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(functional_call(skeleton, p, (inputs,)), targets)

    for step in range(steps):
        rows = _window(step)
        loss = vmap(seed_loss)(params, x[:, rows], y[:, rows]).sum()
        loss = loss + 0.5 * sum((fisher[n] * (params[n] - anchors[n]) ** 2).sum() for n in params)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(args.seeds, ROWS, WIDTHS[0], generator=generator)
    y = torch.randint(0, WIDTHS[-1], (args.seeds, ROWS), generator=generator)
    as_one_model(x[:2], y[:2], 20)  # warm-up: the first vmap call's setup
    ratios = []
    for repeat in range(args.repeats):
        alone, together = one_after_another(x, y, args.steps), as_one_model(x, y, args.steps)
        ratios.append(alone / together)
        print(f"repeat {repeat + 1}: one after another {alone:.2f} s, as one model {together:.2f} s, {ratios[-1]:.2f}x")
    print(f"K = {args.seeds}, {args.steps} steps: median {statistics.median(ratios):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
