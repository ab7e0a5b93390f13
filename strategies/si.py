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

:class:`SIPlugin` is a drop-in Avalanche ``SupervisedPlugin`` (tests compare it with Avalanche's)
that keeps its five buffers on the model's device and updates them with ``torch._foreach_*``
kernels, instead of copying flattened weights and gradients to the CPU twice per iteration.

Hyperparameters:

* ``si_lambda`` (>= 0): the penalty's weight lambda_SI (default 30: with omega capped at 0.001,
Avalanche's default of 1 changes nothing measurable, see ``tests/strategies/test_defaults.py``).
* ``eps`` (> 0): the damping that keeps omega finite for parameters that barely moved.
* ``clip``: the cap on omega
(Avalanche's 0.001; ``None`` for Zenke et al.'s unclipped omega, with a smaller lambda and larger eps).
"""

from __future__ import annotations

import torch
from typing import TYPE_CHECKING, Sequence

from pydantic import NonNegativeFloat, PositiveFloat
from torch.nn.modules.batchnorm import _NormBase

from forgetbench.strategies.base import StrategyContext, StrategyParams, register_strategy, strength
from forgetbench.strategies.penalty import (
    QuadraticAnchor,
    movable_subset,
    PenaltyDiagnostics,
)
from forgetbench.strategies.plugin import Plugin

if TYPE_CHECKING:  # Avalanche is imported when training starts, never to read this strategy's params
    from avalanche.training.templates import SupervisedTemplate

SI_C = 1.0  # Avalanche's update_ewc_data(..., c=1)
SI_CLIP = 0.001  # Avalanche's update_ewc_data(clip_to=0.001, ...)


class SIParams(StrategyParams):
    si_lambda: NonNegativeFloat = strength(30.0)
    eps: PositiveFloat = 1e-7
    clip: PositiveFloat | None = SI_CLIP  # Avalanche's cap on omega; null: Zenke et al.'s unclipped omega


def si_parameters(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Parameters SI tracks: those requiring grad, except normalisation layers' (as Avalanche)."""
    norm = {
        f"{module_name}.{n}" if module_name else n
        for module_name, module in model.named_modules()
        if isinstance(module, _NormBase)
        for n, _ in module.named_parameters(recurse=False)
    }
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad and n not in norm]


