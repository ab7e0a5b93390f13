"""Scenario ``nb201``: NAS-Bench-201's cell space (Dong & Yang, ICLR 2020), searched with weight sharing, its
ranking scored against NAS-Bench-201's published accuracies when the benchmark file is at hand.

**The space**: a cell of 4 nodes; node ``j`` sums an op on every edge ``i -> j`` (i < j), 6 edges, each op one of
``none`` (no edge), ``skip_connect``, ``nor_conv_1x1`` / ``nor_conv_3x3`` (ReLU -> conv -> batch norm) and
``avg_pool_3x3``: 5**6 = 15,625 cells. An architecture is named by NAS-Bench-201's string
(``|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|``); in
records its 6 ops in the string's edge order, joined by ``-``.

**The network** (NAS-Bench-201's, at a width a CPU trains): a 3x3 conv stem with ``channels`` channels, three
stages of ``cells_per_stage`` cells (NAS-Bench-201: 5 at 16 channels), a residual reduction block between stages
(stride 2, channels doubled), batch norm + ReLU, global average pooling, one linear classifier. Every cell runs the
architecture's 6 ops with weights of its own per edge and op (``cells.<c>.edges.<i>_<j>.<op>``), shared by every
architecture that puts that op on that edge; the stem, reduction blocks and classifier are shared by all. Batch
norm keeps no running statistics (they would be one more state every architecture overwrites) and its cell ops
have no affine weights, as in NAS-Bench-201's weight-sharing searches.

**The search and its ground truth** are ``custom_supernet``'s (this scenario builds one: the built-in space is an
instance of the user path). With ``nb201: PATH`` (the official ``NAS-Bench-201-v1_1-096897.pth``) the ground truth's
K architectures are scored by NAS-Bench-201's published accuracy on ``nb201_dataset`` (200 epochs, mean over its
seeds; :mod:`forgetbench.benchmark.data.nb201_table`) instead of being trained here, so Kendall tau, precision@K and
regret are measured against NAS-Bench-201 without retraining. Without the file (offline, or on data NAS-Bench-201
did not train on) the ground truth is trained alone here (``ground_truth.steps``).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal, Sequence

import torch
from pydantic import Field, PositiveInt, ValidationError, field_validator, model_validator
from torch import nn

from forgetbench.benchmark.data.datasets import dataset_info
from forgetbench.benchmark.data.nb201_table import EDGES, OPS, SPLIT, arch_ops, arch_string, read_accuracies
from forgetbench.benchmark.data.scenarios.base import SCENARIOS, Scenario, ScenarioInputs, count_parameters
from forgetbench.benchmark.data.scenarios.cell_search import CellSearchParams
from forgetbench.benchmark.data.scenarios.custom_supernet import (
    PROBED_AT_PREFLIGHT,
    CustomSupernetParams,
    GroundTruthParams,
    Names,
    SupernetControllerParams,
    build_custom_supernet,
)
from forgetbench.benchmark.data.scenarios.split import validate_dataset_name

NETWORK = "forgetbench.benchmark.data.scenarios.nb201:make_network"


def _norm(channels: int, affine: bool) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, affine=affine, track_running_stats=False)


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, affine: bool = False):
        super().__init__(
            nn.ReLU(), nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False), _norm(c_out, affine)
        )


class Cell(nn.Module):
    """NAS-Bench-201's cell: node j = sum over edges i -> j of op_ij(node i); the output is node 3."""

    def __init__(self, channels: int):
        super().__init__()
        self.edges = nn.ModuleDict(
            {
                f"{i}_{j}": nn.ModuleDict(
                    {
                        "nor_conv_1x1": ReLUConvBN(channels, channels, 1),
                        "nor_conv_3x3": ReLUConvBN(channels, channels, 3),
                    }
                )
                for i, j in EDGES
            }
        )
        self.pool = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor, ops: Sequence[str]) -> torch.Tensor:
        nodes = [x]
        for j in (1, 2, 3):
            total: torch.Tensor | None = None
            for (i, target), op in zip(EDGES, ops):
                if target != j or op == "none":
                    continue
                if op == "skip_connect":
                    y = nodes[i]
                elif op == "avg_pool_3x3":
                    y = self.pool(nodes[i])
                else:
                    y = self.edges[f"{i}_{j}"][op](nodes[i])  # type: ignore[index]
                total = y if total is None else total + y
            # no edge into j: a constant zero (outside the graph, so no weight before it counts as used)
            nodes.append(total if total is not None else torch.zeros_like(x))
        return nodes[3]


