"""Vectorised quadratic penalties shared by the regularizers (EWC, SI).

A :class:`QuadraticAnchor` holds, per parameter tensor, a weight ``A`` and an anchor ``m`` and
represents

    Q(theta) = sum_i A_i (theta_i - m_i)^2 + c.

A sum of such quadratics is again one (completing the square), so EWC's *separate* mode, whose
penalty sums one quadratic per earlier experience, costs one pass over the parameters per step
and O(P) memory however many experiences came before, instead of T passes and O(TP) memory,
while being the same function of theta (:meth:`QuadraticAnchor.add`).

Two ways to apply it, the same gradient ``2 scale A (theta - m)``:

* :meth:`QuadraticAnchor.add_gradient`, what the regularizers do every training step: a hook on the step's loss
  adds the gradient to ``.grad`` in place when that loss's backward pass ends (an autograd final callback, so
  every ``after_backward`` plugin sees the whole gradient, as when the quadratic is part of the loss). Per
  tensor: ``d = theta - m`` into a buffer kept between steps, then ``grad += (2 scale A) d``: theta, m, the
  cached ``2 scale A`` and the gradient are each read once, nothing is allocated, and ``d`` is exact (Sterbenz:
  theta and m are close), so the gradient carries only the rounding of one product and one sum. The loss's
  *value* is left as it is: the penalty's value costs a further pass over the weights every step and nothing
  in the harness reads it per step; :meth:`penalty` gives it when wanted.
* :meth:`QuadraticAnchor.penalty`: a differentiable scalar (an autograd function running a few
  ``torch._foreach_*`` kernels, no per-parameter Python loop, no host sync), for code that differentiates or
  reports the penalty itself (tests, the penalty-to-data gradient ratio).

Every parameter in the anchor receives a gradient (zero where ``A = 0``), exactly as when the quadratic is
written out with autograd, so optimizer behaviour (weight decay on params without a data gradient) is unchanged.
"""

from __future__ import annotations

from typing import Callable, Literal, Sequence, cast

import torch
from torch import Tensor

from forgetbench.benchmark.core.calibration import ACTS
from forgetbench.strategies.base import shared_params

# A penalty whose gradient is below this share of the data loss's gradient, over the experience's training steps on
# the parameters it shares with earlier models (PenaltyDiagnostics), does not act: the shared weights go where the
# data loss sends them, as without it. Measured on the two-model demo (digits, 2 seeds): si 0.3 reads 0.0013 and cuts
# 1% of naive's forgetting over 20 seeds; si 3 0.014-0.016 (cut 55%), ewc 100 0.010-0.061 (57%), ewc 1000 0.03-0.11
# (88%), si 30 0.07 (89%).
INERT_RATIO = ACTS
OBSERVE_EVERY = 100  # training iterations between two looks at the penalty's and the data's gradients (the first at 50)


def stable_curvature(setting: Literal["auto"] | float | None, training) -> float | None:
    """The largest curvature a quadratic penalty may put on one weight, from a strategy's ``max_curvature``.

    Gradient descent with learning rate lr and momentum beta on a quadratic of curvature h is stable
    only when lr * h < 2 (1 + beta). ``auto`` gives (1 + beta) / (4 lr) under SGD, an eighth of that
    bound: the data loss's own sharpness already sits near the bound (gradient descent trains at the
    "edge of stability", Cohen et al., ICLR 2021), so the penalty gets a small share of it. Adam's
    normalised step has no such bound: ``auto`` means no cap there. A number is the cap itself;
    ``None`` never caps.
    """
    if setting != "auto":
        return setting
    if training.optimizer == "sgd":
        return (1.0 + training.momentum) / (4.0 * training.lr)
    return None


