r"""``si``: Synaptic Intelligence (Zenke, Poole, Ganguli; ICML 2017), Avalanche's maths, fast.

Each parameter's importance accumulates its contribution to the loss decrease along the training
path. On experience k, with theta^{k-1} the weights at its start and w^k_i = sum_steps g_i *
(theta_i after the step - theta_i before it) (g the mini-batch gradient of the step, penalty
included):

    cum_i  <- cum_i + c * w^k_i / ((theta^k_i - theta^{k-1}_i)^2 + eps)
    omega_i = min(-cum_i, clip)

and while training experience t:

$$
\mathcal{L}(\theta) = \mathcal{L}_t(\theta) + \frac{\lambda_{SI}}{2} \sum_i \omega_i \, (\theta_i - \theta^{t-1}_i)^2
$$

This is exactly what Avalanche 0.6.0's ``SynapticIntelligencePlugin`` computes, including its
constants c = 1 and clip = 0.001 (it calls ``update_ewc_data(..., clip_to=0.001, c=1)``; the
clip is an upper bound only, as in Maltoni & Lomonaco's AR1 code it comes from, so omega is at
most 0.001 and is *not* clamped below: a parameter whose path increased the loss gets a negative
omega). omega starts at 0, so the first experience has a zero penalty (still applied, so every
parameter gets a gradient, as in Avalanche). Zenke et al. sum w^k/(Delta^2 + xi) without the
clip; the clip keeps the penalty bounded but makes si_lambda act on at most 0.001 per weight.

:class:`SIPlugin` is a drop-in Avalanche ``SupervisedPlugin`` (tests compare it with Avalanche's) built from the
quadratic core (:mod:`forgetbench.strategies.quadratic`): its part :class:`~forgetbench.strategies.parts.PathIntegral`
is both the estimator (following the steps, its buffers on the model's device, updated with ``torch._foreach_*``
kernels) and the anchor update; selection ``all``.

Hyperparameters:

* ``si_lambda`` (>= 0): the penalty's weight lambda_SI (default 30: with omega capped at 0.001,
Avalanche's default of 1 changes nothing measurable, see ``tests/strategies/test_defaults.py``).
* ``eps`` (> 0): the damping that keeps omega finite for parameters that barely moved.
* ``clip``: the cap on omega
(Avalanche's 0.001; ``None`` for Zenke et al.'s unclipped omega, with a smaller lambda and larger eps).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from pydantic import NonNegativeFloat, PositiveFloat

from forgetbench.strategies.base import StrategyContext, StrategyParams, register_strategy, strength
from forgetbench.strategies.parts import PathIntegral, tracked_parameters
from forgetbench.strategies.quadratic import QuadraticRegularizer

if TYPE_CHECKING:  # Avalanche is imported when training starts, never to read this strategy's params
    from avalanche.training.templates import SupervisedTemplate

SI_C = 1.0  # Avalanche's update_ewc_data(..., c=1)
SI_CLIP = 0.001  # Avalanche's update_ewc_data(clip_to=0.001, ...)
si_parameters = tracked_parameters  # the parameters SI tracks (not normalisation layers', as Avalanche)


class SIParams(StrategyParams):
    si_lambda: NonNegativeFloat = strength(30.0)
    eps: PositiveFloat = 1e-7
    clip: PositiveFloat | None = SI_CLIP  # Avalanche's cap on omega; null: Zenke et al.'s unclipped omega


class SIPlugin(QuadraticRegularizer):
    """Synaptic Intelligence from the core's parts (``used_params``: the schedule, optional)."""

    def __init__(
        self,
        si_lambda: float,
        eps: float = 1e-7,
        used_params: Sequence[frozenset[str]] | None = None,
        clip: float | None = SI_CLIP,
    ):
        path = PathIntegral(float(eps), clip, SI_C)
        super().__init__("si", float(si_lambda) / 2, path, path, used_params=used_params)
        self.si_lambda, self.eps, self.clip = float(si_lambda), float(eps), clip

    # the path integral's tensors by name, its running sums, and the tensors the penalty acts on (SI's names for them)
    names = property(lambda self: self.update.names, lambda self, value: setattr(self.update, "names", value))
    cumulative = property(lambda self: self.update.cumulative)
    _active = property(lambda self: self._params, lambda self, value: setattr(self, "_params", value))


@register_strategy("si", params=SIParams)
def build_si(ctx: StrategyContext, params: SIParams) -> SupervisedTemplate:
    """Synaptic Intelligence: path-integral importance, quadratic pull to the last optimum."""
    plugin = SIPlugin(si_lambda=params.si_lambda, eps=params.eps, used_params=ctx.used_params, clip=params.clip)
    return ctx.build(plugins=[plugin])
