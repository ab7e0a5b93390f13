r"""``ewc``: Elastic Weight Consolidation (Kirkpatrick et al., PNAS 2017), Avalanche's maths, fast.

After experience k the diagonal importance F^k and the weights theta^k are stored. While training
experience t the loss is

$$
\mathcal{L}(\theta) = \mathcal{L}_t(\theta) + \lambda \sum_{k<t} \sum_i F^k_i \, (\theta_i - \theta^k_i)^2 \qquad \text{(separate)}
$$

$$
\mathcal{L}(\theta) = \mathcal{L}_t(\theta) + \lambda \sum_i \tilde F_i \, (\theta_i - \theta^{t-1}_i)^2 \qquad \text{(online)}
$$

with F~ <- decay_factor * F~ + F^{t-1} in online mode (Schwarz et al., 2018). As Avalanche's
``EWCPlugin``, F is estimated as the mean over the experience's mini-batches (training batch
size, dataset order, model in eval mode) of the squared mini-batch gradient of the loss, and every
parameter is penalised, shared or not; there is no penalty during the first experience.

:class:`EWCPlugin` here is a drop-in Avalanche ``SupervisedPlugin`` with the same numbers
(tests compare it with ``avalanche.training.plugins.EWCPlugin``) but: the importance pass slices
the experience's tensors instead of collating samples; the penalty is one vectorised quadratic
(:mod:`forgetbench.strategies.penalty`); and separate mode keeps the sum of its quadratics as one quadratic,
so its memory does not grow with the number of experiences. When the strategy knows which
parameters each experience's model uses (``used_params``) and the optimizer has no weight decay,
tensors that the experience cannot move (unused and exactly at their anchor) are left out of the
penalty: their terms and gradients are exactly 0, so the numbers are Avalanche's while the
per-step cost stops growing with the number of heads (Avalanche gives every such tensor a zero
gradient, which only matters under weight decay; then every tensor is kept).

Hyperparameters:

* ``ewc_lambda`` (>= 0): the penalty's weight.
* ``mode``: separate (one penalty per earlier experience) or online (one running penalty).
* ``decay_factor`` (in [0, 1]): online mode only, F~'s decay.
* ``importance``: ``minibatch`` (Avalanche's estimate above, the default) or ``exact``, the exact
diagonal empirical Fisher F_i = (1/N) sum_n (d/dtheta_i log p(y_n | x_n))^2 of the experience's model
(:func:`forgetbench.strategies.importance.exact_fisher_diagonal`, the estimate ``wpl`` uses).
* ``estimator``: with ``exact`` only, ``empirical`` (y_n the observed label), ``true`` (y_n drawn from the model's
predictive distribution with the run's seed: the Fisher's own definition, which stays of order p(1 - p) where the
empirical one shrinks to (1 - p)^2 on a confident model) or ``predicted`` (y_n the model's most likely label,
as van de Ven & Tolias's code, whose penalty is lambda_vdV / 2 * sum F (theta - theta*)^2: their lambda is
2 * ewc_lambda here, and online their gamma * lambda_vdV / 2, with decay_factor = gamma). With ``exact`` and
ewc_lambda = alpha / 2, EWC and WPL differ only in *what* they penalise: EWC every parameter, WPL
only those the current model shares with earlier ones.
* ``max_curvature``: caps the penalty's curvature per weight. The penalty's curvature on
weight i is 2 lambda F_i, and gradient descent with learning rate lr and momentum beta diverges on a
quadratic once lr * curvature > 2 (1 + beta) (an undertrained trunk, batch norm scales: F entries
far above 1 make the default lambda diverge on a ResNet-18). ``auto`` (the default) caps the
curvature at (1 + beta) / (4 lr) under SGD, an eighth of that bound, and not at all under Adam
(:func:`forgetbench.strategies.penalty.stable_curvature`); a number caps it there; ``null`` never caps
(Avalanche's penalty exactly). The cap applies to the penalty only: the stored F and anchors keep
their exact values. ``ewc_capped_entries`` in the result counts the capped entries.
* ``importance_samples``: how many of the experience's training samples the importance pass reads, a random
subset drawn with the run's seed (default: all of them, Avalanche's estimate). The pass costs about one
training epoch over the samples it reads; a search that trains a new model every few steps needs a budget.

No pass runs where no later training could read its result (:func:`forgetbench.strategies.base.importance_needed`):
after the last experience, and, when the schedule is known and no optimiser group decays weights, after a model
that shares no parameter with any other (a frozen backbone with private heads). ``ewc_importance_skipped`` in the
result lists those experiences; every number of the run is the same as with the pass.

* ``importance_norm``: ``none`` (default) or ``mean``: each experience's F^k divided by its mean entry over the
parameters its model uses (:func:`forgetbench.strategies.importance.normalise_importance`), so lambda means the
same on a confident transformer (F ~ 1e-10) as on an MNIST MLP.

Whether the penalty acts: for every experience with a penalty, ``ewc_penalty_to_data_gradient`` records
||grad penalty|| / ||grad data loss|| over the experience's training steps, on the parameters the model shares with
earlier ones (:class:`forgetbench.strategies.penalty.PenaltyDiagnostics`), and ``ewc_penalty_inert`` the experiences
where it was below 0.01: there the penalty was too small to change training (raise ``ewc_lambda`` or use
``importance_norm: mean``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Sequence

import torch
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator

from forgetbench.strategies.base import StrategyContext, StrategyParams, register_strategy, strength
from forgetbench.strategies.base import skip_importance_pass
from forgetbench.strategies.importance import experience_importance, normalise_importance
from forgetbench.strategies.penalty import (
    QuadraticAnchor,
    movable_subset,
    named_params,
    PenaltyDiagnostics,
    stable_curvature,
)
from forgetbench.strategies.plugin import Plugin, generator_state, set_generator_state

if TYPE_CHECKING:  # Avalanche is imported when training starts, never to read this strategy's params
    from avalanche.training.templates import SupervisedTemplate


class EWCParams(StrategyParams):
    ewc_lambda: NonNegativeFloat = strength(100.0)
    mode: Literal["separate", "online"] = "separate"
    decay_factor: float | None = Field(None, ge=0.0, le=1.0)
    importance: Literal["minibatch", "exact"] = "minibatch"
    estimator: Literal["empirical", "true", "predicted"] = "empirical"
    max_curvature: Literal["auto"] | PositiveFloat | None = "auto"
    importance_samples: PositiveInt | None = None
    importance_norm: Literal["none", "mean"] = "none"

    @model_validator(mode="after")
    def _decay_needs_online(self) -> "EWCParams":
        if self.mode == "online" and self.decay_factor is None:
            self.decay_factor = 1.0
        if self.mode == "separate" and self.decay_factor is not None:
            raise ValueError("decay_factor applies only to mode 'online'")
        if self.importance == "minibatch" and self.estimator != "empirical":
            raise ValueError(
                "estimator applies only to importance 'exact' (minibatch squares mini-batch "
                "gradients of the loss on the observed labels)"
            )
        return self


class EWCPlugin(Plugin):
    """Avalanche-compatible EWC (separate or online) with a vectorised penalty; see the module doc."""

    def __init__(
        self,
        params: EWCParams,
        used_params: Sequence[frozenset[str]] | None = None,
        max_curvature: float | None = None,
        adaptive: bool = False,
        seed: int = 0,
    ):
        """``params``: the validated hyperparameters (``EWCParams(ewc_lambda=10.0, mode="online")``; the
        model holds every rule, so the plugin checks nothing again). ``used_params[i]``: names of the
        parameters experience i's model uses (optional; lets the penalty skip tensors that provably cannot
        move, see :func:`movable_subset`). ``max_curvature``: the resolved cap on the penalty's curvature
        2 lambda F per weight (None: Avalanche's; ``params.max_curvature`` "auto" is resolved by the builder,
        which knows the optimiser). ``adaptive``: the schedule grows while training (a search), so no importance
        pass is ever skipped. ``seed``: draws the ``importance_samples`` subset."""
        super().__init__()
        self.ewc_lambda = float(params.ewc_lambda)
        self.mode = params.mode
        self.decay_factor = params.decay_factor
        self.quadratic = QuadraticAnchor(scale=self.ewc_lambda)
        self.max_curvature = max_curvature
        self.capped_entries = 0
        self.used_params = used_params
        self.importance = params.importance
        self.estimator = params.estimator
        self.importance_samples = params.importance_samples
        self.adaptive = adaptive
        self.generator = torch.Generator().manual_seed(seed)
        self.skipped: list[int] = []  # experiences whose importance pass was not needed (importance_needed)
        self.importance_norm = params.importance_norm
        self.diagnostics = PenaltyDiagnostics("ewc", used_params)  # did the penalty act, per experience
        self._params: list[torch.Tensor] = []
        self._subset: list[int] | None = None

    def before_training_exp(self, strategy, **kwargs) -> None:
        if self.quadratic.empty:
            return
        if self.max_curvature is not None and self.ewc_lambda > 0:
            self.quadratic.penalize_at_most(self.max_curvature / (2 * self.ewc_lambda))
            self.capped_entries += self.quadratic.capped
        params = named_params(strategy.model, self.quadratic.names)
        used = None  # unknown: every tensor stays in the penalty
        if self.used_params is not None and strategy.experience is not None:
            exp = strategy.experience.current_experience
            used = self.used_params[exp] if exp < len(self.used_params) else None
        self._subset = movable_subset(self.quadratic.names, self.quadratic.anchors, params, used, strategy.optimizer)
        self._params = params if self._subset is None else [params[i] for i in self._subset]

    def before_backward(self, strategy, **kwargs) -> None:
        if self.quadratic.empty:  # first experience: nothing to protect yet
            return
        strategy.loss = self.quadratic.add_gradient(strategy.loss, self._params, self.ewc_lambda, self._subset)

    def after_backward(self, strategy, **kwargs) -> None:
        if not self.quadratic.empty:
            self.diagnostics.observe(
                strategy, self._params, lambda: self.quadratic.penalty(self._params, self.ewc_lambda, self._subset)
            )

    def after_training_exp(self, strategy, **kwargs) -> None:
        index = strategy.experience.current_experience
        if self.quadratic.empty:
            self.diagnostics.skip()
        else:
            self.diagnostics.measure(
                strategy, self._params, lambda: self.quadratic.penalty(self._params, self.ewc_lambda, self._subset)
            )
        if skip_importance_pass(self.skipped, self.used_params, index, self.adaptive, strategy):
            if index + 1 >= len(self.used_params or ()):  # (not None here: importance_needed said no)
                return  # nothing is trained after the last experience
            importance = {}  # 0 wherever a later experience could read it (see importance_needed)
        else:
            used = self.used_params[index] if self.used_params is not None and index < len(self.used_params) else None
            importance = normalise_importance(self._importance(strategy), self.importance_norm, used)
        # a frozen parameter cannot move, so it gets no importance and no anchor (the quadratic keeps the names
        # it started with: a parameter frozen later keeps its zero-cost entry rather than changing the layout)
        names = (
            self.quadratic.names
            if not self.quadratic.empty
            else [n for n, p in strategy.model.named_parameters() if p.requires_grad]
        )
        params = dict(strategy.model.named_parameters())
        importance = {n: importance[n] if n in importance else torch.zeros_like(params[n]) for n in names}
        anchor = {n: params[n].detach() for n in names}
        if self.mode == "separate":
            self.quadratic.add(importance, anchor)
        elif self.quadratic.empty:
            self.quadratic.replace(importance, anchor)
        else:  # online: F~ <- decay * F~ + F, anchored at the latest weights only
            decay = self.decay_factor if self.decay_factor is not None else 1.0  # EWCParams: 1.0 when online
            decayed = {n: decay * w + importance[n] for n, w in zip(self.quadratic.names, self.quadratic.weights)}
            decayed.update({n: f for n, f in importance.items() if n not in decayed})
            self.quadratic.replace(decayed, anchor)
        self._params, self._subset = named_params(strategy.model, self.quadratic.names), None

    def _importance(self, strategy) -> dict[str, torch.Tensor]:
        # exact: a training batch a pass (cache-sized on a CPU; docs/studies/performance.md)
        importance = experience_importance(
            strategy, self.importance, self.importance_samples, self.generator, self.estimator
        )
        if self.importance != "exact":
            return importance
        return {
            n: importance[n] if n in importance else torch.zeros_like(p) for n, p in strategy.model.named_parameters()
        }

    def state_dict(self) -> dict:
        """The one quadratic holding every earlier experience's importance and anchor; the sampling RNG."""
        return {
            "quadratic": self.quadratic.state_dict(),
            "capped_entries": self.capped_entries,
            "skipped": list(self.skipped),
            "generator": generator_state(self.generator),
            "gradient_ratios": self.diagnostics.state_dict(),
        }

    def load_state_dict(self, state) -> None:
        self.quadratic.load_state_dict(state["quadratic"])
        self.capped_entries = int(state.get("capped_entries", 0))
        self.skipped = [int(i) for i in state.get("skipped", [])]
        if "generator" in state:
            set_generator_state(self.generator, state["generator"])
        self.diagnostics.load_state_dict(state.get("gradient_ratios", []))
        self._params, self._subset = [], None

    def extra_results(self) -> dict:
        """How many importance entries ``max_curvature`` capped (summed over experiences); the experiences
        whose importance pass was skipped because no later training could read it."""
        return {
            "ewc_capped_entries": self.capped_entries,
            "ewc_max_curvature": self.max_curvature,
            "ewc_importance_skipped": list(self.skipped),
            **self.diagnostics.results(),
        }

    def state_bytes(self) -> int:
        """Bytes of the importance and anchor tensors held (does not grow with T in either mode)."""
        return self.quadratic.state_bytes()


@register_strategy("ewc", params=EWCParams)
def build_ewc(ctx: StrategyContext, params: EWCParams) -> SupervisedTemplate:
    """Elastic Weight Consolidation: Fisher-weighted pull of every parameter to earlier optima."""
    plugin = EWCPlugin(
        params,
        used_params=ctx.used_params,
        max_curvature=stable_curvature(params.max_curvature, ctx.training),
        adaptive=ctx.adaptive,
        seed=ctx.seed,
    )
    return ctx.build(plugins=[plugin])
