"""``replay``: experience replay with a fixed-size memory (Avalanche's ReplayPlugin), a non-regularizer reference.

A memory of at most ``mem_size`` training samples is kept, balanced over experiences (Avalanche's
``ExperienceBalancedBuffer``: each experience keeps a random subset of mem_size / #experiences
samples). While training experience t > 0 each mini-batch of ``batch_size`` current samples is
joined by ``batch_size_mem`` samples drawn from the memory (default: as many as the current batch),
each keeping its own task label (so its own head), and the loss is the cross-entropy on the union:

    L(theta) = mean over (current batch + memory batch) of CE(f_{task(n)}(x_n), y_n).

Batches are sliced from tensors like every other strategy (the memory is materialised once per
experience); memory batches cycle through a seeded permutation of the memory. Hyperparameters:

* ``mem_size`` (> 0): the memory's size in samples.
* ``batch_size_mem``: memory samples joined to each batch (default: the suite's batch size).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

import torch
from pydantic import PositiveInt

from forgetbench.benchmark.data.loaders import TensorBatchLoader, dataset_tensors, tensor_dataset
from forgetbench.strategies.base import StrategyContext, StrategyParams, register_strategy
from forgetbench.strategies.plugin import Plugin, on_avalanche_base, tensor_bytes

if TYPE_CHECKING:  # Avalanche is imported when training starts, never to read this strategy's params
    from avalanche.training.templates import SupervisedTemplate
    from avalanche.training.plugins import ReplayPlugin as _ReplayPluginBase
else:  # at run time the methods sit on a plain class, put on Avalanche's when first built
    _ReplayPluginBase = object


class ReplayParams(StrategyParams):
    mem_size: PositiveInt = 500
    batch_size_mem: PositiveInt | None = None


class MixedTensorLoader:
    """Current-data batches (as :class:`TensorBatchLoader`) each joined by a batch of memory samples."""

    def __init__(
        self,
        current: TensorBatchLoader,
        memory: tuple[torch.Tensor, ...],
        batch_size_mem: int,
        generator: torch.Generator,
    ):
        self.current, self.memory = current, memory
        self.batch_size_mem = min(batch_size_mem, len(memory[0]))
        self.generator = generator

    def __len__(self) -> int:
        return len(self.current)

    def __iter__(self) -> Iterator[list[torch.Tensor]]:
        n = len(self.memory[0])
        order = torch.randperm(n, generator=self.generator)
        position = 0
        for batch in self.current:
            if position + self.batch_size_mem > n:
                order, position = torch.randperm(n, generator=self.generator), 0
            pick = order[position : position + self.batch_size_mem]
            position += self.batch_size_mem
            yield [torch.cat([b, m[pick]]) for b, m in zip(batch, self.memory)]


class _FastReplay(_ReplayPluginBase):
    """Avalanche's replay buffer, served by slicing tensors instead of a sample-by-sample loader (the methods of
    ``FastReplayPlugin``, on Avalanche's ``ReplayPlugin``)."""

    def before_training_exp(
        self, strategy, num_workers: int = 0, shuffle: bool = True, drop_last: bool = False, **kwargs
    ) -> None:
        if len(self.storage_policy.buffer) == 0:
            return  # first experience: nothing to replay
        memory = dataset_tensors(self.storage_policy.buffer)
        strategy.dataloader = MixedTensorLoader(
            strategy.dataloader,
            memory,
            self.batch_size_mem or strategy.train_mb_size,
            strategy.data_generator,
        )

    def after_training_exp(self, strategy, **kwargs) -> None:
        # Avalanche's own update(), without its deprecated alias.
        self.storage_policy.post_adapt(strategy, strategy.experience)

    def state_dict(self) -> dict:
        """Each experience's group of the memory: its samples (x, y, t), reservoir weights and size."""
        policy = self.storage_policy
        return {
            "num_exps": policy._num_exps,
            "groups": [
                {
                    "key": int(key),
                    "max_size": group.max_size,
                    "weights": group._buffer_weights.clone(),
                    "samples": list(dataset_tensors(group.buffer)) if len(group.buffer) else [],
                }
                for key, group in policy.buffer_groups.items()
            ],
        }

    def load_state_dict(self, state) -> None:
        from avalanche.training.storage_policy import ReservoirSamplingBuffer

        policy = self.storage_policy
        policy._num_exps = int(state["num_exps"])
        policy.buffer_groups = {}
        for saved in state["groups"]:
            group = ReservoirSamplingBuffer(int(saved["max_size"]))
            group._buffer_weights = saved["weights"].cpu()
            if saved["samples"]:
                group.buffer = tensor_dataset(*saved["samples"])
            policy.buffer_groups[int(saved["key"])] = group

    def state_bytes(self) -> int:
        """Bytes of the stored samples (inputs, labels, task labels)."""
        if len(self.storage_policy.buffer) == 0:
            return 0
        return tensor_bytes(list(dataset_tensors(self.storage_policy.buffer)))


@register_strategy("replay", params=ReplayParams)
def build_replay(ctx: StrategyContext, params: ReplayParams) -> SupervisedTemplate:
    """Experience replay from a fixed-size, experience-balanced memory (non-regularizer reference)."""
    return ctx.build(plugins=[fast_replay_plugin()(mem_size=params.mem_size, batch_size_mem=params.batch_size_mem)])


def fast_replay_plugin() -> type:
    def base() -> type:
        from avalanche.training.plugins import ReplayPlugin

        return ReplayPlugin

    return on_avalanche_base("FastReplayPlugin", _FastReplay, base, Plugin)


def __getattr__(name: str) -> Any:  # `from ...replay import FastReplayPlugin` builds it then (and imports Avalanche)
    if name == "FastReplayPlugin":
        return fast_replay_plugin()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
