"""NAS-Bench-201's published accuracies, read from the official benchmark file (``NAS-Bench-201-v1_1-096897.pth``,
Dong & Yang, ICLR 2020), without the ``nas_201_api`` package.

The file is a ``torch.save`` of a dict: ``meta_archs`` (the 15,625 architecture strings, index = position),
``arch2infos`` (index -> ``{"full": ..., "less": ...}``: the 200-epoch and 12-epoch training results, each an
``ArchResults`` state: ``arch_str``, ``dataset_seed`` (dataset -> the seeds trained) and ``all_results``
((dataset, seed) -> a ``ResultsCount`` state with ``epochs`` and ``eval_acc1es``: ``"<split>@<epoch>"`` -> top-1
accuracy in percent)) and ``evaluated_indexes``. An architecture string lists each node's incoming edges,
``|op~source|``, nodes separated by ``+``: ``|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|...``.

:func:`read_accuracies` returns, for every evaluated architecture, the accuracy on one dataset's split after the
last epoch, averaged over the seeds trained (the API's ``get_metrics(dataset, split, is_random=False)``), as a
fraction. The split is the one NAS-Bench-201 reports as test accuracy: ``ori-test`` for ``cifar10`` (trained on
train + valid) and ``cifar10-valid``'s ``x-valid``, ``x-test`` for ``cifar100`` and ``ImageNet16-120``.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Mapping

import torch

DATASETS = ("cifar10", "cifar10-valid", "cifar100", "ImageNet16-120")
SPLIT = {"cifar10": "ori-test", "cifar10-valid": "x-valid", "cifar100": "x-test", "ImageNet16-120": "x-test"}
OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))  # (source, target) in the architecture string's order


def arch_string(ops: tuple[str, ...] | list[str]) -> str:
    """The NAS-Bench-201 string of the 6 edge ops in :data:`EDGES` order."""
    if len(ops) != len(EDGES):
        raise ValueError(f"a NAS-Bench-201 cell has {len(EDGES)} edges, got {len(ops)} ops")
    nodes: list[list[str]] = [[], [], []]
    for op, (source, target) in zip(ops, EDGES):
        nodes[target - 1].append(f"{op}~{source}")
    return "+".join("|" + "|".join(node) + "|" for node in nodes)


def arch_ops(arch: str) -> tuple[str, ...]:
    """The 6 edge ops (:data:`EDGES` order) of a NAS-Bench-201 architecture string; ValueError if it is not one."""
    by_edge: dict[tuple[int, int], str] = {}
    nodes = arch.split("+")
    if len(nodes) != 3:
        raise ValueError(f"{arch!r} is not a NAS-Bench-201 architecture (3 nodes separated by '+')")
    for target, node in enumerate(nodes, start=1):
        for entry in filter(None, node.split("|")):
            op, _, source = entry.partition("~")
            if op not in OPS or not source.isdigit():
                raise ValueError(f"{arch!r}: {entry!r} is not op~source with op in {list(OPS)}")
            by_edge[(int(source), target)] = op
    if set(by_edge) != set(EDGES):
        raise ValueError(f"{arch!r} does not have one op on each of the edges {list(EDGES)}")
    return tuple(by_edge[e] for e in EDGES)


def _load(path: Path) -> Mapping[str, Any]:
    if not path.is_file():
        raise ValueError(
            f"nb201: {path} is not a file; NAS-Bench-201's benchmark file is NAS-Bench-201-v1_1-096897.pth "
            "(see https://github.com/D-X-Y/NAS-Bench-201); without it leave nb201 out and the ground truth is "
            "trained here (standalone)"
        )
    try:  # plain dicts, lists, tuples, strings and numbers (tensors where weights were kept): no code runs
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # the official files may hold NumPy scalars, which the safe loader refuses; a file a config names is trusted
        # as the config's code references are
        try:
            data = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:
            raise ValueError(f"nb201: {path} cannot be read as NAS-Bench-201's benchmark file: {exc}") from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise ValueError(f"nb201: {path} cannot be read as NAS-Bench-201's benchmark file: {exc}") from None
    if not isinstance(data, Mapping) or not {"meta_archs", "arch2infos"} <= set(data):
        raise ValueError(f"nb201: {path} is not NAS-Bench-201's benchmark file (no meta_archs / arch2infos)")
    return data


def read_accuracies(path: str | Path, dataset: str = "cifar10", epochs: str = "full") -> dict[str, float]:
    """Architecture string -> NAS-Bench-201's accuracy (a fraction) on ``dataset``'s reported split after the last
    epoch of the ``full`` (200-epoch) or ``less`` (12-epoch) training, averaged over its seeds."""
    if dataset not in SPLIT:
        raise ValueError(f"nb201_dataset must be one of {list(SPLIT)}, got {dataset!r}")
    data = _load(Path(path))
    split, out = SPLIT[dataset], {}
    for index, infos in data["arch2infos"].items():
        try:
            info = infos[epochs]
            arch = info.get("arch_str") or data["meta_archs"][int(index)]
            runs = [info["all_results"][(dataset, seed)] for seed in info["dataset_seed"].get(dataset, [])]
            scores = [float(run["eval_acc1es"][f"{split}@{int(run['epochs']) - 1}"]) for run in runs]
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise ValueError(
                f"nb201: {path}: architecture {index}'s {epochs} results are not readable: {exc!r}"
            ) from None
        if scores:
            out[arch] = sum(scores) / len(scores) / 100.0
    if not out:
        raise ValueError(f"nb201: {path} holds no {epochs} results on {dataset}")
    return out