class _QuadraticPenalty(torch.autograd.Function):
    """``scale * sum_i A_i (theta_i - m_i)^2`` for any sign of ``A``."""

    @staticmethod
    def forward(ctx, scale: float, weights: list[Tensor], anchors: list[Tensor], *params: Tensor) -> Tensor:
        diffs = torch._foreach_sub(list(params), anchors)
        weighted = torch._foreach_mul(diffs, weights)
        per_tensor = [torch.vdot(w.reshape(-1), d.reshape(-1)) for w, d in zip(weighted, diffs)]
        ctx.weighted = weighted
        ctx.scale = scale
        return torch.stack(per_tensor).sum() * scale

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        # gradient = 2 scale A d (A d kept: a retained graph may be differentiated again)
        grads = torch._foreach_mul(ctx.weighted, grad_output * (2.0 * ctx.scale))
        return (None, None, None, *grads)


class QuadraticAnchor:
    """``Q(theta) = sum_i A_i (theta_i - m_i)^2 + c`` over a fixed list of named parameters.

    ``A`` and ``m`` are stored in the parameters' dtype and device; the constant ``c`` (which
    changes the loss value, never a gradient) is a Python float accumulated in float64.
    """

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = float(scale)  # the usual penalty scale (lambda)
        self.names: list[str] = []
        self.weights: list[Tensor] = []
        self.anchors: list[Tensor] = []
        self.constant: float = 0.0
        self._penalised: list[Tensor] = []  # A as the penalty uses it (a capped copy when max_weight caps)
        self._gradient_weights: tuple[float, Sequence[Tensor]] | None = None  # (scale, 2 scale A), cached per scale
        self._hook: GradientHook | None = None  # add_gradient's, for the last params / scale / subset
        self.version = 0  # counts changes of A, m or the cap: a GradientHook prepared before one re-prepares
        self.max_weight: float | None = None  # penalty cap on A (stored A untouched), see penalize_at_most
        self.capped = 0  # entries of A above max_weight at the last refresh

    def penalize_at_most(self, max_weight: float | None) -> None:
        """Let the *penalty* use ``min(A, max_weight)`` from now on, while ``A`` itself (what later
        :meth:`add` calls combine, what :meth:`state_dict` saves) keeps its exact values. Only the
        derived copies change (the capped ``A``, ``2 scale A``)."""
        if max_weight != self.max_weight:
            self.max_weight = max_weight
            if self.names:
                self._changed()

    def _penalty_weights(self) -> list[Tensor]:
        if self.max_weight is None:
            self.capped = 0
            return self.weights
        self.capped = sum(int((w > self.max_weight).sum()) for w in self.weights)
        return [w.clamp(max=self.max_weight) for w in self.weights] if self.capped else self.weights

    def _changed(self) -> None:
        """Refresh what the penalty derives from ``A`` (the capped copy, ``2 scale A``)."""
        with torch.no_grad():
            self._penalised = self._penalty_weights()
        self._gradient_weights = None
        self.version += 1

    def _weights_times(self, scale: float) -> Sequence[Tensor]:
        """``2 scale A`` per tensor (cached for the last scale)."""
        if self._gradient_weights is None or self._gradient_weights[0] != scale:
            with torch.no_grad():
                weights = (scale, torch._foreach_mul(self._penalised, 2.0 * scale))
                self._gradient_weights = weights
            return weights[1]
        return self._gradient_weights[1]

    @property
    def empty(self) -> bool:
        return not self.names

    @torch.no_grad()
    def add(self, importance: dict[str, Tensor], anchor: dict[str, Tensor], decay: float = 1.0) -> None:
        """``Q <- decay * Q + sum_i F_i (theta_i - theta*_i)^2`` with ``F = importance``, ``theta* = anchor``.

        With ``A' = decay*A + F``: ``m' = (decay*A*m + F*theta*) / A'`` (``theta*`` where ``A' = 0``)
        and ``c' = decay*c + sum decay*A (m - m')^2 + F (theta* - m')^2`` -- the identity
        ``a(x-m)^2 + f(x-t)^2 = (a+f)(x-m')^2 + a(m-m')^2 + f(t-m')^2``, computed in float64.
        """
        if self.empty:
            self.names = list(importance)
            self.weights = [importance[n].detach().clone() for n in self.names]
            self.anchors = [anchor[n].detach().clone() for n in self.names]
            self.constant = 0.0
            self._changed()
            return
        if list(importance) != self.names:
            raise ValueError("importance names differ from the anchor's parameter names")
        constant = decay * self.constant
        for i, name in enumerate(self.names):
            a = self.weights[i].double() * decay
            m = self.anchors[i].double()
            f = importance[name].double()
            t = anchor[name].double()
            total = a + f
            new_m = torch.where(total > 0, (a * m + f * t) / total.clamp_min(1e-300), t)
            constant += float((a * (m - new_m) ** 2 + f * (t - new_m) ** 2).sum())
            self.weights[i] = total.to(self.weights[i].dtype)
            self.anchors[i] = new_m.to(self.anchors[i].dtype)
        self.constant = constant
        self._changed()

    @torch.no_grad()
    def replace(self, weights: dict[str, Tensor], anchor: dict[str, Tensor], copy: bool = True) -> None:
        """``Q <- sum_i A_i (theta_i - theta*_i)^2`` (a new weight and anchor, constant 0). ``copy=False`` holds the
        given tensors themselves (a caller that keeps them and never changes them in place: no second copy)."""
        self.names = list(weights)
        keep = (lambda t: t.detach().clone()) if copy else (lambda t: t.detach())
        self.weights = [keep(weights[n]) for n in self.names]
        self.anchors = [keep(anchor[n]) for n in self.names]
        self.constant = 0.0
        self._changed()

    def penalty(self, params: Sequence[Tensor], scale: float = 1.0, subset: Sequence[int] | None = None) -> Tensor:
        """``scale * Q(params)`` as a differentiable scalar (``params`` in ``names`` order).

        With ``subset`` (indices into ``names``), ``params`` are those tensors only and the
        other terms are left out: callers use it for tensors that sit exactly at their anchor and
        cannot move (their terms and gradients are exactly 0).
        """
        weights, anchors = self._penalised, self.anchors
        if subset is not None:
            weights, anchors = [weights[i] for i in subset], [anchors[i] for i in subset]
        value = _QuadraticPenalty.apply(scale, weights, anchors, *params)
        return value + scale * self.constant if self.constant else value

    def add_gradient(
        self, loss: Tensor, params: Sequence[Tensor], scale: float = 1.0, subset: Sequence[int] | None = None
    ) -> Tensor:
        """Make ``loss``'s backward pass also add ``scale * Q``'s gradient to ``params``' ``.grad``; returns ``loss``.

        After ``loss.backward()`` the parameters hold the gradient ``(loss + scale * Q).backward()`` would give them
        (``.grad`` set where autograd left it ``None``; the upstream gradient of ``loss`` multiplies it, as it
        would); the value of ``loss`` is unchanged (see the module doc). When ``loss`` carries no gradient the
        penalty is added to it instead: ``loss + penalty(...)``. ``params`` and ``subset`` as in :meth:`penalty`.
        Prepared once (:class:`GradientHook`) and reused while the same ``params`` and ``subset`` objects and
        ``scale`` come back, as a plugin's every step does (a list changed in place is not noticed: pass a new one).
        """
        hook = self._hook
        if hook is None or hook.params_source is not params or hook.subset is not subset or hook.scale != scale:
            hook = self._hook = self.gradient_hook(params, scale, subset)
        return hook.attach(loss)

    def gradient_hook(
        self, params: Sequence[Tensor], scale: float = 1.0, subset: Sequence[int] | None = None
    ) -> "GradientHook":
        """:meth:`add_gradient` for these ``params``, prepared once: ``hook.attach(loss)`` every step."""
        return GradientHook(self, params, scale, subset)

    def state_dict(self) -> dict:
        """What defines Q: names, weights A, anchors m, constant c (what the penalty uses is derived from them)."""
        return {
            "names": list(self.names),
            "weights": [w.detach().clone() for w in self.weights],
            "anchors": [m.detach().clone() for m in self.anchors],
            "constant": self.constant,
        }

    def load_state_dict(self, state: dict, device: torch.device | None = None) -> None:
        self.names = list(state["names"])
        self.weights = [w.to(device) if device is not None else w for w in state["weights"]]
        self.anchors = [m.to(device) if device is not None else m for m in state["anchors"]]
        self.constant = float(state["constant"])
        self._changed()

    def state_bytes(self) -> int:
        """Bytes of what defines Q (weights and anchors); ``2 scale A`` and the buffers are derived caches."""
        return sum(t.nbytes for t in self.weights + self.anchors)


