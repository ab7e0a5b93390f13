"""Mini-batches sliced from whole tensors: no per-sample ``__getitem__``, no collate.

Avalanche's default loaders index a dataset sample by sample and collate; on small models that
dominates the step time. :func:`dataset_tensors` recovers ``(x, y, t)`` tensors from an Avalanche
dataset (directly when it is one of ours, by one materialising pass otherwise, e.g. a replay
buffer) and :class:`TensorBatchLoader` serves shuffled batches from them.
"""

from __future__ import annotations

import weakref
from typing import Any, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, TensorDataset


Batch = list[torch.Tensor]
_materialised: "weakref.WeakKeyDictionary[object, tuple[torch.Tensor, ...]]" = weakref.WeakKeyDictionary()


class LabelledTensors(TensorDataset):
    """``(x, y, task_label)`` tensors; items are ``(x_i, int(y_i))``.

    The training loop reads the tensors directly (:class:`TensorBatchLoader`);
    ``__getitem__`` only serves Avalanche code that indexes samples one by one. An item leaves the task
    label out because the Avalanche dataset wrapping this one appends it (its ``targets_task_labels``),
    so a sample of that dataset is ``(x, y, t)`` as Avalanche's strategies unpack it (DER's logit pass,
    ER-ACE's replay loader).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, task_label: int):
        t = torch.full((len(y),), task_label, dtype=torch.int64)
        super().__init__(x, y, t)

    def __getitem__(self, index: int):
        x, y, _ = self.tensors
        return x[index], int(y[index]) if y.dim() == 1 else y[index]


def dataset_tensors(dataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x, y, task_labels)`` of an Avalanche dataset, in dataset order."""
    flat = getattr(dataset, "_flat_data", None)
    if flat is not None and len(flat._datasets) == 1 and flat._indices is None:
        leaf = flat._datasets[0]
        if isinstance(leaf, LabelledTensors) and _no_transforms(flat):
            return leaf.tensors  # type: ignore[return-value]
    cached = _materialised.get(dataset)
    if cached is None:
        cached = _materialise(dataset)
        _materialised[dataset] = cached
    return cached  # type: ignore[return-value]


def tensor_dataset(x: torch.Tensor, y: torch.Tensor, t: torch.Tensor):
    """An Avalanche classification dataset over ``(x, y, t)`` with per-sample task labels ``t``,
    which :func:`dataset_tensors` serves back without a materialising pass."""
    from avalanche.benchmarks.utils import _make_taskaware_classification_dataset

    if len(t) and bool((t == t[0]).all()):  # one task: the same form as a scenario's own datasets
        label = int(t[0])
        return _make_taskaware_classification_dataset(
            LabelledTensors(x, y, label), task_labels=label, targets=y.tolist()
        )
    leaf = LabelledTensors(x, y, 0)
    leaf.tensors = (x, y, t)  # per-sample task labels
    return _make_taskaware_classification_dataset(leaf, task_labels=t.tolist(), targets=y.tolist())


def _no_transforms(flat) -> bool:
    for groups in (flat._transform_groups, flat._frozen_transform_groups):
        if groups is None:
            continue
        current = groups.transform_groups.get(groups.current_group)
        if current is not None and any(t is not None for t in _iter_transforms(current)):
            return False
    return True


def _iter_transforms(group):
    transforms = getattr(group, "transforms", None)
    return transforms if transforms is not None else [group]


