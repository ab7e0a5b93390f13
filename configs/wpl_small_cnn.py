"""The user's network and data of issue 34 (item 7), imported from beside `wpl_small_cnn.yaml`.

A small multi-head CNN (trunk: conv 1->8 3x3 stride 2, conv 8->16 3x3 stride 2, linear 784->64, ReLUs; a linear
head per task) on five two-class MNIST tasks (digits 2t, 2t+1; 300 train and 100 test images per class).
"""

import torch
from avalanche.benchmarks import benchmark_from_datasets, with_task_labels
from forgetbench.benchmark.data.loaders import tensor_dataset
from avalanche.models import MultiTaskModule
from torch import nn


class SmallCNN(MultiTaskModule):
    def __init__(self, tasks=5):
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(1, 8, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(784, 64),
            nn.ReLU(),
        )
        self.heads = nn.ModuleList(nn.Linear(64, 2) for _ in range(tasks))

    def forward_single_task(self, x, task_label):
        return self.heads[task_label](self.trunk(x))


def small_cnn():
    return SmallCNN()


def mnist_pairs(data_root, seed=0, train_per_class=300, test_per_class=100):
    """Five two-class MNIST tasks with task labels, drawn under `seed`."""
    from forgetbench.benchmark.data.datasets import load_dataset

    d = load_dataset("mnist", data_root)
    g = torch.Generator().manual_seed(seed)
    train, test = [], []
    for t in range(5):
        for xs, ys, n, out in (
            (d.train_x, d.train_y, train_per_class, train),
            (d.test_x, d.test_y, test_per_class, test),
        ):
            xx, yy = [], []
            for k, c in enumerate((2 * t, 2 * t + 1)):
                idx = (ys == c).nonzero().squeeze(1)
                idx = idx[torch.randperm(len(idx), generator=g)[:n]]
                xx.append(xs[idx])
                yy.append(torch.full((n,), k))
            x, y = torch.cat(xx), torch.cat(yy)
            out.append(tensor_dataset(x, y, torch.full((len(y),), t)))
    return with_task_labels(benchmark_from_datasets(train=train, test=test))