class ResidualReduction(nn.Module):
    """NAS-Bench-201's residual block between stages: stride 2, channels doubled."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2, affine=True)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, affine=True)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class NB201Network(nn.Module):
    """Stem, three stages of cells with a residual reduction between them, classifier; ``forward(x, ops)``."""

    def __init__(self, in_channels: int, num_classes: int, channels: int = 16, cells_per_stage: int = 5):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), _norm(channels, True))
        layers: list[nn.Module] = []
        c = channels
        for stage in range(3):
            if stage:
                layers.append(ResidualReduction(c, 2 * c))
                c *= 2
            layers += [Cell(c) for _ in range(cells_per_stage)]
        self.cells = nn.ModuleList(layers)
        self.last = nn.Sequential(_norm(c, True), nn.ReLU())
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor, ops: Sequence[str]) -> torch.Tensor:
        h = self.stem(x)
        for layer in self.cells:
            h = layer(h, ops) if isinstance(layer, Cell) else layer(h)
        return self.classifier(self.last(h).mean(dim=(2, 3)))


def make_network(
    input_shape: Sequence[int], num_classes: int, channels: int = 16, cells_per_stage: int = 5
) -> nn.Module:
    return NB201Network(int(input_shape[0]), num_classes, channels, cells_per_stage)


@functools.lru_cache(maxsize=2)
def _table(path: str, dataset: str, epochs: str, mtime: float) -> dict[str, float]:
    return read_accuracies(path, dataset, epochs)  # the file is 2 GB: read once per process


class NB201GroundTruthParams(GroundTruthParams):
    """The ground truth's K architectures, listed as NAS-Bench-201 strings."""

    architectures: PositiveInt | list[str] = Field(  # type: ignore[assignment]
        8, description="K architectures drawn with the run's seed, or the list of them (NAS-Bench-201 strings)"
    )

    @field_validator("architectures")
    @classmethod
    def _strings(cls, archs: int | list[str]) -> int | list[str]:
        for i, arch in enumerate(archs if isinstance(archs, list) else []):
            try:
                arch_ops(arch)
            except ValueError as exc:
                raise ValueError(f"architectures[{i}]: {exc}") from None
        return archs


