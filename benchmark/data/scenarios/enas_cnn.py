"""Scenario ``enas_cnn``: ENAS's micro (cell) search space for image classification, searched with weight
sharing (Pham et al., 2018, "Efficient Neural Architecture Search", section 2.3; the micro-CNN search of
Benyahia, Yu et al., ICML 2019, "Overcoming Multi-Model Forgetting").

**A cell** has two inputs (the outputs of the two cells before it; states 0 and 1) and ``nodes`` nodes
(states 2 .. nodes + 1). Node ``i`` picks two earlier states ``a``, ``b`` and an op for each from ``ops``:

    s_i = op_a(s_a) + op_b(s_b)

    sep_conv_3x3 / sep_conv_5x5   (ReLU -> depthwise k x k -> pointwise 1x1 -> BN), ``sep_conv_stack`` times (ENAS: 2)
    avg_pool_3x3 / max_pool_3x3   stride 1, padding 1 (no weights)
    identity                      (no weights)

The cell's output combines its *loose ends* (states no node reads, inputs included) as ENAS does, a 1x1
convolution of their concatenation, written as one 1x1 convolution per state summed (the same map):
``out = BN(sum_k W_k relu(s_k))``. Before the nodes, each input is brought to the cell's channels (and,
where it is larger, its resolution) by ReLU -> 1x1 conv -> BN (stride 1) or a factorized reduction (two
offset stride-2 1x1 convs, concatenated, as ENAS).

**The network**: a 3x3 conv stem with ``channels`` channels (stride ``stem_stride``: 2 halves the
resolution, a budget option ENAS does not have), then ``reductions + 1`` stages of
``cells_per_stage`` normal cells (the WPL authors' 5 repeated normal cells), a *reduction cell* between
stages (its inputs are factorized-reduced first, so it runs at the halved resolution with twice the
channels, as in ENAS's search), ReLU, global average pooling and one shared linear classifier. An
architecture is the normal cell's decisions then the reduction cell's (4 per node: input a, op a, input b,
op b); every cell of a kind runs the same decisions with its own weights.

**Weight sharing**: every (cell, edge ``a -> i``, op) has its own weights ``cells.<c>.edges.<a>_<i>.<op>``,
shared by every architecture that draws that edge with that op (ENAS indexes its weights by the chosen
input the same way); the stem, the input calibrations, each state's 1x1 combination weights and the
classifier are shared by every architecture that uses them. Batch normalisation has no affine weights and
always normalises with the batch's statistics (running statistics would be one more shared state that
every architecture overwrites, and one-shot NAS commonly evaluates this way); an architecture's err
therefore depends on the evaluation batch size, which the suite fixes.

**Data**: ``dataset`` (Fashion-MNIST offline; CIFAR-10 when its files are present). ``validation_size``
training images are held out with the run's seed (ENAS holds out 5,000); ``max_train`` caps the rest.
err = 1 - accuracy on the first ``eval_size`` validation images (err1 / err2 and the derivation's
ranking); the controller's reward is ``reward_c`` x accuracy on ``reward_samples`` validation images
(a rotating slice); the test split is read only for the derived architecture.

**The search**: :mod:`forgetbench.benchmark.data.scenarios.cell_search`, shared with ``enas_rnn``. Controller defaults are
the WPL authors' micro-CNN values (lr 0.0035, temperature 8, baseline decay 0.99, reward c = 1) with
ENAS's LSTM of 64 units and tanh constant 1.1. Result keys: those of ``cell_search`` (``search.error`` =
validation error, a fraction) and ``data`` (dataset, images per split).
"""

from __future__ import annotations

from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveFloat, PositiveInt, field_validator, model_validator
from torch import nn

from forgetbench.benchmark.data.datasets import dataset_info, load_dataset
from forgetbench.benchmark.data.models import TaskRoutedModule
from forgetbench.benchmark.data.scenarios.base import SCENARIOS, Scenario, ScenarioInputs, count_parameters
from forgetbench.benchmark.data.scenarios.cell_search import (
    CellControllerParams,
    AccuracySearch,
    CellSearchParams,
    SearchData,
)
from forgetbench.benchmark.data.scenarios.split import validate_dataset_name

Op = Literal["sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3", "identity"]
OPS: tuple[Op, ...] = ("sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3", "identity")
SHORT = {"sep_conv_3x3": "sep3", "sep_conv_5x5": "sep5", "avg_pool_3x3": "avg", "max_pool_3x3": "max", "identity": "id"}
DECISIONS_PER_NODE = 4  # input a, op a, input b, op b


