"""The data a supernet search reads: its train, validation and test splits (a registered dataset's, or a user's own
tensors), held once per process while several searches of one suite read the same ones."""

from __future__ import annotations


import contextlib
import json
from typing import Any, Iterator, Mapping

import torch

from forgetbench.benchmark.core.references import import_object
from forgetbench.benchmark.data.loaders import seeded_subset
from forgetbench.benchmark.data.datasets import load_dataset
from forgetbench.benchmark.data.scenarios.base import ScenarioInputs
from forgetbench.benchmark.data.scenarios.cell_search import (
    SearchData,
    Split,
)
from forgetbench.benchmark.data.scenarios.custom import _call

# the params are a CustomSupernetParams (custom_supernet.py, which imports this module): read by duck typing here
CustomSupernetParams = Any


def _tensors(split: Any, what: str) -> Split:
    """``(x, y)`` of a split given as a pair of tensors or as a dataset of ``(x, y)`` samples."""
    if isinstance(split, (tuple, list)) and len(split) == 2 and all(isinstance(t, torch.Tensor) for t in split):
        x, y = split
    else:
        try:
            samples = [split[i] for i in range(len(split))]
            x = torch.stack([torch.as_tensor(s[0]) for s in samples])
            y = torch.as_tensor([int(s[1]) for s in samples])
        except Exception as exc:
            raise ValueError(
                f"data: {what} must be an (x, y) pair of tensors or a dataset of (x, y) samples ({exc})"
            ) from None
    if len(x) != len(y) or len(y) == 0:
        raise ValueError(f"data: {what} has {len(x)} inputs and {len(y)} labels; it needs as many, at least one")
    return x.float().contiguous(), y.long().contiguous()


def load_splits(params: CustomSupernetParams, inputs: ScenarioInputs) -> tuple[Split, Split | None, Split]:
    """(train, valid or None, test) from the registered dataset or the user's factory."""
    if params.dataset is not None:
        data = load_dataset(params.dataset, inputs.data_root, params.download)
        return (data.train_x, data.train_y), None, (data.test_x, data.test_y)
    reference = str(params.data)
    offered = {"seed": inputs.seed, "data_root": inputs.data_root}
    splits = _call(import_object(reference), params.data_params, offered, f"data {reference}")
    if not isinstance(splits, Mapping) or "train" not in splits or "test" not in splits:
        raise ValueError(f"data {reference} must return a mapping with train, test and optionally valid")
    valid = splits.get("valid")
    return (
        _tensors(splits["train"], "train"),
        None if valid is None else _tensors(valid, "valid"),
        _tensors(splits["test"], "test"),
    )


_REUSED: dict[str, SearchData] | None = None  # the splits read so far, while search_data_reused() holds them


@contextlib.contextmanager
def search_data_reused() -> Iterator[None]:
    """Inside, :func:`search_data` gives the splits it gave before for the same params and seed (the same tensors,
    which no scenario writes to): a search's retrainings rebuild its scenario once per architecture, and the seeded
    split with its copies of the training set took 14% of a controller search's 81-architecture ground truth."""
    global _REUSED
    outer = _REUSED
    _REUSED = {} if outer is None else outer
    try:
        yield
    finally:
        _REUSED = outer


def search_data(params: CustomSupernetParams, inputs: ScenarioInputs) -> SearchData:
    if _REUSED is None:
        return _split(params, inputs)
    key = json.dumps([params.model_dump(mode="json"), inputs.seed, str(inputs.data_root)], default=str)
    if key not in _REUSED:
        _REUSED[key] = _split(params, inputs)
    return _REUSED[key]


def _split(params: CustomSupernetParams, inputs: ScenarioInputs) -> SearchData:
    (train_x, train_y), valid, (test_x, test_y) = load_splits(params, inputs)
    generator = torch.Generator().manual_seed(inputs.seed)
    if valid is None:
        if params.validation_size >= len(train_y):
            raise ValueError(
                f"validation_size must be below the {len(train_y)} training samples (the rest trains the "
                f"supernet), got {params.validation_size}"
            )
        order = torch.randperm(len(train_y), generator=generator)
        held, rest = order[: params.validation_size].sort().values, order[params.validation_size :]
        valid = (train_x[held], train_y[held])
        train_x, train_y = train_x[rest.sort().values], train_y[rest.sort().values]
    train_x, train_y = seeded_subset(train_x, train_y, params.max_train, generator)
    test_x, test_y = seeded_subset(test_x, test_y, params.max_test, generator)
    n_eval = len(valid[1]) if params.eval_size is None else min(params.eval_size, len(valid[1]))
    return SearchData(
        train=(train_x, train_y),
        evaluation=(valid[0][:n_eval], valid[1][:n_eval]),
        valid=valid,
        test=(test_x, test_y),
    )
