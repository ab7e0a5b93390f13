r"""The quadratic-regularizer core: one plugin, three parts, the machinery written once.

Every quadratic regularizer penalises, while experience t trains,

$$
\mathcal{L}(\theta) = \mathcal{L}_t(\theta) + s_t \sum_{i \in S_t} A_i \, (\theta_i - m_i)^2,
$$

and differs from the others only in three choices, each a part :class:`QuadraticRegularizer` is built from:

* an **importance estimator** (:class:`Estimator`): after an experience, the importance F^t of its model
  (EWC's minibatch Fisher, the exact or true Fisher, MAS's output sensitivity, a unit importance for L2, SI's path
  integral along the training steps, or a user's);
* an **anchor update** (:class:`AnchorUpdate`): how F^t and the weights enter what is stored (A, m) and the
  quadratic the next experience penalises (a sum of one quadratic per experience, online with decay, a running
  merge, the latest anchor per parameter, one quadratic per earlier model);
* a **parameter selection** S_t: ``all`` (EWC, MAS, SI) or ``shared``: the parameters the current model shares
  with earlier models (WPL, L2).

The core does the rest, the same way for every strategy built from it (ewc, si, mas, l2, wpl, wpl_online,
wpl_enas, and a plug-in's):

* the penalty's gradient ``2 s A (theta - m)`` goes straight into ``.grad`` when each backward pass ends
  (:meth:`~forgetbench.strategies.penalty.QuadraticAnchor.add_gradient`), over the tensors that can move this
  experience (:func:`~forgetbench.strategies.penalty.movable_subset`: an unused tensor at its anchor has an exactly
  zero term when nothing decays weights);
* ``max_curvature``: the penalty's curvature on weight i is 2 s A_i, and gradient descent with learning rate lr
  and momentum beta diverges on a quadratic once lr * curvature > 2 (1 + beta); ``auto`` caps it at
  (1 + beta) / (4 lr) under SGD, not at all under Adam (:func:`~forgetbench.strategies.penalty.stable_curvature`),
  a number caps it there, ``null`` never caps. The cap is the penalty's: the stored importance keeps its exact
  values. ``<prefix>_capped_entries`` counts the capped entries, summed over experiences;
* skipped passes: no importance pass runs where no later training could read it
  (:func:`~forgetbench.strategies.base.importance_needed`: after the last experience; after a model that shares
  no parameter with a later one, for a penalty on shared parameters; after a model that shares none with any
  other, for a penalty on every parameter when nothing decays weights). ``<prefix>_importance_skipped`` lists
  them; every number of the run is the same as with the pass;
* ``importance_norm: mean`` divides each F^t by its mean entry over the parameters its model used
  (:func:`~forgetbench.strategies.passes.normalise_importance`), so a strength means the same on a confident
  transformer as on an MNIST MLP;
* whether the penalty acts (:class:`~forgetbench.strategies.penalty.PenaltyDiagnostics`):
  ``<prefix>_penalty_to_data_gradient`` per experience, ``<prefix>_penalty_inert`` where it was below 0.01;
* the seconds of every importance pass (``timing.importance_seconds``), the state a checkpoint keeps for an exact
  resume (the parts' own and the core's), the bytes the regularizer holds (``memory.regularizer_bytes``).

A plug-in regularizer is a params model and a builder choosing parts (``docs/development.md`` has one in full)::

    class RWalkParams(StrategyParams):
        rwalk_lambda: NonNegativeFloat = strength(10.0)

    @register_strategy("rwalk_like", params=RWalkParams)
    def build(ctx, params):
        regularizer = QuadraticRegularizer.from_context(
            ctx, "rwalk_like", params.rwalk_lambda, FisherEstimate("minibatch"), OnlineQuadratic(decay=0.5),
            max_curvature="auto", reports=("capped", "skipped"))
        return ctx.build(plugins=[regularizer])
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Callable, Literal, Protocol, Sequence, cast, runtime_checkable

import torch
from torch import Tensor, nn

from forgetbench.strategies.base import StrategyContext, importance_needed, shared_params
from forgetbench.strategies.passes import IMPORTANCE_SECONDS, StackedPass, importance_pass, normalise_importance
from forgetbench.strategies.penalty import (
    PenaltyDiagnostics,
    QuadraticAnchor,
    movable_subset,
    named_params,
    stable_curvature,
)
from forgetbench.strategies.plugin import Plugin, generator_state, set_generator_state

Tensors = dict[str, Tensor]
Selection = Literal["all", "shared"]
Report = Literal["capped", "skipped"]


class Estimator(Protocol):
    """An importance estimator: F^t of the model just trained, ``name -> tensor`` (a missing name: importance 0).

    ``passes`` says which :func:`~forgetbench.strategies.base.importance_needed` rule may skip it: ``every`` (a
    penalty on every parameter), ``shared`` (on shared ones), ``never`` (it costs nothing: always run). The core
    times the call (``timing.importance_seconds``). An estimator that follows training (SI) defines
    ``before_experience(plugin, strategy)``, ``before_step(plugin)`` and ``after_step(plugin)`` too, and one that
    keeps state between experiences ``state_dict`` / ``load_state_dict`` / ``state_bytes``. Under a batch of seeds
    (:mod:`forgetbench.benchmark.run.batching`) one that makes a pass is a :class:`StackedEstimator` or says, when
    its regularizer is built, that each seed makes its own; one that follows training is a :class:`SteppedEstimator`
    to step once for all the seeds."""

    passes: Literal["every", "shared", "never"]

    def __call__(self, strategy: Any, used: frozenset[str] | None, generator: torch.Generator) -> Tensors: ...


@runtime_checkable
class StackedEstimator(Protocol):
    """An estimator whose pass a batch of seeds makes at once (:meth:`QuadraticRegularizer.lockstep_importance`):
    ``stacked_pass(strategy)`` names it (a pass of :mod:`forgetbench.strategies.passes`, the same one its own
    ``__call__`` runs; None where this experience's is not one, e.g. on a sample subset), ``finish(strategy, used,
    raw)`` is its estimate from the pass's raw importance."""

    def stacked_pass(self, strategy: Any) -> StackedPass | None: ...

    def finish(self, strategy: Any, used: frozenset[str] | None, raw: Tensors) -> Tensors: ...


