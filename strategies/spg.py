"""``spg``: Soft-masking of Parameter-level Gradient flow (Konishi, Kang, Ke, Liu; ICML 2023, arXiv 2306.14775).

No regularization term: the gradients of parameters that earlier models need are scaled down.

**Importance.** After training experience t (whose model has task label t), for every model t' trained
so far (t' = t included) the gradients are zeroed and one forward/backward pass over **t's training
data** through model t' accumulates

    g_{t'} = d/dtheta sum_n l_{t'}(x_n),   l_t = cross-entropy(f_t(x_n), y_n),
                                          l_{t'} = sum_k f_{t'}(x_n)_k  for t' != t (no labels needed).

Per parameter tensor (mean and std over that tensor's elements, std with Bessel's correction as
``torch.std``)

    gamma_t = max_{t'} | tanh((g_{t'} - mean(g_{t'})) / std(g_{t'})) |

(a tensor whose gradient is all zero, or constant, gives 0), and the accumulated importance is
A <- max(A, gamma_t), elementwise, values in [0, 1). Standardising makes gamma invariant to the scale
of g, so summing (rather than averaging) the per-sample losses changes nothing but makes g independent
of the batch size used for this pass.

**Soft masking.** While training experience t > 0, after ``backward()`` and before ``optimizer.step()``
(Avalanche's ``before_update``):

* shared parameters (used by the current model and by an earlier one): grad <- (1 - A) * grad;
* the current head (used by the current model only): grad <- (1 - mean(A)) * grad, mean(A) the mean
  of A over every element of the masked (shared) tensors;
* every parameter the current model does not use (old heads, other models' private layers):
  grad <- None, so the optimizer skips it entirely (momentum and weight decay cannot move it).

Parameters are classified with ``ctx.used_params`` (shared = used now and by an earlier experience).
The suite's weight decay is folded into the gradient *before* masking (grad <- grad + wd * theta,
exactly what SGD and Adam do with their coupled ``weight_decay``) and the optimizer itself runs with
weight decay 0: otherwise a parameter with importance 1 would still shrink, and an old head with a
zero gradient would still decay.

Hyperparameters:

* ``importance_batch_size``: the batch size of the importance pass (it does not change the result up to
  floating point). The reference implementation trains with SGD lr 0.25, no momentum,
batch 64 and ReduceLROnPlateau; here the suite's optimizer is used unless the config overrides it.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F
from pydantic import PositiveInt

from forgetbench.benchmark.data.loaders import dataset_tensors
from forgetbench.strategies.base import StrategyContext, StrategyParams, register_strategy, shared_params
from forgetbench.strategies.plugin import Plugin, detached

if TYPE_CHECKING:  # Avalanche is imported when training starts, never to read this strategy's params
    from avalanche.models import MultiTaskModule
    from avalanche.training.templates import SupervisedTemplate

Tensors = dict[str, torch.Tensor]


class SPGParams(StrategyParams):
    importance_batch_size: PositiveInt = 1024


def standardized_importance(grad: torch.Tensor) -> torch.Tensor:
    """|tanh((g - mean g) / std g)| over one tensor's elements; 0 where std is 0 or undefined."""
    if grad.numel() < 2:
        return torch.zeros_like(grad)
    std = grad.std()
    if not torch.isfinite(std) or std == 0:
        return torch.zeros_like(grad)
    return torch.tanh((grad - grad.mean()) / std).abs()


def spg_gradients(
    model: MultiTaskModule,
    x: torch.Tensor,
    y: torch.Tensor,
    current: int,
    head: int,
    batch_size: int = 1024,
) -> Tensors:
    """g_{head}: gradient of the summed loss of model ``head`` over ``(x, y)`` (task ``current``'s data).

    Cross-entropy when ``head == current``, the sum of the head's logits otherwise. Returns only
    parameters that received a gradient; the model's ``.grad`` fields are left as they were.
    """
    saved = {n: p.grad for n, p in model.named_parameters()}
    params = dict(model.named_parameters())
    for p in params.values():
        p.grad = None
    device = next(model.parameters()).device
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].to(device)
        out = model.forward_single_task(xb, head)
        if head == current:
            loss = F.cross_entropy(out, y[start : start + batch_size].to(device), reduction="sum")
        else:
            loss = out.sum()
        loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in params.items() if p.grad is not None}
    for n, p in params.items():
        p.grad = saved[n]
    return grads


