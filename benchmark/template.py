"""The training template every strategy runs on: Avalanche's SupervisedTemplate with fast loaders.

:class:`FastLoadersMixin` replaces Avalanche's sample-by-sample data loaders with
:class:`~benchmark.loaders.TensorBatchLoader`; it can be mixed into any Avalanche template class.
Everything else (forward, loss, backward, plugin callbacks, optimizer handling) is Avalanche's.
"""

from __future__ import annotations

import torch
from avalanche.training.templates import SupervisedTemplate

from benchmark.loaders import TensorBatchLoader, dataset_tensors


class FastLoadersMixin:
    """Serve training and evaluation batches by slicing tensors.

    ``data_seed`` seeds the shuffling generator, so the order of training batches depends on the
    seed alone (and is reproduced by a plain PyTorch loop using the same generator).
    """

    def __init__(self, *, data_seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.data_generator = torch.Generator().manual_seed(data_seed)

    def make_train_dataloader(self, shuffle: bool = True, drop_last: bool = False, **kwargs) -> None:
        self.dataloader = TensorBatchLoader(
            dataset_tensors(self.adapted_dataset),
            self.train_mb_size,
            shuffle=shuffle,
            generator=self.data_generator,
            drop_last=drop_last,
        )

    def make_eval_dataloader(self, **kwargs) -> None:
        self.dataloader = TensorBatchLoader(
            dataset_tensors(self.adapted_dataset), self.eval_mb_size, shuffle=False
        )

    def _unpack_minibatch(self) -> None:
        if self.device.type != "cpu":
            self.mbatch = [t.to(self.device, non_blocking=True) for t in self.mbatch]


class FastSupervisedTemplate(FastLoadersMixin, SupervisedTemplate):
    """Avalanche's SupervisedTemplate (naive fine-tuning plus plugins) with tensor-sliced batches."""