class GradientHook:
    """``scale * Q``'s gradient added to ``params``' ``.grad`` at the end of each backward pass it is attached to.

    Prepared once per set of parameters (an experience): the per-tensor lists, ``2 scale A`` and, on the CPU, the
    ``theta - m`` buffers, so a step costs one hook, one final callback and the arithmetic of the module doc.
    """

    def __init__(
        self, quadratic: QuadraticAnchor, params: Sequence[Tensor], scale: float, subset: Sequence[int] | None
    ) -> None:
        self.quadratic, self.params, self.scale = quadratic, list(params), float(scale)
        self.params_source, self.subset = params, subset
        self._version: int | None = None

    def prepare(self) -> None:
        """The per-tensor lists, ``2 scale A`` and the buffers, for the quadratic as it is now."""
        quadratic = self.quadratic
        indices = range(len(quadratic.names)) if self.subset is None else self.subset
        weights = quadratic._weights_times(self.scale)
        self.anchors = [quadratic.anchors[i] for i in indices]
        self.weights = [weights[i] for i in indices]
        on_cpu = bool(self.params) and self.params[0].device.type == "cpu"
        # on the CPU, into buffers kept between steps (nothing allocated per step); elsewhere one multi-tensor
        # kernel, whose temporaries the caching allocator makes cheap
        self.buffers = [torch.empty_like(p) for p in self.params] if on_cpu else None
        self._version = quadratic.version

    def attach(self, loss: Tensor) -> Tensor:
        """Hook ``loss`` (returned as it is); a loss without gradient gets the penalty added instead."""
        if not loss.requires_grad:
            return loss + self.quadratic.penalty(self.params, self.scale, self.subset)
        if self.params:
            loss.register_hook(self._queue)
        return loss

    def _queue(self, upstream: Tensor) -> None:
        torch.autograd.Variable._execution_engine.queue_callback(lambda: self.add_now(upstream))

    @torch.no_grad()
    def add_now(self, upstream: Tensor | float = 1.0) -> None:
        """``grad += upstream * 2 scale A (theta - m)`` for every prepared parameter."""
        if self._version != self.quadratic.version:
            self.prepare()
        params = self.params
        differences: list[Tensor] | tuple[Tensor, ...]
        if self.buffers is not None:
            differences = [torch.sub(p, m, out=d) for p, m, d in zip(params, self.anchors, self.buffers)]
        else:
            differences = torch._foreach_sub(params, self.anchors)
        # the usual upstream gradient is exactly 1 (the loss itself): skip that pass; only checked on the CPU,
        # where reading the value costs no device sync
        if not isinstance(upstream, Tensor) or upstream.device.type == "cpu":
            if float(upstream) != 1.0:
                torch._foreach_mul_(differences, float(upstream))
        else:
            torch._foreach_mul_(differences, upstream)
        grads = [p.grad for p in params]
        weights = self.weights
        if any(g is None for g in grads):
            for k, param in enumerate(params):
                if param.grad is None:  # no data gradient reached it: the penalty's alone
                    param.grad = differences[k] * weights[k]
            keep = [k for k, g in enumerate(grads) if g is not None]
            grads, differences, weights = (
                [grads[k] for k in keep],
                [differences[k] for k in keep],
                [weights[k] for k in keep],
            )
        if grads:  # every entry is a tensor now (the missing ones were set above and left out)
            torch._foreach_addcmul_(cast(list[Tensor], grads), differences, weights)


