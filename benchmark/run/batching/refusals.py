"""What keeps K seeds from training as one stacked model, each refusal a sentence a record carries (``batch.alone``):
the optimiser, the model's modules, its idle parameters on the CPU, the strategy's plugins and criterion."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from forgetbench.benchmark.data.models import TaskRoutedModule
from forgetbench.benchmark.train.template import (
    FastSupervisedTemplate,
    LeanLoopMixin,
    active_callbacks,
)


# optimisers whose update of an entry reads only that entry's gradient and state: a stacked step is K steps
STACKED_OPTIMIZERS = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop, torch.optim.Adagrad)


class Unbatchable(Exception):
    """These seeds cannot be trained as one stacked model; the message says why (one line in each record)."""


def model_refusal(model: nn.Module) -> str | None:
    """Why ``model`` cannot be stacked faithfully (None: it can): random draws or buffers updated in its forward, or
    parameters outside ``nn.Linear`` (a convolution, a norm, an embedding: stacked, their products and sums would
    round otherwise than in the seed's own run, and a long run turns that into other numbers)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            return f"the model draws at random in its forward pass ({name or 'the model'}: {type(module).__name__})"
        if type(module) is nn.Linear and module.in_features == 1:
            return f"{name} takes one input feature: its run multiplies its gradient by a vector kernel of its own"
        if type(module) is not nn.Linear and list(module.parameters(recurse=False)):
            return (
                f"{name or 'the model'} ({type(module).__name__}) holds parameters of its own, and only nn.Linear "
                "layers are stacked so that every seed keeps its own numbers exactly"
            )
    buffers = [name for name, _ in model.named_buffers()]
    if buffers:
        return f"the model holds buffers its forward pass may update ({', '.join(buffers[:3])})"
    if not isinstance(model, TaskRoutedModule):
        return f"{type(model).__name__} is not a TaskRoutedModule (its forward needs the batch's task labels)"
    return None


# On the CPU, the most parameters a seed's turns leave unused, on average, that a stack may hold: its step updates
# every parameter of every seed (an unused one by 0), where a seed's own step updates only the ones its turn trains.
# configs/nas_supernet.yaml's MNIST supernet leaves 168,596 a seed unused a turn (4 ops a layer, 784 inputs): its
# naive seeds trained in 8.9 s stacked against 6.3 s one after another at 4 seeds, 27.7 s against 23.4 s at 16
# (`python scripts/batched_vs_alone.py configs/nas_supernet.yaml --seeds 16 --strategies naive --allow-idle`).
# decide_demo's supernet leaves 9,323 and its two-model 9,546, and their stacks run 2-2.5x faster at 20 seeds
# (`forgetbench perf --only seed_batching`). An accelerator, whose passes over the parameters cost little beside its
# launches, stacks any size.
IDLE_PARAMS_ON_CPU = 100_000


def idle_params_refusal(model: nn.Module, scenario: Any, device: torch.device) -> str | None:
    """Why a stack of ``model`` would train slower than its seeds one after another (None: it would not): on the CPU,
    the parameters its turns leave unused (on average over ``scenario.turn_used_params``) are over
    :data:`IDLE_PARAMS_ON_CPU`."""
    used_by_turn = getattr(scenario, "turn_used_params", None)
    if device.type != "cpu" or not used_by_turn:
        return None
    sizes = {name: p.numel() for name, p in model.named_parameters() if p.requires_grad}
    used = sum(sum(sizes.get(name, 0) for name in names) for names in used_by_turn) / len(used_by_turn)
    idle = sum(sizes.values()) - used
    if idle <= IDLE_PARAMS_ON_CPU:
        return None
    return (
        f"on the CPU its stacked step would update {round(idle):,} parameters a seed that its turns leave unused (over "
        f"{IDLE_PARAMS_ON_CPU:,}): slower than the seeds one after another"
    )


def strategy_refusal(strategy: Any) -> str | None:
    """Why ``strategy`` cannot train in lockstep with its other seeds (None: it can): a training step of its own, a
    criterion other than the cross-entropy, a plugin on the forward pass, an optimiser that couples entries."""
    kind = type(strategy)
    for method in ("training_epoch", "forward", "optimizer_step"):
        if getattr(kind, method) is not getattr(LeanLoopMixin, method):
            return f"{kind.__name__} has a {method} of its own"
    if kind.backward is not FastSupervisedTemplate.backward or kind.criterion is not FastSupervisedTemplate.criterion:
        return f"{kind.__name__} has its own loss or backward pass"
    criterion = strategy._criterion
    if type(criterion) is not nn.CrossEntropyLoss or not _plain_cross_entropy(criterion):
        return f"its criterion {type(criterion).__name__} is not the plain cross-entropy"
    for event in ("before_forward", "after_forward"):
        hooked = active_callbacks(strategy.plugins, event)
        if hooked:
            return f"{type(getattr(hooked[0], '__self__', hooked[0])).__name__} hooks {event}"
    if type(strategy.optimizer) not in STACKED_OPTIMIZERS:
        return f"its optimiser {type(strategy.optimizer).__name__} is not one whose step is entry by entry"
    return None


def ragged_refusal(optimizer: torch.optim.Optimizer, sizes: list[list[int]], batch_size: int) -> str | None:
    """Why seeds whose tasks hold ``sizes`` training samples (per seed, per task) cannot train in lockstep with
    ``optimizer`` (None: they can): where their epochs take different numbers of steps, a seed whose epoch has ended
    sits the others' last steps out, and only SGD's state is per entry, so that a row can be left as it was."""
    steps = {tuple(-(-n // batch_size) for n in seed) for seed in sizes}
    if len(steps) == 1 or type(optimizer) is torch.optim.SGD:
        return None
    return (
        f"the seeds' tasks differ in size (each seed draws its own split), so their epochs end at different steps, "
        f"and {type(optimizer).__name__} counts its steps once for all the seeds' rows"
    )


def _plain_cross_entropy(criterion: nn.CrossEntropyLoss) -> bool:
    return (
        criterion.weight is None
        and criterion.reduction == "mean"
        and criterion.label_smoothing == 0.0
        and criterion.ignore_index == -100
    )
