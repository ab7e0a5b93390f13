"""``ewc``: Elastic Weight Consolidation (Kirkpatrick et al., PNAS 2017), Avalanche's EWCPlugin.

After experience k the diagonal importance F^k and the weights theta^k are stored. While training
experience t the loss is

    L(theta) = L_t(theta) + lambda * sum_{k<t} sum_i F^k_i (theta_i - theta^k_i)^2     (separate)
    L(theta) = L_t(theta) + lambda * sum_i F~_i (theta_i - theta^{t-1}_i)^2            (online)

with F~ <- decay_factor * F~ + F^{t-1} in online mode (Schwarz et al., 2018). Avalanche estimates
F as the mean over mini-batches of the squared mini-batch gradient of the loss. Every parameter is
penalised, shared or not.

Hyperparameters: ``ewc_lambda`` (>= 0) the penalty's weight; ``mode`` separate (one penalty per
earlier experience, memory grows with T) or online (one running penalty); ``decay_factor`` in
[0, 1], online mode only.
"""

from __future__ import annotations

from typing import Literal

from avalanche.training.plugins import EWCPlugin
from avalanche.training.templates import SupervisedTemplate
from pydantic import Field, NonNegativeFloat, model_validator

from strategies.base import StrategyContext, StrategyParams, register_strategy


class EWCParams(StrategyParams):
    ewc_lambda: NonNegativeFloat = 100.0
    mode: Literal["separate", "online"] = "separate"
    decay_factor: float | None = Field(None, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _decay_needs_online(self) -> "EWCParams":
        if self.mode == "online" and self.decay_factor is None:
            self.decay_factor = 1.0
        if self.mode == "separate" and self.decay_factor is not None:
            raise ValueError("decay_factor applies only to mode 'online'")
        return self


@register_strategy("ewc", params=EWCParams)
def build_ewc(ctx: StrategyContext, params: EWCParams) -> SupervisedTemplate:
    """Elastic Weight Consolidation: Fisher-weighted pull of every parameter to earlier optima."""
    plugin = EWCPlugin(params.ewc_lambda, mode=params.mode, decay_factor=params.decay_factor)
    return ctx.build(plugins=[plugin])
