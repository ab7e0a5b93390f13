"""The importance passes' common ground: their sample budget (:func:`sample_subset`), their timing
(:func:`importance_pass`: ``timing.importance_seconds``), the one estimate EWC and WPL call
(:func:`experience_importance`: the exact Fisher of :mod:`forgetbench.strategies.importance`, or Avalanche's
squared mini-batch gradients, :func:`squared_gradient_importance`) and its normalisation
(:func:`normalise_importance`); and the two mini-batch passes (:class:`MinibatchPass`: Avalanche's squared gradients,
MAS's output sensitivity) and the exact Fisher's one-pass form (:class:`ExactFisherPass`), each written once: a seed's
own pass and a batch of seeds' stacked pass (:mod:`forgetbench.benchmark.run.batching`) both run them."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal, Sequence

import torch
from torch import nn

from forgetbench.benchmark.data.loaders import TensorBatchLoader, dataset_tensors
from forgetbench.benchmark.data.models import TaskRoutedModule
from forgetbench.strategies.importance import Estimator, exact_fisher_diagonal


Grads = Sequence[torch.Tensor]


def output_energy(outputs: torch.Tensor) -> torch.Tensor:
    """MAS's objective: the mean over a batch's samples of each output's squared L2 norm, outputs ``(..., B, C)``
    (one value per leading index: a batch of seeds' ``(K, B, C)`` gives each seed's)."""
    return outputs.norm(p="fro", dim=-1).pow(2).mean(-1)


def add_squares(sums: Grads, grads: Grads) -> None:
    """``sums += grads ** 2``, entry by entry (Avalanche's squared mini-batch gradients)."""
    torch._foreach_addcmul_(list(sums), list(grads), list(grads))


def add_magnitudes(sums: Grads, grads: Grads) -> None:
    """``sums += |grads|``, entry by entry (MAS's output sensitivity)."""
    torch._foreach_add_(list(sums), torch._foreach_abs(list(grads)))


@dataclass(frozen=True)
class MinibatchPass:
    """An importance pass over an experience's training mini-batches in order: each batch's ``objective(outputs,
    targets, criterion)`` differentiated, ``accumulate(sums, grads)`` adding a function of its gradient entry by
    entry, the sums divided by the number of batches. ``criterion`` is the training loss of one batch (of one seed:
    the strategy's own; of K stacked seeds: each seed's, one value a seed)."""

    name: str
    objective: Callable[[torch.Tensor, torch.Tensor, Callable[..., torch.Tensor]], torch.Tensor]
    accumulate: Callable[[Grads, Grads], None]


SQUARED_GRADIENTS = MinibatchPass("squared_minibatch", lambda out, y, criterion: criterion(out, y), add_squares)
OUTPUT_SENSITIVITY = MinibatchPass("output_sensitivity", lambda out, y, criterion: output_energy(out), add_magnitudes)


@dataclass(frozen=True)
class ExactFisherPass:
    """The exact empirical Fisher over every training sample in order, ``batch_size`` samples a pass
    (:func:`~forgetbench.strategies.importance.exact_fisher_diagonal`; its linear layers' rule
    :func:`~forgetbench.strategies.importance.squared_outer`)."""

    batch_size: int
    name: str = "exact_fisher"


StackedPass = MinibatchPass | ExactFisherPass


def sample_subset(
    tensors: tuple[torch.Tensor, ...], samples: int | None, generator: torch.Generator
) -> tuple[torch.Tensor, ...]:
    """``samples`` rows of every tensor, the same rows drawn without replacement with ``generator`` (the
    importance passes' sample budget); all of them, and no draw, when there are not more rows than that."""
    n = len(tensors[0])
    if samples is None or samples >= n:
        return tensors
    keep = torch.randperm(n, generator=generator)[:samples]
    return tuple(t[keep] for t in tensors)


IMPORTANCE_SECONDS = "importance_seconds"  # the template's attribute: seconds its importance passes took so far


@contextlib.contextmanager
def importance_pass(strategy) -> Iterator[None]:
    """Time an importance pass (a Fisher, MAS's output norm) of ``strategy``: the seconds add up on the template's
    :data:`IMPORTANCE_SECONDS` attribute, which the runner records as ``timing.importance_seconds`` (inside
    ``train_seconds``: the pass runs at the end of the experience's training)."""
    begun = time.perf_counter()
    try:
        yield
    finally:
        spent = time.perf_counter() - begun
        setattr(strategy, IMPORTANCE_SECONDS, getattr(strategy, IMPORTANCE_SECONDS, 0.0) + spent)


def experience_importance(
    strategy,
    method: Literal["exact", "minibatch"],
    samples: int | None,
    generator: torch.Generator,
    estimator: Estimator = "empirical",
    batch_size: int | None = None,
) -> dict[str, torch.Tensor]:
    """The diagonal importance of the experience's model on ``samples`` of its own training data (all by default;
    drawn with ``generator``): ``exact``, the Fisher of :func:`exact_fisher_diagonal` (``estimator``: which labels;
    ``batch_size`` samples a pass, by default the training batch size, which changes only float rounding), or
    ``minibatch``, Avalanche's squared mini-batch gradients (:func:`squared_gradient_importance`). The one
    estimator EWC and WPL call (:class:`~forgetbench.strategies.parts.FisherEstimate`); each keeps the parameters it
    penalises. The regularizer core times it (:func:`importance_pass`)."""
    tensors = sample_subset(dataset_tensors(strategy.experience.dataset), samples, generator)
    if method == "exact":
        return exact_fisher_diagonal(
            strategy.model,
            tensors[0],
            tensors[1],
            strategy.experience.task_labels[0],
            batch_size=batch_size or int(getattr(strategy, "train_mb_size", 1024)),
            estimator=estimator,
            generator=generator,
        )
    return squared_gradient_importance(
        strategy.model, strategy._criterion, tensors, strategy.train_mb_size, strategy.device
    )


def normalise_importance(
    importance: dict[str, torch.Tensor], mode: str, names: frozenset[str] | set[str] | None = None
) -> dict[str, torch.Tensor]:
    """``importance`` divided by its mean entry over the tensors ``names`` (default: all of them) when ``mode``
    is ``mean``; unchanged for ``none`` or an all-zero importance.

    A model that fits its task with near-zero loss has a tiny Fisher (squared gradients of a loss near 0:
    MiniLM on a BBC task, max 6e-6, mean 1e-10), so lambda * F is no penalty at any usual lambda. Dividing by
    the mean makes the importance scale-free: the penalty becomes lambda * sum_i (F_i / mean F) (theta_i -
    theta*_i)^2, a weighted L2 whose weights average 1, whatever the loss's scale."""
    if mode == "none" or not importance:
        return importance
    chosen = [f for n, f in importance.items() if names is None or n in names]
    count = sum(f.numel() for f in chosen)
    mean = float(sum(f.double().sum() for f in chosen)) / count if count else 0.0
    if mean <= 0.0:
        return importance
    return {n: f / mean for n, f in importance.items()}


def squared_gradient_importance(
    model: torch.nn.Module,
    criterion,
    tensors: tuple[torch.Tensor, ...],
    batch_size: int,
    device: torch.device,
) -> dict[str, torch.Tensor]:
    """F_i = (1/B) sum_b (d L_b / d theta_i)^2 over the B mini-batches of ``tensors`` in order.

    L_b is ``criterion`` on mini-batch b (x, y, task label); the model is in eval mode during the
    pass and left in train mode, as Avalanche's ``EWCPlugin.compute_importances`` does.
    Parameters that get no gradient have importance 0.
    """
    names = [n for n, _ in model.named_parameters()]
    params = [p for _, p in model.named_parameters()]
    importances = [torch.zeros_like(p) for p in params]
    loader = TensorBatchLoader(tensors, batch_size, shuffle=False)
    task = loader.single_task
    routed = model if isinstance(model, TaskRoutedModule) and not model._forward_hooks else None
    model.eval()
    try:
        for x, y, t in loader:
            x, y = x.to(device), y.to(device)
            for p in params:
                p.grad = None
            out = (
                routed.forward_single_task(x, task)
                if routed is not None and task is not None
                else _avalanche_forward(model, x, t)
            )
            minibatch_step(SQUARED_GRADIENTS, out, y, criterion, importances, params)
        torch._foreach_div_(importances, float(max(len(loader), 1)))
    finally:
        for p in params:
            p.grad = None
        model.train()
    return dict(zip(names, importances))


def minibatch_step(
    kind: MinibatchPass, out: torch.Tensor, y: torch.Tensor, criterion: Any, sums: Grads, params: Grads
) -> None:
    """One mini-batch of a seed's own :class:`MinibatchPass`: its objective's backward pass, and ``kind``'s function
    of each gradient added to ``sums`` (a parameter the batch did not reach adds nothing)."""
    kind.objective(out, y, criterion).backward()
    pairs = [(total, p.grad) for total, p in zip(sums, params) if p.grad is not None]
    if pairs:
        totals, grads = zip(*pairs)
        kind.accumulate(list(totals), list(grads))


def _avalanche_forward(model: nn.Module, x: torch.Tensor, task_labels: torch.Tensor) -> torch.Tensor:
    from avalanche.models.utils import avalanche_forward  # training has started: Avalanche is imported already

    return avalanche_forward(model, x, task_labels)
