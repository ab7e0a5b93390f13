r"""``mas``: Memory Aware Synapses (Aljundi et al., ECCV 2018), Avalanche's MASPlugin on fast loaders.

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
gradient from the current loss). The importance pass reads the experience's tensors directly
(:func:`forgetbench.benchmark.data.loaders.dataset_tensors`) instead of Avalanche's sample-by-sample loader; the
maths is Avalanche's.

Hyperparameters:

* ``lambda_reg`` (>= 0): the penalty's weight.
* ``alpha`` (in [0, 1]): how much of the old importance is kept when a new one is merged.
* ``max_curvature``: caps the penalty's curvature per weight,
2 lambda Omega_i, so that gradient descent cannot diverge on it (``auto``: see
:func:`forgetbench.strategies.penalty.stable_curvature`; ``null``: Avalanche's penalty exactly). The cap
clamps the Omega the penalty uses, never the running importance that later experiences merge into.
"""

from __future__ import annotations

import torch
from avalanche.models.utils import avalanche_forward
from avalanche.training.plugins import MASPlugin
from avalanche.training.templates import SupervisedTemplate
from avalanche.training.utils import ParamData, zerolike_params_dict
from pydantic import Field, NonNegativeFloat, PositiveFloat
from typing import Literal

from forgetbench.benchmark.data.loaders import TensorBatchLoader, dataset_tensors
from forgetbench.strategies.base import StrategyContext, StrategyParams, register_strategy
from forgetbench.strategies.penalty import stable_curvature
from forgetbench.strategies.plugin import Plugin


class MASParams(StrategyParams):
    lambda_reg: NonNegativeFloat = 1.0
    alpha: float = Field(0.5, ge=0.0, le=1.0)
    max_curvature: Literal["auto"] | PositiveFloat | None = "auto"


class FastMASPlugin(Plugin, MASPlugin):
    """Avalanche's MAS with the importance pass on tensor-sliced batches and an optional curvature cap."""

    def __init__(self, lambda_reg: float, alpha: float, max_curvature: float | None = None):
        super().__init__(lambda_reg=lambda_reg, alpha=alpha)
        self.max_curvature = max_curvature
        self._capped: dict[str, torch.Tensor] | None = None  # this experience's clamped Omega

    def before_training_exp(self, strategy, **kwargs):
        """The penalty's Omega for this experience: Avalanche's, clamped at max_curvature / (2 lambda)."""
        self._capped = None
        if self.max_curvature is not None and self._lambda > 0 and self.importance:
            # lambda * Omega (theta - theta*)^2 has curvature 2 lambda Omega
            cap = self.max_curvature / (2 * self._lambda)
            shapes = {n: p.shape for n, p in strategy.model.named_parameters()}
            self._capped = {n: self.importance[n].expand(shape).clamp(max=cap)
                            for n, shape in shapes.items() if n in self.importance}

    def before_backward(self, strategy, **kwargs):
        if self._capped is None or strategy.clock.train_exp_counter == 0:
            return super().before_backward(strategy, **kwargs)
        penalty = 0.0
        for name, param in strategy.model.named_parameters():
            if name in self._capped:
                penalty = penalty + torch.sum(self._capped[name] * (param - self.params[name].expand(param.shape)).pow(2))
        strategy.loss += self._lambda * penalty

    def _get_importance(self, strategy):
        importance = dict(zerolike_params_dict(strategy.model))
        loader = TensorBatchLoader(dataset_tensors(strategy.experience.dataset), strategy.train_mb_size, shuffle=False)
        strategy.model.train()
        for x, _, t in loader:
            x, t = x.to(strategy.device), t.to(strategy.device)
            strategy.optimizer.zero_grad()
            out = avalanche_forward(strategy.model, x, t)
            out.norm(p="fro", dim=1).pow(2).mean().backward()
            for name, param in strategy.model.named_parameters():
                if param.grad is not None:  # other heads get no gradient
                    importance[name].data += param.grad.abs()
        for value in importance.values():
            value.data /= float(len(loader))
        strategy.optimizer.zero_grad()
        return importance

    def state_dict(self) -> dict:
        """Omega and the anchor theta* (None before the first experience ends)."""
        def plain(params):
            return None if params is None else {n: p.data.detach().clone() for n, p in params.items()}

        return {"importance": plain(self.importance), "params": plain(self.params)}

    def load_state_dict(self, state) -> None:
        def wrap(tensors):
            if tensors is None:
                return None
            return {n: ParamData(n, t.shape, device=t.device, init_tensor=t.clone()) for n, t in tensors.items()}

        self.importance, self.params = wrap(state["importance"]), wrap(state["params"])

    def state_bytes(self) -> int:
        """Bytes of the tensors this regularizer holds (importance and anchor)."""
        held = [*(self.importance or {}).values(), *(self.params or {}).values()]
        return sum(p.data.numel() * p.data.element_size() for p in held)


@register_strategy("mas", params=MASParams)
def build_mas(ctx: StrategyContext, params: MASParams) -> SupervisedTemplate:
    """Memory Aware Synapses: output-sensitivity importance, quadratic pull (Aljundi et al. 2018)."""
    cap = stable_curvature(params.max_curvature, ctx.training)
    return ctx.build(plugins=[FastMASPlugin(lambda_reg=params.lambda_reg, alpha=params.alpha, max_curvature=cap)])
