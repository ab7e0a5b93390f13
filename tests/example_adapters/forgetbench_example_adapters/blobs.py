"""Dataset ``blobs``: a dataset plug-in (``forgetbench.datasets`` entry point). Ten Gaussian clusters in
16 dimensions, generated offline from a fixed seed: 2,000 training and 500 test points."""

from __future__ import annotations

from pathlib import Path

import torch

from forgetbench.benchmark.data.datasets import DATASETS, TensorData


@DATASETS.register("blobs", num_classes=10, input_shape=(16,), files=[])
def load_blobs(root: Path, download: bool) -> TensorData:
    """Ten Gaussian blobs in 16-D (example dataset plug-in, generated offline)."""
    g = torch.Generator().manual_seed(1234)
    centres = 3 * torch.randn(10, 16, generator=g)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % 10
        return centres[y] + torch.randn(n, 16, generator=g), y

    train_x, train_y = draw(2000)
    test_x, test_y = draw(500)
    return TensorData("blobs", train_x, train_y, test_x, test_y, 10)
