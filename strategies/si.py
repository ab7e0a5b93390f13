"""``si``: Synaptic Intelligence (Zenke, Poole, Ganguli; ICML 2017), Avalanche's SI plugin.

Each parameter's importance accumulates its contribution to the loss decrease along the training
path: omega_i = sum_k w^k_i / ((Delta^k_i)^2 + eps), with w^k_i = -sum_steps g_i * dtheta_i on
experience k and Delta^k_i its total displacement. While training experience t:

    L(theta) = L_t(theta) + si_lambda * sum_i omega_i (theta_i - theta^{t-1}_i)^2

Hyperparameters: ``si_lambda`` (>= 0) the penalty's weight; ``eps`` (> 0) the damping that keeps
omega finite for parameters that barely moved.
"""

from __future__ import annotations

from avalanche.training.plugins import SynapticIntelligencePlugin
from avalanche.training.templates import SupervisedTemplate
from pydantic import NonNegativeFloat, PositiveFloat

from strategies.base import StrategyContext, StrategyParams, register_strategy


class SIParams(StrategyParams):
    si_lambda: NonNegativeFloat = 1.0
    eps: PositiveFloat = 1e-7


@register_strategy("si", params=SIParams)
def build_si(ctx: StrategyContext, params: SIParams) -> SupervisedTemplate:
    """Synaptic Intelligence: path-integral importance, quadratic pull to the last optimum."""
    plugin = SynapticIntelligencePlugin(si_lambda=params.si_lambda, eps=params.eps)
    return ctx.build(plugins=[plugin])
