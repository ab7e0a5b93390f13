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
(:func:`forgetbench.benchmark.data.loaders.dataset_tensors`) instead of Avalanche's sample-by-sample loader, and
the penalty's gradient 2 lambda Omega (theta - theta*) goes straight into ``.grad`` when each backward pass ends
(:meth:`forgetbench.strategies.penalty.QuadraticAnchor.add_gradient`, as ewc, si and wpl) instead of Avalanche's
per-parameter autograd sum; tensors that cannot move this experience (unused and at their anchor, no weight decay)
are left out, their gradient being exactly 0. The maths is Avalanche's; the loss's value no longer includes the
penalty (``penalty()`` gives it).

Hyperparameters:

* ``lambda_reg`` (>= 0): the penalty's weight.
* ``alpha`` (in [0, 1]): how much of the old importance is kept when a new one is merged.
* ``max_curvature``: caps the penalty's curvature per weight,
2 lambda Omega_i, so that gradient descent cannot diverge on it (``auto``: see
:func:`forgetbench.strategies.penalty.stable_curvature`; ``null``: Avalanche's penalty exactly). The cap
clamps the Omega the penalty uses, never the running importance that later experiences merge into.
* ``importance_samples``: how many of the experience's training samples the importance pass reads, a random
subset drawn with the run's seed (default: all of them, Avalanche's estimate).

