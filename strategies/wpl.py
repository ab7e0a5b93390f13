r"""``wpl``: Weight Plasticity Loss (Benyahia, Yu et al., "Overcoming Multi-Model Forgetting", ICML 2019).

Models A = (theta_1, theta_s) and B = (theta_2, theta_s) share theta_s. A Laplace approximation of A's
posterior with a diagonal Fisher gives, while training B,

$$
\mathcal{L}(\theta_B) = \mathcal{L}_B(\theta_B) + \frac{\alpha}{2} \sum_{i \in \text{shared}} F_i \, (\theta_i - \hat\theta_i)^2
$$

where ``shared`` are the parameters the current model uses **and** some earlier model used,
F_i the diagonal Fisher of the earlier model(s) on their own data and theta_hat the shared weights
after the earlier model was trained. B's private weights move freely; parameters no earlier model
used, and earlier models' private weights, get no penalty. For many models (weight-sharing NAS) the
importance is accumulated after each model t with its Fisher F^t:

    sum:       F <- F + F^t
    max:       F <- max(F, F^t)
    momentum:  F <- (1 - m) F + m F^t          (the authors' code; m = ``momentum``, default 0.9)

Options:

* ``alpha`` (>= 0): the penalty's weight.
* ``fisher_batch_size``: samples per forward pass of the exact Fisher (default: the training batch size; the result
  changes only by float rounding). On a CPU a smaller pass keeps the activations in cache, on a GPU a larger one
  may fill the device better (docs/studies/performance.md has the figures).
* ``fisher_samples``: how many of the model's training samples estimate F (default: all of them).
* ``estimator``: ``empirical`` (observed labels), ``true`` (labels sampled from the model) or
  ``predicted`` (the model's most likely label).
  F is the exact mean of squared per-sample gradients (see :mod:`forgetbench.strategies.importance`).
* ``accumulate``, ``momentum``: how F^t enters the running importance (above).
* ``anchor``: ``latest`` keeps one running importance F and one anchor theta_hat, the weights after the
  latest model that used each parameter (memory constant in the number of models); ``per_model``
  keeps (F^k, theta^k) for every earlier model k and penalises
  sum_k (alpha/2) sum_{i in used_now and used_k} F^k_i (theta_i - theta^k_i)^2 (memory grows with T;
  ``accumulate`` does not apply).
* ``fisher``: ``exact`` (above: after each model, the exact Fisher on ``fisher_samples`` of its data) or
  ``minibatch``: EWC's (Avalanche's) estimate, F^t = the mean over the mini-batches of ``fisher_samples`` of the
  model's training samples (all by default; training batch size) of the squared mini-batch gradient of the loss,
  accumulated and anchored as ``exact``: a batch's gradients cost one backward pass where the exact Fisher
  forms every sample's, but squaring a batch *mean* underestimates F by about the batch size
  (:func:`forgetbench.strategies.importance.squared_gradient_importance`, the one function both call).
* ``importance_norm``: ``none`` (default) or ``mean``: each model's F^t divided by its mean entry over the
  parameters the model uses before it is accumulated (:func:`forgetbench.strategies.importance.normalise_importance`),
  so alpha means the same on a confident transformer (F ~ 1e-10) as on an MNIST MLP. ``wpl_penalty_to_data_gradient``
  in the result gives, per model, ||grad penalty|| / ||grad data loss|| on its last training batch, and
  ``wpl_penalty_inert`` the models where it was below 0.01 (the penalty too small to act).

Two variants are their own strategies: ``wpl_online`` (:mod:`forgetbench.strategies.wpl_online`) estimates F^t
online as the authors' ENAS code does, cheap enough for a search that trains a new architecture every few steps,
with its schedule (``start_after``, ``reset_every``, ``alpha_decay``, ``clip_norm``); ``wpl_enas``
(:mod:`forgetbench.strategies.wpl_enas`) also scales the stored estimate by alpha at every update, as that code does
(another penalty for the same alpha). All three are one :class:`WPLPlugin` put together from two parts their params
choose (``estimate()``, ``update()``): how F^t is estimated after a model (:class:`ExactFisher` here, the online
estimate in ``wpl_online``) and how it enters the stored importance (:class:`RunningImportance` here and in
``wpl_online``: once per experience, weighted by alpha; the ENAS per-update scaling in ``wpl_enas``).

* ``max_curvature``: the penalty's curvature on weight i is alpha_t * F_i, and gradient descent
  diverges on a quadratic that is too steep for its learning rate (an undertrained earlier model's
  Fisher entries can exceed 1). ``auto`` (default) caps alpha_t * F_i at
  :func:`forgetbench.strategies.penalty.stable_curvature`, (1 + beta) / (4 lr) under SGD (no cap under Adam),
  by clamping F_i (anchors unchanged: every weight below the cap is penalised exactly as in the
  equation); a number caps it there; ``null`` never caps (the paper's penalty exactly). The result
  keys ``wpl_capped_entries`` (summed over experiences) and ``wpl_max_curvature`` say what was capped.

No Fisher pass runs after a model that shares no parameter with any *later* model (when the schedule is known:
:func:`forgetbench.strategies.base.importance_needed`), the last one included: no later penalty would read it.
``wpl_importance_skipped`` in the result lists those experiences. A skipped pass draws no Fisher samples, so with
``fisher_samples`` the passes after it read other samples than they would in a run that cannot skip (an adaptive
schedule, whose later turns are unknown): the same estimator, another draw.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal, Sequence

import torch
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator

from forgetbench.benchmark.core import migrations
from forgetbench.strategies.base import StrategyContext, StrategyParams, register_strategy, strength
from forgetbench.strategies.importance import Estimator, experience_importance, normalise_importance
from forgetbench.strategies.base import importance_needed, shared_params
from forgetbench.strategies.penalty import (
    QuadraticAnchor,
    named_params,
    PenaltyDiagnostics,
    stable_curvature,
)
from forgetbench.strategies.plugin import Plugin, detached, generator_state, set_generator_state, tensor_bytes

if TYPE_CHECKING:  # Avalanche is imported when training starts, never to read this strategy's params
    from avalanche.training.templates import SupervisedTemplate

Tensors = dict[str, torch.Tensor]


class WPLParams(StrategyParams):
    alpha: NonNegativeFloat = strength(300.0)
    fisher_samples: PositiveInt | None = None
    estimator: Estimator = "empirical"
    accumulate: Literal["sum", "max", "momentum"] = "sum"
    momentum: float = Field(0.9, gt=0.0, le=1.0)
    anchor: Literal["latest", "per_model"] = "latest"
    fisher_batch_size: PositiveInt | None = None  # None: the training batch size
    max_curvature: Literal["auto"] | PositiveFloat | None = "auto"
    fisher: Literal["exact", "minibatch"] = "exact"
    importance_norm: Literal["none", "mean"] = "none"

    # keys that moved to a variant of their own (wpl_enas: the per-update scaling; wpl_online: the online estimate
    # and its schedule): records written before hold them at these defaults, which still name this strategy's maths
    retired_defaults: ClassVar[dict[str, Any]] = {
        "alpha_mode": "equation",
        "alpha_linear_decay": 0.0,
        "alpha_decay_after": 0,
        "alpha_decay": 1.0,
        "clip_norm": None,
        "reset_every": None,
        "start_after": 0,
        "fisher_batches": 1,
    }
    moved_to: ClassVar[dict[str, str]] = {
        "alpha_mode": "wpl_enas",
        "alpha_linear_decay": "wpl_enas",
        "alpha_decay_after": "wpl_enas",
    }  # the others: wpl_online

    @model_validator(mode="before")
    @classmethod
    def _variants_have_their_own_names(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        moved = migrations.moved_params(data, cls.retired_defaults)
        moved += ["fisher: online"] if data.get("fisher") == "online" else []
        if moved:
            where = sorted({cls.moved_to.get(key, "wpl_online") for key in moved})
            raise ValueError(
                f"{', '.join(moved)}: {' and '.join(where)} now (name: {where[0]}): wpl_online is the authors' online "
                "Fisher with its schedule (alpha, fisher_batches, accumulate, momentum, clip_norm, reset_every, "
                "start_after, alpha_decay, max_curvature, importance_norm), wpl_enas their per-update scaling too; "
                "wpl is the paper's equation"
            )
        return migrations.without_keys(data, cls.retired_defaults)

    start_after: ClassVar[int] = 0  # every model gets a Fisher (wpl_online's schedule may wait)

    def estimate(self) -> ExactFisher:
        """How F^t is estimated after each model: the exact Fisher (or EWC's minibatch estimate)."""
        return ExactFisher(self.fisher, self.fisher_samples, self.estimator, self.fisher_batch_size)

    def update(self) -> RunningImportance:
        """How F^t enters the stored importance: ``accumulate`` once per experience, weighted by alpha."""
        return RunningImportance(self.alpha, self.accumulate, self.momentum)


class ExactFisher:
    """F^t of ``fisher: exact`` or ``minibatch`` (EWC's estimator) on ``samples`` of the model's training samples
    (:func:`~forgetbench.strategies.importance.experience_importance`), on the trainable parameters it used."""

    def __init__(self, fisher: str, samples: int | None, estimator: Estimator, batch_size: int | None) -> None:
        self.fisher, self.samples, self.estimator, self.batch_size = fisher, samples, estimator, batch_size

    def __call__(self, strategy: Any, used: frozenset[str], generator: torch.Generator) -> tuple[Tensors, set[str]]:
        """(F^t, the used tensors the data loss gave no gradient: none it knows of)."""
        fisher = experience_importance(
            strategy,
            "exact" if self.fisher == "exact" else "minibatch",
            self.samples,
            generator,
            self.estimator,
            self.batch_size,
        )
        trainable = {n for n, p in strategy.model.named_parameters() if p.requires_grad}
        return {n: f for n, f in fisher.items() if n in used and n in trainable}, set()


class RunningImportance:
    """The paper's update, once per experience: F <- accumulate(F, F^t) (sum, max or momentum), zeroed before every
    ``reset_every``-th model, each tensor rescaled to at most ``clip_norm``; the penalty weighted by
    alpha x alpha_decay^(t-1) while model t trains (``wpl``: no reset, no clip, no decay)."""

    def __init__(
        self,
        alpha: float,
        rule: str,
        momentum: float,
        decay: float = 1.0,
        reset_every: int | None = None,
        clip_norm: float | None = None,
    ) -> None:
        self.alpha, self.rule, self.momentum, self.decay = alpha, rule, momentum, decay
        self.reset_every, self.clip_norm = reset_every, clip_norm

    def weight(self, models_trained: int) -> float:
        """The penalty's weight while training the next model (``models_trained`` have a Fisher)."""
        return self.alpha * self.decay ** (max(models_trained, 1) - 1)

    def add(self, importance: Tensors, fisher: Tensors, no_gradient: set[str], models_trained: int) -> Tensors:
        """The stored importance after model ``models_trained``'s F^t (0-based among the models with a Fisher)."""
        if self.reset_every and models_trained % self.reset_every == 0:
            importance = {}
        importance = accumulate(importance, fisher, self.rule, self.momentum)
        if self.clip_norm is not None:
            importance.update({n: clip_to_norm(importance[n], self.clip_norm) for n in fisher})
        return importance


class WPLPlugin(Plugin):
    """Fisher-weighted quadratic penalty on the parameters shared with earlier models only, put together from its
    params' parts: ``params.estimate()`` (how F^t is estimated) and ``params.update()`` (how it enters the stored
    importance, and the penalty's weight); ``params.start_after`` models get neither."""

    def __init__(
        self,
        params: Any,
        used_params: Sequence[frozenset[str]],
        seed: int = 0,
        max_curvature: float | None = None,
        adaptive: bool = False,
    ):
        """``params``: :class:`WPLParams` or a variant's (``wpl_online``, ``wpl_enas``); ``adaptive``: the schedule
        grows while training (a search), so every model's importance is computed
        (see :func:`~forgetbench.strategies.base.importance_needed`)."""
        super().__init__()
        self.estimate, self.update = params.estimate(), params.update()
        self.anchor_kind: str = getattr(params, "anchor", "latest")
        self.start_after: int = int(params.start_after)
        self.importance_norm: str = getattr(params, "importance_norm", "none")
        self._no_gradient: set[str] = set()  # used tensors the data loss gave no gradient (an update may reset them)
        self.adaptive = adaptive
        self.skipped: list[int] = []  # experiences whose importance no later model could read
        self.diagnostics = PenaltyDiagnostics("wpl", used_params)  # did the penalty act, per experience
        self.max_curvature = max_curvature  # resolved: a number or None
        self.capped_entries = 0  # importance entries capped by max_curvature, over all experiences
        self.used_params = used_params  # a live view: an adaptive schedule grows while training
        self.generator = torch.Generator().manual_seed(seed)
        self.models_trained = 0  # models whose Fisher entered the importance
        self.models_seen = 0  # every model trained, including the first start_after
        self.importance: Tensors = {}  # latest: running F
        self.anchor: Tensors = {}  # latest: theta_hat
        self.per_model: list[tuple[Tensors, Tensors]] = []  # per_model: (F^k, theta^k)
        self._quadratic = QuadraticAnchor()
        self._params: list[torch.Tensor] = []
        self._alpha = 0.0

    # ----------------------------------------------------------------- penalty
    def shared_names(self, experience_index: int) -> set[str]:
        """Parameters the model of ``experience_index`` uses that an earlier model used too and
        that hold an importance (after ``reset_every`` only those since the reset)."""
        held = (
            self.importance.keys()
            if self.anchor_kind == "latest"
            else set().union(*(f.keys() for f, _ in self.per_model))
        )
        return set(shared_params(self.used_params, experience_index) & held)

    def before_training_exp(self, strategy, **kwargs) -> None:
        """Assemble this experience's penalty as one quadratic over its shared parameters.

        per_model's sum over earlier models is itself one quadratic (completing the square,
        :meth:`QuadraticAnchor.add`), so both anchors cost one fused pass per step.
        """
        index = strategy.experience.current_experience
        shared = self.shared_names(index)
        sources = [(self.importance, self.anchor)] if self.anchor_kind == "latest" else self.per_model
        names = [n for n, _ in strategy.model.named_parameters() if n in shared]
        self._quadratic = QuadraticAnchor()
        for fisher, anchor in sources if names else ():
            self._quadratic.add(
                {n: fisher[n] if n in fisher else torch.zeros_like(self._like(sources, n)) for n in names},
                {n: anchor[n] if n in anchor else self._like(sources, n) for n in names},
            )
        self._params = named_params(strategy.model, self._quadratic.names)
        self._alpha = self.penalty_weight()
        if self.max_curvature is not None and self._alpha > 0 and not self._quadratic.empty:
            # the penalty is (alpha/2) sum A (theta - m)^2: its curvature per weight is alpha * A
            self._quadratic.penalize_at_most(self.max_curvature / self._alpha)
            self.capped_entries += self._quadratic.capped

    def penalty_weight(self) -> float:
        """The penalty's weight while training the next model (the update's: alpha, decayed or 1)."""
        return float(self.update.weight(self.models_trained))

    @staticmethod
    def _like(sources, name: str) -> torch.Tensor:
        return next(anchor[name] for _, anchor in sources if name in anchor)

    @property
    def penalised_names(self) -> list[str]:
        """The parameters the current experience's penalty covers (shared with earlier models)."""
        return list(self._quadratic.names)

    def penalty(self) -> torch.Tensor | float:
        """(alpha/2) sum F (theta - theta_hat)^2 over the current experience's shared parameters."""
        if self._quadratic.empty:
            return 0.0
        return self._quadratic.penalty(self._params, scale=0.5 * self._alpha)

    def before_backward(self, strategy, **kwargs) -> None:
        if not self._quadratic.empty:
            strategy.loss = self._quadratic.add_gradient(strategy.loss, self._params, scale=0.5 * self._alpha)

    def after_backward(self, strategy, **kwargs) -> None:
        if not self._quadratic.empty:
            self.diagnostics.observe(strategy, self._params, self.penalty)

    # -------------------------------------------------------------- importance
    def after_training_exp(self, strategy, **kwargs) -> None:
        if self._quadratic.empty:
            self.diagnostics.skip()
        else:
            self.diagnostics.measure(strategy, self._params, self.penalty)
        self.models_seen += 1
        if not self.estimates_this_model():
            return
        index = strategy.experience.current_experience
        used = self.used_params[index]
        if not importance_needed(self.used_params, index, adaptive=self.adaptive):
            self.skipped.append(index)
            fisher = {}  # no later model shares a parameter with this one: nothing would read its Fisher
        else:
            fisher = self.model_fisher(strategy, used)
        fisher = normalise_importance(fisher, self.importance_norm, used)
        weights = {n: p.detach().clone() for n, p in strategy.model.named_parameters() if n in fisher}
        self.add_importance(fisher, weights)

    def estimates_this_model(self) -> bool:
        """Whether the model just trained gets a Fisher: every one after the first ``start_after``."""
        return self.models_seen > self.start_after

    def add_importance(self, fisher: Tensors, weights: Tensors) -> None:
        """Model t's F^t and weights into the stored importance (the update's rule) and the anchor; ``per_model``
        keeps every model's pair instead."""
        if self.anchor_kind == "per_model":
            self.models_trained += 1
            self.per_model.append((fisher, weights))
            return
        self.importance = self.update.add(self.importance, fisher, self._no_gradient, self.models_trained)
        self.models_trained += 1
        self.anchor.update(weights)

    def model_fisher(self, strategy, used: frozenset[str]) -> Tensors:
        """F^t of the model just trained, on the trainable parameters it used (the estimate's)."""
        fisher, self._no_gradient = self.estimate(strategy, used, self.generator)
        return fisher

    def state_dict(self) -> dict:
        """Fisher and anchor (running, or per earlier model), models trained, the sampling RNG."""
        return {
            "models_trained": self.models_trained,
            "models_seen": self.models_seen,
            "importance": detached(self.importance),
            "anchor": detached(self.anchor),
            "per_model": [[detached(f), detached(a)] for f, a in self.per_model],
            "generator": generator_state(self.generator),
            "capped_entries": self.capped_entries,
            "skipped": list(self.skipped),
            "gradient_ratios": self.diagnostics.state_dict(),
        }

    def load_state_dict(self, state) -> None:
        self.models_trained = int(state["models_trained"])
        self.models_seen = int(state.get("models_seen", self.models_trained))
        self.importance = dict(state["importance"])
        self.anchor = dict(state["anchor"])
        self.per_model = [(dict(f), dict(a)) for f, a in state["per_model"]]
        set_generator_state(self.generator, state["generator"])
        self.capped_entries = int(state.get("capped_entries", 0))
        self.skipped = [int(i) for i in state.get("skipped", [])]
        self.diagnostics.load_state_dict(state.get("gradient_ratios", []))
        self._quadratic, self._params = QuadraticAnchor(), []

    def extra_results(self) -> dict:
        """How many importance entries ``max_curvature`` capped (summed over experiences); the experiences whose
        Fisher pass was skipped because no later model shares a parameter with them."""
        return {
            "wpl_capped_entries": self.capped_entries,
            "wpl_max_curvature": self.max_curvature,
            "wpl_importance_skipped": list(self.skipped),
            **self.diagnostics.results(),
        }

    def state_bytes(self) -> int:
        """Bytes of the Fisher and anchor tensors kept (the RNG state is not regularizer memory)."""
        state = self.state_dict()
        return tensor_bytes([state["importance"], state["anchor"], state["per_model"]])


def accumulate(running: Tensors, new: Tensors, rule: str, momentum: float) -> Tensors:
    """F after model t's F^t enters the running importance by ``rule`` (sum, max or momentum: the module doc)."""
    out = dict(running)
    for name, f in new.items():
        old = running.get(name)
        if old is None:
            out[name] = momentum * f if rule == "momentum" else f.clone()
        elif rule == "sum":
            out[name] = old + f
        elif rule == "max":
            out[name] = torch.maximum(old, f)
        else:
            out[name] = (1 - momentum) * old + momentum * f
    return out


def clip_to_norm(fisher: torch.Tensor, max_norm: float) -> torch.Tensor:
    """``fisher`` rescaled to Frobenius norm ``max_norm`` when its norm exceeds it."""
    norm = torch.linalg.vector_norm(fisher)
    return fisher * (max_norm / norm) if norm > max_norm else fisher


def build_with(ctx: StrategyContext, params: Any) -> SupervisedTemplate:
    """The strategy with the :class:`WPLPlugin` of ``params`` (its seed, schedule and curvature cap from ``ctx``)."""
    cap = stable_curvature(params.max_curvature, ctx.training)
    return ctx.build(
        plugins=[WPLPlugin(params, ctx.used_params, seed=ctx.seed, max_curvature=cap, adaptive=ctx.adaptive)]
    )


@register_strategy("wpl", params=WPLParams)
def build_wpl(ctx: StrategyContext, params: WPLParams) -> SupervisedTemplate:
    """Weight plasticity loss: exact-Fisher quadratic penalty on shared parameters only (Benyahia et al. 2019)."""
    return build_with(ctx, params)
