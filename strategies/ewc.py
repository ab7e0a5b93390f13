r"""``ewc``: Elastic Weight Consolidation (Kirkpatrick et al., PNAS 2017), Avalanche's maths, fast.

After experience k the diagonal importance F^k and the weights theta^k are stored. While training
experience t the loss is

$$
\mathcal{L}(\theta) = \mathcal{L}_t(\theta) + \lambda \sum_{k<t} \sum_i F^k_i \, (\theta_i - \theta^k_i)^2 \qquad \text{(separate)}
$$

$$
\mathcal{L}(\theta) = \mathcal{L}_t(\theta) + \lambda \sum_i \tilde F_i \, (\theta_i - \theta^{t-1}_i)^2 \qquad \text{(online)}
$$

with F~ <- decay_factor * F~ + F^{t-1} in online mode (Schwarz et al., 2018). As Avalanche's ``EWCPlugin``, F is
the mean over the experience's mini-batches (training batch size, dataset order, model in eval mode) of the squared
mini-batch gradient of the loss, every parameter is penalised, shared or not, and there is no penalty during the
first experience. Tests compare :class:`EWCPlugin` with ``avalanche.training.plugins.EWCPlugin``: the same numbers,
while the separate penalties are held as one quadratic (memory constant in the number of experiences) and tensors
that cannot move this experience are left out (:mod:`forgetbench.strategies.quadratic`, the core it is built from).

Parts: estimator :class:`~forgetbench.strategies.parts.FisherEstimate` (``importance``), anchor update
:class:`~forgetbench.strategies.parts.SumOfQuadratics` (separate) or
:class:`~forgetbench.strategies.parts.OnlineQuadratic` (online), selection ``all``.

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
as van de Ven & Tolias's code, whose lambda is 2 * ewc_lambda here). With ``exact`` and
ewc_lambda = alpha / 2, EWC and WPL differ only in *what* they penalise: EWC every parameter, WPL
only those the current model shares with earlier ones.
* ``max_curvature``: caps the penalty's curvature 2 lambda F_i per weight (``auto``: an eighth of what SGD can
take, none under Adam; ``null``: Avalanche's penalty exactly); ``ewc_capped_entries`` counts the capped entries.
* ``importance_samples``: how many of the experience's training samples the importance pass reads, a random
subset drawn with the run's seed (default: all of them, Avalanche's estimate).
* ``importance_norm``: ``none`` (default) or ``mean``: each F^k divided by its mean entry over the parameters its
model uses, so lambda means the same on a confident transformer (F ~ 1e-10) as on an MNIST MLP.

``ewc_importance_skipped`` lists the experiences whose pass no later training could read (none ran);
``ewc_penalty_to_data_gradient`` / ``ewc_penalty_inert`` say whether the penalty acted (the core's module doc).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Sequence

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator

from forgetbench.strategies.base import StrategyContext, StrategyParams, register_strategy, strength
from forgetbench.strategies.parts import FisherEstimate, OnlineQuadratic, SumOfQuadratics
from forgetbench.strategies.penalty import stable_curvature
from forgetbench.strategies.quadratic import QuadraticRegularizer

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


class EWCPlugin(QuadraticRegularizer):
    """EWC from the core's parts: ``params`` validated (:class:`EWCParams`), ``max_curvature`` resolved (None:
    Avalanche's penalty), the schedule ``used_params`` (optional) and ``adaptive``, ``seed`` for the samples."""

    def __init__(
        self,
        params: EWCParams,
        used_params: Sequence[frozenset[str]] | None = None,
        max_curvature: float | None = None,
        adaptive: bool = False,
        seed: int = 0,
    ):
        estimate = FisherEstimate(params.importance, params.importance_samples, params.estimator)
        online = params.mode == "online"
        update = (
            OnlineQuadratic(1.0 if params.decay_factor is None else params.decay_factor)
            if online
            else SumOfQuadratics()
        )
        super().__init__(
            "ewc", params.ewc_lambda, estimate, update, used_params=used_params, adaptive=adaptive, seed=seed,
            max_curvature=max_curvature, importance_norm=params.importance_norm, reports=("capped", "skipped"),
        )  # fmt: skip
        self.ewc_lambda = float(params.ewc_lambda)


@register_strategy("ewc", params=EWCParams)
def build_ewc(ctx: StrategyContext, params: EWCParams) -> SupervisedTemplate:
    """Elastic Weight Consolidation: Fisher-weighted pull of every parameter to earlier optima."""
    cap = stable_curvature(params.max_curvature, ctx.training)
    return ctx.build(plugins=[EWCPlugin(params, ctx.used_params, cap, ctx.adaptive, ctx.seed)])
