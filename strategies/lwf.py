"""``lwf``: Learning without Forgetting (Li & Hoiem, TPAMI 2017), Avalanche's LwFPlugin.

A copy f^{prev} of the model is kept after each experience. While training experience t, for every
earlier task k the current model's head-k outputs on the *current* inputs are distilled towards the
copy's, with temperature T:

    L(theta) = L_t(theta) + alpha * sum_{k<t} KD_T(f_k(x; theta), f^{prev}_k(x)),
    KD_T(z, z') = KL(softmax(z'/T) || softmax(z/T))   (Avalanche's distillation loss)

Only heads of earlier tasks (and the classes they saw) are distilled; multi-head models are run once
per known head (Avalanche's ``forward_all_tasks``). Hyperparameters: ``alpha`` (>= 0) the
distillation weight, ``temperature`` (> 0).
"""

from __future__ import annotations

from avalanche.training.plugins import LwFPlugin
from avalanche.training.templates import SupervisedTemplate
from pydantic import NonNegativeFloat, PositiveFloat

from strategies.base import StrategyContext, StrategyParams, register_strategy


class LwFParams(StrategyParams):
    alpha: NonNegativeFloat = 1.0
    temperature: PositiveFloat = 2.0


class LwFStatePlugin(LwFPlugin):
    """Avalanche's LwF plugin that reports the bytes of its frozen model copy."""

    def state_bytes(self) -> int:
        previous = self.lwf.prev_model
        if previous is None:
            return 0
        return sum(t.numel() * t.element_size() for t in previous.state_dict().values())


@register_strategy("lwf", params=LwFParams)
def build_lwf(ctx: StrategyContext, params: LwFParams) -> SupervisedTemplate:
    """Learning without Forgetting: distil earlier heads' outputs on current data (Li & Hoiem 2017)."""
    return ctx.build(plugins=[LwFStatePlugin(alpha=params.alpha, temperature=params.temperature)])
