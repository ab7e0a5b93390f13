"""The parts a :class:`~forgetbench.strategies.quadratic.QuadraticRegularizer` is built from (typed by the protocols
there): importance estimators and anchor updates. A strategy file chooses them; a plug-in may use them as they are.

Estimators: :class:`FisherEstimate` (Avalanche's minibatch Fisher, the exact / true / predicted-label Fisher),
:class:`OutputSensitivity` (MAS), :class:`UnitImportance` (L2), :class:`PathIntegral` (SI: an estimator that
follows the training steps, and its own anchor update).

Anchor updates: :class:`SumOfQuadratics` (EWC's separate penalties as one quadratic), :class:`OnlineQuadratic`
(EWC online: F~ <- decay F~ + F, anchored at the latest weights), :class:`RunningMerge` (MAS: Omega <- alpha Omega +
(1 - alpha) Omega^t), :class:`LatestAnchor` (WPL: a running importance by a rule, each parameter anchored after the
latest model that used it), :class:`PerModelAnchors` (WPL's ``per_model``: one quadratic per earlier model),
:class:`UnitAnchor` (L2: importance 1, the latest weights).
"""

from __future__ import annotations

from typing import Any, Callable, Literal, Protocol, Sequence, cast

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _NormBase

from forgetbench.benchmark.data.loaders import TensorBatchLoader, dataset_tensors
from forgetbench.strategies.importance import Estimator as FisherLabels
from forgetbench.strategies.passes import (
    OUTPUT_SENSITIVITY,
    SQUARED_GRADIENTS,
    ExactFisherPass,
    StackedPass,
    experience_importance,
    minibatch_step,
    sample_subset,
)
from forgetbench.strategies.penalty import QuadraticAnchor
from forgetbench.strategies.plugin import detached, tensor_bytes

Tensors = dict[str, Tensor]
Passes = Literal["every", "shared", "never"]


def zeros_for(model: nn.Module, importance: Tensors, names: list[str] | None = None) -> Tensors:
    """``importance`` on every one of ``names`` (default: the model's parameters), 0 where it has no entry."""
    params = dict(model.named_parameters())
    return {n: importance[n] if n in importance else torch.zeros_like(params[n]) for n in names or list(params)}


# ------------------------------------------------------------------------------------------------- estimators
class FisherEstimate:
    """F^t on ``samples`` of the experience's training samples (all by default, drawn with the run's seed):
    ``minibatch``, Avalanche's squared mini-batch gradients, or ``exact``, the mean of squared per-sample gradients
    with ``labels`` observed (empirical), drawn from the model (true) or its most likely (predicted)
    (:func:`~forgetbench.strategies.passes.experience_importance`). ``on``: ``model`` (every parameter, 0 where
    no gradient reached) or ``used`` (the trainable parameters the model used, for a penalty on shared ones)."""

    def __init__(
        self,
        kind: Literal["minibatch", "exact"] = "minibatch",
        samples: int | None = None,
        labels: FisherLabels = "empirical",
        batch_size: int | None = None,
        on: Literal["model", "used"] = "model",
        passes: Passes = "every",
    ) -> None:
        self.kind, self.samples, self.labels, self.batch_size = kind, samples, labels, batch_size
        self.on, self.passes = on, passes

    def stacked_pass(self, strategy: Any) -> StackedPass | None:
        """The pass a batch of seeds computes for all of them at once (QuadraticRegularizer.lockstep_importance):
        every sample of the experience in order, no label drawn (None: each seed makes its own)."""
        if self.samples is not None:
            return None
        if self.kind == "minibatch":
            return SQUARED_GRADIENTS
        if self.labels != "empirical":
            return None
        return ExactFisherPass(self.batch_size or int(getattr(strategy, "train_mb_size", 1024)))

    def __call__(self, strategy: Any, used: frozenset[str] | None, generator: torch.Generator) -> Tensors:
        fisher = experience_importance(strategy, self.kind, self.samples, generator, self.labels, self.batch_size)
        return self.finish(strategy, used, fisher)

    def finish(self, strategy: Any, used: frozenset[str] | None, fisher: Tensors) -> Tensors:
        """The estimate from the pass's ``fisher``: the parameters it covers (``on``)."""
        model = strategy.model
        if self.on == "used":
            trainable = {n for n, p in model.named_parameters() if p.requires_grad}
            return {n: f for n, f in fisher.items() if (used is None or n in used) and n in trainable}
        return zeros_for(model, fisher) if self.kind == "exact" else fisher


