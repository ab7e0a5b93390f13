"""Factories a user might write, referenced by configs in the tests (``byo_fixtures:<name>``):
small working ones and the broken ones the bad-input battery feeds the ``custom`` scenario."""

from __future__ import annotations

import torch
from avalanche.benchmarks import benchmark_from_datasets, with_task_labels
from avalanche.models import DynamicModule, MultiHeadClassifier, MultiTaskModule
from torch import nn

from forgetbench.benchmark.data.loaders import tensor_dataset


def tensor_benchmark(n_experiences: int = 2, task_labels: bool = True, seed: int = 0):
    """Two tiny 2-class tasks of 8-feature points (linearly separable), with or without task labels."""
    g = torch.Generator().manual_seed(seed)

    def split(t, n):
        x = torch.randn(n, 8, generator=g)
        y = (x[:, t % 8] > 0).long()
        label = t if task_labels else 0
        return tensor_dataset(x, y, torch.full((n,), label, dtype=torch.long))

    train = [split(t, 512) for t in range(n_experiences)]
    test = [split(t, 256) for t in range(n_experiences)]
    return with_task_labels(benchmark_from_datasets(train=train, test=test))


def rounds_benchmark(tasks: int = 3, rounds: int = 2, same_data: bool = True, seed: int = 0):
    """``tasks`` tiny tasks trained ``rounds`` times each, round-robin: task labels 0, 1, 2, 0, 1, 2 (the same
    experience again: a later round of its task); ``same_data: false`` draws new data for the repeats."""
    g = torch.Generator().manual_seed(seed)

    def split(t, n):
        x = torch.randn(n, 8, generator=g)
        return tensor_dataset(x, (x[:, t % 8] > 0).long(), torch.full((n,), t, dtype=torch.long))

    train, test = [split(t, 256) for t in range(tasks)], [split(t, 128) for t in range(tasks)]
    if same_data:
        train, test = train * rounds, test * rounds
    else:
        train = train + [split(t, 256) for t in range(tasks) for _ in range(rounds - 1)]
        test = test * rounds
    return with_task_labels(benchmark_from_datasets(train=train, test=test))


class MultiHeadMLP(MultiTaskModule):
    def __init__(self, width: int = 16):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(8, width), nn.ReLU())
        self.classifier = MultiHeadClassifier(width, initial_out_features=2)

    def forward_single_task(self, x, task_label):
        return self.classifier(self.trunk(x), task_label)


def multihead_mlp(width: int = 16) -> nn.Module:
    return MultiHeadMLP(width)


def plain_mlp(width: int = 16) -> nn.Module:
    return nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, 2))


def exiting_benchmark(**kwargs):
    """A benchmark factory that ends the process instead of returning (issue 74: `validate` exited 0)."""
    import sys

    sys.exit(0)


def sleeping_benchmark(**kwargs):
    """A benchmark factory that never returns in time (issue 74: `run` hung with no message); it touches the file
    ``$SLEEPING_BENCHMARK_MARK`` names when it starts sleeping, for a test that signals it there."""
    import os
    import time
    from pathlib import Path

    if os.environ.get("SLEEPING_BENCHMARK_MARK"):
        Path(os.environ["SLEEPING_BENCHMARK_MARK"]).touch()
    time.sleep(3600)


def raising_model(width: int = 16) -> nn.Module:
    raise RuntimeError("cannot build: the checkpoint file weights.pt is missing")


class Growing(DynamicModule):
    """Adds a parameter at every adaptation: its names never settle."""

    def __init__(self):
        super().__init__()
        self.net = nn.Linear(8, 2)
        self.grown = nn.ParameterList()

    def adaptation(self, experience=None):
        self.grown.append(nn.Parameter(torch.zeros(1)))

    def forward(self, x):
        return self.net(x)


def growing_model() -> nn.Module:
    return Growing()


not_callable = 42


class _SecondTaskFrozen(nn.Module):
    """Task 0 trains a linear map; task 1 reads only a frozen one (nothing of it can be trained)."""

    def __init__(self):
        super().__init__()
        self.trained, self.fixed = nn.Linear(8, 2), nn.Linear(8, 2)
        self.fixed.requires_grad_(False)

    def forward_single_task(self, x, task_label):
        return self.trained(x) if task_label == 0 else self.fixed(x)


