r"""``wpl_online``: WPL with the online Fisher estimate of the authors' ENAS code (``models/wpl_module.py`` in
kcyu2014/multi-model-forgetting), cheap enough for a search that trains a new architecture every few steps.

The penalty is ``wpl``'s equation while training model t (t >= 1),

$$
\mathcal{L}(\theta) = \mathcal{L}_t(\theta) + \frac{\alpha_t}{2} \sum_{i \in \text{shared}} F_i \, (\theta_i - \hat\theta_i)^2,
\qquad \alpha_t = \alpha \cdot \text{alpha\_decay}^{\,t-1},
$$

with F^t estimated after each model as the squared gradient of the data loss on ``fisher_batches`` mini-batches
of its own training data (the training batch size, drawn with the plugin's seed), averaged over those batches,
and entering the running importance as ``wpl``'s ``accumulate`` / ``momentum`` say (their ``lambda_fisher``); the
anchor theta_hat is the weights after the latest model that used each parameter.

Hyperparameters (the schedule a search needs, counted in models: epochs x turns per epoch):

* ``alpha`` (>= 0): the penalty's weight (decayed by ``alpha_decay``).
* ``accumulate`` (``sum``, ``max`` or ``momentum``) and ``momentum``: how F^t enters the running importance, as
  ``wpl``'s.
* ``max_curvature``: caps alpha_t F_i at the optimiser's stable curvature, as ``wpl``'s (``null``: never).
* ``importance_norm``: ``mean`` divides each F^t by its mean entry before it is accumulated, as ``wpl``'s.
* ``fisher_batches``: mini-batches per estimate.
* ``clip_norm``: each tensor of the *running* importance is rescaled to at most this Frobenius norm after every
  update (their ``fisher_clip_by_norm``; none by default).
* ``reset_every``: the running importance only holds the models since the last reset: it is zeroed before the
  Fisher of model N+1, 2N+1, ... (1-based, counted from ``start_after``) is added (their
  ``set_fisher_zero_per_iter``).
* ``start_after``: the first ``start_after`` models get no Fisher and no penalty (their ``start_using_fisher``).
* ``alpha_decay`` (in (0, 1]): the factor the penalty's weight shrinks by per model with a Fisher.

Records carry ``wpl``'s result keys (``wpl_capped_entries``, ``wpl_penalty_to_data_gradient``, ...): it is WPL's
penalty, estimated another way. Until 2026-11-27 this was ``wpl`` with ``fisher: online``; the same params give the
same numbers under this name (the configs keep their labels, so their run ids).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from forgetbench.benchmark.data.loaders import dataset_tensors
from forgetbench.strategies.base import StrategyContext, StrategyParams, register_strategy, strength
from forgetbench.strategies.penalty import named_params
from forgetbench.strategies.parts import RunningImportance, Tensors
from forgetbench.strategies.wpl import build_with

if TYPE_CHECKING:  # Avalanche is imported when training starts, never to read this strategy's params
    from avalanche.training.templates import SupervisedTemplate


class WPLOnlineParams(StrategyParams):
    """``wpl_online``'s params, and the parts of :class:`~forgetbench.strategies.wpl.WPLPlugin` they choose."""

    alpha: NonNegativeFloat = strength(300.0)
    fisher_batches: PositiveInt = 1
    accumulate: Literal["sum", "max", "momentum"] = "sum"
    momentum: float = Field(0.9, gt=0.0, le=1.0)  # their lambda_fisher
    clip_norm: PositiveFloat | None = None  # their fisher_clip_by_norm, on the running importance
    reset_every: PositiveInt | None = None  # their set_fisher_zero_per_iter, in models
    start_after: NonNegativeInt = 0  # their start_using_fisher, in models
    alpha_decay: float = Field(1.0, gt=0.0, le=1.0)
    max_curvature: Literal["auto"] | PositiveFloat | None = "auto"
    importance_norm: Literal["none", "mean"] = "none"

    anchor: ClassVar[str] = "latest"  # one running importance and anchor (what WPLPlugin reads)

    def estimate(self) -> OnlineFisher:
        """The online estimate on ``fisher_batches`` mini-batches."""
        return OnlineFisher(self.fisher_batches)

    def update(self) -> RunningImportance:
        """``wpl``'s update with the search's schedule: reset every ``reset_every`` models, clip, alpha decayed."""
        return RunningImportance(
            self.alpha, self.accumulate, self.momentum, self.alpha_decay, self.reset_every, self.clip_norm
        )


class OnlineFisher:
    """F^t as the authors' ENAS code estimates it: the mean over ``batches`` mini-batches (the training batch size,
    drawn with the plugin's generator) of the squared gradient of the data loss, on the trainable parameters the model
    used; ``no_gradient`` after a call: the used tensors the loss gave no gradient (``wpl_enas``'s update resets them).
    Skipped where no later model shares a parameter with the model (``passes``)."""

    passes = "shared"

    def __init__(self, batches: int) -> None:
        self.batches = batches
        self.no_gradient: set[str] = set()

    def __call__(self, strategy: Any, used: frozenset[str] | None, generator: torch.Generator) -> Tensors:
        x, y, _ = dataset_tensors(strategy.experience.dataset)
        model, task_label = strategy.model, strategy.experience.task_labels[0]
        names = [n for n, p in model.named_parameters() if (used is None or n in used) and p.requires_grad]
        params = named_params(model, names)
        fisher = [torch.zeros_like(p) for p in params]
        reached = [False] * len(params)
        size = min(strategy.train_mb_size, len(y))
        for _ in range(self.batches):
            rows = torch.randint(len(y), (size,), generator=generator)
            out = model.forward_single_task(x[rows].to(strategy.device), task_label)
            loss = torch.nn.functional.cross_entropy(out, y[rows].to(strategy.device))
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            for k, (f, g) in enumerate(zip(fisher, grads)):
                if g is not None:
                    f.addcmul_(g, g, value=1.0 / self.batches)
                    reached[k] = True
        self.no_gradient = {n for n, hit in zip(names, reached) if not hit}
        return dict(zip(names, fisher))


@register_strategy("wpl_online", params=WPLOnlineParams)
def build_wpl_online(ctx: StrategyContext, params: WPLOnlineParams) -> SupervisedTemplate:
    """WPL with the authors' online Fisher estimate and its search schedule (start, reset, decay, clip)."""
    return build_with(ctx, params)
