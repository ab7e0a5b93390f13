r"""``mas``: Memory Aware Synapses (Aljundi et al., ECCV 2018), Avalanche's ``MASPlugin`` maths, fast.

After experience k the importance of each parameter is the mean over training mini-batches of the
absolute gradient of the squared L2 norm of the model's output (no labels needed):

    Omega^k_i = (1/B) sum_b | d/dtheta_i mean_{n in b} ||f_k(x_n)||_2^2 |,
    Omega <- alpha * Omega + (1 - alpha) * Omega^k          (after the first experience)

and while training experience t the loss is

$$
\mathcal{L}(\theta) = \mathcal{L}_t(\theta) + \lambda \sum_i \Omega_i \, (\theta_i - \theta^*_i)^2,
$$

theta* the weights after the previous experience. Every parameter is penalised (old heads' penalty
is zero in practice: their importance and their distance to the anchor stay fixed, as they get no
gradient from the current loss). Tests compare it with Avalanche's ``MASPlugin``: the importance pass reads the
experience's tensors directly instead of Avalanche's sample-by-sample loader, and the penalty's gradient goes
straight into ``.grad`` (the core, :mod:`forgetbench.strategies.quadratic`); the loss's value no longer includes the
penalty (``penalty()`` gives it).

Parts: estimator :class:`~forgetbench.strategies.parts.OutputSensitivity`, anchor update
:class:`~forgetbench.strategies.parts.RunningMerge`, selection ``all``.

Hyperparameters:

* ``lambda_reg`` (>= 0): the penalty's weight.
* ``alpha`` (in [0, 1]): how much of the old importance is kept when a new one is merged.
* ``max_curvature``: caps the penalty's curvature 2 lambda Omega_i per weight (``auto``: the core's;
``null``: Avalanche's penalty exactly). The cap clamps the Omega the penalty uses, never the running importance.
* ``importance_samples``: how many of the experience's training samples the importance pass reads, a random
subset drawn with the run's seed (default: all of them, Avalanche's estimate).

``mas_importance_skipped`` lists the experiences whose pass no later step could read (Omega^k taken as 0).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Sequence

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt

from forgetbench.strategies.base import StrategyContext, StrategyParams, register_strategy, strength
from forgetbench.strategies.parts import OutputSensitivity, RunningMerge, Tensors
from forgetbench.strategies.penalty import stable_curvature
from forgetbench.strategies.quadratic import QuadraticRegularizer

if TYPE_CHECKING:  # Avalanche is imported when training starts, never to read this strategy's params
    from avalanche.training.templates import SupervisedTemplate


class MASParams(StrategyParams):
    lambda_reg: NonNegativeFloat = strength(1.0)
    alpha: float = Field(0.5, ge=0.0, le=1.0)
    max_curvature: Literal["auto"] | PositiveFloat | None = "auto"
    importance_samples: PositiveInt | None = None


class MASPlugin(QuadraticRegularizer):
    """MAS from the core's parts; ``importance`` / ``params`` / ``_lambda`` are Avalanche's ``MASPlugin``'s names."""

    def __init__(
        self,
        lambda_reg: float,
        alpha: float,
        max_curvature: float | None = None,
        used_params: Sequence[frozenset[str]] | None = None,
        adaptive: bool = False,
        importance_samples: int | None = None,
        seed: int = 0,
    ):
        self.merge = RunningMerge(alpha)
        super().__init__(
            "mas", lambda_reg, OutputSensitivity(importance_samples), self.merge, used_params=used_params,
            adaptive=adaptive, seed=seed, max_curvature=max_curvature, reports=("skipped",),
        )  # fmt: skip
        self._lambda, self.alpha = lambda_reg, alpha

    importance = property(lambda self: self.merge.importance, lambda self, v: setattr(self.merge, "importance", v))
    params = property(lambda self: self.merge.params, lambda self, v: setattr(self.merge, "params", v))

    def _get_importance(self, strategy: Any) -> Tensors:
        """Omega^t of the experience ``strategy`` is at (the pass itself, whatever the schedule)."""
        return self.estimator(strategy, None, self.generator)


@register_strategy("mas", params=MASParams)
def build_mas(ctx: StrategyContext, params: MASParams) -> SupervisedTemplate:
    """Memory Aware Synapses: output-sensitivity importance, quadratic pull (Aljundi et al. 2018)."""
    cap = stable_curvature(params.max_curvature, ctx.training)
    plugin = MASPlugin(
        params.lambda_reg, params.alpha, cap, ctx.used_params, ctx.adaptive, params.importance_samples, ctx.seed
    )
    return ctx.build(plugins=[plugin])


def fast_mas_plugin() -> type:
    """The MAS plugin class (kept for callers of the name under which it extended Avalanche's)."""
    return MASPlugin
