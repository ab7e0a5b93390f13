"""One training step of a batch of seeds, in parts the lockstep loop (:mod:`.lockstep`) calls: each seed's next
batch and their stack, the seeds' rows of a stacked tensor, the pass of a step where their batches differ in size,
the backward pass of every seed's loss, and a chunk of the stacked exact Fisher."""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import torch
from torch import Tensor

from forgetbench.benchmark.run.batching.refusals import Unbatchable
from forgetbench.benchmark.run.batching.stack import SeedStack, seed_losses, summing_squares


def exact_fisher_step(
    stack: SeedStack,
    inputs: Tensor,
    targets: Tensor,
    key: int,
    routes: Sequence[Any] | None,
    params: list[Tensor],
    trainable: list[Tensor],
    reached: set[str],
) -> bool:
    """One chunk of the stacked exact Fisher: the seeds' summed losses' "gradients" are, at each stacked linear layer,
    its per-sample squares summed (:func:`~forgetbench.benchmark.run.batching.stack.summing_squares`), added to
    ``trainable``; False where a layer ran twice (its per-sample gradients would need summing before squaring)."""
    with summing_squares() as calls:
        loss = seed_losses(stack.forward(inputs, key, routes), targets, "sum").sum()
        found = torch.autograd.grad(loss, params, allow_unused=True)
    if any(count > 1 for count in calls.values()):
        return False
    for name, total, squares in zip(stack.trainable, trainable, found):
        if squares is not None:
            total += squares
            reached.add(name)
    return True


def masked_pass(
    strategies: Sequence[Any], outputs: Tensor, losses: Tensor, full: list[int], stepping: list[int], autocast: Any
) -> Tensor:
    """A step where the seeds' batches differ in size: each seed whose batch is the step's longest (``full``) takes
    its output and loss from the stack, each other stepping seed (its epoch's last, shorter batch) makes its own
    forward pass and criterion, as its own run does. The seeds' losses for the hooks that act on all at once (0 for
    the seeds sitting the step out)."""
    shown = torch.zeros_like(losses.detach())
    for k in stepping:
        strategy = strategies[k]
        if k in full:
            strategy.mb_output, strategy.loss = outputs[k], losses[k]
        else:
            with autocast:
                strategy.mb_output = strategy.forward()
                strategy.loss = strategy.criterion()
        shown[k] = strategy.loss.detach()
    return shown


def seed_rows(stacked: Tensor, editable: bool) -> list[Tensor]:
    """Each seed's row of a stacked tensor: one unbind for all of them, so a step dispatches as many operations at
    K = 64 seeds as at 2; one select each where a seed's own callback may edit its loss in place before the backward
    pass (a row of a multi-output unbind refuses in-place edits)."""
    return [stacked[k] for k in range(len(stacked))] if editable else list(stacked.unbind(0))


def next_batches(
    gathered: Iterator[tuple[list[Tensor], list[int]]] | None, iterators: list[Iterator[Any]]
) -> tuple[list[Tensor] | None, list[Any] | None]:
    """The next step's batch of each seat (None for a seat whose epoch has ended; None for all at the epoch's end),
    and their stack where the loaders gathered it at once
    (:func:`~forgetbench.benchmark.data.loaders.ragged_lockstep_batches`: rows past a seat's batch pad it)."""
    if gathered is not None:
        step = next(gathered, None)
        if step is None:
            return None, None
        stacked, sizes = step
        if min(sizes) == stacked[0].shape[1]:
            return stacked, [list(rows) for rows in zip(*(t.unbind(0) for t in stacked))]
        return stacked, [[t[k, :n] for t in stacked] if n else None for k, n in enumerate(sizes)]
    batches = [next(iterator, None) for iterator in iterators]
    if all(b is None for b in batches):
        return None, None
    return None, batches


def stacked_batch(
    strategies: Sequence[Any], stacked: list[Tensor] | None, batches: list[Any]
) -> tuple[Tensor, Tensor, list[int]]:
    """The seats' inputs and targets, ``(K, batch, ...)``, and the seats whose batch fills its rows (the step's
    longest): the gathered stack where no seat's unpacking or callback replaced its batch, else their batches
    stacked (a shorter one's rows, and those of a seat whose epoch ended, zero)."""
    stepping = [k for k, batch in enumerate(batches) if batch is not None]
    sizes = [len(strategies[k].mbatch[1]) if batches[k] is not None else 0 for k in range(len(strategies))]
    full = [k for k, size in enumerate(sizes) if size == max(sizes)]
    if stacked is not None and all(
        strategies[k].mbatch[0] is batches[k][0] and strategies[k].mbatch[1] is batches[k][1] for k in stepping
    ):
        inputs, targets = stacked[0], stacked[1]
    elif len(full) == len(strategies):
        inputs = torch.stack([s.mbatch[0] for s in strategies])
        targets = torch.stack([s.mbatch[1] for s in strategies])
    else:
        x, y = strategies[full[0]].mbatch[0], strategies[full[0]].mbatch[1]
        inputs, targets = x.new_zeros((len(strategies), *x.shape)), y.new_zeros((len(strategies), *y.shape))
        for k in full:
            inputs[k], targets[k] = strategies[k].mbatch[0], strategies[k].mbatch[1]
    if targets.dim() != 2:
        raise Unbatchable("the targets are not one class label per sample")
    return inputs, targets, full


def backward_all(strategies: Sequence[Any], losses: Tensor, own_losses: list[Tensor], version: int) -> None:
    """The backward pass of every seat's loss: of ``losses.sum()`` where no seat's callback replaced, changed (in
    place: ``losses``' ``version`` moved) or hooked its loss, the same gradients through fewer nodes; else of the
    seats' own losses, summed."""
    if losses._version == version and all(
        s.loss is loss and not loss._backward_hooks for s, loss in zip(strategies, own_losses)
    ):
        losses.sum().backward()
    else:
        torch.stack([s.loss for s in strategies]).sum().backward()
