"""``naive``: plain fine-tuning, the lower bound on stability.

Each experience minimises only its own loss, L(theta) = L_t(theta); nothing protects earlier
models, so whatever they share with the current one is overwritten ("catastrophic" or
"multi-model" forgetting). No hyperparameters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING


from forgetbench.benchmark.core.registry import NoParams
from forgetbench.strategies.base import StrategyContext, register_strategy

if TYPE_CHECKING:  # Avalanche is imported when training starts, never to read this strategy's params
    from avalanche.training.templates import SupervisedTemplate


@register_strategy("naive", params=NoParams)
def build_naive(ctx: StrategyContext, params: NoParams) -> SupervisedTemplate:
    """Plain fine-tuning: no regularisation (lower bound)."""
    return ctx.build()
