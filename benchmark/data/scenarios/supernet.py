"""Scenario ``supernet``: weight-sharing neural architecture search (ENAS-like), multi-model forgetting.

A supernet has ``layers`` positions; position ``l`` offers ``ops`` candidate operations, each a
module of its own in an ``nn.ModuleDict`` (``cells.<l>.<op>``). An *architecture* picks one op per
position; every architecture that picks op ``o`` at position ``l`` runs the very same module, so
they share its ``nn.Parameter`` objects. Training one architecture therefore moves weights other
architectures rely on ("multi-model forgetting", Benyahia, Yu et al., ICML 2019).

Ops (every one maps the position's input to ``width`` features), in catalogue order:

    relu        Linear -> ReLU
    tanh        Linear -> Tanh
    bottleneck  Linear(width // 2) -> ReLU -> Linear(width) -> ReLU   (ReLU at another width)
    identity    skip connection, no parameters (only where input size == width, i.e. not position 0)
    sigmoid     Linear -> Sigmoid
    elu         Linear -> ELU
    leaky_relu  Linear -> LeakyReLU(0.1)

Position ``l`` offers the first ``ops`` catalogue entries that fit its shapes, so position 0 (input
size != width) replaces ``identity`` by the next op. ``cell: cnn`` is the image variant: 3x3
convolutions with ``width`` channels (position 0 maps the image channels to ``width``), the same
activations, ``bottleneck`` = 1x1 conv to ``width // 2`` then 3x3 back; then global average pooling.

``architectures`` distinct architectures are drawn uniformly with the run's seed; architecture ``k`` is
task ``k`` (task label ``k``): same data, evaluated on the test split. The classifier is one
``nn.Linear`` per architecture (``head: private``) or one for all (``head: shared``).

Schedules:

* ``sequential``: each architecture trained once, in order; ``accuracy_matrix`` is square.
* ``round_robin``: ``rounds`` rounds; each trains architecture 0, 1, ..., n-1 for ``steps_per_turn``
  steps (ENAS-like). ``accuracy_matrix`` has one row per round (taken after the round's last turn).

Extra result keys (:meth:`SupernetScenario.summarize`), errors = 1 - accuracy on the test data:
``err1[r][k]`` right after architecture k's turn in round r, ``err2[r][k]`` at the end of round r;
``err2 - err1 > 0`` is forgetting (a sequential schedule is one round). ``architectures`` lists the
op names each architecture picks. With ``standalone: true`` the runner also trains each architecture
alone from the same initial weights with the same number of steps (``standalone_accuracy``).
"""

from __future__ import annotations

from typing import Any, Callable, Literal, cast

import numpy as np
import torch
from pydantic import Field, PositiveInt, field_validator, model_validator
from torch import nn

from forgetbench.benchmark.core.record import RunRecord, TurnAccuracy
from forgetbench.benchmark.data.loaders import seeded_subset
from forgetbench.benchmark.data.datasets import dataset_info, load_dataset
from forgetbench.benchmark.data.models import TaskRoutedModule
from forgetbench.benchmark.data.scenarios.base import SCENARIOS, Scenario, ScenarioInputs, ScenarioParams, Task, Turn
from forgetbench.benchmark.data.scenarios.split import validate_dataset_name

OP_CATALOGUE = ("relu", "tanh", "bottleneck", "identity", "sigmoid", "elu", "leaky_relu")
_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
    "leaky_relu": lambda: nn.LeakyReLU(0.1),
}


class SupernetParams(ScenarioParams):
    dataset: str = "mnist"  # image dataset (`forgetbench list datasets`)
    cell: Literal["mlp", "cnn"] = "mlp"  # what a position holds: MLP layers or conv layers
    layers: PositiveInt = 4  # the supernet's positions
    ops: int = Field(4, ge=1, le=len(OP_CATALOGUE) - 1)  # candidate ops per position
    width: int = Field(64, ge=2)  # units (mlp) or channels (cnn) per op
    architectures: PositiveInt = 10  # distinct seed-drawn paths trained one after another (<= ops^layers)
    head: Literal["shared", "private"] = "private"  # one classifier for every architecture, or one per architecture
    schedule: Literal["sequential", "round_robin"] = (
        "round_robin"  # each architecture trained once in turn, or every round
    )
    rounds: PositiveInt = 5  # round_robin only
    steps_per_turn: PositiveInt | None = Field(100, description="null = the suite's epochs per turn")
    standalone: bool = False  # also train each architecture alone (reference)
    max_train: PositiveInt | None = Field(None, description="subsample the training data (speed)")
    max_test: PositiveInt | None = Field(None, description="subsample the evaluation data (speed)")
    download: bool = False  # fetch the dataset when it is missing (needs internet)

    _check_dataset = field_validator("dataset")(validate_dataset_name)

    @model_validator(mode="after")
    def _enough_architectures(self) -> "SupernetParams":
        space = self.ops**self.layers
        if self.architectures > space:
            raise ValueError(
                f"architectures must be in 1..ops**layers = 1..{space} (distinct architectures), "
                f"got {self.architectures}"
            )
        if self.cell == "cnn" and len(dataset_info(self.dataset)["input_shape"]) != 3:
            raise ValueError(f"cell 'cnn' needs an image dataset (C, H, W); {self.dataset!r} is not one")
        return self


