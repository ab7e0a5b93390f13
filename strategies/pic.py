"""``pic``: parameter isolation + combination by task arithmetic (Zeng, Li, Ayesh, arXiv 2502.10966, 2025).

Experience 0 trains the scenario's network as usual; its weights become the frozen backbone
Theta_pre. Every later experience t trains its own low-rank adapter on each Linear / Conv layer
that an earlier experience used, on top of Theta_pre; parameters the scenario gives task t alone
(its head, private layers) are trained directly ("heads follow the scenario"). The adapters are
Hugging Face PEFT LoRA adapters (one named adapter ``task<t>`` per experience, injected into every
Linear / Conv1d / Conv2d layer: the same code wraps an MLP and a transformer's attention and feed-
forward layers), Delta W_t = (alpha / rank) * B_t A_t (conv kernels viewed as (out, in * kernel)).
The adapter starts from the previous task's adapter (``init: previous``) or fresh (``fresh``:
A kaiming-uniform, B = 0).

After each experience the adapters are combined by task arithmetic. With tau_i = Phi_i - Phi_pre
the i-th adapter's weight update, tau_i = (alpha / rank) * B_i A_i,

    Theta = Theta_pre + lambda * sum_{i=1..t} tau_i

and evaluation uses Theta with **no** task-specific adapter (the head still follows the task label):
every finished adapter is active, each scaled by lambda (PEFT sums the active adapters' outputs,
which by linearity is the merged weight's output).
With ``init: previous`` each tau_i already contains the earlier updates it was initialised from
(tau_i = tau_{i-1} + what task i added), so sum_i tau_i weights early tasks' directions more
(task 1's update appears in every later tau); lambda scales the whole sum uniformly.

Hyperparameters:

* ``rank``: the LoRA adapters' rank.
* ``alpha``: LoRA's scale numerator (the update is (alpha / rank) B A; default: the rank).
* ``init``: ``previous`` (each adapter starts from the previous one) or ``fresh``.
* ``val_fraction``: the held-out share of each task's training data that chooses lambda (``lam: null``).
* ``lam``: a fixed lambda >= 0 (lambda = 0 gives exactly the frozen backbone), or null (default): after
each experience lambda is chosen from {0.1, 0.2, ..., 1.0} to maximise the mean accuracy on a
held-out ``val_fraction`` of the training data of every task trained so far (that slice is then
not trained on; ties go to the smaller lambda). The chosen lambdas go to ``pic.lam`` in the result,
the merged model's held-out accuracy for every lambda tried to ``pic.val_accuracy_per_lambda``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import warnings
from typing import TYPE_CHECKING, Any, Iterator, Literal, Sequence

import torch
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt
from torch import nn

from forgetbench.benchmark.data.loaders import TensorBatchLoader, dataset_tensors
from forgetbench.benchmark.data.models import TaskRoutedModule
from forgetbench.strategies.adapters import PeftLayer, adapter_diagnostics, adapter_name, lora_adapters, lora_weights
from forgetbench.strategies.base import StrategyContext, StrategyParams, register_strategy, shared_params
from forgetbench.strategies.plugin import Plugin, generator_state, on_avalanche_base, set_generator_state, tensor_bytes

if TYPE_CHECKING:  # Avalanche is imported when training starts, never to read this strategy's params
    from avalanche.training.templates import SupervisedTemplate
    from forgetbench.benchmark.train.template import FastSupervisedTemplate as _TemplateBase
else:  # at run time the methods sit on a plain class, put on Avalanche's when first built
    _TemplateBase = object


LAMBDA_GRID = tuple(round(0.1 * i, 1) for i in range(1, 11))
_ADAPTABLE = (nn.Linear, nn.Conv1d, nn.Conv2d)


class PICParams(StrategyParams):
    rank: PositiveInt = 4
    alpha: PositiveFloat | None = None  # LoRA scale alpha / rank; None: alpha = rank (scale 1)
    lam: NonNegativeFloat | None = None
    init: Literal["previous", "fresh"] = "previous"
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0)


def _import_peft():
    try:
        import peft
    except ImportError:
        raise ImportError("strategy 'pic' needs Hugging Face peft: pip install 'forgetbench[text]'") from None
    return peft


class PICNet(TaskRoutedModule):
    """The scenario's network (a copy, under ``inner.``) with a PEFT LoRA adapter ``task<t>`` on every
    Linear / Conv layer that experience t shares with an earlier one.

    ``adapted[t]`` names the layers carrying adapter t. In training mode only the adapter being trained
    is active (scale 1); in evaluation mode every finished adapter is active, scaled by lambda.
    Wrapped layers keep their weights under ``<layer>.base_layer.``; :meth:`param_name` maps the
    scenario's parameter names onto this network's.
    """

    def __init__(
        self,
        model: TaskRoutedModule,
        rank: int,
        alpha: float | None,
        used_params: Sequence[frozenset[str]],
        adapted: Sequence[Sequence[str]] | None = None,
    ):
        """``adapted[t]``: the layers that get adapter t (default: the Linear / Conv layers experience t shares
        with an earlier one, PIC's rule)."""
        super().__init__()
        peft = _import_peft()
        self.inner = copy.deepcopy(model)
        if adapted is None:
            adaptable = {name for name, m in self.inner.named_modules() if isinstance(m, _ADAPTABLE)}
            adapted = [
                [n for n in adaptable if f"{n}.weight" in shared_params(used_params, index)]
                for index in range(len(used_params))
            ]
        self.adapted: list[list[str]] = [sorted(layers) for layers in adapted]
        self._renamed = {}
        for layer in sorted({n for names in self.adapted for n in names}):
            for leaf in ("weight", "bias"):
                self._renamed[f"{layer}.{leaf}"] = f"{layer}.base_layer.{leaf}"
        for index, layers in enumerate(self.adapted):
            if layers:
                config = peft.LoraConfig(
                    r=rank,
                    lora_alpha=alpha if alpha is not None else rank,
                    lora_dropout=0.0,
                    target_modules="^(" + "|".join(map(re.escape, layers)) + ")$",
                )
                with warnings.catch_warnings():  # "multiple adapters in the model": one per experience, by design
                    warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                    peft.inject_adapter_in_model(config, self.inner, adapter_name=adapter_name(index))
        self._rewire_aliases()
        if hasattr(model, "max_class_label"):
            self.max_class_label = model.max_class_label
        self.lora_scale = (alpha if alpha is not None else rank) / rank  # an adapter's training scale
        self.training_adapter: int | None = None
        self.finished: list[int] = []
        self.lam = 0.0
        for p in self.inner.parameters():
            p.requires_grad_(True)  # PEFT freezes the base model; the plugin decides what trains
        self.train()

    def _rewire_aliases(self) -> None:
        """A layer reachable under two names (one module object in two places) is wrapped under its
        first name only; point every other place at the same wrapper, so no path bypasses the adapter."""
        wrappers = {id(layer.base_layer): layer for _, layer in self.lora_layers()}
        for parent in list(self.inner.modules()):
            for name, child in list(parent.named_children()):
                if id(child) in wrappers and wrappers[id(child)] is not parent:
                    setattr(parent, name, wrappers[id(child)])

    def param_name(self, scenario_name: str) -> str:
        """This network's name for the scenario's parameter ``scenario_name``."""
        return "inner." + self._renamed.get(scenario_name, scenario_name)

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        return self.inner.forward_single_task(x, task_label)

    def lora_layers(self) -> Iterator[tuple[str, PeftLayer]]:
        from peft.tuners.lora import LoraLayer

        for name, module in self.inner.named_modules():
            if isinstance(module, LoraLayer):
                yield name, module

    def train(self, mode: bool = True) -> "PICNet":
        super().train(mode)
        self._activate()
        return self

    def _activate(self) -> None:
        """Training: the adapter being trained; evaluation: every finished adapter at scale lambda."""
        if not hasattr(self, "finished"):
            return  # nn.Module.__init__ calls train() before the adapters exist
        for _, layer in self.lora_layers():
            if self.training and self.training_adapter is not None:
                trained = adapter_name(self.training_adapter)
                layer.set_adapter([trained] if trained in layer.lora_A else [])
                continue
            merged = [adapter_name(i) for i in self.finished if adapter_name(i) in layer.lora_A] if self.lam > 0 else []
            for adapter in merged:
                layer.set_scale(adapter, self.lam)
            layer.set_adapter(merged, inference_mode=True)

    def start_adapter(self, index: int, init: str, generator: torch.Generator) -> None:
        """Train adapter ``index`` from here on: a copy of each layer's latest finished adapter, or fresh."""
        name = adapter_name(index)
        with torch.no_grad():
            for _, layer in self.lora_layers():
                if name not in layer.lora_A:
                    continue
                A, B = lora_weights(layer, name)
                earlier = [adapter_name(i) for i in self.finished if adapter_name(i) in layer.lora_A]
                if init == "previous" and earlier:
                    previous_a, previous_b = lora_weights(layer, earlier[-1])
                    A.copy_(previous_a)
                    B.copy_(previous_b)
                else:  # kaiming-uniform(a=sqrt(5)) as nn.Linear and PEFT, drawn from the strategy's generator
                    bound = 1.0 / math.sqrt(A[0].numel())
                    A.copy_((torch.rand(A.shape, generator=generator) * 2 - 1) * bound)
                    B.zero_()
                layer.set_scale(name, 1.0)
        self.training_adapter = index
        self._activate()

    def finish_adapter(self) -> bool:
        """Stop training the current adapter; returns whether there was one."""
        index, self.training_adapter = self.training_adapter, None
        if index is None:
            return False
        self.finished.append(index)
        self._activate()
        return True

    def merge(self, lam: float) -> None:
        """Evaluate with Theta_pre + lambda * sum_i tau_i."""
        self.lam = float(lam)
        self._activate()

    def effective_weight(self, layer_name: str) -> torch.Tensor:
        """The weight the layer computes with now: base + the active adapters' scaled deltas."""
        layer = dict(self.lora_layers())[layer_name]
        weight = layer.base_layer.weight.detach().clone()
        for adapter in layer.active_adapters:
            weight += layer.get_delta_weight(adapter).view_as(weight)
        return weight

    def adapter_tensors(self) -> dict[str, dict[str, dict[str, torch.Tensor]]]:
        """Every finished adapter's (A, B) per layer."""
        out: dict[str, dict[str, dict[str, torch.Tensor]]] = {}
        for name, layer in self.lora_layers():
            for i in self.finished:
                if adapter_name(i) in layer.lora_A:
                    a, b = lora_weights(layer, adapter_name(i))
                    out.setdefault(name, {})[adapter_name(i)] = {"A": a, "B": b}
        return out


class PICPlugin(Plugin):
    """Freezes what earlier experiences trained, runs one adapter per experience, merges after it."""

    def __init__(self, model: PICNet, params: PICParams, used_params, seed: int):
        super().__init__()
        self.model = model
        self.params = params
        self.used = [frozenset(model.param_name(n) for n in names) for names in used_params]
        self.generator = torch.Generator().manual_seed(seed)
        self.validation: list[tuple[torch.Tensor, torch.Tensor, int]] = []
        self.lams: list[float | None] = []
        self.val_accuracy: list[float | None] = []
        # per experience: {lambda: merged model's mean held-out accuracy} over the grid tried (None: no choice made)
        self.val_accuracy_per_lambda: list[dict[str, float] | None] = []

    def before_training_exp(self, strategy, **kwargs) -> None:
        index = strategy.experience.current_experience
        shared = shared_params(self.used, index)
        for name, p in self.model.named_parameters():
            # new parameters (this task's own) train directly; whatever an earlier task used is frozen
            p.requires_grad_(name in self.used[index] and name not in shared)
        if self.model.adapted[index]:
            self.model.start_adapter(index, self.params.init, self.generator)

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
        adapted = self.model.finish_adapter()
        for p in self.model.parameters():
            p.requires_grad_(False)
        if not adapted:
            self._choose(None, None, None, 0.0)
        elif self.params.lam is not None:
            self._choose(self.params.lam, None, None, self.params.lam)
        else:
            scores = {lam: self.validate(lam, strategy.device) for lam in LAMBDA_GRID}
            best = max(LAMBDA_GRID, key=lambda lam: (scores[lam], -lam))
            self._choose(best, scores[best], {str(lam): acc for lam, acc in scores.items()}, best)

    def _choose(self, lam, accuracy, per_lambda, merge_with: float) -> None:
        self.lams.append(lam)
        self.val_accuracy.append(accuracy)
        self.val_accuracy_per_lambda.append(per_lambda)
        self.model.merge(merge_with)

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
        """Which adapters are finished and the merging lambda (the adapters' weights are the model's
        parameters, checkpointed with it), the held-out data, the chosen lambdas, and the RNG that
        draws adapters and hold-outs."""
        return {
            "finished": list(self.model.finished),
            "merge_lam": self.model.lam,
            "validation": [[x, y, int(key)] for x, y, key in self.validation],
            "lams": list(self.lams),
            "val_accuracy": list(self.val_accuracy),
            "val_accuracy_per_lambda": list(self.val_accuracy_per_lambda),
            "generator": generator_state(self.generator),
        }

    def load_state_dict(self, state) -> None:
        self.model.finished = [int(i) for i in state["finished"]]
        self.model.training_adapter = None
        self.model.merge(float(state["merge_lam"]))
        self.validation = [(x, y, int(key)) for x, y, key in state["validation"]]
        self.lams = list(state["lams"])
        self.val_accuracy = list(state["val_accuracy"])
        self.val_accuracy_per_lambda = list(state["val_accuracy_per_lambda"])
        set_generator_state(self.generator, state["generator"])

    def state_bytes(self) -> int:
        """Bytes of the finished adapters kept for merging (A_i, B_i per layer and task)."""
        return tensor_bytes(self.model.adapter_tensors())

    def extra_results(self) -> dict:
        """The chosen lambdas and held-out accuracies; the adapters' diagnostics (evaluation merges every
        adapter, so inference needs no task identity beyond the scenario's heads)."""
        return {
            "pic": {
                "lam": self.lams,
                "val_accuracy": self.val_accuracy,
                "val_accuracy_per_lambda": self.val_accuracy_per_lambda,
            },
            "adapters": {"per_task": adapter_diagnostics(lora_adapters(self.model)), "needs_task_identity": False},
        }


class _PICTraining(_TemplateBase):
    """Trains on an experience minus the validation slice the plugin holds out (when lambda is chosen): the methods
    of ``PICTemplate``, on the harness's ``FastSupervisedTemplate``."""

    pic: PICPlugin

    def make_train_dataloader(self, shuffle: bool = True, drop_last: bool = False, **kwargs) -> None:
        tensors: tuple[torch.Tensor, ...] = dataset_tensors(self.adapted_dataset)
        tensors = self.pic.split_validation(tensors, int(self.experience.task_labels[0]))
        self.dataloader = TensorBatchLoader(
            tensors, self.train_mb_size, shuffle=shuffle, generator=self.data_generator, drop_last=drop_last
        )


@register_strategy("pic", params=PICParams)
def build_pic(ctx: StrategyContext, params: PICParams) -> SupervisedTemplate:
    """Frozen backbone + per-task PEFT LoRA adapters combined by task arithmetic (Zeng, Li, Ayesh 2025)."""
    ctx.require_fixed_schedule("pic", "keeps one adapter per experience")
    model = PICNet(ctx.model, params.rank, params.alpha, ctx.used_params).to(ctx.device)
    plugin = PICPlugin(model, params, ctx.used_params, ctx.seed)
    ctx = dataclasses.replace(ctx, model=model)
    strategy = ctx.build(plugins=[plugin], template=pic_template())
    strategy.pic = plugin
    return strategy


def pic_template() -> type:
    def base() -> type:
        from forgetbench.benchmark.train.template import FastSupervisedTemplate

        return FastSupervisedTemplate

    return on_avalanche_base("PICTemplate", _PICTraining, base)


def __getattr__(name: str) -> Any:  # `from ...pic import PICTemplate` builds it then (and imports Avalanche)
    if name == "PICTemplate":
        return pic_template()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
