"""Which parameters each model of a shared-parameter network uses, found rather than declared.

A parameter belongs to task t's model when the output of ``model.forward_single_task(x, t)`` on a
probe batch depends on it *in the autograd graph*: :func:`torch.autograd.grad` with
``allow_unused=True`` returns ``None`` exactly for tensors that did not take part in the forward pass.
This is reachability, not a gradient's value, so a gradient that is zero by chance (a dead ReLU,
zero-valued input pixels, a saturated unit) never drops a parameter the model really uses.

The probe runs in eval mode (batch-norm statistics and dropout untouched) with every parameter's
``requires_grad`` switched on for the duration (frozen backbone weights are still *used*), and
restores both afterwards.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import nn


@contextmanager
def _probing(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    try:
        for p, _ in flags:
            p.requires_grad_(True)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def used_parameters(model: nn.Module, x: torch.Tensor, task_label: int) -> frozenset[str]:
    """Names of the parameters ``model.forward_single_task(x, task_label)`` depends on."""
    named = list(model.named_parameters())
    with _probing(model), torch.enable_grad():
        out = model.forward_single_task(x, task_label)
        if not named or not out.requires_grad:
            return frozenset()
        grads = torch.autograd.grad(out.sum(), [p for _, p in named], allow_unused=True)
    return frozenset(n for (n, _), g in zip(named, grads) if g is not None)


def used_parameters_per_task(model: nn.Module, probes: Sequence[tuple[torch.Tensor, int]]) -> list[frozenset[str]]:
    """:func:`used_parameters` for each ``(probe batch, task label)``."""
    return [used_parameters(model, x, t) for x, t in probes]
