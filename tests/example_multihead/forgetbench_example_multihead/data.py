"""Avalanche's SplitMNIST with task labels, from torchvision's MNIST files under the data root."""

from __future__ import annotations

from pathlib import Path


def make_benchmark(data_root: Path, n_experiences: int = 5, seed: int = 0):
    from avalanche.benchmarks.classic import SplitMNIST

    # <data root>/mnist/MNIST/raw/... is torchvision's layout; present files are never downloaded again
    return SplitMNIST(
        n_experiences=n_experiences,
        return_task_id=True,
        seed=seed,
        class_ids_from_zero_in_each_exp=True,
        dataset_root=Path(data_root) / "mnist",
    )