class OutputSensitivity:
    """MAS's Omega^t: the mean over training mini-batches (in dataset order, training batch size) of the absolute
    gradient of the mean squared L2 norm of the model's output (no labels), 0 where no gradient reached."""

    passes: Passes = "every"

    def __init__(self, samples: int | None = None) -> None:
        self.samples = samples

    def stacked_pass(self, strategy: Any) -> StackedPass | None:
        """The pass a batch of seeds computes at once: every sample of the experience in order (None: a subset)."""
        return OUTPUT_SENSITIVITY if self.samples is None else None

    def finish(self, strategy: Any, used: frozenset[str] | None, importance: Tensors) -> Tensors:
        return importance

    def __call__(self, strategy: Any, used: frozenset[str] | None, generator: torch.Generator) -> Tensors:
        from avalanche.models.utils import avalanche_forward

        model = strategy.model
        names, params = zip(*model.named_parameters())
        importance = [torch.zeros_like(p) for p in params]
        tensors = sample_subset(dataset_tensors(strategy.experience.dataset), self.samples, generator)
        loader = TensorBatchLoader(tensors, strategy.train_mb_size, shuffle=False)
        model.train()
        for x, y, t in loader:
            x, t = x.to(strategy.device), t.to(strategy.device)
            model.zero_grad()
            minibatch_step(OUTPUT_SENSITIVITY, avalanche_forward(model, x, t), y, None, importance, list(params))
        torch._foreach_div_(importance, float(max(len(loader), 1)))
        model.zero_grad()
        return dict(zip(names, importance))


class UnitImportance:
    """Importance 1 on every parameter the model used: a plain pull (what the importance estimate buys, isolated)."""

    passes: Passes = "never"

    def __call__(self, strategy: Any, used: frozenset[str] | None, generator: torch.Generator) -> Tensors:
        return {
            n: p.new_ones(()).expand_as(p) for n, p in strategy.model.named_parameters() if used is None or n in used
        }


def tracked_parameters(model: nn.Module) -> list[tuple[str, Tensor]]:
    """Parameters SI tracks: those requiring grad, except normalisation layers' (as Avalanche)."""
    norm = {
        f"{module_name}.{n}" if module_name else n
        for module_name, module in model.named_modules()
        if isinstance(module, _NormBase)
        for n, _ in module.named_parameters(recurse=False)
    }
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad and n not in norm]


def _add_step(trajectory: list[Tensor], grads: list[Tensor], pre: list[Tensor], params: list[Tensor]) -> None:
    """SI's w -= g * (theta after - before), in place with no temporaries: ``pre`` (the weights before the step)
    becomes -(step) first."""
    torch._foreach_sub_(pre, params)
    torch._foreach_addcmul_(trajectory, grads, pre, value=-1.0)