def movable_subset(
    names: Sequence[str],
    anchors: Sequence[Tensor],
    params: Sequence[Tensor],
    used: frozenset[str] | None,
    optimizer: torch.optim.Optimizer | None,
) -> list[int] | None:
    """Indices of the tensors whose penalty terms can be non-zero in this experience, or ``None``.

    A tensor the experience's model does not use gets no data gradient; if it also sits exactly
    at its anchor, its penalty gradient is exactly 0, and an optimizer without weight decay leaves
    a parameter with zero gradient where it is (SGD's momentum and Adam's moments stay 0), so its
    term stays 0 for the whole experience. Leaving such tensors out gives the same numbers while
    the per-step cost no longer grows with the number of models (heads). ``None`` (all tensors,
    as Avalanche) when ``used`` is unknown or any parameter group has weight decay.
    """
    if used is None or optimizer is None:
        return None
    if any(group.get("weight_decay", 0) for group in optimizer.param_groups):
        return None
    with torch.no_grad():
        return [
            i
            for i, (name, anchor, param) in enumerate(zip(names, anchors, params))
            if name in used or not torch.equal(anchor, param)
        ]


def named_params(model: torch.nn.Module, names: Sequence[str]) -> list[Tensor]:
    """The model's parameters in ``names`` order (raises ``KeyError`` naming a missing one)."""
    table = dict(model.named_parameters())
    return [table[n] for n in names]


