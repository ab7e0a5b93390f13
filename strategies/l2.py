r"""``l2``: a plain quadratic pull to the previous weights (importance 1), the simplest regularizer.

While training experience t the loss is

$$
\mathcal{L}(\theta) = \mathcal{L}_t(\theta) + \frac{\lambda}{2} \sum_{i \in \text{shared}_t} (\theta_i - \theta^*_i)^2,
$$

theta*_i the value of parameter i after the latest experience that used it. It is EWC/WPL with every
importance equal to 1, so it isolates what the importance estimate buys. The gradient lambda (theta - theta*) goes
straight into ``.grad`` when each backward pass ends (:meth:`forgetbench.strategies.penalty.QuadraticAnchor.add_gradient`,
as ewc and wpl); the loss's value does not include the pull (``penalty()`` gives it).

Only *shared* parameters are pulled (used by the current model and by an earlier one, from
``ctx.used_params``): the current model's private parameters (e.g. its fresh head) have no earlier
value worth keeping, so pulling them would only cost plasticity; the earlier models' private
parameters get no gradient from the current loss, so a pull on them is zero anyway.

Hyperparameter:

* ``l2_lambda`` (>= 0): the pull's weight lambda.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
from pydantic import NonNegativeFloat

from forgetbench.strategies.base import StrategyContext, StrategyParams, register_strategy, shared_params, strength
from forgetbench.strategies.penalty import PenaltyDiagnostics, QuadraticAnchor
from forgetbench.strategies.plugin import Plugin, detached

if TYPE_CHECKING:  # Avalanche is imported when training starts, never to read this strategy's params
    from avalanche.training.templates import SupervisedTemplate


class L2Params(StrategyParams):
    l2_lambda: NonNegativeFloat = strength(1.0)


class L2Plugin(Plugin):
    """(lambda/2) ||theta_shared - theta*||^2 on the parameters shared with earlier experiences."""

    def __init__(self, l2_lambda: float, used_params: Sequence[frozenset[str]]):
        super().__init__()
        self.l2_lambda = l2_lambda
        self.used_params = used_params  # a live view: an adaptive schedule grows while training
        self.anchor: dict[str, torch.Tensor] = {}
        self.quadratic = QuadraticAnchor(scale=0.5 * l2_lambda)  # this experience's pull: A = 1 on the shared tensors
        self._params: list[torch.Tensor] = []
        self.diagnostics = PenaltyDiagnostics("l2", used_params)  # did the penalty act, per experience

    def before_training_exp(self, strategy, **kwargs) -> None:
        shared = shared_params(self.used_params, strategy.experience.current_experience)
        named = dict(strategy.model.named_parameters())
        names = [n for n in sorted(shared) if n in self.anchor]
        self._params = [named[n] for n in names]
        if names:
            self.quadratic.replace(
                {n: self.anchor[n].new_ones(()).expand_as(self.anchor[n]) for n in names},
                {n: self.anchor[n] for n in names},
                copy=False,
            )

    def penalty(self) -> torch.Tensor | float:
        """(lambda / 2) ||theta_shared - theta*||^2 as a differentiable scalar (0 without shared parameters); its
        gradient is what :meth:`before_backward` adds to ``.grad`` every step."""
        return self.quadratic.penalty(self._params, self.quadratic.scale) if self._params else 0.0

    def before_backward(self, strategy, **kwargs) -> None:
        if self._params:  # the gradient lambda (theta - theta*) straight into .grad when the backward pass ends
            strategy.loss = self.quadratic.add_gradient(strategy.loss, self._params, self.quadratic.scale)

    def after_backward(self, strategy, **kwargs) -> None:
        if self._params:
            self.diagnostics.observe(strategy, self._params, self.penalty)

    def after_training_exp(self, strategy, **kwargs) -> None:
        self.diagnostics.measure(strategy, self._params, self.penalty)
        used = self.used_params[strategy.experience.current_experience]
        for name, p in strategy.model.named_parameters():
            if name in used:
                self.anchor[name] = p.detach().clone()

    def state_dict(self) -> dict:
        """The anchors theta* of every parameter an earlier experience used; the gradient ratios so far."""
        return {
            "anchor": detached(self.anchor),
            "gradient_ratios": self.diagnostics.state_dict(),
        }

    def load_state_dict(self, state) -> None:
        self.anchor = dict(state["anchor"])
        self._params = []
        self.diagnostics.load_state_dict(state.get("gradient_ratios", []))

    def extra_results(self) -> dict:
        """Whether the pull acted: ``l2_penalty_to_data_gradient`` per experience, ``l2_penalty_inert``."""
        return self.diagnostics.results()


@register_strategy("l2", params=L2Params)
def build_l2(ctx: StrategyContext, params: L2Params) -> SupervisedTemplate:
    """Quadratic pull of shared parameters to their previous values (importance 1)."""
    return ctx.build(plugins=[L2Plugin(params.l2_lambda, ctx.used_params)])