class PathIntegral:
    """SI's importance and anchor (Zenke et al. 2017, Avalanche's constants): along experience k's steps
    w_i += -g_i * (theta_i after - before) (g the step's gradient, penalty included); after it
    cum_i += c w_i / ((theta_i^k - theta_i^{k-1})^2 + eps), omega = min(-cum, clip) (no clip: None), and the
    quadratic omega (theta - theta^{k})^2 anchored at the weights the next experience starts from. Both an estimator
    (its per-step hooks) and the anchor update of its regularizer."""

    passes: Passes = "never"

    def __init__(self, eps: float, clip: float | None, c: float = 1.0) -> None:
        self.eps, self.clip, self.c = eps, clip, c
        self.names: list[str] = []
        self.params: list[Tensor] = []
        self.cumulative: list[Tensor] = []  # cum, all experiences
        self.trajectory: list[Tensor] = []  # w^k, this experience
        self._pre_step: list[Tensor] = []  # weights before the current step
        self.held = QuadraticAnchor()  # A = omega, m = theta^{t-1}
        self._active: tuple[list[Tensor], list[Tensor], list[Tensor]] = ([], [], [])
        self._keep: list[int] = []  # the indices of the tensors that can move this experience

    @torch.no_grad()
    def before_experience(self, plugin: Any, strategy: Any) -> None:
        named = tracked_parameters(strategy.model)
        if [n for n, _ in named] != self.names:  # the model grew: new tensors start at 0
            old = dict(zip(self.names, self.cumulative))
            old_omega = dict(zip(self.held.names, self.held.weights))
            self.names = [n for n, _ in named]
            self.cumulative = [old.get(n, torch.zeros_like(p)) for n, p in named]
            omega = {n: old_omega.get(n, torch.zeros_like(p)) for n, p in named}
        else:
            omega = dict(zip(self.held.names, self.held.weights))
        self.params = [p for _, p in named]
        self._pre_step = [p.detach().clone() for p in self.params]
        self.trajectory = [torch.zeros_like(p) for p in self.params]
        self.held.replace(omega, {n: p.detach() for n, p in named})  # the anchor: the weights at the start

    def quadratic(self, model: nn.Module, selected: frozenset[str] | None) -> QuadraticAnchor:
        return self.held

    def after_penalty(self, plugin: Any) -> None:
        """The step buffers of the tensors that can move (the others keep w = 0)."""
        keep = self._keep = list(range(len(self.params)) if plugin._subset is None else plugin._subset)
        self._active = (plugin._params, [self._pre_step[i] for i in keep], [self.trajectory[i] for i in keep])

    @torch.no_grad()
    def before_step(self, plugin: Any) -> None:
        torch._foreach_copy_(self._active[1], self._active[0])

    @torch.no_grad()
    def after_step(self, plugin: Any) -> None:
        params, pre, trajectory = self._active
        _add_step(trajectory, [p.grad if p.grad is not None else torch.zeros_like(p) for p in params], pre, params)

    @classmethod
    def lockstep_steps(
        cls, estimators: Sequence["PathIntegral"], stacked_of: Callable[[list[Tensor]], list[Tensor]]
    ) -> dict[str, Callable[[Tensor], None]] | None:
        """The K seeds' step hooks of a batch (:mod:`forgetbench.benchmark.run.batching`: ``stacked_of`` maps a seed's
        parameters to the stacked tensors whose rows they are) as one :meth:`before_step` and :meth:`after_step` on
        stacked buffers, entry by entry their arithmetic (the stack keeps every gradient allocated: an unused one is
        0, as ``after_step`` takes a missing one). Over the union of the seeds' movable tensors (a supernet's seeds
        each train their own ops): each seed's ``w`` gets back, when the epoch ends, the rows of its own movable
        tensors only, so a row its own run does not step is never read. None (each seed steps its own) where the
        seeds track other tensors."""
        tracked = [stacked_of(list(estimator.params)) for estimator in estimators]
        if any([id(t) for t in ts] != [id(t) for t in tracked[0]] for ts in tracked) or not tracked[0]:
            return None
        keeps = [set(estimator._keep) for estimator in estimators]
        union = sorted(set().union(*keeps))
        if not union:
            return None
        params = [tracked[0][i] for i in union]
        pre = [torch.stack([estimator._pre_step[i] for estimator in estimators]) for i in union]
        trajectory = [torch.stack([estimator.trajectory[i] for estimator in estimators]) for i in union]

        @torch.no_grad()
        def before(losses: Tensor) -> None:
            torch._foreach_copy_(pre, params)

        @torch.no_grad()
        def after(losses: Tensor) -> None:
            # the stack keeps every stacked gradient allocated
            _add_step(trajectory, cast(list[Tensor], [p.grad for p in params]), pre, params)

        @torch.no_grad()
        def epoch_end(losses: Tensor) -> None:  # one copy for every seed's rows: its operations do not grow with K
            own, stacked = [], []
            for i, rows in zip(union, trajectory):
                for estimator, keep, row in zip(estimators, keeps, rows.unbind(0)):
                    if i in keep:
                        own.append(estimator.trajectory[i])
                        stacked.append(row)
            if own:
                torch._foreach_copy_(own, stacked)

        return {"before_training_iteration": before, "after_training_iteration": after, "epoch_end": epoch_end}

    @torch.no_grad()
    def __call__(self, strategy: Any, used: frozenset[str] | None, generator: torch.Generator) -> Tensors:
        for i, p in enumerate(self.params):
            moved = (p.detach() - self.held.anchors[i]) ** 2 + self.eps
            self.cumulative[i] += self.c * self.trajectory[i] / moved
        clip = self.clip
        return {n: -c if clip is None else torch.clamp(-c, max=clip) for n, c in zip(self.names, self.cumulative)}

    def consolidate(self, importance: Tensors, model: nn.Module) -> None:
        self.held.replace(importance, {n: p.detach() for n, p in zip(self.names, self.params)})

    def state_dict(self) -> dict[str, Any]:
        """omega and the anchor (one quadratic), the cumulative path integral; the step buffers are scratch."""
        return {
            "names": list(self.names),
            "cumulative": [c.detach().clone() for c in self.cumulative],
            "quadratic": self.held.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.names, self.cumulative = list(state["names"]), list(state["cumulative"])
        self.held.load_state_dict(state["quadratic"])

    def state_bytes(self) -> int:
        return self.held.state_bytes() + sum(t.nbytes for t in self.cumulative)


# --------------------------------------------------------------------------------------------- anchor updates
class SumOfQuadratics:
    """EWC's separate mode: sum_k F^k (theta - theta^k)^2 over earlier experiences, held as one quadratic (completing
    the square: memory and per-step cost do not grow with their number), on every trainable parameter the model
    had when the first importance came (a parameter frozen later keeps its zero-cost entry). After the last
    experience it is left as it is (``after_last``): adding a zero importance would only round its anchors."""

    after_last = False

    def __init__(self) -> None:
        self.held = QuadraticAnchor()

    def _names(self, model: nn.Module) -> list[str]:
        return self.held.names if not self.held.empty else [n for n, p in model.named_parameters() if p.requires_grad]

    def entries(self, importance: Tensors, model: nn.Module) -> tuple[Tensors, Tensors]:
        """(F^t on the held names, 0 where missing; the model's weights on them)."""
        names = self._names(model)
        params = dict(model.named_parameters())
        return zeros_for(model, importance, names), {n: params[n].detach() for n in names}

    def consolidate(self, importance: Tensors, model: nn.Module) -> None:
        self.held.add(*self.entries(importance, model))

    def quadratic(self, model: nn.Module, selected: frozenset[str] | None) -> QuadraticAnchor:
        return self.held

    def state_dict(self) -> dict[str, Any]:
        return {"quadratic": self.held.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.held.load_state_dict(state["quadratic"])

    def state_bytes(self) -> int:
        return self.held.state_bytes()


class OnlineQuadratic(SumOfQuadratics):
    """EWC's online mode (Schwarz et al. 2018): F~ <- decay F~ + F^t, anchored at the latest weights only."""

    def __init__(self, decay: float = 1.0) -> None:
        super().__init__()
        self.decay = decay

    def consolidate(self, importance: Tensors, model: nn.Module) -> None:
        importance, anchor = self.entries(importance, model)
        if self.held.empty:
            self.held.replace(importance, anchor)
            return
        decayed = {n: self.decay * w + importance[n] for n, w in zip(self.held.names, self.held.weights)}
        decayed.update({n: f for n, f in importance.items() if n not in decayed})
        self.held.replace(decayed, anchor)


def grown(tensor: Tensor, shape: torch.Size) -> Tensor:
    """``tensor`` zero-padded to ``shape`` (a parameter that grew since, as Avalanche's ``ParamData.expand``; an
    object that is not a tensor is asked to ``expand`` itself, as Avalanche does)."""
    if not isinstance(tensor, Tensor) or tensor.shape == shape:
        return tensor.expand(shape)
    out = tensor.new_zeros(shape)
    out[tuple(slice(0, s) for s in tensor.shape)] = tensor
    return out


class RunningMerge:
    """MAS's update (Avalanche's ``MASPlugin``): Omega <- Omega^1 after the first experience, then
    alpha Omega + (1 - alpha) Omega^t; the anchor theta* is every parameter after the latest experience, the last
    included (Omega^t is then 0: no pass runs)."""

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        self.importance: Tensors = {}
        self.params: Tensors = {}
        self.held = QuadraticAnchor()

    def consolidate(self, importance: Tensors, model: nn.Module) -> None:
        importance = zeros_for(model, importance)
        self.params = {n: p.detach().clone() for n, p in model.named_parameters()}
        if not self.importance:
            self.importance = importance
            return
        for name, value in importance.items():
            old = self.importance.get(name)
            merged = value.clone() if old is None else self.alpha * grown(old, value.shape) + (1 - self.alpha) * value
            self.importance[name] = merged

    def quadratic(self, model: nn.Module, selected: frozenset[str] | None) -> QuadraticAnchor:
        if not self.importance or not self.params:
            return QuadraticAnchor()
        named = [(n, p) for n, p in model.named_parameters() if n in self.importance]
        self.held.replace(
            {n: grown(self.importance[n], p.shape) for n, p in named},
            {n: grown(self.params[n], p.shape) for n, p in named},
            copy=False,
        )
        return self.held

    def state_dict(self) -> dict[str, Any]:
        return {"importance": detached(self.importance), "params": detached(self.params)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.importance, self.params = dict(state["importance"]), dict(state["params"])

    def state_bytes(self) -> int:
        return tensor_bytes([self.importance, self.params])


class ImportanceRule(Protocol):
    """How F^t enters a running importance (WPL's ``accumulate``, the ENAS code's per-update scaling)."""

    def weight(self, models_trained: int) -> float: ...

    def add(self, importance: Tensors, fisher: Tensors, no_gradient: set[str], models_trained: int) -> Tensors: ...


class LatestAnchor:
    """A running importance F (``rule.add`` after each model) and, per parameter, the weights after the latest model
    that had an importance for it; the quadratic F (theta - theta_hat)^2 on the selected parameters it holds.
    ``no_gradient`` (optional): the estimator's tensors the data loss gave no gradient (a rule may reset them)."""

    def __init__(self, rule: ImportanceRule, estimator: Any = None) -> None:
        self.rule, self.estimator = rule, estimator
        self.importance: Tensors = {}
        self.anchor: Tensors = {}
        self.models = 0

    def held_names(self) -> set[str]:
        return set(self.importance)

    def sources(self) -> list[tuple[Tensors, Tensors]]:
        return [(self.importance, self.anchor)]

    def consolidate(self, importance: Tensors, model: nn.Module) -> None:
        weights = {n: p.detach().clone() for n, p in model.named_parameters() if n in importance}
        no_gradient: set[str] = getattr(self.estimator, "no_gradient", set())
        self.importance = self.rule.add(self.importance, importance, no_gradient, self.models)
        self.models += 1
        self.anchor.update(weights)

    def quadratic(self, model: nn.Module, selected: frozenset[str] | None) -> QuadraticAnchor:
        """One quadratic over the selected held parameters (a sum of several is one: completing the square)."""
        shared = self.held_names() if selected is None else self.held_names() & selected
        names = [n for n, _ in model.named_parameters() if n in shared]
        sources = self.sources()
        quadratic = QuadraticAnchor()
        for fisher, anchor in sources if names else ():

            def like(name: str) -> Tensor:
                return next(a[name] for _, a in sources if name in a)

            quadratic.add(
                {n: fisher[n] if n in fisher else torch.zeros_like(like(n)) for n in names},
                {n: anchor[n] if n in anchor else like(n) for n in names},
            )
        return quadratic

    def state_dict(self) -> dict[str, Any]:
        return {"importance": detached(self.importance), "anchor": detached(self.anchor), "models": self.models}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.importance, self.anchor = dict(state["importance"]), dict(state["anchor"])
        self.models = int(state["models"])

    def state_bytes(self) -> int:
        return tensor_bytes([self.importance, self.anchor])


class PerModelAnchors(LatestAnchor):
    """(F^k, theta^k) kept for every earlier model k: the penalty sums their quadratics on the selected parameters
    each holds (memory grows with the number of models; no rule applies)."""

    def __init__(self, rule: ImportanceRule, estimator: Any = None) -> None:
        super().__init__(rule, estimator)
        self.per_model: list[tuple[Tensors, Tensors]] = []

    def held_names(self) -> set[str]:
        return set().union(*(f.keys() for f, _ in self.per_model))

    def sources(self) -> list[tuple[Tensors, Tensors]]:
        return self.per_model

    def consolidate(self, importance: Tensors, model: nn.Module) -> None:
        weights = {n: p.detach().clone() for n, p in model.named_parameters() if n in importance}
        self.models += 1
        self.per_model.append((importance, weights))

    def state_dict(self) -> dict[str, Any]:
        return {"per_model": [[detached(f), detached(a)] for f, a in self.per_model], "models": self.models}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.per_model = [(dict(f), dict(a)) for f, a in state["per_model"]]
        self.models = int(state["models"])

    def state_bytes(self) -> int:
        return tensor_bytes(self.per_model)


class UnitAnchor:
    """L2's store: the value of every parameter after the latest experience that used it; the quadratic
    1 * (theta - theta*)^2 on the selected parameters it holds (in name order)."""

    def __init__(self) -> None:
        self.anchor: Tensors = {}
        self.held = QuadraticAnchor()

    def consolidate(self, importance: Tensors, model: nn.Module) -> None:
        for name, p in model.named_parameters():
            if name in importance:
                self.anchor[name] = p.detach().clone()

    def quadratic(self, model: nn.Module, selected: frozenset[str] | None) -> QuadraticAnchor:
        names = [n for n in sorted(selected if selected is not None else self.anchor) if n in self.anchor]
        if not names:
            return QuadraticAnchor()
        ones = {n: self.anchor[n].new_ones(()).expand_as(self.anchor[n]) for n in names}
        self.held.replace(ones, {n: self.anchor[n] for n in names}, copy=False)
        return self.held

    def state_dict(self) -> dict[str, Any]:
        return {"anchor": detached(self.anchor)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.anchor = dict(state["anchor"])

    def state_bytes(self) -> int:
        return tensor_bytes(self.anchor)


def accumulate(running: Tensors, new: Tensors, rule: str, momentum: float) -> Tensors:
    """F after model t's F^t enters the running importance by ``rule``: ``sum`` F + F^t, ``max`` max(F, F^t),
    ``momentum`` (1 - m) F + m F^t (a parameter's first F^t: itself, m F^t under momentum)."""
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


def clip_to_norm(fisher: Tensor, max_norm: float) -> Tensor:
    """``fisher`` rescaled to Frobenius norm ``max_norm`` when its norm exceeds it."""
    norm = torch.linalg.vector_norm(fisher)
    return fisher * (max_norm / norm) if norm > max_norm else fisher


class RunningImportance:
    """WPL's rule (an :class:`ImportanceRule`), once per model: F <- accumulate(F, F^t) (sum, max or momentum), zeroed
    before every ``reset_every``-th model, each tensor rescaled to at most ``clip_norm``; the penalty weighted by
    alpha x decay^(t-1) while model t trains (``wpl``: no reset, no clip, no decay)."""

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
