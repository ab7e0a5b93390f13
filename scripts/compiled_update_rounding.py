"""Does a compiled step keep a seed's numbers? ``torch.compile`` of one SGD-with-momentum step with a quadratic
penalty's gradient over K stacked seeds' weights, against the same eager ops (the ops a seed's own run makes): its
compile seconds and the largest difference after one step (0.0 would be bit for bit the same).

    .venv/bin/python scripts/compiled_update_rounding.py [--seeds 20] [--width 128]

Issue 83's 3x at K = 20 would need a step faster than the stacked eager loop; this measures why a compiled one is
not the per-seed reference's arithmetic (docs/studies/performance.md, "Seeds as one batch").
"""

from __future__ import annotations

import argparse
import sys
import time

import torch


def step(
    param: torch.Tensor, momentum: torch.Tensor, grad: torch.Tensor, importance: torch.Tensor, anchor: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    grad = grad.addcmul(importance, param - anchor, value=0.7)  # the penalty's gradient, lambda F (theta - theta*)
    momentum = momentum.mul(0.9).add(grad)
    return param.add(momentum, alpha=-0.01), momentum


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--width", type=int, default=128)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    tensors = [torch.randn(args.seeds, args.width, args.width, generator=generator) for _ in range(5)]
    compiled = torch.compile(step)
    begun = time.perf_counter()
    fused = compiled(*tensors)
    seconds = time.perf_counter() - begun
    eager = step(*tensors)
    differences = [float((f - e).abs().max()) for f, e in zip(fused, eager)]
    print(
        f"compiled in {seconds:.1f} s; largest difference after one step: weights {differences[0]:.2g}, momentum "
        f"{differences[1]:.2g}; bit for bit the same: {all(torch.equal(f, e) for f, e in zip(fused, eager))}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