class ConvControllerParams(CellControllerParams):
    """The controller of the micro-CNN search (the WPL authors' and ENAS's micro values)."""

    hidden: PositiveInt = 64  # the controller LSTM's hidden size
    lr: PositiveFloat = 0.0035  # the controller's learning rate (Adam)
    steps_per_epoch: PositiveInt = 300  # controller updates per search epoch
    baseline_decay: float = Field(0.99, ge=0.0, lt=1.0)  # decay of REINFORCE's moving-average baseline
    tanh_constant: PositiveFloat = 1.1  # logits = c * tanh(logits / T) (ENAS)
    temperature: PositiveFloat = 8.0  # T in the line above
    reward_c: PositiveFloat = 1.0  # reward = c * accuracy
    reward_samples: PositiveInt = Field(128, description="validation images per reward (a rotating slice)")


class ConvSearchParams(CellSearchParams):
    dataset: str = "fashion_mnist"  # image dataset (`forgetbench list datasets`)
    download: bool = False  # fetch the dataset when it is missing (needs internet)
    nodes: int = Field(5, ge=1)  # nodes per cell (each adds two ops)
    ops: list[Op] = Field(list(OPS), min_length=1)  # candidate ops
    channels: int = Field(20, ge=2, description="channels of the first stage (doubled by each reduction)")
    cells_per_stage: PositiveInt = 5  # normal cells between reductions
    reductions: int = Field(2, ge=0, le=4)  # reduction cells (each halves the resolution)
    sep_conv_stack: PositiveInt = 2  # separable convolutions stacked in a sep_conv op
    stem_stride: Literal[1, 2] = Field(1, description="2 halves the input resolution in the stem (4x less compute)")
    validation_size: PositiveInt = 5000  # held out of the training images; rewards and err read it
    eval_size: PositiveInt | None = Field(
        1000, description="validation images err1 / err2 are measured on (null: all of them)"
    )
    max_train: PositiveInt | None = Field(None, description="cap on the training images (speed)")
    turns_per_epoch: PositiveInt = 200  # architectures trained per epoch
    controller: ConvControllerParams = Field(default_factory=ConvControllerParams)  # the ENAS controller's settings

    _check_dataset = field_validator("dataset")(validate_dataset_name)

    @model_validator(mode="after")
    def _space(self) -> "ConvSearchParams":
        if len(set(self.ops)) != len(self.ops):
            raise ValueError(f"ops: each may appear once, got {self.ops}")
        if len(dataset_info(self.dataset)["input_shape"]) != 3:
            raise ValueError(
                f"dataset: the micro-CNN search needs an image dataset (C, H, W); {self.dataset!r} is not one"
            )
        if self.eval_size is not None and self.eval_size > self.validation_size:
            raise ValueError(
                f"eval_size must be at most validation_size ({self.validation_size}), got {self.eval_size}"
            )
        return self

    def preflight(self, data_root: Any, seed: int) -> None:
        check_validation_size(self, len(load_dataset(self.dataset, data_root, self.download).train_y))

    def parameter_count(self) -> int | None:
        info = dataset_info(self.dataset)
        return count_parameters(lambda: ConvCellSupernet(self, tuple(info["input_shape"]), info["num_classes"]))


def check_validation_size(params: ConvSearchParams, n_train: int) -> None:
    if params.validation_size >= n_train:
        raise ValueError(
            f"validation_size must be below the {n_train} training images of {params.dataset!r} "
            f"(the rest trains the supernet), got {params.validation_size}"
        )


def decision_choices(nodes: int, ops: int, reductions: int) -> list[int]:
    """Options per controller decision: per node (input a, op a, input b, op b), the normal cell's then,
    with reductions, the reduction cell's."""
    cell = [c for i in range(nodes) for c in (i + 2, ops, i + 2, ops)]
    return cell * (2 if reductions else 1)


def split_cells(arch: tuple[int, ...], nodes: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(normal, reduction)`` decisions of an architecture (the reduction part empty without reductions)."""
    n = DECISIONS_PER_NODE * nodes
    return tuple(arch[:n]), tuple(arch[n:])


def loose_ends(cell: tuple[int, ...], nodes: int) -> list[int]:
    """States of a cell no node reads (inputs 0 and 1 included): the cell's output combines them."""
    read = {cell[DECISIONS_PER_NODE * i + k] for i in range(nodes) for k in (0, 2)}
    return [s for s in range(nodes + 2) if s not in read]


def batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, affine=False, track_running_stats=False)


