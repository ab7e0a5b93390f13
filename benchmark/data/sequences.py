"""Toy sequence tasks from plain tensors, and a GRU classifier: the template of docs/howto/own-tensors.md.

``make_benchmark`` turns plain tensors into an Avalanche benchmark with Avalanche's current API
(``benchmark_from_datasets`` over ``ClassificationDataset``s: no ``tensors_benchmark``, which is deprecated);
``GRUClassifier`` is one GRU and one shared head, trained on every task in turn (domain-incremental: a plain module).

The tasks are toy sequences: a class is which of two directions a noisy walk drifts in, and each task draws its
own pair of directions, so a model that learns task 1 forgets task 0 unless a regularizer keeps it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset


class TensorClassification(Dataset):
    """(x, y) tensors with the ``targets`` field Avalanche's classification datasets read."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.targets = x, y

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        return self.x[i], self.targets[i]


def walks(
    generator: torch.Generator, directions: torch.Tensor, n: int, length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` walks of ``length`` steps: class c drifts along ``directions[c]`` under unit noise."""
    y = torch.randint(0, len(directions), (n,), generator=generator)
    steps = 0.35 * directions[y][:, None, :] + torch.randn(n, length, directions.shape[1], generator=generator)
    return steps.cumsum(1) / length**0.5, y


def make_benchmark(seed: int, tasks: int = 3, features: int = 6, length: int = 24, train: int = 600, test: int = 300):
    """One experience per task, train and test streams: your own tensors go where ``walks`` are."""
    from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
    from avalanche.benchmarks.scenarios.task_aware import task_incremental_benchmark
    from avalanche.benchmarks.utils import as_classification_dataset

    generator = torch.Generator().manual_seed(seed)
    streams: dict[str, list] = {"train": [], "test": []}
    for _ in range(tasks):
        directions = torch.nn.functional.normalize(torch.randn(2, features, generator=generator), dim=1)
        for stream, n in (("train", train), ("test", test)):
            x, y = walks(generator, directions, n, length)
            streams[stream].append(as_classification_dataset(TensorClassification(x, y)))
    # experience i carries task label i (forgetbench reads one per experience); a plain module ignores it
    return task_incremental_benchmark(benchmark_from_datasets(train=streams["train"], test=streams["test"]))


class GRUClassifier(nn.Module):
    """A GRU over the sequence and one head on its last hidden state, shared by every task."""

    def __init__(self, features: int = 6, hidden: int = 32, classes: int = 2, layers: int = 1):
        super().__init__()
        self.gru = nn.GRU(features, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h = self.gru(x)
        return self.head(h[-1])


def make_model(features: int = 6, hidden: int = 32, layers: int = 1) -> nn.Module:
    return GRUClassifier(features, hidden, 2, layers)