def penalty_gradient_ratio(strategy, params: Sequence[Tensor], penalty: Callable[[], Tensor | float]) -> float | None:
    """||d penalty / d theta|| / ||d L_data / d theta|| over ``params``, on the experience's last training
    mini-batch (model in eval mode, so no dropout draw and no change to the training's RNG; gradients are not
    accumulated into ``.grad``).

    At the end of an experience a penalty that acts balances the data loss's gradient (ratio near 1 at a
    stationary point of the sum); a ratio below :data:`INERT_RATIO` says the penalty is too small to act
    (its lambda or importance is orders of magnitude off). None when there is no batch or no parameter.
    """
    params = [p for p in params if p.requires_grad]
    if not params or getattr(strategy, "mbatch", None) is None:
        return None
    model = strategy.model
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            data_loss = strategy._criterion(strategy.forward(), strategy.mb_y)
            data = torch.autograd.grad(data_loss, params, allow_unused=True)
            value = penalty()
            if not isinstance(value, Tensor) or not value.requires_grad:
                return None
            regular = torch.autograd.grad(value, params, allow_unused=True)
    finally:
        model.train(was_training)

    def norm(grads) -> float:
        present = [g for g in grads if g is not None]
        return float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(present)))) if present else 0.0

    data_norm = norm(data)
    return norm(regular) / data_norm if data_norm > 0 else None


def penalty_strength_results(prefix: str, ratios: Sequence[float | None]) -> dict:
    """The record keys every quadratic regularizer reports: ``<prefix>_penalty_to_data_gradient`` (per experience,
    None without a penalty) and ``<prefix>_penalty_inert`` (the experiences where the ratio was below
    :data:`INERT_RATIO`)."""
    return {
        f"{prefix}_penalty_to_data_gradient": list(ratios),
        f"{prefix}_penalty_inert": [i for i, r in enumerate(ratios) if r is not None and r < INERT_RATIO],
    }