class SepConv(nn.Sequential):
    def __init__(self, channels: int, kernel: int, stack: int):
        layers: list[nn.Module] = []
        for _ in range(stack):
            layers += [
                nn.ReLU(),
                nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels, bias=False),
                nn.Conv2d(channels, channels, 1, bias=False),
                batch_norm(channels),
            ]
        super().__init__(*layers)


class Calibrate(nn.Module):
    """A cell input to the cell's channels: ReLU -> 1x1 conv -> BN, or, when it is at twice the cell's
    resolution, ENAS's factorized reduction (two stride-2 1x1 convs, the second on the grid shifted by one
    pixel, concatenated)."""

    def __init__(self, in_channels: int, channels: int, reduce: bool):
        super().__init__()
        self.reduce = reduce
        if reduce:
            self.convs = nn.ModuleList(
                [
                    nn.Conv2d(in_channels, channels // 2, 1, stride=2, bias=False),
                    nn.Conv2d(in_channels, channels - channels // 2, 1, stride=2, bias=False),
                ]
            )
        else:
            self.conv = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn = batch_norm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        if not self.reduce:
            return self.bn(self.conv(x))
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        return self.bn(torch.cat([self.convs[0](x), self.convs[1](shifted)], dim=1))


class Cell(nn.Module):
    """Every op of every edge of one cell, its input calibrations and its output combination."""

    def __init__(
        self, in_channels: tuple[int, int], reduce_inputs: tuple[bool, bool], channels: int, params: ConvSearchParams
    ):
        super().__init__()
        self.nodes, self.op_names = params.nodes, list(params.ops)
        self.preprocess = nn.ModuleList(Calibrate(c, channels, r) for c, r in zip(in_channels, reduce_inputs))
        kernels = {"sep_conv_3x3": 3, "sep_conv_5x5": 5}
        self.edges = nn.ModuleDict(
            {
                f"{a}_{i}": nn.ModuleDict(
                    {op: SepConv(channels, kernels[op], params.sep_conv_stack) for op in self.op_names if op in kernels}
                )
                for i in range(2, params.nodes + 2)
                for a in range(i)
            }
        )
        self.combine = nn.ModuleList(nn.Conv2d(channels, channels, 1, bias=False) for _ in range(params.nodes + 2))
        self.bn = batch_norm(channels)

    def op(self, source: int, target: int, op: int, x: torch.Tensor) -> torch.Tensor:
        name = self.op_names[op]
        if name == "identity":
            return x
        if name == "avg_pool_3x3":
            return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        if name == "max_pool_3x3":
            return F.max_pool2d(x, 3, stride=1, padding=1)
        return cast(nn.ModuleDict, self.edges[f"{source}_{target}"])[name](x)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, cell: tuple[int, ...]) -> torch.Tensor:
        states = [self.preprocess[0](s0), self.preprocess[1](s1)]
        for i in range(self.nodes):
            a, op_a, b, op_b = cell[DECISIONS_PER_NODE * i : DECISIONS_PER_NODE * (i + 1)]
            states.append(self.op(a, i + 2, op_a, states[a]) + self.op(b, i + 2, op_b, states[b]))
        return self.bn(sum(self.combine[k](F.relu(states[k])) for k in loose_ends(cell, self.nodes)))

    def used_prefixes(self, cell: tuple[int, ...]) -> list[str]:
        prefixes = ["preprocess."] + [f"combine.{k}." for k in loose_ends(cell, self.nodes)]
        for i in range(self.nodes):
            a, op_a, b, op_b = cell[DECISIONS_PER_NODE * i : DECISIONS_PER_NODE * (i + 1)]
            prefixes += [f"edges.{s}_{i + 2}.{self.op_names[o]}." for s, o in ((a, op_a), (b, op_b))]
        return prefixes


class ConvCellSupernet(TaskRoutedModule):
    """The micro-CNN supernet: stem, cells (normal and reduction), classifier; task label k runs architecture k."""

    def __init__(self, params: ConvSearchParams, input_shape: tuple[int, ...], num_classes: int):
        super().__init__()
        self.nodes, self.op_names = params.nodes, list(params.ops)
        channels, size = params.channels, (input_shape[1] + params.stem_stride - 1) // params.stem_stride
        self.stem = nn.Sequential(
            nn.Conv2d(input_shape[0], channels, 3, stride=params.stem_stride, padding=1, bias=False),
            batch_norm(channels),
        )
        states = [(channels, size), (channels, size)]  # (channels, resolution) of the last two outputs
        cells, self.reduction_cells = [], []
        for stage in range(params.reductions + 1):
            kinds = [False] * params.cells_per_stage + ([True] if stage < params.reductions else [])
            for reduction in kinds:
                if reduction:
                    channels, size = 2 * channels, (size + 1) // 2
                (c0, r0), (c1, r1) = states
                cells.append(Cell((c0, c1), (r0 != size, r1 != size), channels, params))
                self.reduction_cells.append(reduction)
                states = [states[1], (channels, size)]
        self.cells = nn.ModuleList(cells)
        self.classifier = nn.Linear(channels, num_classes)
        self.architectures: list[tuple[int, ...]] = []
        self.max_class_label = num_classes

    def add_architecture(self, arch: tuple[int, ...]) -> int:
        self.architectures.append(tuple(arch))
        return len(self.architectures) - 1

    def describe(self, arch: tuple[int, ...]) -> str:
        def cell(decisions: tuple[int, ...]) -> str:
            nodes = []
            for i in range(self.nodes):
                a, op_a, b, op_b = decisions[DECISIONS_PER_NODE * i : DECISIONS_PER_NODE * (i + 1)]
                nodes.append(f"{a}:{SHORT[self.op_names[op_a]]}+{b}:{SHORT[self.op_names[op_b]]}")
            return " ".join(nodes)

        normal, reduction = split_cells(arch, self.nodes)
        return cell(normal) + (f" | {cell(reduction)}" if reduction else "")

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        normal, reduction = split_cells(self.architectures[task_label], self.nodes)
        s0 = s1 = self.stem(x)
        for cell, is_reduction in zip(self.cells, self.reduction_cells):
            s0, s1 = s1, cell(s0, s1, reduction if is_reduction else normal)
        return self.classifier(F.relu(s1).mean(dim=(2, 3)))

    def used_parameter_names(self, task_label: int) -> frozenset[str]:
        normal, reduction = split_cells(self.architectures[task_label], self.nodes)
        prefixes = ["stem.", "classifier."]
        for c, (cell, is_reduction) in enumerate(zip(self.cells, self.reduction_cells)):
            prefixes += [
                f"cells.{c}.{p}" for p in cast(Cell, cell).used_prefixes(reduction if is_reduction else normal)
            ]
        return frozenset(n for n, _ in self.named_parameters() if n.startswith(tuple(prefixes)))


class ConvCellSearch(AccuracySearch):
    """The micro-CNN search: :class:`~forgetbench.benchmark.data.scenarios.cell_search.CellSearch` on images, err = 1 - accuracy."""

    def __init__(self, model: ConvCellSupernet, params: ConvSearchParams, data: SearchData, dataset: str, seed: int):
        self.dataset = dataset
        super().__init__(
            "enas_cnn",
            model,
            params,
            params.controller,
            decision_choices(params.nodes, len(params.ops), params.reductions),
            data,
            params.controller.reward_samples,
            seed,
        )

    def data_summary(self) -> dict[str, Any]:
        return {
            "data": {
                "dataset": self.dataset,
                "train": len(self.data.train[1]),
                "valid": len(self.data.valid[1]),
                "evaluation": len(self.data.evaluation[1]),
                "test": len(self.data.test[1]),
            }
        }


@SCENARIOS.register("enas_cnn", params=ConvSearchParams)
def build_enas_cnn(params: ConvSearchParams, inputs: ScenarioInputs) -> Scenario:
    """ENAS micro-CNN cell search with weight sharing (Pham et al. 2018; Benyahia et al. 2019)."""
    data = load_dataset(params.dataset, inputs.data_root, params.download)
    check_validation_size(params, len(data.train_y))
    generator = torch.Generator().manual_seed(inputs.seed)
    order = torch.randperm(len(data.train_y), generator=generator)
    valid, train = order[: params.validation_size].sort().values, order[params.validation_size :]
    if params.max_train is not None:
        train = train[: params.max_train]
    train = train.sort().values
    valid_split = (data.train_x[valid], data.train_y[valid])
    n_eval = len(valid) if params.eval_size is None else params.eval_size
    splits = SearchData(
        train=(data.train_x[train], data.train_y[train]),
        evaluation=(valid_split[0][:n_eval], valid_split[1][:n_eval]),
        valid=valid_split,
        test=(data.test_x, data.test_y),
    )
    model = ConvCellSupernet(params, tuple(data.train_x.shape[1:]), data.num_classes)
    return ConvCellSearch(model, params, splits, params.dataset, inputs.seed)
