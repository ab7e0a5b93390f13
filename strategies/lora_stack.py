"""Per-task LoRA adapters stacked on a frozen pretrained backbone: the base of ``olora`` and ``inflora``.

Every experience t, the first included, trains its own PEFT LoRA adapter ``task<t>`` (update
Delta W_t = (alpha / rank) B_t A_t, A_t drawn kaiming-uniform from the run's seed, B_t = 0) on the backbone's
``target_modules`` (Linear layers every task uses, matched by name suffix as PEFT does); the backbone's own
weights never train. Every earlier adapter stays active and frozen, so training task t and evaluating after it
both compute with

    W = W_pre + sum_{i <= t} Delta W_i

(O-LoRA's and InfLoRA's model: the adapters are merged into the weights, no task identity is needed to pick
one). Parameters of the scenario's that sit outside the backbone's adapted layers follow PIC's rule: a task's
own parameters (its head) train, whatever an earlier task used (a shared head) is frozen.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import torch
from pydantic import PositiveFloat, PositiveInt

from forgetbench.strategies.adapters import adapter_diagnostics, adapter_name, lora_adapters
from forgetbench.strategies.base import StrategyContext, StrategyParams, shared_params
from forgetbench.strategies.pic import _ADAPTABLE, PICNet
from forgetbench.strategies.plugin import Plugin, generator_state, set_generator_state, tensor_bytes

PRETRAINED_WHY = (
    "it trains one LoRA adapter per task on a frozen pretrained backbone; the scenarios with one: "
    "text (the encoder's trainable layers), or your own scenario declaring the trait"
)


class StackedLoRAParams(StrategyParams):
    rank: PositiveInt = 8  # each task's LoRA rank
    alpha: PositiveFloat | None = None  # LoRA's scale numerator (update = alpha / rank * B A; None: alpha = rank)
    target_modules: list[str] = ["query", "value"]  # name suffixes of the backbone's Linear layers that get adapters


def target_layers(model: torch.nn.Module, used_params: Sequence[frozenset[str]], suffixes: Sequence[str]) -> list[str]:
    """The Linear / Conv layers every experience uses whose name ends with one of ``suffixes``."""
    every = frozenset.intersection(*map(frozenset, used_params)) if used_params else frozenset()
    layers = [
        name
        for name, m in model.named_modules()
        if isinstance(m, _ADAPTABLE)
        and f"{name}.weight" in every
        and any(name == s or name.endswith("." + s) for s in suffixes)
    ]
    if not layers:
        raise ValueError(f"target_modules: {list(suffixes)} name no Linear layer that every task uses")
    return layers


class StackedLoRANet(PICNet):
    """PICNet with an adapter for every experience on the same layers, every finished adapter kept active."""

    def __init__(self, model, params: StackedLoRAParams, used_params: Sequence[frozenset[str]]):
        layers = target_layers(model, used_params, params.target_modules)
        super().__init__(model, params.rank, params.alpha, used_params, adapted=[layers] * len(used_params))
        self.backbone = frozenset(f"inner.{layer}.base_layer.{leaf}" for layer in layers for leaf in ("weight", "bias"))
        self.merge(1.0)

    def _activate(self) -> None:
        if not hasattr(self, "finished"):
            return
        for _, layer in self.lora_layers():
            active = [adapter_name(i) for i in self.finished]
            if self.training and self.training_adapter is not None:
                active.append(adapter_name(self.training_adapter))
            for adapter in active:
                layer.set_scale(adapter, 1.0)
            # not PEFT's set_adapter, which would also make every active adapter trainable again
            layer._active_adapter = [a for a in active if a in layer.lora_A]

    def adapter_parameters(self, index: int, matrix: str) -> list[torch.nn.Parameter]:
        """``lora_A`` or ``lora_B`` weights of adapter ``index``, one per adapted layer (layer order)."""
        return [
            getattr(layer, matrix)[adapter_name(index)].weight
            for _, layer in self.lora_layers()
            if adapter_name(index) in getattr(layer, matrix)
        ]


class StackedLoRAPlugin(Plugin):
    """Freezes the backbone and every earlier adapter, starts a fresh adapter per experience."""

    def __init__(self, model: StackedLoRANet, used_params: Sequence[frozenset[str]], seed: int):
        super().__init__()
        self.model = model
        self.used = [frozenset(model.param_name(n) for n in names) for names in used_params]
        self.generator = torch.Generator().manual_seed(seed)

    def trainable(self, index: int, name: str) -> bool:
        """Whether parameter ``name`` trains in experience ``index`` (besides the current adapter)."""
        return (
            name in self.used[index] and name not in shared_params(self.used, index) and name not in self.model.backbone
        )

    def before_training_exp(self, strategy, **kwargs) -> None:
        index = strategy.experience.current_experience
        for name, p in self.model.named_parameters():
            p.requires_grad_(".lora_" not in name and self.trainable(index, name))
        self.model.start_adapter(index, "fresh", self.generator)
        for p in self.model.adapter_parameters(index, "lora_A") + self.model.adapter_parameters(index, "lora_B"):
            p.requires_grad_(True)

    def after_training_exp(self, strategy, **kwargs) -> None:
        self.model.finish_adapter()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def state_dict(self) -> dict:
        """Which adapters are finished (their weights are the model's parameters) and the RNG drawing them."""
        return {"finished": list(self.model.finished), "generator": generator_state(self.generator)}

    def load_state_dict(self, state) -> None:
        self.model.finished = [int(i) for i in state["finished"]]
        self.model.training_adapter = None
        self.model.merge(1.0)
        set_generator_state(self.generator, state["generator"])

    def state_bytes(self) -> int:
        """Bytes of the finished adapters (A_i, B_i per layer and task): what the method adds per task."""
        return tensor_bytes(self.model.adapter_tensors())

    def extra_results(self) -> dict:
        return {"adapters": {"per_task": adapter_diagnostics(lora_adapters(self.model)), "needs_task_identity": False}}


def build_stacked(ctx: StrategyContext, model: StackedLoRANet, plugin: StackedLoRAPlugin):
    """The template training ``model`` (already wrapping the scenario's network) with ``plugin``."""
    return dataclasses.replace(ctx, model=model.to(ctx.device)).build(plugins=[plugin])
