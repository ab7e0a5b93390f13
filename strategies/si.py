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


class _CopyingSIPlugin(SynapticIntelligencePlugin):
    """Avalanche's SI plugin with its weight snapshots copied.

    Avalanche stores snapshots as ``param.detach().cpu().flatten()``; on a CPU device that is a *view*
    of the live parameter, so the anchor theta^{t-1} and the per-step old weights follow the
    parameters: every displacement is 0, omega stays 0 and the penalty is 0 (SI == naive). Cloning the
    two snapshots that must stay fixed (the anchor at the start of an experience, the weights before
    each step) restores the published algorithm; on CUDA ``.cpu()`` already copied.
    """

    def before_training_exp(self, strategy, **kwargs) -> None:
        super().before_training_exp(strategy, **kwargs)
        for param in self.ewc_data[0].values():
            param.data = param.data.clone()

    def before_training_iteration(self, strategy, **kwargs) -> None:
        super().before_training_iteration(strategy, **kwargs)
        for param in self.syn_data["old_theta"].values():
            param.data = param.data.clone()


@register_strategy("si", params=SIParams)
def build_si(ctx: StrategyContext, params: SIParams) -> SupervisedTemplate:
    """Synaptic Intelligence: path-integral importance, quadratic pull to the last optimum."""
    plugin = _CopyingSIPlugin(si_lambda=params.si_lambda, eps=params.eps)
    return ctx.build(plugins=[plugin])