class SIPlugin(Plugin):
    """Avalanche-compatible Synaptic Intelligence on device buffers; see the module doc."""

    def __init__(
        self,
        si_lambda: float,
        eps: float = 1e-7,
        used_params: Sequence[frozenset[str]] | None = None,
        clip: float | None = SI_CLIP,
    ):
        """``used_params[i]``: names of the parameters experience i's model uses (optional; the
        per-step work then skips tensors that provably cannot move, see
        :func:`~forgetbench.strategies.penalty.movable_subset`)."""
        super().__init__()
        self.used_params = used_params
        self._subset: list[int] | None = None
        self._active: list[torch.Tensor] = []
        self._active_pre: list[torch.Tensor] = []
        self._active_traj: list[torch.Tensor] = []
        self.si_lambda = float(si_lambda)
        self.eps = float(eps)
        self.clip = clip
        self.names: list[str] = []
        self.params: list[torch.Tensor] = []
        self._pre_step: list[torch.Tensor] = []  # weights before the current step
        self.trajectory: list[torch.Tensor] = []  # w^k, this experience
        self.cumulative: list[torch.Tensor] = []  # cum, all experiences
        self.quadratic = QuadraticAnchor(scale=self.si_lambda / 2)  # A = omega, m = theta^{t-1}
        self.diagnostics = PenaltyDiagnostics("si", used_params)  # did the penalty act, per experience

    @torch.no_grad()
    def before_training_exp(self, strategy, **kwargs) -> None:
        named = si_parameters(strategy.model)
        if [n for n, _ in named] != self.names:
            old = dict(zip(self.names, self.cumulative))
            old_omega = dict(zip(self.quadratic.names, self.quadratic.weights))
            self.names = [n for n, _ in named]
            self.cumulative = [old.get(n, torch.zeros_like(p)) for n, p in named]
            omega = {n: old_omega.get(n, torch.zeros_like(p)) for n, p in named}
        else:
            omega = dict(zip(self.quadratic.names, self.quadratic.weights))
        self.params = [p for _, p in named]
        self._pre_step = [p.detach().clone() for p in self.params]
        self.trajectory = [torch.zeros_like(p) for p in self.params]
        # the anchor is the weights at the start of the experience
        self.quadratic.replace(omega, {n: p.detach() for n, p in named})
        # a tensor this experience does not use keeps w = 0 and its anchor: skip it per step
        used = None  # unknown: every tensor stays in the penalty
        if self.used_params is not None and strategy.experience is not None:
            exp = strategy.experience.current_experience
            used = self.used_params[exp] if exp < len(self.used_params) else None
        self._subset = movable_subset(self.names, self.quadratic.anchors, self.params, used, strategy.optimizer)
        keep = range(len(self.params)) if self._subset is None else self._subset
        self._active = [self.params[i] for i in keep]
        self._active_pre = [self._pre_step[i] for i in keep]
        self._active_traj = [self.trajectory[i] for i in keep]

    def before_backward(self, strategy, **kwargs) -> None:
        strategy.loss = self.quadratic.add_gradient(strategy.loss, self._active, self.si_lambda / 2, self._subset)

    def after_backward(self, strategy, **kwargs) -> None:
        first = strategy.experience is None or strategy.experience.current_experience == 0
        if self._active and not first:
            self.diagnostics.observe(strategy, self._active, self.penalty)

    @torch.no_grad()
    def before_training_iteration(self, strategy, **kwargs) -> None:
        torch._foreach_copy_(self._active_pre, self._active)

    @torch.no_grad()
    def after_training_iteration(self, strategy, **kwargs) -> None:
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self._active]
        # in place, no temporaries: pre_step <- pre_step - theta = -(step); w -= g * pre_step
        torch._foreach_sub_(self._active_pre, self._active)
        torch._foreach_addcmul_(self._active_traj, grads, self._active_pre, value=-1.0)

    def penalty(self) -> torch.Tensor | float:
        """(lambda / 2) sum_i omega_i (theta_i - theta^{t-1}_i)^2 as a differentiable scalar; its gradient is what
        :meth:`before_backward` adds to ``.grad`` every step."""
        return self.quadratic.penalty(self._active, self.si_lambda / 2, self._subset) if self._active else 0.0

    def after_training_exp(self, strategy, **kwargs) -> None:
        # omega is 0 during the first experience: there is no penalty to weigh yet
        first = strategy.experience is None or strategy.experience.current_experience == 0
        if first:
            self.diagnostics.skip()
        else:
            self.diagnostics.measure(strategy, self._active, self.penalty)
        self._update_omega()

    @torch.no_grad()
    def _update_omega(self) -> None:
        for i, p in enumerate(self.params):
            moved = (p.detach() - self.quadratic.anchors[i]) ** 2 + self.eps
            self.cumulative[i] += SI_C * self.trajectory[i] / moved
        omega = {
            n: -c if self.clip is None else torch.clamp(-c, max=self.clip) for n, c in zip(self.names, self.cumulative)
        }
        self.quadratic.replace(omega, {n: p.detach() for n, p in zip(self.names, self.params)})

    def state_dict(self) -> dict:
        """omega and the anchor (one quadratic) and the cumulative path integral, per tracked tensor.

        The trajectory and pre-step buffers are rebuilt at the start of every experience: scratch.
        """
        return {
            "names": list(self.names),
            "cumulative": [c.detach().clone() for c in self.cumulative],
            "quadratic": self.quadratic.state_dict(),
            "gradient_ratios": self.diagnostics.state_dict(),
        }

    def load_state_dict(self, state) -> None:
        self.names = list(state["names"])
        self.cumulative = list(state["cumulative"])
        self.quadratic.load_state_dict(state["quadratic"])
        self.diagnostics.load_state_dict(state.get("gradient_ratios", []))

    def extra_results(self) -> dict:
        """Whether the penalty acted: ``si_penalty_to_data_gradient`` per experience (None for the first, whose
        omega is 0), ``si_penalty_inert``."""
        return self.diagnostics.results()

    def state_bytes(self) -> int:
        """Bytes of omega, anchor and the cumulative path integral (what SI keeps between experiences)."""
        return self.quadratic.state_bytes() + sum(t.nbytes for t in self.cumulative)


@register_strategy("si", params=SIParams)
def build_si(ctx: StrategyContext, params: SIParams) -> SupervisedTemplate:
    """Synaptic Intelligence: path-integral importance, quadratic pull to the last optimum."""
    plugin = SIPlugin(si_lambda=params.si_lambda, eps=params.eps, used_params=ctx.used_params, clip=params.clip)
    return ctx.build(plugins=[plugin])
