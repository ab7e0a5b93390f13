"""``standalone``: a fresh model per experience: zero forgetting, no transfer (the other reference).

Before each experience every parameter is reset to the network's initial values (the same
initialisation every other strategy starts from); after it, a frozen copy of the network is kept for
that experience's task. Model k is evaluated through its own copy:

    f^standalone_k(x) = f_k(x; theta^k),   theta^k = argmin L_k(theta) starting from theta^0,

so ``R[i][k] = R[k][k]`` for every i >= k (nothing forgets), and ``R[k][k]`` is the accuracy of model k
trained alone on the same budget, the reference a*_k of intransigence. A task trained again later
(e.g. round-robin schedules) continues from its own copy. The template's ``model`` is a
:class:`StandaloneModels` wrapper whose parameters are the live network's (so the optimizer trains
it); the copies are plain tensors, outside ``parameters()``. No hyperparameters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import copy
import dataclasses

import torch

from forgetbench.benchmark.data.models import TaskRoutedModule
from forgetbench.benchmark.core.registry import NoParams
from forgetbench.strategies.base import StrategyContext, register_strategy
from forgetbench.strategies.plugin import Plugin

if TYPE_CHECKING:  # Avalanche is imported when training starts, never to read this strategy's params
    from avalanche.training.templates import SupervisedTemplate


class StandaloneModels(TaskRoutedModule):
    """Routes task k to the frozen copy trained for it (to the live network while k trains or is untrained)."""

    def __init__(self, live: TaskRoutedModule):
        super().__init__()
        self.live = live
        self.max_class_label = getattr(live, "max_class_label", 1)
        self.initial = {k: v.detach().clone() for k, v in live.state_dict().items()}
        self.snapshots: dict[int, TaskRoutedModule] = {}  # plain dict: not registered, not trained
        self.training_task: int | None = None

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        if task_label == self.training_task or task_label not in self.snapshots:
            return self.live.forward_single_task(x, task_label)
        return self.snapshots[task_label].forward_single_task(x, task_label)

    def used_parameter_names(self, task_label: int) -> frozenset[str]:
        return frozenset(f"live.{n}" for n in self.live.used_parameter_names(task_label))

    @torch.no_grad()
    def start(self, task_label: int) -> None:
        """Load the task's own copy if it has one, else the initial weights; route the task to the live net."""
        source = self.snapshots[task_label].state_dict() if task_label in self.snapshots else self.initial
        for key, value in self.live.state_dict().items():
            value.copy_(source[key])
        self.training_task = task_label

    def finish(self) -> None:
        """Freeze a copy of the live network for the task just trained."""
        if self.training_task is None:
            return  # no task is training
        snapshot = copy.deepcopy(self.live).eval()
        for p in snapshot.parameters():
            p.requires_grad_(False)
        self.snapshots[self.training_task] = snapshot
        self.training_task = None

    def state_bytes(self) -> int:
        tensors = [t for m in self.snapshots.values() for t in m.state_dict().values()]
        return sum(t.numel() * t.element_size() for t in tensors)

    def snapshot_states(self) -> dict[str, dict[str, torch.Tensor]]:
        return {str(task): dict(m.state_dict()) for task, m in self.snapshots.items()}

    def load_snapshots(self, states: dict[str, dict[str, torch.Tensor]]) -> None:
        """Rebuild the frozen per-task copies from their state dicts (in place of the current ones)."""
        self.snapshots = {}
        for task, state in states.items():
            snapshot = copy.deepcopy(self.live).eval()
            snapshot.load_state_dict(state)
            for p in snapshot.parameters():
                p.requires_grad_(False)
            self.snapshots[int(task)] = snapshot
        self.training_task = None


class StandalonePlugin(Plugin):
    """Resets the live network before each experience and snapshots it after."""

    def __init__(self, models: StandaloneModels):
        super().__init__()
        self.models = models

    def before_training_exp(self, strategy, **kwargs) -> None:
        # Runs after the optimizer is built; the reset is in place, so it trains the same tensors.
        self.models.start(int(strategy.experience.task_labels[0]))

    def after_training_exp(self, strategy, **kwargs) -> None:
        self.models.finish()

    def state_dict(self) -> dict:
        """The frozen copy of every task trained so far."""
        return {"snapshots": self.models.snapshot_states()}

    def load_state_dict(self, state) -> None:
        self.models.load_snapshots(state["snapshots"])

    def state_bytes(self) -> int:
        """Bytes of the per-task copies."""
        return self.models.state_bytes()


@register_strategy("standalone", params=NoParams)
def build_standalone(ctx: StrategyContext, params: NoParams) -> SupervisedTemplate:
    """A fresh model per experience, evaluated through per-task copies (zero forgetting, no transfer)."""
    models = StandaloneModels(ctx.model)
    return dataclasses.replace(ctx, model=models).build(plugins=[StandalonePlugin(models)])
