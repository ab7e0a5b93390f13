"""Shared machinery of the mask-based isolation strategies (``supsup``, ``exssnet``).

A scenario's network is rebuilt as a :class:`MaskedNet`: every ``nn.Linear`` / ``nn.Conv1d`` /
``nn.Conv2d`` becomes a :class:`MaskedLayer` holding one weight tensor W (bias-free, as in the
SupSup and ExSSNeT reference networks) and, for every *slot* s (one per training experience), a
score tensor S_s of W's shape. With slot s active the layer computes with

    W * M_s,    M_s = top-k(|S_s|) per layer,  k = round(sparsity * numel(W))

and gradients reach S_s through the straight-through estimator (dL/d|S_s| := dL/d(M_s)), so the
mask can be learned although top-k is piecewise constant. BatchNorm layers become one non-affine
BatchNorm per slot (per-task statistics, no shared affine parameters).

Slots are keyed on the **experience index**, not on the task label: ``permuted``-style scenarios
train one model (task label 0) in every experience. At evaluation the runner only gives the task
label (``forward_single_task(x, key)``), so :class:`MaskedNet` maps a label to the slots trained
under it: one slot -> that mask (task identity given, SupSup's GG setting); several -> SupSup's
one-shot task inference among them (below); none yet -> the next untrained slot's random mask.

One-shot task inference (Wortsman et al., Sec. 3.3): with candidate masks M_1..M_n and
coefficients alpha_i = 1/n, run the batch through W * sum_i alpha_i M_i, take the mean entropy H
of the softmax outputs and pick argmin_i dH/d alpha_i (the mask whose weight most lowers the
entropy). One extra forward/backward per evaluation batch.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from forgetbench.benchmark.data.models import TaskRoutedModule

MASKABLE = (nn.Linear, nn.Conv1d, nn.Conv2d)
_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d)


class _StraightThroughTopK(torch.autograd.Function):
    """Forward: the 0/1 mask of the k largest |scores|; backward: the identity (straight through)."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor, k: int) -> torch.Tensor:  # type: ignore[override]
        return topk_mask(scores.detach(), k).to(scores.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return grad, None


def topk_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of exactly ``k`` entries of largest ``|scores|`` (ties broken by topk)."""
    flat = scores.abs().flatten()
    mask = torch.zeros_like(flat, dtype=torch.bool)
    if k > 0:
        mask[torch.topk(flat, k, sorted=False).indices] = True
    return mask.view_as(scores)


def kept(numel: int, sparsity: float) -> int:
    """Number of weights a mask keeps: round(sparsity * numel), at least one."""
    return max(1, int(round(sparsity * numel)))


def signed_constant_(weight: torch.Tensor, generator: torch.Generator, gain: float = math.sqrt(2.0)) -> None:
    """SupSup's weight init: W = sign(w) * gain / sqrt(fan_in), w ~ kaiming normal (only its sign matters)."""
    fan_in = weight[0].numel()
    signs = torch.randn(weight.shape, generator=generator).sign()
    signs[signs == 0] = 1.0
    with torch.no_grad():
        weight.copy_(signs * gain / math.sqrt(fan_in))


def kaiming_uniform_scores(shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
    """Scores ~ U(-b, b), b = 1/sqrt(fan_in): ``nn.init.kaiming_uniform_(a=sqrt(5))``, as SupSup's code."""
    fan_in = int(torch.tensor(shape[1:]).prod())
    bound = 1.0 / math.sqrt(fan_in)  # kaiming_uniform_ with a = sqrt(5), PyTorch's Linear default
    return (torch.rand(shape, generator=generator) * 2 - 1) * bound


class MaskState:
    """What every masked layer of one network reads: the active slot, or a superposition."""

    def __init__(self) -> None:
        self.slot = 0
        self.alphas: torch.Tensor | None = None  # one-shot inference: coefficients over `candidates`
        self.candidates: list[int] = []
        self.features: torch.Tensor | None = None  # input of the last masked layer run (KKT)
        self.capture = False


class MaskedLayer(nn.Module):
    """A Linear / Conv layer computing with W * M_slot (see the module docstring)."""

    frozen: torch.Tensor  # (slots, *weight.shape) booleans: the frozen masks (a buffer)
    union: torch.Tensor  # with exssnet: the union of the trained slots' masks (a buffer its plugin registers)

    def __init__(
        self,
        layer: nn.Linear | nn.Conv1d | nn.Conv2d,
        slots: int,
        sparsity: float,
        state: MaskState,
        generator: torch.Generator,
    ):
        super().__init__()
        self.kind = (
            "linear" if isinstance(layer, nn.Linear) else ("conv1d" if isinstance(layer, nn.Conv1d) else "conv2d")
        )
        self.conv_args: dict[str, Any] = {}
        if self.kind != "linear":
            self.conv_args = dict(
                stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=layer.groups
            )
        self.weight = nn.Parameter(torch.empty_like(layer.weight), requires_grad=False)
        signed_constant_(self.weight, generator)
        self.scores = nn.ParameterList(
            nn.Parameter(kaiming_uniform_scores(layer.weight.shape, generator), requires_grad=False)
            for _ in range(slots)
        )
        self.k = kept(self.weight.numel(), sparsity)
        # Frozen 0/1 masks of trained slots (set by `freeze`): evaluation reads these, never the scores.
        self.register_buffer("frozen", torch.zeros((slots, *self.weight.shape), dtype=torch.bool), persistent=False)
        self.frozen_slots: set[int] = set()
        self._state = [state]  # a list so the shared state is not registered as a submodule

    @property
    def state(self) -> MaskState:
        return self._state[0]

    def mask(self, slot: int) -> torch.Tensor:
        """M_slot as floats; straight-through to the scores unless the slot is frozen."""
        if slot in self.frozen_slots:
            return self.frozen[slot].to(self.weight.dtype)
        # top-k of |S|; the gradient passes through abs (dL/dS = dL/dM * sign(S)), as SupSup's code
        return _StraightThroughTopK.apply(self.scores[slot].abs(), self.k)

    def freeze(self, slot: int) -> None:
        """Fix M_slot from the slot's current scores (idempotent)."""
        if slot in self.frozen_slots:
            return
        self.frozen[slot] = topk_mask(self.scores[slot].detach(), self.k)
        self.frozen_slots.add(slot)

    def effective_weight(self) -> torch.Tensor:
        state = self.state
        if state.alphas is not None:
            mix = sum(a * self.mask(s) for a, s in zip(state.alphas, state.candidates))
            return self.weight * mix
        return self.weight * self.mask(state.slot)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.state.capture:
            self.state.features = x.detach().flatten(1)
        w = self.effective_weight()
        if self.kind == "linear":
            return F.linear(x, w)
        conv = F.conv1d if self.kind == "conv1d" else F.conv2d
        return conv(x, w, None, **self.conv_args)


class SlotBatchNorm(nn.Module):
    """One non-affine BatchNorm per slot (SupSup: per-task statistics, nothing shared)."""

    def __init__(self, layer: nn.Module, slots: int, state: MaskState):
        super().__init__()
        cls = type(layer)
        self.norms = nn.ModuleList(
            cls(layer.num_features, eps=layer.eps, momentum=layer.momentum, affine=False) for _ in range(slots)
        )
        self._state = [state]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = self._state[0]
        # Under a superposition the candidates' statistics differ; use the first candidate's (SupSup
        # evaluates with BN in eval mode, where any fixed choice keeps the entropy gradient defined).
        slot = state.candidates[0] if state.alphas is not None else state.slot
        return self.norms[slot](x)


class MaskedNet(TaskRoutedModule):
    """A scenario's network with masked layers; ``forward_single_task`` picks the mask (see module doc)."""

    def __init__(self, model: TaskRoutedModule, slots: int, sparsity: float, generator: torch.Generator):
        super().__init__()
        self.state = MaskState()
        self.slots = slots
        self.inner = copy.deepcopy(model)
        memo: dict[int, nn.Module] = {}
        for parent in list(self.inner.modules()):
            for name, child in list(parent.named_children()):
                if id(child) not in memo:
                    if isinstance(child, MASKABLE):
                        memo[id(child)] = MaskedLayer(child, slots, sparsity, self.state, generator)
                    elif isinstance(child, _BATCHNORM):
                        memo[id(child)] = SlotBatchNorm(child, slots, self.state)
                    else:
                        continue
                setattr(parent, name, memo[id(child)])
        if hasattr(model, "max_class_label"):
            self.max_class_label = model.max_class_label
        self.key_slots: dict[int, list[int]] = {}  # task label -> trained slots, in training order
        self.training_slot: int | None = None

    def masked_layers(self) -> Iterator[tuple[str, MaskedLayer]]:
        for name, module in self.inner.named_modules():
            if isinstance(module, MaskedLayer):
                yield name, module

    # ------------------------------------------------------------------ routing
    def begin_slot(self, slot: int, key: int) -> None:
        """Experience ``slot`` trains the model of task label ``key`` with mask ``slot``."""
        self.training_slot = slot
        self.state.slot = slot
        self.key_slots.setdefault(key, [])
        if slot not in self.key_slots[key]:
            self.key_slots[key].append(slot)

    def end_slot(self) -> None:
        """Freeze the trained slot's masks (its scores are never read again)."""
        slot = self.training_slot
        if slot is None:
            return
        for _, layer in self.masked_layers():
            layer.freeze(slot)
        self.training_slot = None

    def slots_for(self, key: int) -> list[int]:
        """Slots that may serve task label ``key`` now (see the module docstring)."""
        if self.training and self.training_slot is not None:
            return [self.training_slot]  # the model being trained uses its own mask
        slots = self.key_slots.get(key)
        if slots:
            return list(slots)
        claimed = {s for slots in self.key_slots.values() for s in slots}
        return [next((s for s in range(self.slots) if s not in claimed), self.slots - 1)]

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        candidates = self.slots_for(int(task_label))
        slot = candidates[0] if len(candidates) == 1 else self.infer_slot(x, int(task_label), candidates)
        self.state.slot = slot
        return self.inner.forward_single_task(x, task_label)

    def infer_slot(self, x: torch.Tensor, task_label: int, candidates: list[int]) -> int:
        """SupSup's one-shot task inference: argmin_i dH/d alpha_i at alpha = 1/n."""
        with torch.enable_grad():
            alphas = torch.full((len(candidates),), 1.0 / len(candidates), device=x.device, requires_grad=True)
            self.state.alphas, self.state.candidates = alphas, candidates
            try:
                logits = self.inner.forward_single_task(x, task_label)
                probs = logits.softmax(1)
                entropy = -(probs * logits.log_softmax(1)).sum(1).mean()
                (grad,) = torch.autograd.grad(entropy, alphas)
            finally:
                self.state.alphas, self.state.candidates = None, []
        return candidates[int(grad.argmin())]

    @torch.no_grad()
    def features(self, x: torch.Tensor, task_label: int, slot: int) -> torch.Tensor:
        """Penultimate features (input of the last masked layer) of ``x`` under mask ``slot``."""
        self.state.capture, self.state.slot = True, slot
        try:
            self.inner.forward_single_task(x, task_label)
            if self.state.features is None:
                raise RuntimeError("the network ran no masked layer")
            return self.state.features
        finally:
            self.state.capture, self.state.features = False, None

    # ------------------------------------------------------------------ state
    def mask_state(self) -> dict:
        """What the masks of trained slots need besides the model's ``state_dict()``: the frozen
        0/1 masks of each layer's frozen slots, and which slots serve which task label."""
        return {
            "key_slots": {str(k): list(v) for k, v in self.key_slots.items()},
            "layers": {
                name: {
                    "slots": sorted(layer.frozen_slots),
                    "masks": [layer.frozen[s].clone() for s in sorted(layer.frozen_slots)],
                }
                for name, layer in self.masked_layers()
            },
        }

    @torch.no_grad()
    def load_mask_state(self, state: dict) -> None:
        self.key_slots = {int(k): [int(s) for s in v] for k, v in state["key_slots"].items()}
        self.training_slot = None
        for name, layer in self.masked_layers():
            saved = state["layers"][name]
            layer.frozen.zero_()
            layer.frozen_slots = set()
            for slot, mask in zip(saved["slots"], saved["masks"]):
                layer.frozen[slot] = mask.to(layer.frozen.device)
                layer.frozen_slots.add(int(slot))

    # ------------------------------------------------------------------ statistics
    def ownership(self) -> dict[str, list[int] | list[float] | float]:
        """Per trained slot (training order): mask density and fraction of all masked weights it
        owns, i.e. that no earlier slot's mask holds (|M_t \\ (M_0 | ... | M_{t-1})| / N)."""
        layers = [layer for _, layer in self.masked_layers()]
        total = sum(layer.weight.numel() for layer in layers)
        order = sorted(
            {s for slots in self.key_slots.values() for s in slots if all(s in l.frozen_slots for l in layers)}
        )
        density, owned = [], []
        union = [torch.zeros_like(layer.frozen[0]) for layer in layers]
        for slot in order:
            kept_count = new = 0
            for i, layer in enumerate(layers):
                m = layer.frozen[slot]
                kept_count += int(m.sum())
                new += int((m & ~union[i]).sum())
                union[i] |= m
            density.append(kept_count / total)
            owned.append(new / total)
        return {
            "slots": order,
            "mask_density": density,
            "owned_fraction": owned,
            "union_fraction": sum(int(u.sum()) for u in union) / total if order else 0.0,
        }