def second_task_frozen_model():
    return _SecondTaskFrozen()


# ---------------------------------------------------------------- supernets (the `custom_supernet` scenario)
class TinySupernet(nn.Module):
    """An MLP supernet on 8-feature points: decision d picks ``lin`` (a linear layer + ReLU of its own), ``wide``
    (another) or ``skip``; one shared classifier. ``forward(x, arch)`` runs the path ``arch`` names; option ``zero``
    (when offered) outputs zeros and uses no parameter, so an all-``zero`` path before a frozen head trains nothing."""

    def __init__(self, choices, input_shape, num_classes, width: int = 8, freeze_head: bool = False):
        super().__init__()
        self.inp = nn.Linear(input_shape[0], width)
        self.blocks = nn.ModuleList(
            nn.ModuleDict({o: nn.Sequential(nn.Linear(width, width), nn.ReLU()) for o in c if o in ("lin", "wide")})
            for c in choices
        )
        self.head = nn.Linear(width, num_classes)
        if freeze_head:
            for p in [*self.inp.parameters(), *self.head.parameters()]:
                p.requires_grad_(False)

    def forward(self, x, arch):
        h = torch.relu(self.inp(x))
        for block, name in zip(self.blocks, arch):
            if name == "zero":
                h = torch.zeros_like(h)
            elif name != "skip":
                h = block[name](h)
        return self.head(h)


def tiny_supernet_params(**overrides):
    """`custom_supernet` params on this module's tiny supernet and point data (the tests add their schedule)."""
    base = {
        "model": "byo_fixtures:tiny_supernet",
        "choices": [["lin", "wide", "skip"], ["lin", "skip"]],
        "data": "byo_fixtures:point_splits",
    }
    return base | overrides


def tiny_supernet(choices, input_shape, num_classes, width: int = 8, freeze_head: bool = False) -> nn.Module:
    return TinySupernet(choices, input_shape, num_classes, width, freeze_head)


def not_a_supernet(choices):
    return "a string"


def point_splits(seed: int = 0, n_train: int = 600, n_valid: int = 200, with_valid: bool = True):
    """train / valid / test of 8-feature points, 3 classes by the sign pattern of two features (seeded)."""
    g = torch.Generator().manual_seed(seed + 100)

    def split(n):
        x = torch.randn(n, 8, generator=g)
        return x, ((x[:, 0] > 0).long() + (x[:, 1] > 0).long())

    out = {"train": split(n_train), "test": split(300)}
    if with_valid:
        out["valid"] = split(n_valid)
    return out


def bad_splits(seed: int = 0):
    return {"train": (torch.zeros(4, 8), torch.zeros(3).long()), "test": (torch.zeros(2, 8), torch.zeros(2).long())}


class NoZeroFirst:
    """A constrained space by reference: two decisions of {lin, wide, skip}; never skip first."""

    choices = [["lin", "wide", "skip"], ["lin", "wide", "skip"]]

    def sample(self, rng):
        while True:
            arch = [str(rng.choice(c)) for c in self.choices]
            if arch[0] != "skip":
                return arch

    def all(self):
        return [[a, b] for a in self.choices[0] for b in self.choices[1] if a != "skip"]


class NoChoices:
    def sample(self, rng):
        return ["lin"]


class StackableSupernet(nn.Module):
    """docs/howto/own-supernet.md's batching contract: every parameter in an ``nn.Linear``, no dropout, no buffer."""

    def __init__(self, choices, input_shape, num_classes, width: int = 8):
        super().__init__()
        ops = {"lin": lambda: nn.Sequential(nn.Linear(width, width), nn.ReLU()), "skip": nn.Identity}
        ops["tanh"] = lambda: nn.Sequential(nn.Linear(width, width), nn.Tanh())
        self.stem = nn.Linear(input_shape[0], width)
        self.blocks = nn.ModuleList(nn.ModuleDict({name: ops[name]() for name in c}) for c in choices)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x, arch):
        h = self.stem(x.flatten(1))
        for block, name in zip(self.blocks, arch):
            h = block[name](h)
        return self.head(h)


def stackable_supernet(choices, input_shape, num_classes, width: int = 8) -> nn.Module:
    return StackableSupernet(choices, input_shape, num_classes, width)
