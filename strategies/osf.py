r"""``osf``: orthogonal subspace fine-tuning on a pretrained backbone, Hugging Face PEFT's ``OSFConfig`` per task.

OSF (Nayak et al., "Sculpting Subspaces: Constrained Full Fine-Tuning in LLMs for Continual Learning", 2025)
fine-tunes every target weight inside the subspace its dominant singular directions leave free. PEFT's OSF layer
decomposes W = U_high S_high V_high^T + U_low S_low V_low^T (the top ``k`` singular triplets are *high*), trains
U_low, S_low, V_low only, and projects their gradients off span(U_high) and span(V_high), so the update

$$
\Delta W = U_{low} S_{low} V_{low}^\top - U^0_{low} S^0_{low} {V^0_{low}}^\top
$$

never moves the preserved directions. Continual use: each task t gets a fresh OSF adapter on the weights as
the earlier tasks left them (the previous adapter merged in), preserving the top k_t = floor(f_t * min(out, in))
directions with f_t = min(``effective_rank`` + t * ``rank_step``, ``max_preserved``): the directions earlier
tasks made dominant join the frozen subspace as it grows. The backbone's other weights (biases, norms) stay
frozen; a task's own parameters (its head) train, whatever an earlier task used is frozen (PIC's rule).
Evaluation uses the merged weights: no task identity is needed.

Hyperparameters:

* ``target_modules``: name suffixes of the backbone's Linear layers OSF applies to (every task must use them).
* ``effective_rank`` (0 < f_0 < 1): the share of each weight's singular directions preserved while training
  task 0.
* ``rank_step`` (>= 0): the share added for each later task.
* ``max_preserved`` (< 1): the largest share preserved, so every task keeps directions to train.
* ``reproject`` (default true): PEFT projects the *gradients* of U_low and V_low off the preserved subspace, which
  keeps the update there under SGD but not under Adam, whose per-entry step scaling leaves it (measured on
  MiniLM's top layer, one task: 15-28% of the update's norm lay in the preserved directions under Adam, at most 0.03%
  under SGD). With ``reproject`` the plugin also projects U_low and V_low themselves after every optimizer step,
  so U_high^T Delta W = 0 and Delta W V_high = 0 hold under any optimizer (tested); false is PEFT's behaviour.

``adapters.per_task`` in the record gives each task's update norm ||Delta W_t|| (over the layers) and the entries
it trained (U_low, S_low, V_low); the held total stays that of one adapter, since each is merged after its task.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import warnings

import torch
from pydantic import Field, NonNegativeFloat

from forgetbench.benchmark.data.models import TaskRoutedModule
from forgetbench.strategies.adapters import PeftLayer
from forgetbench.strategies.base import StrategyContext, StrategyParams, register_strategy, shared_params
from forgetbench.strategies.lora_stack import PRETRAINED_WHY, target_layers
from forgetbench.strategies.plugin import Plugin

ADAPTER = "osf"


class OSFParams(StrategyParams):
    target_modules: list[str] = ["query", "key", "value", "dense"]  # name suffixes of the backbone's Linear layers
    effective_rank: float = Field(0.5, gt=0.0, lt=1.0)  # share of singular directions preserved for task 0
    rank_step: NonNegativeFloat = 0.1  # share added per later task
    max_preserved: float = Field(0.9, gt=0.0, lt=1.0)  # cap on the preserved share
    reproject: bool = True  # project U_low / V_low off the preserved subspace after each step (not only gradients)


def preserved_rank(min_dim: int, share: float) -> int:
    """How many singular directions of a weight with ``min_dim`` = min(out, in) stay frozen (at least one trains)."""
    return max(1, min(min_dim - 1, math.floor(min_dim * share)))


class OSFNet(TaskRoutedModule):
    """The scenario's network (under ``inner.``) with one PEFT OSF adapter on each target layer at a time."""

    def __init__(self, model: TaskRoutedModule, params: OSFParams, used_params):
        super().__init__()
        self.inner = copy.deepcopy(model)
        self.params = params
        self.layers = target_layers(self.inner, used_params, params.target_modules)
        if hasattr(model, "max_class_label"):
            self.max_class_label = model.max_class_label
        self.register_buffer("task_index", torch.tensor(0))  # the task the current adapter is for (checkpointed)
        self._inject_all(0)
        self.register_load_state_dict_pre_hook(self._match_checkpoint)

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        return self.inner.forward_single_task(x, task_label)

    def share(self, task: int) -> float:
        p = self.params
        return min(p.effective_rank + task * p.rank_step, p.max_preserved)

    def _module(self, name: str) -> PeftLayer:
        return self.inner.get_submodule(name)

    def _inject(self, name: str, rank: int) -> None:
        from peft import OSFConfig, inject_adapter_in_model

        config = OSFConfig(target_modules=f"^{re.escape(name)}$", effective_rank=rank)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            inject_adapter_in_model(config, self.inner, adapter_name=ADAPTER)

    def _inject_all(self, task: int) -> None:
        for name in self.layers:
            self._inject(name, preserved_rank(min(self._module(name).weight.shape), self.share(task)))

    def _unload(self, name: str, merge: bool) -> None:
        layer = self._module(name)
        if not hasattr(layer, "osf_svd_params"):
            return
        if merge:
            layer.merge(adapter_names=[ADAPTER])
        layer._detach_hooks()
        parent_name, _, child = name.rpartition(".")
        setattr(self.inner.get_submodule(parent_name) if parent_name else self.inner, child, layer.get_base_layer())

    def osf_layers(self) -> dict[str, PeftLayer]:
        return {name: self._module(name) for name in self.layers if hasattr(self._module(name), "osf_svd_params")}

    @torch.no_grad()
    def update_norm(self) -> tuple[float, int]:
        """||Delta W|| over the target layers of the adapter now trained, and its trained entries."""
        squares, entries = 0.0, 0
        for layer in self.osf_layers().values():
            squares += float(layer.get_delta_weight(ADAPTER).double().square().sum())
            entries += sum(p.numel() for p in layer.osf_svd_params[ADAPTER].values())
        return math.sqrt(squares), entries

    @torch.no_grad()
    def reproject(self) -> None:
        """U_low <- (I - U_high U_high^T) U_low and V_low <- V_low (I - V_high^T V_high) on every target layer (the
        complements as PEFT's gradient hooks form them: from the stored high factor, else from the initial low one)."""
        for layer in self.osf_layers().values():
            factors = layer.osf_svd_params[ADAPTER]
            u, v = factors["U_low"], factors["V_low"]
            if ADAPTER in layer._osf_U_high:
                high = layer._osf_U_high[ADAPTER]
                u.sub_(high @ (high.T @ u))
            else:
                low = layer._osf_U_low_init[ADAPTER]
                u.copy_(low @ (low.T @ u))
            if ADAPTER in layer._osf_V_high:
                high = layer._osf_V_high[ADAPTER]
                v.sub_((v @ high.T) @ high)
            else:
                low = layer._osf_V_low_init[ADAPTER]
                v.copy_((v @ low.T) @ low)

    def next_task(self) -> None:
        """Merge the adapter just trained; put a fresh one for the next task on the merged weights."""
        for name in self.layers:
            self._unload(name, merge=True)
        self.task_index += 1
        self._inject_all(int(self.task_index))

    @torch.no_grad()
    def _match_checkpoint(self, module, state_dict, prefix, *args) -> None:
        """A checkpoint taken after task t holds the merged weights and an adapter preserving k_(t+1) directions.
        PEFT keeps the adapter's SVD factors (initial low part, high part) out of the state dict, so each adapter is
        re-injected on the checkpoint's own weight, with the checkpoint's sizes (read from its S_low), before the
        rest is loaded: the factors are then the ones the interrupted run computed."""
        for name in self.layers:
            key = f"{prefix}inner.{name}.osf_svd_params.{ADAPTER}.S_low"
            weight = state_dict.get(f"{prefix}inner.{name}.base_layer.weight")
            if key not in state_dict or weight is None:
                continue
            self._unload(name, merge=False)
            self._module(name).weight.copy_(weight)
            self._inject(name, min(weight.shape) - len(state_dict[key]))


