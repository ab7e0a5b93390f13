"""A single-path one-shot (SPOS, Guo et al. 2020) supernet in plain PyTorch: a shared conv stem, choice blocks
that each offer a 3x3 convolution, a 5x5 convolution or a skip, and a shared linear classifier. Group
normalisation (no running statistics, which every architecture would overwrite) keeps the paths' scales alike.

``forward(x, arch)`` runs one path: ``arch`` names the option of every block, e.g. ``("c3", "skip", "c5")``.
Every architecture that picks ``c3`` in block 1 runs the very same ``blocks.1.c3`` weights: the weight sharing
whose forgetting forgetbench measures. Nothing here knows about forgetbench.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

OPTIONS = ("c3", "c5", "skip")


def make_op(name: str, channels: int) -> nn.Module:
    if name == "skip":
        return nn.Identity()
    kernel = {"c3": 3, "c5": 5}[name]
    return nn.Sequential(
        nn.Conv2d(channels, channels, kernel, padding=kernel // 2), nn.GroupNorm(2, channels), nn.ReLU()
    )


class SPOSSupernet(nn.Module):
    def __init__(self, choices: Sequence[Sequence[str]], in_channels: int, num_classes: int, channels: int = 8):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, stride=2, padding=1), nn.GroupNorm(2, channels), nn.ReLU()
        )
        self.blocks = nn.ModuleList(nn.ModuleDict({name: make_op(name, channels) for name in c}) for c in choices)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor, arch: Sequence[str]) -> torch.Tensor:
        h = self.stem(x)
        for block, name in zip(self.blocks, arch):
            h = block[name](h)
        return self.head(h.mean(dim=(2, 3)))


def make_supernet(choices, input_shape, num_classes, channels: int = 8) -> SPOSSupernet:
    """The factory a config names (``model: forgetbench_example_supernet.spos:make_supernet``); forgetbench passes
    the space's ``choices``, the data's ``input_shape`` and ``num_classes``."""
    return SPOSSupernet(choices, input_shape[0], num_classes, channels)


class NoSkipTwiceSpace:
    """A constrained space by reference: 3 blocks of {c3, c5, skip}, never two skips in a row (a user's rule)."""

    choices = [list(OPTIONS)] * 3

    def valid(self, arch: Sequence[str]) -> bool:
        return not any(a == b == "skip" for a, b in zip(arch, arch[1:]))

    def sample(self, rng: np.random.Generator) -> list[str]:
        while True:
            arch = [str(rng.choice(OPTIONS)) for _ in self.choices]
            if self.valid(arch):
                return arch

    def all(self) -> list[list[str]]:
        import itertools

        return [list(a) for a in itertools.product(*self.choices) if self.valid(a)]
