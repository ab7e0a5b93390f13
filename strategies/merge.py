r"""``merge``: per-task LoRA adapters combined by a model-merging rule, without retraining (continual merging).

Training is PIC's (:mod:`forgetbench.strategies.pic`): experience 0 trains the scenario's network, whose weights
become the frozen backbone Theta_pre; every later experience t trains its own LoRA adapter with update
tau_t = (alpha / rank) B_t A_t on the layers it shares with earlier experiences (heads follow the scenario).
After each experience the finished updates are combined per layer by Hugging Face PEFT's merging functions
(``peft.utils.merge_utils``, what ``add_weighted_adapter`` applies to full weight deltas) and evaluation uses

$$
\Theta = \Theta_{pre} + \lambda \, \mathrm{merge}(\tau_1, \dots, \tau_t;\ w, d)
$$

with ``combination_type`` (w_i the task's weight, d the density):

* ``linear``: sum_i w_i tau_i (task arithmetic; with unit weights this is PIC's Theta_pre + lambda sum_i tau_i);
* ``ties`` (Yadav et al., NeurIPS 2023): each tau_i keeps its largest-magnitude fraction d of entries, every
  entry's sign is elected by the sign of the pruned tau_i's sum (PEFT elects before weighting; a zero sum counts
  as +), and the weighted entries w_i tau_i that agree with it are summed and divided by how many agree;
* ``dare_linear`` / ``dare_ties`` (Yu et al., ICML 2024): each tau_i keeps a random fraction d of its entries,
  rescaled by 1 / d, then ``linear`` / ``ties``' sign election and disjoint mean;
* ``magnitude_prune``: the largest-magnitude fraction d of each tau_i, then the weighted sum.

Hyperparameters (the first four as in :mod:`forgetbench.strategies.pic`):

* ``rank``: the LoRA adapters' rank (``alpha``: LoRA's scale numerator, default the rank).
* ``init``: ``previous`` (each adapter starts from the previous one) or ``fresh``.
* ``lam``: a fixed lambda >= 0 scaling the merged update, or null (default): chosen after each experience from
  {0.1, ..., 1.0} on the held-out slice, as PIC does.
* ``val_fraction``: the held-out share of each task's training data that chooses lambda (``lam: null``).
* ``combination_type``: the rule above;
* ``density`` (0 < d <= 1): the fraction of each tau_i's entries kept (``linear`` ignores it);
* ``weights``: w_i, one number for every task or a list with one per adapted experience (experiences 1..T-1).

DARE's random masks are drawn from a generator seeded with the run's seed, so a run is reproducible.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
from pydantic import Field, PositiveFloat, model_validator
from torch import nn
from torch.nn import functional as F

from forgetbench.strategies.adapters import PeftLayer, adapter_name, lora_weights
from forgetbench.strategies.base import StrategyContext, register_strategy
from forgetbench.strategies.pic import PICNet, PICParams, PICPlugin, pic_template
from forgetbench.strategies.plugin import generator_state, set_generator_state

COMBINATIONS = ("linear", "ties", "dare_linear", "dare_ties", "magnitude_prune")


class MergeParams(PICParams):
    combination_type: Literal["linear", "ties", "dare_linear", "dare_ties", "magnitude_prune"] = "ties"
    density: float = Field(0.5, gt=0.0, le=1.0)  # fraction of each task update's entries kept (not for linear)
    weights: PositiveFloat | list[PositiveFloat] = 1.0  # each adapter's weight: one for all, or one per adapter

    @model_validator(mode="after")
    def _weights_given(self) -> "MergeParams":
        if isinstance(self.weights, list) and not self.weights:
            raise ValueError("weights: give one number for every adapter, or a list with one per adapter")
        return self


def combine(
    task_tensors: list[torch.Tensor],
    weights: list[float],
    combination_type: str,
    density: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """PEFT's merge of ``task_tensors`` (same shape) with ``weights``; DARE's masks drawn from ``generator``."""
    from peft.utils import merge_utils

    w = torch.tensor(weights, dtype=task_tensors[0].dtype, device=task_tensors[0].device)
    if combination_type == "linear":
        return merge_utils.task_arithmetic(task_tensors, w)
    function = getattr(merge_utils, combination_type)
    if not combination_type.startswith("dare"):
        return function(task_tensors, w, density)
    with torch.random.fork_rng(devices=[]):  # PEFT draws DARE's masks from the global RNG
        if generator is not None:
            torch.manual_seed(int(torch.randint(2**62, (), generator=generator)))
        return function(task_tensors, w, density)


class MergeNet(PICNet):
    """PICNet whose evaluation adds lambda * merge(tau_1..tau_t) to each adapted layer instead of the adapters'
    scaled sum (a forward hook on the layer; the adapters themselves are switched off in evaluation)."""

    def __init__(self, *args, params: MergeParams, seed: int, **kwargs):
        self.merge_params = params
        self._merged: dict[str, torch.Tensor] = {}
        self._merged_for: tuple[int, ...] | None = None
        self._merge_generator = torch.Generator().manual_seed(seed)
        super().__init__(*args, **kwargs)
        for _, layer in self.lora_layers():
            layer.register_forward_hook(self._add_merged)

    def _activate(self) -> None:
        if not hasattr(self, "finished"):
            return
        if self.training and self.training_adapter is not None:
            super()._activate()
            return
        for _, layer in self.lora_layers():
            layer.set_adapter([], inference_mode=True)

    def task_weights(self, count: int) -> list[float]:
        w = self.merge_params.weights
        if not isinstance(w, list):
            return [float(w)] * count
        if len(w) < count:
            raise ValueError(f"weights: {len(w)} given, but {count} adapters are merged; give one per adapter")
        return [float(v) for v in w[:count]]

    def merged_deltas(self) -> dict[str, torch.Tensor]:
        """Per adapted layer, merge(tau_i over the finished adapters on it) (computed once per set of adapters)."""
        key = tuple(self.finished)
        if key != self._merged_for:
            self._merged, self._merged_for = {}, key
            weights = self.task_weights(sum(1 for i in self.finished if any(self.adapted[i])))
            order = [i for i in self.finished if self.adapted[i]]
            for name, layer in self.lora_layers():
                tasks = [i for i in order if adapter_name(i) in layer.lora_A]
                if not tasks:
                    continue
                with torch.no_grad():
                    deltas = [self._unit_delta(layer, adapter_name(i)) for i in tasks]
                    self._merged[name] = combine(
                        deltas,
                        [weights[order.index(i)] for i in tasks],
                        self.merge_params.combination_type,
                        self.merge_params.density,
                        self._merge_generator,
                    )
        return self._merged

    def _unit_delta(self, layer: PeftLayer, adapter: str) -> torch.Tensor:
        """tau = (alpha / rank) B A of ``adapter`` (its training scale, whatever scale it has now)."""
        a, b = lora_weights(layer, adapter)
        return self.lora_scale * (b @ a.flatten(1))

    def _add_merged(self, layer: PeftLayer, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        if (self.training and self.training_adapter is not None) or self.lam == 0:
            return None
        name = self._layer_names[id(layer)]
        delta = self.merged_deltas().get(name)
        if delta is None:
            return None
        base = layer.base_layer
        weight = delta.view_as(base.weight).to(output.dtype)
        if isinstance(base, nn.Linear):
            return output + self.lam * F.linear(inputs[0].to(output.dtype), weight)
        return output + self.lam * base._conv_forward(inputs[0].to(output.dtype), weight, None)

    @property
    def _layer_names(self) -> dict[int, str]:
        return {id(layer): name for name, layer in self.lora_layers()}

    def effective_weight(self, layer_name: str) -> torch.Tensor:
        layer = dict(self.lora_layers())[layer_name]
        weight = layer.base_layer.weight.detach().clone()
        if self.training and self.training_adapter is not None:
            return super().effective_weight(layer_name)
        delta = self.merged_deltas().get(layer_name)
        return weight if delta is None or self.lam == 0 else weight + self.lam * delta.view_as(weight)


class MergePlugin(PICPlugin):
    """PIC's plugin; the merged model is MergeNet's (the result records the combination used)."""

    def state_dict(self) -> dict:
        """PIC's state and the generator of DARE's masks."""
        return {**super().state_dict(), "merge_generator": generator_state(self.model._merge_generator)}

    def load_state_dict(self, state) -> None:
        super().load_state_dict(state)
        set_generator_state(self.model._merge_generator, state["merge_generator"])
        self.model._merged_for = None

    def extra_results(self) -> dict:
        results = super().extra_results()
        params = self.model.merge_params
        results["merge"] = {
            "combination_type": params.combination_type,
            "density": params.density,
            "weights": params.weights,
        }
        return results


@register_strategy("merge", params=MergeParams)
def build_merge(ctx: StrategyContext, params: MergeParams):
    """Per-task LoRA adapters merged by PEFT's TIES / DARE / magnitude pruning / linear rules (continual merging)."""
    ctx.require_fixed_schedule("merge", "keeps one adapter per experience")
    model = MergeNet(ctx.model, params.rank, params.alpha, ctx.used_params, params=params, seed=ctx.seed)
    model.task_weights(sum(1 for layers in model.adapted if layers))  # a short weights list fails before training
    model = model.to(ctx.device)
    plugin = MergePlugin(model, params, ctx.used_params, ctx.seed)
    ctx = dataclasses.replace(ctx, model=model)
    strategy = ctx.build(plugins=[plugin], template=pic_template())
    strategy.pic = plugin
    return strategy