class NB201Params(CellSearchParams):
    dataset: str = "cifar10"  # image dataset (`forgetbench list datasets`); NAS-Bench-201's is CIFAR-10
    download: bool = False  # fetch the dataset when it is missing (needs internet)
    channels: int = Field(8, ge=2, description="channels of the first stage (NAS-Bench-201: 16)")
    cells_per_stage: PositiveInt = Field(1, description="cells per stage (NAS-Bench-201: 5)")
    search: Literal["random", "controller", "fixed"] = "controller"  # type: ignore[assignment]
    architectures: list[str] | None = Field(
        None, description="search fixed: NAS-Bench-201 architecture strings, trained in order each epoch"
    )
    epochs: PositiveInt = 10  # search epochs
    turns_per_epoch: PositiveInt | None = Field(  # type: ignore[assignment]
        None, description="architectures trained per epoch (null: 20, or the fixed list's length)"
    )
    steps_per_turn: PositiveInt = 20  # training steps per turn
    derive_samples: PositiveInt = 20  # draws at the end; the best on the shared weights is derived
    validation_size: PositiveInt = 5000  # held out of the training images
    eval_size: PositiveInt | None = Field(500, description="validation images err1 / err2 are measured on")
    max_train: PositiveInt | None = Field(None, description="cap on the training images (speed)")
    max_test: PositiveInt | None = Field(None, description="cap on the test images (speed)")
    controller: SupernetControllerParams = Field(default_factory=SupernetControllerParams)
    ground_truth: NB201GroundTruthParams | None = None  # K architectures: scored by nb201's table, or trained here
    nb201: str | None = Field(
        None, description="path of NAS-Bench-201's benchmark file (NAS-Bench-201-v1_1-096897.pth)"
    )
    nb201_dataset: Literal["cifar10", "cifar10-valid", "cifar100", "ImageNet16-120"] = (
        "cifar10"  # the NAS-Bench-201 training whose published accuracies score the ground truth
    )
    nb201_epochs: Literal["full", "less"] = "full"  # the 200-epoch or the 12-epoch training's accuracies

    _check_dataset = field_validator("dataset")(validate_dataset_name)

    @field_validator("architectures")
    @classmethod
    def _strings(cls, archs: list[str] | None) -> list[str] | None:
        for i, arch in enumerate(archs or []):
            try:
                arch_ops(arch)
            except ValueError as exc:
                raise ValueError(f"architectures[{i}]: {exc}") from None
        return archs

    @model_validator(mode="after")
    def _consistent(self) -> "NB201Params":
        if len(dataset_info(self.dataset)["input_shape"]) != 3:
            raise ValueError(
                f"dataset: NAS-Bench-201's network needs an image dataset (C, H, W); {self.dataset!r} is not one"
            )
        if self.nb201 is not None and self.ground_truth is None:
            raise ValueError("nb201: give ground_truth (its architectures: the K the search's ranking is scored on)")
        try:
            self.search_params()  # the search's own rules (the fixed list, its turns)
        except ValidationError as exc:
            raise ValueError("; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())) from None
        return self

    def search_params(self) -> CustomSupernetParams:
        """The ``custom_supernet`` search this scenario is: NAS-Bench-201's network and its 6 x 5 choices."""
        truth, ground_truth = self.ground_truth, None
        if truth is not None:
            archs = truth.architectures
            listed = archs if isinstance(archs, int) else [list(arch_ops(a)) for a in archs]
            ground_truth = GroundTruthParams(architectures=listed, steps=truth.steps, top_k=truth.top_k)
        return CustomSupernetParams(
            model=NETWORK,
            model_params={"channels": self.channels, "cells_per_stage": self.cells_per_stage},
            choices=[list(OPS)] * len(EDGES),
            dataset=self.dataset,
            download=self.download,
            search=self.search,
            architectures=None if self.architectures is None else [list(arch_ops(a)) for a in self.architectures],
            epochs=self.epochs,
            turns_per_epoch=self.turns_per_epoch,
            steps_per_turn=self.steps_per_turn,
            derive_samples=self.derive_samples,
            retrain_steps=self.retrain_steps,
            measure_from_epoch=self.measure_from_epoch,
            validation_size=self.validation_size,
            eval_size=self.eval_size,
            max_train=self.max_train,
            max_test=self.max_test,
            controller=self.controller,
            ground_truth=ground_truth,
        )

    def preflight(self, data_root: Any, seed: int) -> None:
        scenario = build_nb201(self, ScenarioInputs(seed, data_root))
        scenario.probe_space(PROBED_AT_PREFLIGHT)

    def parameter_count(self) -> int | None:
        info = dataset_info(self.dataset)
        return count_parameters(
            lambda: make_network(info["input_shape"], info["num_classes"], self.channels, self.cells_per_stage)
        )


def published_accuracy(params: NB201Params) -> Any:
    """``option names -> accuracy`` from NAS-Bench-201's table (None without ``nb201``); ValueError for a cell the
    table lacks."""
    if params.nb201 is None:
        return None
    path = Path(params.nb201).expanduser()
    table = _table(str(path), params.nb201_dataset, params.nb201_epochs, path.stat().st_mtime if path.exists() else 0)

    def accuracy(names: Names) -> float:
        arch = arch_string(list(names))
        if arch not in table:
            raise ValueError(f"nb201: {arch} has no {params.nb201_epochs} result on {params.nb201_dataset} in {path}")
        return table[arch]

    return accuracy


def build_nb201(params: NB201Params, inputs: ScenarioInputs) -> Any:
    return build_custom_supernet(params.search_params(), inputs, published=published_accuracy(params), name="nb201")


@SCENARIOS.register("nb201", params=NB201Params)
def nb201_scenario(params: NB201Params, inputs: ScenarioInputs) -> Scenario:
    """NAS-Bench-201's cell space (15,625 cells) searched with weight sharing; tau against its published accuracies."""
    return build_nb201(params, inputs)


__all__ = ["NB201Network", "NB201Params", "SPLIT", "make_network"]
