"""``pic``: parameter isolation + combination by task arithmetic (Zeng, Li, Ayesh, arXiv 2502.10966, 2025).

Experience 0 trains the scenario's network as usual; its weights become the frozen backbone
Theta_pre. Every later experience t trains its own low-rank adapter on each Linear / Conv layer
that an earlier experience used (LoRA: Delta W_t = (alpha / rank) * B_t A_t, conv kernels viewed as
(out, in * kernel)), on top of Theta_pre; parameters the scenario gives task t alone (its head,
private layers) are trained directly ("heads follow the scenario"). The adapter starts from the
previous task's adapter (``init: previous``) or fresh (``fresh``: A kaiming-uniform, B = 0).

After each experience the adapters are combined by task arithmetic. With tau_i = Phi_i - Phi_pre
the i-th adapter's weight update, tau_i = (alpha / rank) * B_i A_i,

    Theta = Theta_pre + lambda * sum_{i=1..t} tau_i

and evaluation uses Theta with **no** task-specific adapter (the head still follows the task label).
With ``init: previous`` each tau_i already contains the earlier updates it was initialised from
(tau_i = tau_{i-1} + what task i added), so sum_i tau_i weights early tasks' directions more
(task 1's update appears in every later tau); lambda scales the whole sum uniformly.

``lam``: a fixed lambda >= 0 (lambda = 0 gives exactly the frozen backbone), or null (default): after
each experience lambda is chosen from {0.1, 0.2, ..., 1.0} to maximise the mean accuracy on a
held-out ``val_fraction`` of the training data of every task trained so far (that slice is then
not trained on; ties go to the smaller lambda). The chosen lambdas go to ``pic.lam`` in the result.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Iterator, Literal

import torch
import torch.nn.functional as F
from avalanche.training.templates import SupervisedTemplate
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt
from torch import nn

from benchmark.loaders import TensorBatchLoader, dataset_tensors
from benchmark.models import TaskRoutedModule
from benchmark.template import FastSupervisedTemplate
from strategies.base import StrategyContext, StrategyParams, register_strategy, shared_params
from strategies.plugin import Plugin, generator_state, set_generator_state, tensor_bytes

LAMBDA_GRID = tuple(round(0.1 * i, 1) for i in range(1, 11))
_ADAPTABLE = (nn.Linear, nn.Conv1d, nn.Conv2d)


class PICParams(StrategyParams):
    rank: PositiveInt = 4
    alpha: PositiveFloat | None = None  # LoRA scale alpha / rank; None: alpha = rank (scale 1)
    lam: NonNegativeFloat | None = None
    init: Literal["previous", "fresh"] = "previous"
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0)


class LoRALayer(nn.Module):
    """A Linear / Conv layer computing with ``weight + delta``, where delta is

    * in training with an active adapter: (alpha / rank) * B A (the current task's adapter);
    * in evaluation: the merged update lambda * sum_i tau_i (buffer ``merged``);
    * otherwise 0.
    """

    def __init__(self, layer: nn.Module, rank: int, alpha: float | None):
        super().__init__()
        self.kind = "linear" if isinstance(layer, nn.Linear) else ("conv1d" if isinstance(layer, nn.Conv1d) else "conv2d")
        self.conv_args = {}
        if self.kind != "linear":
            self.conv_args = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=layer.groups)
        # `weight` / `bias` keep their names so the scenario's parameter names still apply.
        self.weight = layer.weight
        self.bias = layer.bias
        out_features, fan_in = self.weight.shape[0], self.weight[0].numel()
        self.rank = min(rank, out_features, fan_in)
        self.scale = (alpha if alpha is not None else rank) / rank
        self.lora_A = nn.Parameter(torch.zeros(self.rank, fan_in), requires_grad=False)
        self.lora_B = nn.Parameter(torch.zeros(out_features, self.rank), requires_grad=False)
        self.register_buffer("merged", torch.zeros_like(self.weight), persistent=False)
        self.adapter_active = False
        self.taus: list[tuple[torch.Tensor, torch.Tensor]] = []  # (B_i, A_i) of each finished adapter

    def delta(self, B: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
        """tau = (alpha / rank) * B A, in the weight's shape."""
        return (self.scale * (B @ A)).view_as(self.weight)

    def effective_weight(self) -> torch.Tensor:
        if self.training and self.adapter_active:
            return self.weight + self.delta(self.lora_B, self.lora_A)
        if not self.training:
            return self.weight + self.merged
        return self.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.effective_weight()
        if self.kind == "linear":
            return F.linear(x, w, self.bias)
        conv = F.conv1d if self.kind == "conv1d" else F.conv2d
        return conv(x, w, self.bias, **self.conv_args)

    def start_adapter(self, init: str, generator: torch.Generator) -> None:
        """Activate an adapter: the previous one's (B, A) or a fresh one (A kaiming-uniform, B = 0)."""
        with torch.no_grad():
            if init == "previous" and self.taus:
                B, A = self.taus[-1]
                self.lora_B.copy_(B)
                self.lora_A.copy_(A)
            else:
                bound = 1.0 / math.sqrt(self.lora_A.shape[1])
                self.lora_A.copy_((torch.rand(self.lora_A.shape, generator=generator) * 2 - 1) * bound)
                self.lora_B.zero_()
        self.adapter_active = True

    def finish_adapter(self) -> None:
        self.taus.append((self.lora_B.detach().clone(), self.lora_A.detach().clone()))
        self.adapter_active = False

    @torch.no_grad()
    def merge(self, lam: float) -> None:
        """merged = lambda * sum_i tau_i."""
        self.merged.zero_()
        for B, A in self.taus:
            self.merged.add_(self.delta(B, A), alpha=lam)


class PICNet(TaskRoutedModule):
    """The scenario's network with every Linear / Conv layer wrapped as a :class:`LoRALayer`."""

    def __init__(self, model: TaskRoutedModule, rank: int, alpha: float | None):
        super().__init__()
        self.inner = copy.deepcopy(model)
        memo: dict[int, LoRALayer] = {}
        for parent in list(self.inner.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, _ADAPTABLE):
                    if id(child) not in memo:
                        memo[id(child)] = LoRALayer(child, rank, alpha)
                    setattr(parent, name, memo[id(child)])
        if hasattr(model, "max_class_label"):
            self.max_class_label = model.max_class_label

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        return self.inner.forward_single_task(x, task_label)

    def lora_layers(self) -> Iterator[tuple[str, LoRALayer]]:
        for name, module in self.inner.named_modules():
            if isinstance(module, LoRALayer):
                yield name, module

    def merge(self, lam: float) -> None:
        for _, layer in self.lora_layers():
            layer.merge(lam)


class PICPlugin(Plugin):
    """Freezes what earlier experiences trained, runs one adapter per experience, merges after it."""

    def __init__(self, model: PICNet, params: PICParams, used_params, seed: int):
        super().__init__()
        self.model = model
        self.params = params
        # scenario names -> names inside PICNet (the copy lives under `inner.`)
        self.used = [frozenset(f"inner.{n}" for n in names) for names in used_params]
        self.generator = torch.Generator().manual_seed(seed)
        self.validation: list[tuple[torch.Tensor, torch.Tensor, int]] = []
        self.lams: list[float | None] = []
        self.val_accuracy: list[float | None] = []
        # per experience: {lambda: merged model's mean held-out accuracy} over the grid tried (None: no choice made)
        self.val_accuracy_per_lambda: list[dict[str, float] | None] = []

    def before_training_exp(self, strategy, **kwargs) -> None:
        index = strategy.experience.current_experience
        shared = shared_params(self.used, index)
        named = dict(self.model.named_parameters())
        for name, p in named.items():
            # new parameters (this task's own) train directly; whatever an earlier task used is frozen
            p.requires_grad_(name in self.used[index] and name not in shared)
        for name, layer in self.model.lora_layers():
            if f"inner.{name}.weight" in shared:
                layer.start_adapter(self.params.init, self.generator)
                layer.lora_A.requires_grad_(True)
                layer.lora_B.requires_grad_(True)

    def split_validation(self, tensors: tuple[torch.Tensor, ...], task_label: int) -> tuple[torch.Tensor, ...]:
        """Hold out ``val_fraction`` of an experience's data for choosing lambda; returns the rest."""
        if self.params.lam is not None:
            return tensors
        n = len(tensors[0])
        order = torch.randperm(n, generator=self.generator)
        n_val = max(1, int(round(self.params.val_fraction * n)))
        val, train = order[:n_val].sort().values, order[n_val:].sort().values
        self.validation.append((tensors[0][val], tensors[1][val], task_label))
        return tuple(t[train] for t in tensors)

    def after_training_exp(self, strategy, **kwargs) -> None:
        adapted = False
        for _, layer in self.model.lora_layers():
            if layer.adapter_active:
                layer.finish_adapter()
                adapted = True
            layer.lora_A.requires_grad_(False)
            layer.lora_B.requires_grad_(False)
        for p in self.model.parameters():
            p.requires_grad_(False)
        if not adapted:
            self.lams.append(None)
            self.val_accuracy.append(None)
            self.val_accuracy_per_lambda.append(None)
            self.model.merge(0.0)
            return
        if self.params.lam is not None:
            self.lams.append(self.params.lam)
            self.val_accuracy.append(None)
            self.val_accuracy_per_lambda.append(None)
            self.model.merge(self.params.lam)
            return
        scores = {lam: self.validate(lam, strategy.device) for lam in LAMBDA_GRID}
        best = max(LAMBDA_GRID, key=lambda lam: (scores[lam], -lam))
        self.lams.append(best)
        self.val_accuracy.append(scores[best])
        self.val_accuracy_per_lambda.append({str(lam): acc for lam, acc in scores.items()})
        self.model.merge(best)

    @torch.no_grad()
    def validate(self, lam: float, device: torch.device) -> float:
        """Mean accuracy of the merged model (this lambda) over the held-out data of every task so far."""
        self.model.merge(lam)
        was_training = self.model.training
        self.model.eval()
        accuracies = []
        for x, y, key in self.validation:
            pred = self.model.forward_single_task(x.to(device), key).argmax(1).cpu()
            accuracies.append(float((pred == y).double().mean()))
        self.model.train(was_training)
        return sum(accuracies) / len(accuracies)

    def state_dict(self) -> dict:
        """Every finished adapter (B_i, A_i) and the merged update per layer, the held-out data,
        the chosen lambdas, and the RNG that draws adapters and hold-outs."""
        return {
            "layers": {
                name: {"taus": [[B.clone(), A.clone()] for B, A in layer.taus], "merged": layer.merged.clone()}
                for name, layer in self.model.lora_layers()
            },
            "validation": [[x, y, int(key)] for x, y, key in self.validation],
            "lams": list(self.lams),
            "val_accuracy": list(self.val_accuracy),
            "val_accuracy_per_lambda": list(self.val_accuracy_per_lambda),
            "generator": generator_state(self.generator),
        }

    @torch.no_grad()
    def load_state_dict(self, state) -> None:
        for name, layer in self.model.lora_layers():
            saved = state["layers"][name]
            layer.taus = [(B.to(layer.weight.device), A.to(layer.weight.device)) for B, A in saved["taus"]]
            layer.merged.copy_(saved["merged"])
            layer.adapter_active = False
        self.validation = [(x, y, int(key)) for x, y, key in state["validation"]]
        self.lams = list(state["lams"])
        self.val_accuracy = list(state["val_accuracy"])
        self.val_accuracy_per_lambda = list(state.get("val_accuracy_per_lambda", [None] * len(self.lams)))
        set_generator_state(self.generator, state["generator"])

    def state_bytes(self) -> int:
        """Bytes of the adapters kept for merging (B_i, A_i per layer and task) and the merged update."""
        return tensor_bytes(self.state_dict()["layers"])

    def extra_results(self) -> dict:
        return {"pic": {"lam": self.lams, "val_accuracy": self.val_accuracy,
                        "val_accuracy_per_lambda": self.val_accuracy_per_lambda}}


class PICTemplate(FastSupervisedTemplate):
    """Trains on an experience minus the validation slice the plugin holds out (when lambda is chosen)."""

    pic: PICPlugin

    def make_train_dataloader(self, shuffle: bool = True, drop_last: bool = False, **kwargs) -> None:
        tensors = dataset_tensors(self.adapted_dataset)
        tensors = self.pic.split_validation(tensors, int(self.experience.task_labels[0]))
        self.dataloader = TensorBatchLoader(
            tensors, self.train_mb_size, shuffle=shuffle, generator=self.data_generator, drop_last=drop_last
        )


@register_strategy("pic", params=PICParams)
def build_pic(ctx: StrategyContext, params: PICParams) -> SupervisedTemplate:
    """Frozen backbone + per-task LoRA adapters combined by task arithmetic (Zeng, Li, Ayesh 2025)."""
    ctx.require_fixed_schedule("pic", "keeps one adapter per experience")
    model = PICNet(ctx.model, params.rank, params.alpha).to(ctx.device)
    plugin = PICPlugin(model, params, ctx.used_params, ctx.seed)
    ctx = dataclasses.replace(ctx, model=model)
    strategy = ctx.build(plugins=[plugin], template=PICTemplate)
    strategy.pic = plugin
    return strategy
