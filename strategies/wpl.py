r"""``wpl``: Weight Plasticity Loss (Benyahia, Yu et al., "Overcoming Multi-Model Forgetting", ICML 2019).

Models A = (theta_1, theta_s) and B = (theta_2, theta_s) share theta_s; a Laplace approximation of A's posterior
with a diagonal Fisher gives, while training B,

$$
\mathcal{L}(\theta_B) = \mathcal{L}_B(\theta_B) + \frac{\alpha}{2} \sum_{i \in \text{shared}} F_i \, (\theta_i - \hat\theta_i)^2
$$

where ``shared`` are the parameters the current model uses **and** some earlier model used, F_i the diagonal
Fisher of the earlier model(s) on their own data and theta_hat the shared weights after the earlier model was
trained; nothing else is penalised. For many models (weight-sharing NAS) F accumulates each model's F^t:

    sum: F <- F + F^t;   max: F <- max(F, F^t);   momentum: F <- (1 - m) F + m F^t   (the authors' code)

* ``alpha`` (>= 0): the penalty's weight.
* ``fisher_batch_size``: samples per pass of the exact Fisher (default: the training batch size; same F).
* ``fisher_samples``: how many of the model's training samples estimate F (default: all).
* ``estimator``: ``empirical`` (observed labels), ``true`` (labels sampled from the model) or ``predicted`` (its
  most likely label): F is the exact mean of squared per-sample gradients (:mod:`forgetbench.strategies.importance`).
* ``anchor``: ``latest`` (one running F, theta_hat the weights after the latest model that used each parameter)
  or ``per_model``: sum_k (alpha/2) sum_{i shared with k} F^k_i (theta_i - theta^k_i)^2 (memory grows with T).
* ``fisher``: ``exact`` (above) or ``minibatch``: EWC's estimate, squared mini-batch gradients (one backward pass
  a batch, but squaring a batch *mean* underestimates F by about the batch size).
* ``importance_norm``: ``mean`` divides each F^t by its mean entry over the parameters its model uses (as ewc's).
* ``max_curvature``: caps the curvature alpha F_i per weight (``auto``: the core's; ``null``: never).

``wpl_online`` (the authors' online Fisher, a search's schedule) and ``wpl_enas`` (their per-update scaling) are
:class:`WPLPlugin` too: the quadratic core with the parts their params choose (``estimate()``, ``update()``), here
:class:`~forgetbench.strategies.parts.FisherEstimate`, :class:`~forgetbench.strategies.parts.RunningImportance` in
a :class:`~forgetbench.strategies.parts.LatestAnchor` (or ``PerModelAnchors``), selection ``shared``.
``wpl_importance_skipped``: models no later model shares a parameter with (no pass ran).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal, Sequence

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator

from forgetbench.benchmark.core import migrations
from forgetbench.strategies.base import StrategyContext, StrategyParams, register_strategy, shared_params, strength
from forgetbench.strategies.importance import Estimator
from forgetbench.strategies.parts import FisherEstimate, LatestAnchor, PerModelAnchors, RunningImportance, Tensors
from forgetbench.strategies.parts import accumulate as accumulate, clip_to_norm as clip_to_norm  # noqa: F401
from forgetbench.strategies.penalty import stable_curvature
from forgetbench.strategies.quadratic import QuadraticRegularizer

if TYPE_CHECKING:  # Avalanche is imported when training starts, never to read this strategy's params
    from avalanche.training.templates import SupervisedTemplate


class WPLParams(StrategyParams):
    alpha: NonNegativeFloat = strength(300.0)
    fisher_samples: PositiveInt | None = None
    estimator: Estimator = "empirical"
    accumulate: Literal["sum", "max", "momentum"] = "sum"  # how F^t enters the running importance (above)
    momentum: float = Field(0.9, gt=0.0, le=1.0)  # m of the momentum rule (above)
    anchor: Literal["latest", "per_model"] = "latest"
    fisher_batch_size: PositiveInt | None = None  # None: the training batch size
    max_curvature: Literal["auto"] | PositiveFloat | None = "auto"
    fisher: Literal["exact", "minibatch"] = "exact"
    importance_norm: Literal["none", "mean"] = "none"
    retired_defaults: ClassVar[dict[str, Any]] = migrations.WPL_RETIRED_DEFAULTS  # old records' keys: this maths
    start_after: ClassVar[int] = 0  # every model gets a Fisher (wpl_online's schedule may wait)

    @model_validator(mode="before")
    @classmethod
    def _variants_have_their_own_names(cls, data: Any) -> Any:
        return migrations.wpl_params_today(data)

    def estimate(self) -> FisherEstimate:
        """How F^t is estimated after each model: the exact Fisher (or EWC's minibatch estimate), on what it used."""
        return FisherEstimate(
            self.fisher, self.fisher_samples, self.estimator, self.fisher_batch_size, "used", "shared"
        )

    def update(self) -> RunningImportance:
        """How F^t enters the stored importance: ``accumulate`` once per experience, weighted by alpha."""
        return RunningImportance(self.alpha, self.accumulate, self.momentum)


class WPLPlugin(QuadraticRegularizer):
    """WPL from ``params``' parts (:class:`WPLParams` or a variant's); ``params.start_after`` models get none."""

    def __init__(
        self, params: Any, used_params: Sequence[frozenset[str]], seed: int = 0, max_curvature: float | None = None,
        adaptive: bool = False,
    ):  # fmt: skip
        estimate, rule = params.estimate(), params.update()
        store = PerModelAnchors if getattr(params, "anchor", "latest") == "per_model" else LatestAnchor
        super().__init__(
            "wpl", lambda models: 0.5 * float(rule.weight(models)), estimate, store(rule, estimate),
            selection="shared", used_params=used_params, adaptive=adaptive, seed=seed, max_curvature=max_curvature,
            importance_norm=getattr(params, "importance_norm", "none"), start_after=int(params.start_after),
            reports=("capped", "skipped"),
        )  # fmt: skip

    importance = property(lambda self: self.update.importance, doc="latest: the running F")
    anchor = property(lambda self: self.update.anchor, doc="latest: theta_hat")
    per_model = property(lambda self: getattr(self.update, "per_model", []), doc="per_model: (F^k, theta^k)")
    _alpha = property(lambda self: 2 * self.scale, doc="the penalty's weight while the current model trains")

    def shared_names(self, index: int) -> set[str]:
        """Parameters model ``index`` uses that an earlier model used too and that hold an importance."""
        return set(shared_params(self.used_params or (), index) & self.update.held_names())  # type: ignore[attr-defined]

    def model_fisher(self, strategy: Any, used: frozenset[str]) -> Tensors:
        return self.estimator(strategy, used, self.generator)  # type: ignore[no-any-return]


def build_with(ctx: StrategyContext, params: Any) -> SupervisedTemplate:  # wpl, wpl_online and wpl_enas
    cap = stable_curvature(params.max_curvature, ctx.training)
    return ctx.build(plugins=[WPLPlugin(params, ctx.used_params, ctx.seed, cap, ctx.adaptive)])


@register_strategy("wpl", params=WPLParams)
def build_wpl(ctx: StrategyContext, params: WPLParams) -> SupervisedTemplate:
    """Weight plasticity loss: exact-Fisher quadratic penalty on shared parameters only (Benyahia et al. 2019)."""
    return build_with(ctx, params)
