"""Which parameters each model of a shared-parameter network uses, found rather than declared.

A parameter belongs to task t's model when the output of ``model.forward_single_task(x, t)`` on a
probe batch depends on it *in the autograd graph*: :func:`torch.autograd.grad` with
``allow_unused=True`` returns ``None`` exactly for tensors that did not take part in the forward pass.
This is reachability, not a gradient's value, so a gradient that is zero by chance (a dead ReLU,
zero-valued input pixels, a saturated unit) never drops a parameter the model really uses.

The probe runs in eval mode (batch-norm statistics and dropout untouched) and restores the model's
mode and every parameter's ``requires_grad`` afterwards.

Only parameters that training can move count: a parameter is *trainable for task t* when it
requires a gradient once the task's forward has run (so a frozen backbone layer is left out, and a
model that switches ``requires_grad`` inside its forward, as PEFT's ``set_adapter`` does to choose a
task's adapter, is read as it sets itself). Frozen parameters cannot be forgotten, so no regularizer
keeps state for them. To see reachability, the trainable ones are then differentiated after a
forward with every parameter switched on, less those the forward switched off again.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Sequence

import torch
from torch import nn

if TYPE_CHECKING:
    from avalanche.models import MultiTaskModule


@contextmanager
def _probing(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def used_parameters(model: MultiTaskModule, x: torch.Tensor, task_label: int) -> frozenset[str]:
    """Names of the trainable parameters ``model.forward_single_task(x, task_label)`` depends on."""
    named = list(model.named_parameters())
    if not named:
        return frozenset()
    with _probing(model):
        with torch.no_grad():
            model.forward_single_task(x, task_label)  # lets the forward set requires_grad for this task
        trainable = {n for n, p in named if p.requires_grad}
        for _, p in named:
            p.requires_grad_(True)
        with torch.enable_grad():
            try:
                out = model.forward_single_task(x, task_label)
                live = [(n, p) for n, p in named if n in trainable and p.requires_grad]
                if not live or not out.requires_grad:
                    return frozenset()
                grads = torch.autograd.grad(out.sum(), [p for _, p in live], allow_unused=True)
            except RuntimeError as exc:
                raise RuntimeError(
                    f"finding which parameters task {task_label}'s model uses (a forward and a gradient on a probe "
                    f"batch of {len(x)} samples, every parameter requiring grad) failed: {exc}"
                ) from exc
    return frozenset(n for (n, _), g in zip(live, grads) if g is not None)


def used_parameters_per_task(
    model: MultiTaskModule, probes: Sequence[tuple[torch.Tensor, int]]
) -> list[frozenset[str]]:
    """:func:`used_parameters` for each ``(probe batch, task label)``."""
    return [used_parameters(model, x, t) for x, t in probes]
