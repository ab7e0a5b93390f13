"""``supsup``: Supermasks in Superposition (Wortsman et al., NeurIPS 2020).

The scenario's network is rebuilt with random, **fixed** weights (signed constant init,
W = sign(w) * sqrt(2) / sqrt(fan_in), bias-free) and, per experience t, scores S_t (kaiming-uniform
init). Experience t trains only S_t; the network computes with

    W * M_t,    M_t = top-k(|S_t|) per layer,  k = round(sparsity * numel(W))

(``sparsity`` = fraction of weights kept, default 0.1), and dL/dS_t := dL/dM_t (straight-through
estimator). BatchNorm becomes per-task non-affine BatchNorm. After experience t, M_t is frozen.
Since W never changes and M_j (j < t) is frozen, every earlier model computes exactly the same
function afterwards: forgetting is zero by construction.

Masks are keyed on the experience index; at test time the task label selects the mask (task
identity given), and labels shared by several experiences (e.g. ``permuted`` with label 0) are
resolved by SupSup's one-shot entropy task inference (see :mod:`forgetbench.strategies.masking`).

The result record gets ``isolation``: per trained experience, the mask density and the fraction of
all masked weights the task *owns* (kept by its mask and by no earlier one), and the union's size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dataclasses

import torch
from pydantic import Field

from forgetbench.strategies.base import StrategyContext, StrategyParams, register_strategy
from forgetbench.strategies.masking import MaskedNet
from forgetbench.strategies.plugin import Plugin, tensor_bytes

if TYPE_CHECKING:  # Avalanche is imported when training starts, never to read this strategy's params
    from avalanche.training.templates import SupervisedTemplate


class SupSupParams(StrategyParams):
    sparsity: float = Field(0.1, gt=0.0, le=1.0, description="fraction of each layer's weights a mask keeps")


class MaskSlotPlugin(Plugin):
    """Experience i trains mask slot i only (its scores), then freezes it."""

    def __init__(self, model: MaskedNet):
        super().__init__()
        self.model = model

    def before_training_exp(self, strategy, **kwargs) -> None:
        slot = strategy.experience.current_experience
        if slot >= self.model.slots:
            raise ValueError(
                f"experience {slot} has no mask slot (the scenario declared {self.model.slots} experiences)"
            )
        self.model.begin_slot(slot, int(strategy.experience.task_labels[0]))
        self.train_only_scores(slot)

    def train_only_scores(self, slot: int) -> None:
        for p in self.model.parameters():
            p.requires_grad_(False)
        for _, layer in self.model.masked_layers():
            layer.scores[slot].requires_grad_(True)

    def after_training_exp(self, strategy, **kwargs) -> None:
        self.model.end_slot()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def state_dict(self) -> dict:
        """The trained slots' frozen masks and slot routing (scores and weights are the model's)."""
        return {"masks": self.model.mask_state()}

    def load_state_dict(self, state) -> None:
        self.model.load_mask_state(state["masks"])

    def state_bytes(self) -> int:
        """Bytes of the kept per-task state: the trained slots' frozen 0/1 masks."""
        return tensor_bytes(self.model.mask_state()["layers"])

    def extra_results(self) -> dict:
        return {"isolation": self.model.ownership()}


def masked_context(ctx: StrategyContext, sparsity: float) -> tuple[StrategyContext, MaskedNet]:
    """A context whose model is ``ctx.model`` rebuilt with masked layers (one slot per experience)."""
    ctx.require_fixed_schedule("a supermask method", "keeps one mask slot per experience")
    generator = torch.Generator().manual_seed(ctx.seed)
    model = MaskedNet(ctx.model, slots=len(ctx.used_params), sparsity=sparsity, generator=generator).to(ctx.device)
    return dataclasses.replace(ctx, model=model), model


@register_strategy("supsup", params=SupSupParams)
def build_supsup(ctx: StrategyContext, params: SupSupParams) -> SupervisedTemplate:
    """SupSup: one learned top-k supermask per task over fixed random weights (Wortsman et al. 2020)."""
    ctx, model = masked_context(ctx, params.sparsity)
    return ctx.build(plugins=[MaskSlotPlugin(model)])