When the schedule is known and model k shares no parameter with another model (and nothing decays weights), or k is
the last experience, Omega^k is taken as 0 without a pass: no later step could read it
(:func:`forgetbench.strategies.base.importance_needed`); ``mas_importance_skipped`` in the result lists those
experiences.
"""

from __future__ import annotations

import torch
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt
from typing import TYPE_CHECKING, Any, Literal, Sequence

from forgetbench.benchmark.data.loaders import TensorBatchLoader, dataset_tensors
from forgetbench.strategies.base import StrategyContext, StrategyParams, register_strategy, strength
from forgetbench.strategies.base import skip_importance_pass
from forgetbench.strategies.importance import importance_pass, sample_subset
from forgetbench.strategies.penalty import (
    QuadraticAnchor,
    movable_subset,
    PenaltyDiagnostics,
    stable_curvature,
)
from forgetbench.strategies.plugin import Plugin, generator_state, on_avalanche_base, set_generator_state

if TYPE_CHECKING:  # Avalanche is imported when training starts, never to read this strategy's params
    from avalanche.training.templates import SupervisedTemplate
    from avalanche.training.plugins import MASPlugin as _MASPluginBase
else:  # at run time the methods sit on a plain class, put on Avalanche's when first built
    _MASPluginBase = object


class MASParams(StrategyParams):
    lambda_reg: NonNegativeFloat = strength(1.0)
    alpha: float = Field(0.5, ge=0.0, le=1.0)
    max_curvature: Literal["auto"] | PositiveFloat | None = "auto"
    importance_samples: PositiveInt | None = None


class _FastMAS(_MASPluginBase):
    """Avalanche's MAS with the importance pass on tensor-sliced batches and an optional curvature cap (the methods
    of :data:`FastMASPlugin`, on Avalanche's ``MASPlugin``)."""

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
        """``used_params`` / ``adaptive``: the schedule, to skip passes no later step reads (unknown: never
        skip); ``importance_samples`` / ``seed``: the pass's sample budget and the generator drawing it."""
        super().__init__(lambda_reg=lambda_reg, alpha=alpha)
        self.max_curvature = max_curvature
        self.quadratic = QuadraticAnchor(scale=lambda_reg)  # this experience's penalty (Omega and theta*, not copied)
        self._params: list[torch.Tensor] = []  # the parameters the penalty acts on this experience
        self._subset: list[int] | None = None
        self.used_params = used_params
        self.adaptive = adaptive
        self.importance_samples = importance_samples
        self.generator = torch.Generator().manual_seed(seed)
        self.skipped: list[int] = []
        self.diagnostics = PenaltyDiagnostics("mas", used_params)  # did the penalty act, per experience

    def before_training_exp(self, strategy, **kwargs):
        """This experience's penalty: Avalanche's Omega (clamped at max_curvature / (2 lambda) for the penalty only)
        and anchor, held as one quadratic over the parameters that can move (:func:`movable_subset`)."""
        self._params, self._subset = [], None
        if strategy.clock.train_exp_counter == 0 or not self.importance or not self.params:
            return  # first experience: nothing to protect yet
        named = [(n, p) for n, p in strategy.model.named_parameters() if n in self.importance]
        # Avalanche's expand: a parameter grown since (a wider head) gets Omega 0 and anchor 0 on its new entries
        self.quadratic.replace(
            {n: self.importance[n].expand(p.shape) for n, p in named},
            {n: self.params[n].expand(p.shape) for n, p in named},
            copy=False,
        )
        # lambda * Omega (theta - theta*)^2 has curvature 2 lambda Omega
        capping = self.max_curvature is not None and self._lambda > 0
        self.quadratic.penalize_at_most(self.max_curvature / (2 * self._lambda) if capping else None)
        params = [p for _, p in named]
        experience = getattr(getattr(strategy, "experience", None), "current_experience", None)
        used = (
            None
            if self.used_params is None or experience is None or experience >= len(self.used_params)
            else self.used_params[experience]
        )
        self._subset = movable_subset(
            self.quadratic.names, self.quadratic.anchors, params, used, getattr(strategy, "optimizer", None)
        )
        self._params = params if self._subset is None else [params[i] for i in self._subset]

    def before_backward(self, strategy, **kwargs):
        if self._params:
            strategy.loss = self.quadratic.add_gradient(strategy.loss, self._params, self._lambda, self._subset)

    def after_backward(self, strategy, **kwargs):
        if self._params:
            self.diagnostics.observe(strategy, self._params, self.penalty)

    def after_training_exp(self, strategy, **kwargs):
        """Whether the penalty acted in this experience (on its last batch, before Omega and the anchor move); then
        Avalanche's update of both."""
        self.diagnostics.measure(strategy, self._params, self.penalty)
        super().after_training_exp(strategy, **kwargs)

    def penalty(self) -> torch.Tensor | float:
        """lambda * sum_i Omega_i (theta_i - theta*_i)^2 as a differentiable scalar (0 before there is a penalty); its
        gradient is what :meth:`before_backward` adds to the parameters' ``.grad`` every step."""
        return self.quadratic.penalty(self._params, self._lambda, self._subset) if self._params else 0.0

    def _get_importance(self, strategy):
        from avalanche.training.utils import zerolike_params_dict

        importance = dict(zerolike_params_dict(strategy.model))
        index = strategy.experience.current_experience
        if skip_importance_pass(self.skipped, self.used_params, index, self.adaptive, strategy):
            return importance
        with importance_pass(strategy):
            return self._importance_pass(strategy, importance)

    def _importance_pass(self, strategy, importance):
        """Omega: the mean absolute gradient of the output's squared norm (Aljundi et al.), on the experience's data."""
        from avalanche.models.utils import avalanche_forward

        tensors = sample_subset(dataset_tensors(strategy.experience.dataset), self.importance_samples, self.generator)
        loader = TensorBatchLoader(tensors, strategy.train_mb_size, shuffle=False)
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

        return {
            "importance": plain(self.importance),
            "params": plain(self.params),
            "skipped": list(self.skipped),
            "generator": generator_state(self.generator),
            "gradient_ratios": self.diagnostics.state_dict(),
        }

    def load_state_dict(self, state) -> None:
        from avalanche.training.utils import ParamData

        self.skipped = [int(i) for i in state.get("skipped", [])]
        self.diagnostics.load_state_dict(state.get("gradient_ratios", []))
        if "generator" in state:
            set_generator_state(self.generator, state["generator"])

        def wrap(tensors):
            if tensors is None:
                return None
            return {n: ParamData(n, t.shape, device=t.device, init_tensor=t.clone()) for n, t in tensors.items()}

        self.importance, self.params = wrap(state["importance"]), wrap(state["params"])

    def extra_results(self) -> dict:
        """The experiences whose importance pass was skipped (no later step could read it); whether the penalty
        acted (``mas_penalty_to_data_gradient`` per experience, ``mas_penalty_inert``)."""
        return {"mas_importance_skipped": list(self.skipped), **self.diagnostics.results()}

    def state_bytes(self) -> int:
        """Bytes of the tensors this regularizer holds (importance and anchor)."""
        held = [*(self.importance or {}).values(), *(self.params or {}).values()]
        return sum(p.data.numel() * p.data.element_size() for p in held)


@register_strategy("mas", params=MASParams)
def build_mas(ctx: StrategyContext, params: MASParams) -> SupervisedTemplate:
    """Memory Aware Synapses: output-sensitivity importance, quadratic pull (Aljundi et al. 2018)."""
    cap = stable_curvature(params.max_curvature, ctx.training)
    plugin = fast_mas_plugin()(
        lambda_reg=params.lambda_reg,
        alpha=params.alpha,
        max_curvature=cap,
        used_params=ctx.used_params,
        adaptive=ctx.adaptive,
        importance_samples=params.importance_samples,
        seed=ctx.seed,
    )
    return ctx.build(plugins=[plugin])


def fast_mas_plugin() -> type:
    """``FastMASPlugin``: :class:`_FastMAS` on Avalanche's ``MASPlugin`` (imported here, when a strategy is built)."""

    def mas_plugin() -> type:
        from avalanche.training.plugins import MASPlugin

        return MASPlugin

    return on_avalanche_base("FastMASPlugin", _FastMAS, mas_plugin, Plugin)


def __getattr__(name: str) -> Any:  # `from ...mas import FastMASPlugin` builds it then
    if name == "FastMASPlugin":
        return fast_mas_plugin()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