def _materialise(dataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    loader = DataLoader(dataset, batch_size=4096, collate_fn=getattr(dataset, "collate_fn", None))
    parts = list(loader)
    x = torch.cat([p[0] for p in parts])
    y = torch.cat([torch.as_tensor(p[1]) for p in parts])
    t = torch.cat([torch.as_tensor(p[-1]) for p in parts])
    return x, y, t


DEVICE_DATA_SHARE = 0.5  # at most this share of the accelerator's free memory holds one experience
# Seeds' own datasets whose mini-batch takes at most this many bytes a seed are copied into one tensor once an epoch,
# so a step gathers every seed's rows in one call: a call costs a few microseconds, in which the CPU copies about
# this much, so the epoch's copy costs no more than the calls it saves (digits' 32 rows take 8 KiB, MNIST's 100 KiB)
STACK_ROWS_BELOW_BYTES = 16 * 1024


def seeded_subset(
    x: torch.Tensor, y: torch.Tensor, limit: int | None, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """At most ``limit`` samples of ``(x, y)``, drawn with ``generator`` and kept in their order (all of them, and no
    draw, when there are no more than ``limit`` or ``limit`` is None)."""
    if limit is None or len(y) <= limit:
        return x, y
    keep = torch.randperm(len(y), generator=generator)[:limit].sort().values
    return x[keep], y[keep]


def to_device(tensors: tuple[torch.Tensor, ...], device: torch.device) -> tuple[torch.Tensor, ...]:
    """``tensors`` on ``device`` in one copy, or in pinned host memory (called once per experience).

    On the CPU they are returned as they are. On an accelerator an experience whose tensors take
    at most :data:`DEVICE_DATA_SHARE` of the free device memory is copied there, so training steps
    slice batches on the device; a larger one is pinned, so each batch's copy is asynchronous.
    Nothing is cached: the copy lives as long as the experience's loader.
    """
    if device.type == "cpu" or all(t.device == device for t in tensors):
        return tensors
    size = sum(t.nbytes for t in tensors)
    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else 0
    if size <= DEVICE_DATA_SHARE * free:
        return tuple(t.to(device, non_blocking=True) for t in tensors)
    return tuple(t.pin_memory() for t in tensors) if device.type == "cuda" else tensors


class TensorBatchLoader:
    """Iterates ``[x, y, t]`` mini-batches of whole tensors.

    With ``shuffle`` each pass draws a new permutation from ``generator``, so the data order is
    a function of the generator's seed only. ``single_task`` is the task label when every sample
    has the same one (checked once here, so the training step need not inspect each batch),
    else ``None``.
    """

    def __init__(
        self,
        tensors: tuple[torch.Tensor, ...],
        batch_size: int,
        shuffle: bool,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ):
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator
        self.drop_last = drop_last
        self.single_task: int | None = None
        if len(tensors) >= 3 and len(tensors[-1]) > 0:
            labels = tensors[-1]
            if bool((labels == labels[0]).all()):
                self.single_task = int(labels[0])

    def __len__(self) -> int:
        n = len(self.tensors[0])
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        n = len(self.tensors[0])
        stops = range(0, len(self) * self.batch_size, self.batch_size)
        if not self.shuffle:
            for start in stops:
                yield [t[start : start + self.batch_size] for t in self.tensors]
            return
        order = torch.randperm(n, generator=self.generator)  # on the CPU: one data order on every device
        device = self.tensors[0].device
        if device.type != "cpu":  # one asynchronous copy per epoch, not one per step
            order = order.pin_memory().to(device, non_blocking=True)
        # Gather batch by batch, not the whole permuted epoch up front: the same batches, without
        # allocating (and page-faulting) a copy of the whole dataset every epoch.
        for start in stops:
            rows = order[start : start + self.batch_size]
            yield [t.index_select(0, rows) for t in self.tensors]


def lockstep_batches(loaders: Sequence["TensorBatchLoader"]) -> Iterator[Batch] | None:
    """One epoch of K loaders side by side: each tensor's K mini-batches as one ``(K, batch, ...)`` tensor whose row
    ``k`` is exactly the batch loader ``k``'s own iteration yields (its order drawn from its own generator, as
    :meth:`TensorBatchLoader.__iter__` draws it), gathered once a step from a dataset the seeds share, else seed by
    seed into the batch's rows. None where the loaders are not of one form (batch size, shuffling, sizes, shapes,
    device)."""
    if _form(loaders) is None or len({len(loader.tensors[0]) for loader in loaders}) != 1:
        return None
    return (batch for batch, _ in _lockstep(loaders))


def ragged_lockstep_batches(loaders: Sequence["TensorBatchLoader"]) -> Iterator[tuple[Batch, list[int]]] | None:
    """One epoch of K loaders side by side whose datasets may differ in size (each seed's own split): each step's
    ``(K, top, ...)`` tensors and how many rows of each are the seed's batch (``sizes``; ``top`` their largest). Row
    ``k``'s first ``sizes[k]`` rows are exactly the batch loader ``k``'s own iteration yields at that step (0 once its
    epoch has ended); the rest pad it. None where the loaders are not of one form (batch size, shuffling, a sample's
    shape, device)."""
    return None if _form(loaders) is None else _lockstep(loaders)


def _form(loaders: Sequence["TensorBatchLoader"]) -> list[Any] | None:
    if not all(isinstance(loader, TensorBatchLoader) for loader in loaders):
        return None
    form = [
        (l.batch_size, l.shuffle, l.drop_last, [(t.shape[1:], t.dtype, t.device) for t in l.tensors]) for l in loaders
    ]
    if any(f != form[0] for f in form) or not loaders[0].tensors:
        return None
    return form


def _lockstep(loaders: Sequence["TensorBatchLoader"]) -> Iterator[tuple[Batch, list[int]]]:
    first, seeds, size = loaders[0], len(loaders), loaders[0].batch_size
    lengths = [len(loader.tensors[0]) for loader in loaders]
    steps, device = [len(loader) for loader in loaders], first.tensors[0].device
    width = max(steps) * size
    # each loader's own draw, drawn when the epoch's first batch is, as its own iteration does; a seed's order padded
    # past its end with its first row (rows no step of it reads)
    drawn = [
        torch.randperm(n, generator=loader.generator) if first.shuffle else torch.arange(n)
        for loader, n in zip(loaders, lengths)
    ]
    if len(set(lengths)) == 1:
        order = torch.stack(drawn)[:, :width]
    else:  # in a few operations, whatever the seeds: their draws end to end, each row read up to its own length
        starts = torch.tensor([0, *lengths[:-1]]).cumsum(0).unsqueeze(1)
        places = torch.arange(width).expand(seeds, width)
        within = places < torch.tensor(lengths).unsqueeze(1)
        order = torch.cat(drawn)[starts + places * within]
    order = order.to(device)
    # a dataset every seed shares is gathered from once; separate ones (each seed's own draw or permutation) of small
    # rows are copied into one (seed k's rows offset by the lengths before it: STACK_ROWS_BELOW_BYTES), and of large
    # rows not (a turn may read a few batches of a large dataset): each seed's rows gathered from its own
    shared = [all(loader.tensors[i] is tensor for loader in loaders) for i, tensor in enumerate(first.tensors)]
    joined = {
        i: torch.cat([loader.tensors[i] for loader in loaders])
        for i, tensor in enumerate(first.tensors)
        if not shared[i] and tensor[:size].nbytes <= STACK_ROWS_BELOW_BYTES
    }
    offsets = torch.tensor([0, *lengths[:-1]], device=device).cumsum(0).unsqueeze(1)
    for step in range(max(steps)):
        sizes = [min(size, n - step * size) if step < own else 0 for n, own in zip(lengths, steps)]
        top = max(sizes)
        rows = order[:, step * size : step * size + top]
        joined_rows = (rows + offsets).reshape(-1)
        batch = []
        for i, tensor in enumerate(first.tensors):
            if shared[i] or i in joined:
                source, index = (tensor, rows.reshape(-1)) if shared[i] else (joined[i], joined_rows)
                batch.append(source.index_select(0, index).view(seeds, top, *tensor.shape[1:]))
                continue
            out = (tensor.new_empty if min(sizes) == top else tensor.new_zeros)((seeds, top, *tensor.shape[1:]))
            for k, loader in enumerate(loaders):
                if sizes[k]:
                    torch.index_select(loader.tensors[i], 0, rows[k, : sizes[k]], out=out[k, : sizes[k]])
            batch.append(out)
        yield batch, sizes