def position_ops(position: int, ops: int) -> list[str]:
    """The candidate op names of a position: the first ``ops`` of the catalogue that fit its shapes."""
    fitting = [op for op in OP_CATALOGUE if not (op == "identity" and position == 0)]
    return fitting[:ops]


def sample_architectures(layers: int, ops: int, count: int, seed: int) -> list[tuple[int, ...]]:
    """``count`` distinct architectures (op index per position), drawn uniformly from ``seed``.

    Rejection sampling of uniform draws gives a uniform sample without replacement; the caller
    guarantees ``count <= ops ** layers``.
    """
    if count > ops**layers:
        raise ValueError(f"cannot draw {count} distinct architectures from {ops}**{layers}")
    rng = np.random.default_rng([seed, 0x5EED])  # a stream apart from the other seed-derived draws
    seen: set[tuple[int, ...]] = set()
    chosen: list[tuple[int, ...]] = []
    while len(chosen) < count:
        arch = tuple(int(i) for i in rng.integers(0, ops, size=layers))
        if arch not in seen:
            seen.add(arch)
            chosen.append(arch)
    return chosen


def _mlp_op(name: str, fan_in: int, width: int) -> nn.Module:
    if name == "identity":
        return nn.Identity()
    if name == "bottleneck":
        return nn.Sequential(nn.Linear(fan_in, width // 2), nn.ReLU(), nn.Linear(width // 2, width), nn.ReLU())
    return nn.Sequential(nn.Linear(fan_in, width), _ACTIVATIONS[name]())


def _cnn_op(name: str, channels: int, width: int) -> nn.Module:
    if name == "identity":
        return nn.Identity()
    if name == "bottleneck":
        return nn.Sequential(
            nn.Conv2d(channels, width // 2, 1), nn.ReLU(), nn.Conv2d(width // 2, width, 3, padding=1), nn.ReLU()
        )
    return nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), _ACTIVATIONS[name]())


class Supernet(TaskRoutedModule):
    """All candidate ops of every position, and one head per architecture (or one shared head).

    Task label ``k`` runs architecture ``k``: ``cells[l][op_names[l][arch[l]]]`` for each position,
    then the head.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        params: SupernetParams,
        architectures: list[tuple[int, ...]],
        num_classes: int,
    ):
        super().__init__()
        self.cell = params.cell
        self.architectures = list(architectures)
        self.op_names = [position_ops(l, params.ops) for l in range(params.layers)]
        w = params.width
        cells = []
        for l, names in enumerate(self.op_names):
            if params.cell == "mlp":
                fan_in = int(np.prod(input_shape)) if l == 0 else w
                cells.append(nn.ModuleDict({n: _mlp_op(n, fan_in, w) for n in names}))
            else:
                channels = input_shape[0] if l == 0 else w
                cells.append(nn.ModuleDict({n: _cnn_op(n, channels, w) for n in names}))
        self.cells = nn.ModuleList(cells)
        self.private_heads = params.head == "private"
        n_heads = len(architectures) if self.private_heads else 1
        self.heads = nn.ModuleList(nn.Linear(w, num_classes) for _ in range(n_heads))
        self.max_class_label = num_classes

    def arch_ops(self, task_label: int) -> list[str]:
        """Op names architecture ``task_label`` picks, one per position."""
        return [self.op_names[l][i] for l, i in enumerate(self.architectures[task_label])]

    def head_index(self, task_label: int) -> int:
        return task_label if self.private_heads else 0

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        h = x.flatten(1) if self.cell == "mlp" else x
        for cell, op in zip(self.cells, self.arch_ops(task_label)):
            h = cast(nn.ModuleDict, cell)[op](h)
        if self.cell == "cnn":
            h = h.mean(dim=(2, 3))
        return self.heads[self.head_index(task_label)](h)

    def used_parameter_names(self, task_label: int) -> frozenset[str]:
        prefixes = [f"cells.{l}.{op}." for l, op in enumerate(self.arch_ops(task_label))]
        prefixes.append(f"heads.{self.head_index(task_label)}.")
        return frozenset(n for n, _ in self.named_parameters() if n.startswith(tuple(prefixes)))


def err_tables(
    turn_accuracy: list[TurnAccuracy], accuracy_matrix: list[list[float]], n_archs: int
) -> tuple[list[list[float]], list[list[float]]]:
    """``(err1, err2)``, each ``[round][architecture]``, for a round-robin schedule of ``n_archs``.

    Turn ``r * n_archs + k`` trains architecture ``k`` in round ``r``; row ``r`` of the accuracy matrix
    is taken at the end of round ``r``. Then

        err1[r][k] = 1 - turn_accuracy[r * n_archs + k]    (right after k's turn)
        err2[r][k] = 1 - R[r][k]                           (at the end of round r)
    """
    rounds = len(accuracy_matrix)
    by_turn = {entry.turn: entry for entry in turn_accuracy}
    err1, err2 = [], []
    for r in range(rounds):
        row1 = []
        for k in range(n_archs):
            entry = by_turn[r * n_archs + k]
            if entry.task != k:
                raise ValueError(f"turn {r * n_archs + k} trained task {entry.task}, expected {k}")
            row1.append(1.0 - entry.accuracy)
        err1.append(row1)
        err2.append([1.0 - a for a in accuracy_matrix[r][:n_archs]])
    return err1, err2


class SupernetScenario(Scenario):
    """A scenario whose result also carries ``architectures``, ``err1`` and ``err2``."""

    def summarize(self, record: RunRecord) -> dict[str, Any]:
        model: Supernet = self.model  # type: ignore[assignment]
        n = len(self.tasks)
        extra: dict[str, Any] = {"architectures": [model.arch_ops(k) for k in range(n)]}
        R = record.accuracy_matrix
        turns = record.turn_accuracy or []
        if self.meta["schedule"] == "sequential":
            # One round: turn k trains k, and the matrix's last row is the end of that round.
            if len(R) == n:
                extra["err1"] = [[1.0 - R[k][k] for k in range(n)]]
                extra["err2"] = [[1.0 - a for a in R[-1]]]
        elif len(turns) == n * len(R):
            extra["err1"], extra["err2"] = err_tables(turns, R, n)
        return extra


@SCENARIOS.register("supernet", params=SupernetParams)
def build_supernet(params: SupernetParams, inputs: ScenarioInputs) -> Scenario:
    """Weight-sharing NAS: seed-drawn architectures of one supernet, trained in turn on one dataset."""
    data = load_dataset(params.dataset, inputs.data_root, params.download)
    generator = torch.Generator().manual_seed(inputs.seed)
    train_x, train_y, test_x, test_y = data.train_x, data.train_y, data.test_x, data.test_y
    train_x, train_y = seeded_subset(train_x, train_y, params.max_train, generator)
    test_x, test_y = seeded_subset(test_x, test_y, params.max_test, generator)
    if params.cell == "mlp":
        train_x, test_x = train_x.flatten(1), test_x.flatten(1)

    architectures = sample_architectures(params.layers, params.ops, params.architectures, inputs.seed)
    model = Supernet(tuple(data.train_x.shape[1:]), params, architectures, data.num_classes)
    tasks = [
        Task(
            name=f"arch{k}(" + "-".join(model.arch_ops(k)) + ")",
            model_key=k,
            train_x=train_x,
            train_y=train_y,
            test_x=test_x,
            test_y=test_y,
            used_params=model.used_parameter_names(k),
            num_classes=data.num_classes,
        )
        for k in range(len(architectures))
    ]
    n = len(tasks)
    if params.schedule == "sequential":
        schedule = [Turn(task=k, max_steps=params.steps_per_turn) for k in range(n)]
    else:
        schedule = [
            Turn(task=k, max_steps=params.steps_per_turn, record=(k == n - 1))
            for _ in range(params.rounds)
            for k in range(n)
        ]
    meta = {"schedule": params.schedule, "architectures": [list(a) for a in architectures]}
    return SupernetScenario("supernet", tasks, model, schedule=schedule, meta=meta, standalone=params.standalone)
