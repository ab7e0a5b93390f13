r"""``l2``: a plain quadratic pull to the previous weights (importance 1), the simplest regularizer.

While training experience t the loss is

$$
\mathcal{L}(\theta) = \mathcal{L}_t(\theta) + \frac{\lambda}{2} \sum_{i \in \text{shared}_t} (\theta_i - \theta^*_i)^2,
$$

theta*_i the value of parameter i after the latest experience that used it. It is EWC/WPL with every
importance equal to 1, so it isolates what the importance estimate buys. Parts of the quadratic core
(:mod:`forgetbench.strategies.quadratic`): estimator :class:`~forgetbench.strategies.parts.UnitImportance`, anchor
update :class:`~forgetbench.strategies.parts.UnitAnchor`, selection ``shared``; the loss's value does not include
the pull (``penalty()`` gives it).

Only *shared* parameters are pulled (used by the current model and by an earlier one, from
``ctx.used_params``): the current model's private parameters (e.g. its fresh head) have no earlier
value worth keeping, so pulling them would only cost plasticity; the earlier models' private
parameters get no gradient from the current loss, so a pull on them is zero anyway.

Hyperparameter:

* ``l2_lambda`` (>= 0): the pull's weight lambda.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from pydantic import NonNegativeFloat

from forgetbench.strategies.base import StrategyContext, StrategyParams, register_strategy, strength
from forgetbench.strategies.parts import Tensors, UnitAnchor, UnitImportance
from forgetbench.strategies.quadratic import QuadraticRegularizer

if TYPE_CHECKING:  # Avalanche is imported when training starts, never to read this strategy's params
    from avalanche.training.templates import SupervisedTemplate


class L2Params(StrategyParams):
    l2_lambda: NonNegativeFloat = strength(1.0)


class L2Plugin(QuadraticRegularizer):
    """(lambda/2) ||theta_shared - theta*||^2 on the parameters shared with earlier experiences."""

    def __init__(self, l2_lambda: float, used_params: Sequence[frozenset[str]]):
        super().__init__(
            "l2", 0.5 * l2_lambda, UnitImportance(), UnitAnchor(), selection="shared", used_params=used_params
        )
        self.l2_lambda = l2_lambda

    @property
    def anchor(self) -> Tensors:
        return self.update.anchor  # type: ignore[attr-defined, no-any-return]


@register_strategy("l2", params=L2Params)
def build_l2(ctx: StrategyContext, params: L2Params) -> SupervisedTemplate:
    """Quadratic pull of shared parameters to their previous values (importance 1)."""
    return ctx.build(plugins=[L2Plugin(params.l2_lambda, ctx.used_params)])