class PenaltyDiagnostics:
    """Whether a quadratic penalty acted, experience by experience, where forgetting happens: over the experience's
    training steps (one in :data:`OBSERVE_EVERY`, from the gradients the step already has: the penalty's from its
    own quadratic, the data loss's as the rest of ``.grad``), the mean norm of the penalty's gradient over the mean
    norm of the data loss's, on the parameters the current model shares with earlier models (all the penalty's
    parameters where the schedule does not say which are shared). The end of an experience is the wrong place to
    look: there the model has converged and the data gradient on one batch is noise (the two-model demo's si read
    30 on one seed and 0.001 on the next, for the same config). None where there was no penalty to weigh; kept
    through checkpoints (taken between experiences), reported as :func:`penalty_strength_results`. One component for
    every quadratic regularizer (ewc, wpl, mas, si, l2)."""

    def __init__(self, prefix: str, used_params: Sequence[frozenset[str]] | None = None) -> None:
        self.prefix = prefix  # the record keys' prefix: <prefix>_penalty_to_data_gradient, <prefix>_penalty_inert
        self.used_params = used_params  # the schedule's parameters per experience (a live view), or unknown
        self.ratios: list[float | None] = []
        self._sums: list[Tensor] = []  # [penalty gradient norms, data gradient norms], summed over the looks
        self._where: tuple[tuple[int, int], list[bool]] | None = None  # (experience, tensors) -> shared mask

    def _shared(self, strategy, params: Sequence[Tensor]) -> list[bool]:
        experience = getattr(getattr(strategy, "experience", None), "current_experience", None)
        key = (-1 if experience is None else int(experience), len(params))
        if self._where is not None and self._where[0] == key:
            return self._where[1]
        mask = [True] * len(params)
        if self.used_params is not None and experience is not None and 0 < experience < len(self.used_params):
            shared = shared_params(self.used_params, experience)
            names = {id(p): n for n, p in strategy.model.named_parameters()}
            found = [names.get(id(p)) in shared for p in params]
            mask = found if any(found) else mask
        self._where = (key, mask)
        return mask

    @staticmethod
    def looks_now(strategy) -> bool:
        """Whether this training step is one :meth:`observe` looks at (its clock's iteration; a cheap test, asked
        before anything slower)."""
        clock = getattr(strategy, "clock", None)
        iteration = -1 if clock is None else clock.train_exp_iterations
        return iteration % OBSERVE_EVERY == OBSERVE_EVERY // 2

    def observe(self, strategy, params: Sequence[Tensor], penalty: Callable[[], Tensor | float]) -> None:
        """After a training step's backward pass (its ``.grad`` holds the data loss's and the penalty's gradients):
        at iterations 50, 150, 250, ... of the experience (:data:`OBSERVE_EVERY` apart, none at the start, where
        the weights sit at the anchor and the penalty has no gradient yet), add both gradients' norms on the shared
        parameters. A look costs about two steps; at one in 100 the regularizers' step overhead stays where
        ``forgetbench perf --only step_overhead`` had it (at 1-8 and every 8th after it rose by 0.1-0.15). An
        experience shorter than 50 steps is measured at its end instead (:meth:`measure`)."""
        if not self.looks_now(strategy):
            return
        mask = self._shared(strategy, params)
        kept = [p for p, keep in zip(params, mask) if keep and p.requires_grad and p.grad is not None]
        if not kept:
            return
        with torch.enable_grad():
            value = penalty()
            if not isinstance(value, Tensor) or not value.requires_grad:
                return
            found = torch.autograd.grad(value, kept, allow_unused=True)
        regular = [g if g is not None else torch.zeros_like(p) for g, p in zip(found, kept)]
        data = torch._foreach_sub([cast(Tensor, p.grad) for p in kept], regular)
        norms = [torch.linalg.vector_norm(torch.stack(torch._foreach_norm(g))).detach() for g in (regular, data)]
        self._sums = norms if not self._sums else [a + b for a, b in zip(self._sums, norms)]

    def measure(self, strategy, params: Sequence[Tensor], penalty: Callable[[], Tensor | float]) -> None:
        """This experience's ratio: over its observed steps (:meth:`observe`), else on its last batch (a plug-in
        that does not observe: :func:`penalty_gradient_ratio`)."""
        if self._sums:
            regular, data = (float(t) for t in self._sums)
            self.ratios.append(regular / data if data > 0 else None)
        else:
            self.ratios.append(penalty_gradient_ratio(strategy, params, penalty))
        self._sums = []

    def skip(self) -> None:
        """This experience had no penalty yet (e.g. the first: nothing to protect)."""
        self.ratios.append(None)
        self._sums = []

    def state_dict(self) -> list[float]:
        """The ratios, -1.0 for None (a checkpoint's plain floats; the plugins keep them under ``gradient_ratios``)."""
        return [-1.0 if r is None else r for r in self.ratios]

    def load_state_dict(self, state: Sequence[float]) -> None:
        self.ratios = [None if r < 0 else float(r) for r in state]

    def results(self) -> dict:
        return penalty_strength_results(self.prefix, self.ratios)