@runtime_checkable
class SteppedEstimator(Protocol):
    """An estimator that follows the training steps (SI's path integral): ``before_step`` / ``after_step`` around
    each step of a seed's own run, and ``lockstep_steps(estimators, stacked_of)``, a classmethod giving the K seeds'
    step hooks of a batch as callbacks on the stacked tensors (None: each seed steps its own)."""

    def before_step(self, plugin: Any) -> None: ...

    def after_step(self, plugin: Any) -> None: ...

    @classmethod
    def lockstep_steps(
        cls, estimators: Sequence[Any], stacked_of: Callable[[list[Tensor]], list[Tensor]]
    ) -> dict[str, Callable[[Tensor], None]] | None: ...


_SAID_UNSTACKED: set[type] = set()


def _say_if_unstacked(estimator: Any) -> None:
    """Once per estimator class that makes a pass but is no :class:`StackedEstimator`: a warning that in a batch of
    seeds each seed makes its own pass (the faithful, slower way), rather than the batch quietly doing so."""
    kind = type(estimator)
    if getattr(estimator, "passes", "never") == "never" or isinstance(estimator, StackedEstimator):
        return
    if kind not in _SAID_UNSTACKED:
        _SAID_UNSTACKED.add(kind)
        warnings.warn(
            f"{kind.__name__} defines no stacked_pass and finish: in a batch of seeds each seed makes its own "
            "importance pass (docs/development.md, 'A regularizer under a batch of seeds')",
            stacklevel=3,
        )


class AnchorUpdate(Protocol):
    """What is stored between experiences and the quadratic an experience penalises.

    ``consolidate(importance, model)`` takes F^t (normalised) after an experience, with the model's weights as the
    new anchor; ``quadratic(model, selected)`` is this experience's penalty (``selected``: the names the selection
    allows, None for all); ``weight(models)`` multiplies the strategy's scale (a decay over models; 1 by default);
    ``state_dict`` / ``load_state_dict`` / ``state_bytes``: what a checkpoint keeps, and its bytes."""

    def consolidate(self, importance: Tensors, model: nn.Module) -> None: ...

    def quadratic(self, model: nn.Module, selected: frozenset[str] | None) -> QuadraticAnchor: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def state_bytes(self) -> int: ...


