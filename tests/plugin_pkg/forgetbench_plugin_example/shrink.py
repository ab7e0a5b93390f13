"""``shrink``: naive fine-tuning plus (lambda/2) ||theta||^2 on the parameters the current model uses."""

from avalanche.core import SupervisedPlugin
from pydantic import NonNegativeFloat

from forgetbench.strategies import StrategyContext, StrategyParams, register_strategy


class ShrinkParams(StrategyParams):
    strength: NonNegativeFloat = 0.01


class ShrinkPlugin(SupervisedPlugin):
    def __init__(self, strength, used_params):
        super().__init__()
        self.strength, self.used_params = strength, used_params

    def before_backward(self, strategy, **kwargs):
        used = self.used_params[strategy.experience.current_experience]
        penalty = sum((p**2).sum() for n, p in strategy.model.named_parameters() if n in used)
        strategy.loss = strategy.loss + 0.5 * self.strength * penalty

    def state_bytes(self) -> int:
        return 0


@register_strategy("shrink", params=ShrinkParams)
def build_shrink(ctx: StrategyContext, params: ShrinkParams):
    """Test plug-in: L2 shrinkage of the current model's weights (entry-point registered)."""
    return ctx.build(plugins=[ShrinkPlugin(params.strength, ctx.used_params)])
