"""``joint``: train on the union of every experience seen so far, the upper-bound reference.

Experience t minimises the loss over the union of the training data of experiences 0..t, each sample
keeping its own task label, hence its own model (head):

    L(theta) = (1 / sum_k N_k) sum_{k<=t} sum_n CE(f_k(x^k_n), y^k_n).

Mini-batches mix tasks; :class:`~forgetbench.benchmark.data.models.TaskRoutedModule` routes each sample to its model
(Avalanche's per-task split). Joint training sees every task's data at every step, so its accuracy
``R[j][j]`` is the reference a*_j of intransigence. An experience's length is set as for the other
strategies (the suite's epochs, or the turn's ``max_steps``), counted over the union. No
hyperparameters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from forgetbench.benchmark.data.loaders import dataset_tensors, tensor_dataset
from forgetbench.benchmark.core.registry import NoParams
from forgetbench.strategies.base import StrategyContext, register_strategy
from forgetbench.strategies.plugin import Plugin, tensor_bytes

if TYPE_CHECKING:  # Avalanche is imported when training starts, never to read this strategy's params
    from avalanche.training.templates import SupervisedTemplate


def union_dataset(datasets: list) -> object:
    """One Avalanche dataset holding the samples of ``datasets`` with their own task labels.

    Built from the tensors directly, so the fast loader serves it without a materialising pass.
    """
    parts = [dataset_tensors(d) for d in datasets]
    return tensor_dataset(*(torch.cat([p[i] for p in parts]) for i in range(3)))


class JointPlugin(Plugin):
    """Replaces each experience's training data by the union of all experiences seen so far."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list = []

    def after_train_dataset_adaptation(self, strategy, **kwargs) -> None:
        self.seen.append(strategy.adapted_dataset)
        if len(self.seen) > 1:
            strategy.adapted_dataset = union_dataset(self.seen)

    def state_dict(self) -> dict:
        """The training data of every experience so far, as (x, y, t) tensors."""
        return {"seen": [list(dataset_tensors(d)) for d in self.seen]}

    def load_state_dict(self, state) -> None:
        self.seen = [tensor_dataset(*tensors) for tensors in state["seen"]]

    def state_bytes(self) -> int:
        """Bytes of the stored training data of earlier experiences (a data, not a weight, cost)."""
        return tensor_bytes([list(dataset_tensors(d)) for d in self.seen[:-1]])


@register_strategy("joint", params=NoParams)
def build_joint(ctx: StrategyContext, params: NoParams) -> SupervisedTemplate:
    """Joint training on every experience so far (upper bound; reference a* for intransigence)."""
    return ctx.build(plugins=[JointPlugin()])