class OSFPlugin(Plugin):
    """Trains the current OSF adapter and the task's own parameters; merges and re-decomposes after each task."""

    def __init__(self, model: OSFNet, used_params):
        super().__init__()
        self.model = model
        self.used = [frozenset("inner." + n for n in names) for names in used_params]
        self.rows: list[dict] = []

    def before_training_exp(self, strategy, **kwargs) -> None:
        index = strategy.experience.current_experience
        shared = shared_params(self.used, index)
        for name, p in self.model.named_parameters():
            own = name in self.used[index] and name not in shared and ".base_layer." not in name
            p.requires_grad_(f"osf_svd_params.{ADAPTER}." in name or own)

    def after_update(self, strategy, **kwargs) -> None:
        if self.model.params.reproject:
            self.model.reproject()

    def after_training_exp(self, strategy, **kwargs) -> None:
        index = strategy.experience.current_experience
        norm, entries = self.model.update_norm()
        self.rows.append(
            {"task": index, "norm": norm, "overlap": None, "trainable_params": entries, "total_params": entries}
        )
        if index + 1 < len(self.used):
            self.model.next_task()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def state_dict(self) -> dict:
        """Each finished task's diagnostics (the adapters themselves are merged into the model's weights)."""
        return {"rows": [[r["task"], r["norm"], r["trainable_params"]] for r in self.rows]}

    def load_state_dict(self, state) -> None:
        self.rows = [
            {"task": int(t), "norm": float(n), "overlap": None, "trainable_params": int(e), "total_params": int(e)}
            for t, n, e in state["rows"]
        ]

    def state_bytes(self) -> int:
        """The current adapter's trainable factors and frozen initial factors (one adapter is held at a time)."""
        return sum(
            t.numel() * t.element_size()
            for layer in self.model.osf_layers().values()
            for t in [
                *layer.osf_svd_params[ADAPTER].values(),
                layer._osf_U_low_init[ADAPTER],
                layer._osf_S_low_init[ADAPTER],
                layer._osf_V_low_init[ADAPTER],
            ]
        )

    def extra_results(self) -> dict:
        return {"adapters": {"per_task": list(self.rows), "needs_task_identity": False}}


@register_strategy("osf", params=OSFParams, requires={"pretrained_backbone": PRETRAINED_WHY})
def build_osf(ctx: StrategyContext, params: OSFParams):
    """OSF: each task fine-tunes the weights off their dominant singular subspace (PEFT's OSFConfig), merged after."""
    ctx.require_fixed_schedule("osf", "re-decomposes the weights at each task boundary")
    model = OSFNet(ctx.model, params, ctx.used_params).to(ctx.device)
    return dataclasses.replace(ctx, model=model).build(plugins=[OSFPlugin(model, ctx.used_params)])