def experience_index(strategy: Any) -> int | None:
    """The experience the strategy is at (its stream's index, else Avalanche's clock), None when it says neither."""
    experience = getattr(getattr(strategy, "experience", None), "current_experience", None)
    if experience is not None:
        return int(experience)
    clock = getattr(strategy, "clock", None)
    return None if clock is None else int(clock.train_exp_counter)


class QuadraticRegularizer(Plugin):
    """A quadratic penalty from its parts (the module doc): ``prefix`` names its record keys, ``scale`` is s (a
    number, or a function of the models with an importance so far), ``reports`` the keys beyond the diagnostics
    it writes (``capped``: ``<prefix>_capped_entries`` / ``_max_curvature``; ``skipped``: ``_importance_skipped``).

    ``used_params`` / ``adaptive`` / ``seed`` / ``max_curvature``: the schedule, whether it grows while training,
    the importance passes' sampling seed, the resolved curvature cap; :meth:`from_context` reads them off a
    :class:`~forgetbench.strategies.base.StrategyContext`. ``start_after``: models that get no importance."""

    def __init__(
        self,
        prefix: str,
        scale: float | Callable[[int], float],
        estimator: Estimator,
        update: AnchorUpdate,
        *,
        selection: Selection = "all",
        used_params: Sequence[frozenset[str]] | None = None,
        adaptive: bool = False,
        seed: int = 0,
        max_curvature: float | None = None,
        importance_norm: str = "none",
        start_after: int = 0,
        reports: tuple[Report, ...] = (),
    ) -> None:
        super().__init__()
        self.prefix, self.estimator, self.update, self.selection = prefix, estimator, update, selection
        self._scale = scale
        self.used_params = used_params  # a live view: an adaptive schedule grows while training
        self.adaptive, self.max_curvature, self.importance_norm = adaptive, max_curvature, importance_norm
        self.start_after, self.reports = start_after, reports
        self.generator = torch.Generator().manual_seed(seed)
        self.diagnostics = PenaltyDiagnostics(prefix, used_params)  # did the penalty act, per experience
        self.skipped: list[int] = []  # experiences whose importance pass no later training could read
        self.capped_entries = 0  # entries max_curvature capped, summed over experiences
        self.models_seen = 0  # experiences trained
        self.models_trained = 0  # experiences whose importance entered the store
        self.quadratic = self._held()  # this experience's penalty
        self._params: list[Tensor] = []  # the tensors it acts on (those that can move)
        self._subset: list[int] | None = None
        self._all_params: list[Tensor] = []  # every tensor of the quadratic, in its names' order
        self._step_hooks = hasattr(estimator, "after_step")
        _say_if_unstacked(estimator)
        self._precomputed: tuple[Tensors, float] | None = (
            None  # this experience's importance, computed with other seeds
        )

    @classmethod
    def from_context(
        cls, ctx: StrategyContext, prefix: str, scale: Any, estimator: Estimator, update: AnchorUpdate, **options: Any
    ) -> "QuadraticRegularizer":
        """The regularizer on ``ctx``'s schedule and seed; ``options["max_curvature"]`` as a strategy's param says it
        (``auto``, a number or None: resolved against the suite's optimiser here)."""
        cap = stable_curvature(options.pop("max_curvature", None), ctx.training)
        return cls(
            prefix, scale, estimator, update, used_params=ctx.used_params, adaptive=ctx.adaptive, seed=ctx.seed,
            max_curvature=cap, **options,
        )  # fmt: skip

    # ------------------------------------------------------------------ the penalty
    @property
    def scale(self) -> float:
        """s while this experience trains."""
        return float(self._scale(self.models_trained) if callable(self._scale) else self._scale)

    @property
    def penalised_names(self) -> list[str]:
        """The parameters this experience's penalty covers."""
        return list(self.quadratic.names)

    def selected(self, index: int | None) -> frozenset[str] | None:
        """The names the selection allows at experience ``index`` (None: every one)."""
        if self.selection == "all" or self.used_params is None or index is None:
            return None
        return shared_params(self.used_params, index)

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        """This experience's quadratic, capped, on the tensors that can move."""
        index = experience_index(strategy)
        if hasattr(self.estimator, "before_experience"):
            self.estimator.before_experience(self, strategy)
        self.quadratic = self.update.quadratic(strategy.model, self.selected(index))
        self._params, self._subset, self._all_params = [], None, []
        if self.quadratic.empty:
            return
        scale = self.scale
        capping = self.max_curvature is not None and scale > 0
        # s A (theta - m)^2 has curvature 2 s A
        self.quadratic.penalize_at_most(self.max_curvature / (2 * scale) if capping else None)  # type: ignore[operator]
        self.capped_entries += self.quadratic.capped
        params = self._all_params = named_params(strategy.model, self.quadratic.names)
        used = self._used(strategy)  # unknown (None): every tensor stays in the penalty
        optimizer = getattr(strategy, "optimizer", None)
        self._subset = movable_subset(self.quadratic.names, self.quadratic.anchors, params, used, optimizer)
        self._params = params if self._subset is None else [params[i] for i in self._subset]
        if hasattr(self.estimator, "after_penalty"):
            self.estimator.after_penalty(self)

    def penalty(self) -> Tensor | float:
        """s sum_i A_i (theta_i - m_i)^2 as a differentiable scalar (0 without a penalty); its gradient is what
        :meth:`before_backward` adds to ``.grad`` every step."""
        return self.quadratic.penalty(self._params, self.scale, self._subset) if self._params else 0.0

    def before_backward(self, strategy: Any, **kwargs: Any) -> None:
        if self._params:
            strategy.loss = self.quadratic.add_gradient(strategy.loss, self._params, self.scale, self._subset)

    def after_backward(self, strategy: Any, **kwargs: Any) -> None:
        # the clock first: 99 steps in 100 are not looked at, and the experience's index, read through Avalanche's
        # scenario, costs microseconds a step (a batch of K seeds pays it K times)
        if self._params and self.diagnostics.looks_now(strategy) and experience_index(strategy) not in (None, 0):
            self.diagnostics.observe(strategy, self._params, self.penalty)

    def before_training_iteration(self, strategy: Any, **kwargs: Any) -> None:
        if self._step_hooks:
            self.estimator.before_step(self)  # type: ignore[attr-defined]

    def after_training_iteration(self, strategy: Any, **kwargs: Any) -> None:
        if self._step_hooks:
            self.estimator.after_step(self)  # type: ignore[attr-defined]

    @classmethod
    def lockstep(
        cls, plugins: Sequence["QuadraticRegularizer"], stacked_of: Callable[[list[Tensor]], list[Tensor]]
    ) -> dict[str, Callable[[Tensor], None]] | None:
        """The K seeds' penalties of a batch (:mod:`forgetbench.benchmark.run.batching`: one regularizer per seed,
        their weights stacked, ``stacked_of`` maps a seed's parameters to the stacked tensors) as one gradient add
        per step, ``grad += 2 s A (theta - m)`` on the stacked tensors: entry by entry the arithmetic of each seed's
        own :meth:`~forgetbench.strategies.penalty.GradientHook.add_now`. Over the union of the seeds' movable
        subsets (a supernet's seeds each train their own ops): a tensor outside a seed's subset sits exactly at its
        anchor and gets no data gradient, so its row's term adds exactly 0, as its own run, which leaves it out.
        An estimator that steps with training (SI's path integral) and has a ``lockstep_steps`` steps once too.
        None (each seed adds its own) where the seeds' penalties cover other tensors."""
        if not any(p._params for p in plugins):
            return {"before_backward": lambda losses: None}
        tensors = [stacked_of(p._all_params) for p in plugins]
        if not all(p._params for p in plugins) or any(
            [id(t) for t in ts] != [id(t) for t in tensors[0]] for ts in tensors
        ):
            return None
        subsets = [range(len(p._all_params)) if p._subset is None else p._subset for p in plugins]
        union = sorted(set().union(*subsets))
        hooks = [p.quadratic.gradient_hook([p._all_params[i] for i in union], p.scale, union) for p in plugins]
        with torch.no_grad():
            for hook, subset in zip(hooks, subsets):
                hook.prepare()
                outside = [n for n, i in enumerate(union) if i not in subset]
                if not all(
                    torch.equal(hook.params[n], hook.anchors[n]) and bool(torch.isfinite(hook.weights[n]).all())
                    for n in outside
                ):
                    return None
        weights = [torch.stack(rows) for rows in zip(*(hook.weights for hook in hooks))]
        anchors = [torch.stack(rows) for rows in zip(*(hook.anchors for hook in hooks))]
        params = [tensors[0][i] for i in union]

        @torch.no_grad()
        def add(losses: Tensor) -> None:
            grads = [p.grad for p in params]  # the stack keeps every stacked gradient allocated
            torch._foreach_addcmul_(cast(list[Tensor], grads), torch._foreach_sub(params, anchors), weights)

        together: dict[str, Callable[[Tensor], None]] = {"before_backward": lambda losses: None, "backward_end": add}
        estimator = plugins[0].estimator
        if isinstance(estimator, SteppedEstimator) and all(type(p.estimator) is type(estimator) for p in plugins):
            together |= type(estimator).lockstep_steps([p.estimator for p in plugins], stacked_of) or {}
        return together

    @classmethod
    def lockstep_importance(
        cls,
        plugins: Sequence["QuadraticRegularizer"],
        strategies: Sequence[Any],
        stacked_pass: Callable[[StackedPass], list[Tensors] | None],
    ) -> None:
        """Before the K seeds' regularizers of a batch (:mod:`forgetbench.benchmark.run.batching`) end an experience:
        where each would make its estimator's pass and the estimator names one the stack computes
        (``estimator.stacked_pass``: EWC's squared mini-batch gradients, WPL's exact Fisher, MAS's output
        sensitivity, over all the experience's samples in order), ``stacked_pass`` computes every seed's at once
        and each seed that makes the pass takes its own in :meth:`after_training_exp`, with its share of the seconds.
        One such seed's is also computed by its own pass (the experience's index picks which, so the experiences
        check the seeds in turn): the batch's are taken only where that one is bit for bit the same."""
        estimators = [p.estimator for p in plugins]
        if not all(isinstance(e, StackedEstimator) for e in estimators):
            return  # each seed makes its own pass (said when the regularizer was built)
        stacking = cast(list[StackedEstimator], estimators)
        passes = [e.stacked_pass(s) for e, s in zip(stacking, strategies)]
        if passes[0] is None or any(other != passes[0] for other in passes):
            return
        making = [k for k, (p, s) in enumerate(zip(plugins, strategies)) if p._makes_pass(s)]
        if not making:
            return
        begun = time.perf_counter()
        raw = stacked_pass(passes[0])
        if raw is None:
            return
        finish = [e.finish for e in stacking]
        found = {k: finish[k](strategies[k], plugins[k]._used(strategies[k]), raw[k]) for k in making}
        checked = making[(experience_index(strategies[making[0]]) or 0) % len(making)]
        plugin, strategy = plugins[checked], strategies[checked]
        own = plugin.estimator(strategy, plugin._used(strategy), plugin.generator)
        mine = found[checked]
        if list(own) != list(mine) or not all(torch.equal(own[n], mine[n]) for n in own):
            return  # the stack's arithmetic is not the seed's own here: every seed makes its own pass
        share = (time.perf_counter() - begun) / len(making)
        for k in making:
            plugins[k]._precomputed = (found[k], share)

    def _used(self, strategy: Any) -> frozenset[str] | None:
        """The parameters this experience's model uses (None: unknown)."""
        index = experience_index(strategy)
        if self.used_params is not None and index is not None and index < len(self.used_params):
            return self.used_params[index]
        return None

    def _makes_pass(self, strategy: Any) -> bool:
        """Whether :meth:`after_training_exp`, about to run, makes this experience's importance pass."""
        index = experience_index(strategy)
        return self.models_seen + 1 > self.start_after and (index is None or self.pass_needed(strategy, index))

    # --------------------------------------------------------------- the importance
    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        """Whether the penalty acted; then F^t (unless no later training reads it) into the store."""
        index = experience_index(strategy)
        if index in (None, 0) or self.quadratic.empty or not self._params:
            self.diagnostics.skip()
        else:
            self.diagnostics.measure(strategy, self._params, self.penalty)
        self.models_seen += 1
        if self.models_seen <= self.start_after:
            return
        used = self._used(strategy)
        precomputed, self._precomputed = self._precomputed, None
        if index is None or self.pass_needed(strategy, index):
            if precomputed is not None:  # computed with its other seeds' (lockstep_importance): its share of the time
                importance, seconds = precomputed
                setattr(strategy, IMPORTANCE_SECONDS, getattr(strategy, IMPORTANCE_SECONDS, 0.0) + seconds)
            else:
                with importance_pass(strategy):
                    importance = self.estimator(strategy, used, self.generator)
            importance = normalise_importance(importance, self.importance_norm, used)
        else:
            self.skipped.append(index)
            last = not self.adaptive and index + 1 >= len(self.used_params or ())
            if last and not getattr(self.update, "after_last", True):
                return  # nothing is trained after the last experience: an update may leave its store as it is
            importance = {}  # 0 wherever a later experience could read it (importance_needed)
        self.update.consolidate(importance, strategy.model)
        self.models_trained += 1

    def pass_needed(self, strategy: Any, index: int) -> bool:
        """Whether experience ``index``'s importance can change any later training (the estimator's rule)."""
        rule = getattr(self.estimator, "passes", "every")
        if rule == "never":
            return True
        optimizer = getattr(strategy, "optimizer", None)
        every = rule == "every"
        return importance_needed(
            self.used_params, index, adaptive=self.adaptive, every_parameter=every, optimizer=optimizer if every else None
        )  # fmt: skip

    # ------------------------------------------------------------------ the protocol
    def state_dict(self) -> dict[str, Any]:
        """The parts' state (importance, anchors, the estimator's running sums) and the core's: skipped passes,
        capped entries, counters, the sampling RNG, the diagnostics so far."""
        separate = self.estimator is not self.update  # one part may be both (SI's path integral)
        estimator_state: dict[str, Any] = getattr(self.estimator, "state_dict", dict)() if separate else {}
        return {
            "update": self.update.state_dict(),
            "estimator": estimator_state,
            "skipped": list(self.skipped),
            "capped_entries": self.capped_entries,
            "models_seen": self.models_seen,
            "models_trained": self.models_trained,
            "generator": generator_state(self.generator),
            "gradient_ratios": self.diagnostics.state_dict(),
        }

    def load_state_dict(self, state: Any) -> None:
        self.update.load_state_dict(state["update"])
        if hasattr(self.estimator, "load_state_dict") and self.estimator is not self.update:
            self.estimator.load_state_dict(state["estimator"])
        self.skipped = [int(i) for i in state["skipped"]]
        self.capped_entries = int(state["capped_entries"])
        self.models_seen, self.models_trained = int(state["models_seen"]), int(state["models_trained"])
        set_generator_state(self.generator, state["generator"])
        self.diagnostics.load_state_dict(state["gradient_ratios"])
        self.quadratic, self._params, self._subset, self._all_params = self._held(), [], None, []

    def _held(self) -> QuadraticAnchor:
        """Before an experience binds its penalty: the update's own quadratic where it keeps one (EWC's sum)."""
        held = getattr(self.update, "held", None)
        return held if isinstance(held, QuadraticAnchor) else QuadraticAnchor()

    def state_bytes(self) -> int:
        """Bytes of the tensors kept between experiences (importance, anchors, an estimator's running sums)."""
        own = getattr(self.estimator, "state_bytes", None) if self.estimator is not self.update else None
        return int(self.update.state_bytes() + (own() if own is not None else 0))

    def extra_results(self) -> dict[str, Any]:
        """The record keys: capped entries and the cap, skipped passes (as ``reports`` says), the diagnostics."""
        results: dict[str, Any] = {}
        if "capped" in self.reports:
            results[f"{self.prefix}_capped_entries"] = self.capped_entries
            results[f"{self.prefix}_max_curvature"] = self.max_curvature
        if "skipped" in self.reports:
            results[f"{self.prefix}_importance_skipped"] = list(self.skipped)
        return {**results, **self.diagnostics.results()}