class SPGPlugin(Plugin):
    """Accumulates SPG's importance A after each experience and soft-masks gradients before each step."""

    def __init__(
        self, used_params: Sequence[frozenset[str]], importance_batch_size: int = 1024, weight_decay: float = 0.0
    ):
        super().__init__()
        self.weight_decay = weight_decay
        self.used_params = used_params  # a live view: an adaptive schedule grows while training
        self.batch_size = importance_batch_size
        self.importance: Tensors = {}  # A, per parameter name
        self.trained_heads: list[int] = []  # task labels of the models trained so far, in order
        self._shared: list[tuple[torch.nn.Parameter, torch.Tensor]] = []
        self._head: list[torch.nn.Parameter] = []
        self._frozen: list[torch.nn.Parameter] = []
        self._used: list[torch.nn.Parameter] = []
        self._head_scale = 1.0

    # ------------------------------------------------------------------ masking
    def shared_names(self, index: int) -> set[str]:
        """Parameters experience ``index`` uses that an earlier experience used too."""
        return set(shared_params(self.used_params, index))

    def before_training_exp(self, strategy, **kwargs) -> None:
        index = strategy.experience.current_experience
        used = self.used_params[index]
        shared = self.shared_names(index)
        named = dict(strategy.model.named_parameters())
        self._frozen = [p for n, p in named.items() if n not in used]
        self._used = [p for n, p in named.items() if n in used]
        self._shared = [(named[n], 1.0 - self.importance[n]) for n in sorted(shared) if n in self.importance]
        self._head = [named[n] for n in sorted(used - shared)]
        masked = [self.importance[n].flatten() for n in sorted(shared) if n in self.importance]
        # A scalar for the head: 1 - mean importance of everything that is masked (1 before any A exists).
        self._head_scale = 1.0 - float(torch.cat(masked).mean()) if masked else 1.0

    def before_update(self, strategy, **kwargs) -> None:
        for p in self._frozen:
            p.grad = None  # the optimizer skips parameters without a gradient
        if self.weight_decay:
            for p in self._used:
                if p.grad is not None:
                    p.grad.add_(p.detach(), alpha=self.weight_decay)
        for p, keep in self._shared:
            if p.grad is not None:
                p.grad.mul_(keep)
        if self._head_scale != 1.0:
            for p in self._head:
                if p.grad is not None:
                    p.grad.mul_(self._head_scale)

    # --------------------------------------------------------------- importance
    def after_training_exp(self, strategy, **kwargs) -> None:
        current = int(strategy.experience.task_labels[0])
        if current not in self.trained_heads:
            self.trained_heads.append(current)
        x, y, _ = dataset_tensors(strategy.experience.dataset)
        self.update_importance(strategy.model, x, y, current)

    def update_importance(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, current: int) -> Tensors:
        """gamma_t over every trained head on task ``current``'s data; A <- max(A, gamma_t). Returns gamma_t."""
        heads = self.trained_heads or [current]
        gamma: Tensors = {}
        for head in heads:
            for name, g in spg_gradients(model, x, y, current, head, self.batch_size).items():
                imp = standardized_importance(g)
                gamma[name] = torch.maximum(gamma[name], imp) if name in gamma else imp
        for name, imp in gamma.items():
            old = self.importance.get(name)
            self.importance[name] = imp if old is None else torch.maximum(old, imp)
        return gamma

    def state_dict(self) -> dict:
        """The accumulated importance A and the heads trained so far."""
        return {"importance": detached(self.importance), "trained_heads": list(self.trained_heads)}

    def load_state_dict(self, state) -> None:
        self.importance = dict(state["importance"])
        self.trained_heads = [int(h) for h in state["trained_heads"]]


@register_strategy("spg", params=SPGParams)
def build_spg(ctx: StrategyContext, params: SPGParams) -> SupervisedTemplate:
    """Soft-masking of parameter-level gradient flow by accumulated importance (Konishi et al. 2023)."""
    # Weight decay moves into the plugin, before the mask (see the module docstring).
    no_decay = dataclasses.replace(ctx, training=ctx.training.model_copy(update={"weight_decay": 0.0}))
    plugin = SPGPlugin(ctx.used_params, params.importance_batch_size, ctx.training.weight_decay)
    return ctx.build(plugins=[plugin], optimizer=no_decay.make_optimizer())
