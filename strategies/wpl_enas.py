r"""``wpl_enas``: WPL as the authors' ENAS code computes it (``models/wpl_module.py``'s ``update_fisher`` in
kcyu2014/multi-model-forgetting), not as the paper writes it (that is ``wpl``).

After each model t, every tensor it used is updated from its online estimate g^2 (the squared gradient of the data
loss on ``fisher_batches`` mini-batches of its own training data, averaged):

    momentum:  F <- alpha_t * clip((1 - m) F + m g^2)
    sum:       F <- alpha_t * clip(F + m g^2)

(m = ``momentum``, their ``lambda_fisher``; clip rescales a tensor whose norm exceeds ``clip_norm``, their
``fisher_clip_by_norm``; a tensor the data loss gave no gradient is reset to 0), and the *product* is stored, so
alpha multiplies the stored importance again at every update (with a clip its norm saturates near
alpha x clip_norm per tensor). The anchor theta_hat is the weights after the latest model that used each tensor,
and while training a model the loss is

$$
\mathcal{L}(\theta) = \mathcal{L}_t(\theta) + \frac{1}{2} \sum_{i \in \text{shared}} F_i \, (\theta_i - \hat\theta_i)^2
$$

over the parameters it shares with earlier models: a far stronger and differently shaped penalty than ``wpl``'s
(alpha/2) F (theta - theta_hat)^2 for the same alpha.

Hyperparameters:

* ``alpha`` (>= 0): alpha_t until model ``alpha_decay_after`` (0-based, counted among the models with a Fisher),
  then alpha - (t - after + 1) x ``alpha_linear_decay``, never below 0 (their ``alpha_fisher``, ``alpha_decay``
  after ``alpha_decay_after`` epochs; in a search, count epochs x turns per epoch).
* ``momentum``, ``accumulate`` (``momentum`` or ``sum``): the update above.
* ``clip_norm``: the clip (none by default).
* ``fisher_batches``: mini-batches (the training batch size, drawn with the plugin's seed) per online estimate.
* ``start_after``: the first ``start_after`` models get no update and no penalty (their ``start_using_fisher``).
* ``reset_every``: the stored importance is zeroed before every N-th update (their ``set_fisher_zero_per_iter``).
* ``max_curvature``: caps F_i at the optimiser's stable curvature, as ``wpl``'s (``null``: never).

Records carry ``wpl``'s result keys (``wpl_capped_entries``, ``wpl_penalty_to_data_gradient``, ...): it is WPL's
penalty, estimated another way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from forgetbench.strategies.base import StrategyContext, StrategyParams, register_strategy, strength
from forgetbench.strategies.parts import Tensors, clip_to_norm
from forgetbench.strategies.wpl import build_with
from forgetbench.strategies.wpl_online import OnlineFisher

if TYPE_CHECKING:  # Avalanche is imported when training starts, never to read this strategy's params
    from avalanche.training.templates import SupervisedTemplate


class WPLENASParams(StrategyParams):
    """``wpl_enas``'s params, and the parts of :class:`~forgetbench.strategies.wpl.WPLPlugin` they choose."""

    alpha: NonNegativeFloat = strength(300.0)
    momentum: float = Field(0.9, gt=0.0, le=1.0)  # their lambda_fisher
    accumulate: Literal["momentum", "sum"] = "momentum"
    clip_norm: PositiveFloat | None = None  # their fisher_clip_by_norm
    fisher_batches: PositiveInt = 1
    start_after: NonNegativeInt = 0  # their start_using_fisher, in models
    reset_every: PositiveInt | None = None  # their set_fisher_zero_per_iter, in models
    alpha_linear_decay: NonNegativeFloat = 0.0  # alpha falls by this per model from alpha_decay_after on
    alpha_decay_after: NonNegativeInt = 0  # the model (0-based, among those with a Fisher) the decay starts at
    max_curvature: Literal["auto"] | PositiveFloat | None = "auto"

    def estimate(self) -> OnlineFisher:
        """The online estimate of ``wpl_online``, on ``fisher_batches`` mini-batches."""
        return OnlineFisher(self.fisher_batches)

    def update(self) -> PerUpdateImportance:
        """The authors' update: alpha multiplied into the stored importance at every update."""
        return PerUpdateImportance(
            self.alpha,
            self.alpha_linear_decay,
            self.alpha_decay_after,
            self.momentum,
            self.accumulate == "momentum",
            self.clip_norm,
            self.reset_every,
        )


class PerUpdateImportance:
    """The stored importance of the authors' ``update_fisher`` (the module doc): alpha_t inside it, so the penalty's
    weight is 1."""

    def __init__(
        self,
        alpha: float,
        linear_decay: float,
        decay_after: int,
        rate: float,
        momentum: bool,
        clip_norm: float | None,
        reset_every: int | None,
    ) -> None:
        self.alpha, self.linear_decay, self.decay_after = alpha, linear_decay, decay_after
        self.rate, self.momentum, self.clip_norm, self.reset_every = rate, momentum, clip_norm, reset_every

    def weight(self, models_trained: int) -> float:
        return 1.0  # alpha is already inside the stored importance (multiplied in at every update)

    def add(self, importance: Tensors, fisher: Tensors, no_gradient: set[str], models_trained: int) -> Tensors:
        """Every tensor model ``models_trained`` used, updated (a tensor without a gradient reset to 0)."""
        alpha = per_update_alpha(self.alpha, models_trained, self.linear_decay, self.decay_after)
        if self.reset_every and models_trained % self.reset_every == 0:
            importance = {}
        updated = dict(importance)
        for name, f in fisher.items():
            grad_sq = None if name in no_gradient else f
            updated[name] = per_update_importance(
                importance.get(name), grad_sq, f, alpha, self.rate, self.momentum, self.clip_norm
            )
        return updated


def per_update_alpha(alpha: float, model: int, linear_decay: float, decay_after: int) -> float:
    """alpha for the update after model ``model`` (0-based): alpha until ``decay_after``, then falling linearly by
    ``linear_decay`` per model, never below 0 (the authors' ``alpha_decay`` after ``alpha_decay_after`` epochs)."""
    if model < decay_after:
        return alpha
    return max(alpha - (model - decay_after + 1) * linear_decay, 0.0)


def per_update_importance(
    stored: torch.Tensor | None,
    grad_sq: torch.Tensor | None,
    like: torch.Tensor,
    alpha: float,
    rate: float,
    momentum: bool,
    clip_norm: float | None,
) -> torch.Tensor:
    """One tensor's stored importance after an update: the running estimate decays by (1 - rate) with momentum,
    gains rate x the squared gradient, is scaled down to ``clip_norm`` if its norm exceeds it, and is multiplied by
    alpha; a tensor without a gradient is reset to 0. The product is what is stored, so the next update multiplies
    it by alpha again: with the clip, the stored norm saturates near alpha x clip_norm."""
    if grad_sq is None:
        return torch.zeros_like(like)
    running = torch.zeros_like(grad_sq) if stored is None else stored
    running = (1 - rate) * running + rate * grad_sq if momentum else running + rate * grad_sq
    if clip_norm is not None:
        running = clip_to_norm(running, clip_norm)
    return running * alpha


@register_strategy("wpl_enas", params=WPLENASParams)
def build_wpl_enas(ctx: StrategyContext, params: WPLENASParams) -> SupervisedTemplate:
    """WPL as the authors' ENAS code computes it: alpha multiplied into the stored online Fisher at every update."""
    return build_with(ctx, params)
