"""Scenario ``supernet``: a fixed schedule over seed-drawn architectures of one weight-sharing supernet (ENAS-like),
multi-model forgetting.

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
The classifier is one ``nn.Linear`` per architecture (``head: private``) or one for all (``head: shared``).

**One engine.** This scenario is a ``custom_supernet`` search (the user path): :class:`Supernet` is its model
(``forward(x, arch)``, architectures named by their ops, ``relu-tanh-bottleneck``), the ops per position its
``choices``, and :meth:`SupernetParams.search_params` the search, ``search: fixed`` over ``architectures``
distinct architectures drawn uniformly with the run's seed, trained in order:

* ``sequential``: each architecture trained once (one search epoch); a row of the accuracy matrix after every
  turn, so it is square (forgetting, BWT).
* ``round_robin``: ``rounds`` rounds (search epochs), each training architecture 0, 1, ..., n-1 for
  ``steps_per_turn`` steps (ENAS-like); one accuracy-matrix row per round.

A fixed schedule steers nothing, so its errors are measured on the test split (``max_test`` samples): ``err1[r][k]``
right after architecture k's turn in round r, ``err2[r][k]`` at the end of round r; ``err2 - err1 > 0`` is
forgetting. With ``standalone: true`` the search's ground truth is every architecture trained alone from the run's
initial weights for the steps it gets in the schedule (``rounds x steps_per_turn``), so ``search_tau`` compares the
supernet's final ranking of them with their standalone one (``search.ground_truth``).
"""

from __future__ import annotations

from typing import Any, Callable, Literal, Sequence, cast

import numpy as np
import torch
from pydantic import Field, PositiveInt, field_validator, model_validator
from torch import nn

from forgetbench.benchmark.data.datasets import dataset_info, load_dataset
from forgetbench.benchmark.data.loaders import seeded_subset
from forgetbench.benchmark.data.scenarios.base import (
    SCENARIOS,
    Scenario,
    ScenarioInputs,
    ScenarioParams,
    count_parameters,
)
from forgetbench.benchmark.data.scenarios.custom_supernet import (
    CustomSupernetParams,
    GroundTruthParams,
    build_custom_supernet,
)
from forgetbench.benchmark.data.scenarios.split import validate_dataset_name

NETWORK = "forgetbench.benchmark.data.scenarios.supernet:Supernet"
DATA = "forgetbench.benchmark.data.scenarios.supernet:supernet_data"
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
    # draw the architectures from this seed instead of each run's: every seed trains the same ones, so the seeds
    # differ only in initialisation and data order (a comparison of methods on one set of architectures)
    architecture_seed: int | None = Field(None, ge=0)
    head: Literal["shared", "private"] = "private"  # one classifier for every architecture, or one per architecture
    schedule: Literal["sequential", "round_robin"] = (
        "round_robin"  # each architecture trained once in turn, or every round
    )
    rounds: PositiveInt = 5  # round_robin only
    steps_per_turn: PositiveInt = 100  # training steps per architecture per round
    standalone: bool = False  # also train each architecture alone (the ranking's ground truth)
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
        if self.standalone and self.architectures < 2:
            raise ValueError("standalone: a ranking needs at least 2 architectures, got architectures: 1")
        if self.cell == "cnn" and len(dataset_info(self.dataset)["input_shape"]) != 3:
            raise ValueError(f"cell 'cnn' needs an image dataset (C, H, W); {self.dataset!r} is not one")
        return self

    def choices(self) -> list[list[str]]:
        """The op names each position offers (the search's decisions)."""
        return [position_ops(position, self.ops) for position in range(self.layers)]

    def search_params(self, seed: int) -> CustomSupernetParams:
        """The ``custom_supernet`` search this scenario is: a fixed schedule over the seed's architectures."""
        choices = self.choices()
        drawn = sample_architectures(
            self.layers,
            self.ops,
            self.architectures,
            seed if self.architecture_seed is None else self.architecture_seed,
        )
        names = [[choices[position][op] for position, op in enumerate(arch)] for arch in drawn]
        rounds = self.rounds if self.schedule == "round_robin" else 1
        truth = GroundTruthParams(architectures=names, steps=rounds * self.steps_per_turn) if self.standalone else None
        return CustomSupernetParams(
            model=NETWORK,
            model_params={
                "cell": self.cell,
                "width": self.width,
                "heads": ["-".join(n) for n in names] if self.head == "private" else None,
            },
            choices=choices,
            data=DATA,
            data_params={
                "dataset": self.dataset,
                "max_train": self.max_train,
                "max_test": self.max_test,
                "download": self.download,
            },
            search="fixed",
            architectures=names,
            epochs=rounds,
            steps_per_turn=self.steps_per_turn,
            eval_size=None,
            used_params="declared",
            ground_truth=truth,
        )

    def preflight(self, data_root: Any, seed: int) -> None:
        # the fixed list is all it trains (an architecture outside it has no private head)
        build_custom_supernet(self.search_params(seed), ScenarioInputs(seed, data_root)).probe_space(0)

    def parameter_count(self) -> int | None:
        info = dataset_info(self.dataset)
        heads = [f"h{k}" for k in range(self.architectures)] if self.head == "private" else None
        return count_parameters(
            lambda: Supernet(self.choices(), info["input_shape"], info["num_classes"], self.cell, self.width, heads)
        )


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


class Supernet(nn.Module):
    """Every candidate op of every position, and one head per named architecture (or one shared head).

    ``forward(x, arch)`` runs ``cells[l][arch[l]]`` for each position, then the architecture's head: the model a
    ``custom_supernet`` search takes."""

    def __init__(
        self,
        choices: Sequence[Sequence[str]],
        input_shape: Sequence[int],
        num_classes: int,
        cell: str = "mlp",
        width: int = 64,
        heads: Sequence[str] | None = None,
    ):
        super().__init__()
        self.cell = cell
        cells = []
        for position, names in enumerate(choices):
            if cell == "mlp":
                fan_in = int(np.prod(input_shape)) if position == 0 else width
                cells.append(nn.ModuleDict({n: _mlp_op(n, fan_in, width) for n in names}))
            else:
                channels = int(input_shape[0]) if position == 0 else width
                cells.append(nn.ModuleDict({n: _cnn_op(n, channels, width) for n in names}))
        self.cells = nn.ModuleList(cells)
        # private: the head of architecture "relu-tanh-..." is heads["relu-tanh-..."]; shared: heads["shared"]
        self.private = heads is not None
        self.heads = nn.ModuleDict({name: nn.Linear(width, num_classes) for name in (heads or ["shared"])})

    def head_name(self, arch: Sequence[str]) -> str:
        name = "-".join(arch) if self.private else "shared"
        if name not in self.heads:
            raise ValueError(f"architecture {'-'.join(arch)} has no head of its own (heads: {list(self.heads)})")
        return name

    def forward(self, x: torch.Tensor, arch: Sequence[str]) -> torch.Tensor:
        h = x.flatten(1) if self.cell == "mlp" else x
        for cell, op in zip(self.cells, arch):
            h = cast(nn.ModuleDict, cell)[op](h)
        if self.cell == "cnn":
            h = h.mean(dim=(2, 3))
        return self.heads[self.head_name(arch)](h)

    def forward_seeds(
        self, x: torch.Tensor, archs: Sequence[Sequence[str]], slot: int, choose: Callable[..., torch.Tensor]
    ) -> torch.Tensor:
        """K seeds at once, each on its own architecture (``forgetbench.benchmark.run.batching``: this supernet is then
        a copy whose parameters are stacked ``(K, ...)``, ``x`` is ``(K, batch, ...)``): at each position
        ``choose(cell, ops, h)`` runs seed k's op ``ops[k]`` on its row, each op once for the seeds that chose it;
        then the ``slot``-th head (private heads are in the order of the architectures) or the shared one."""
        if self.cell != "mlp":
            raise NotImplementedError("cnn cells are not stacked (their convolutions run per seed)")
        h = x.flatten(2)
        for position, cell in enumerate(self.cells):
            h = choose(cell, [arch[position] for arch in archs], h)
        head = list(self.heads.values())[slot] if self.private else self.heads["shared"]
        return head(h)

    def used_parameter_names(self, arch: Sequence[str]) -> list[str]:
        prefixes = tuple(f"cells.{position}.{op}." for position, op in enumerate(arch))
        prefixes += (f"heads.{self.head_name(arch)}.",)
        return [n for n, _ in self.named_parameters() if n.startswith(prefixes)]


def supernet_data(
    seed: int, data_root: Any, dataset: str, max_train: int | None, max_test: int | None, download: bool
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The dataset's training split and its test split, each subsampled with the run's seed; the test split is also
    the search's validation data (a fixed schedule steers nothing, and its err1 / err2 are test errors)."""
    data = load_dataset(dataset, data_root, download)
    generator = torch.Generator().manual_seed(seed)
    train = seeded_subset(data.train_x, data.train_y, max_train, generator)
    test = seeded_subset(data.test_x, data.test_y, max_test, generator)
    return {"train": train, "valid": test, "test": test}


@SCENARIOS.register("supernet", params=SupernetParams)
def build_supernet(params: SupernetParams, inputs: ScenarioInputs) -> Scenario:
    """Weight-sharing NAS: seed-drawn architectures of one supernet, trained in turn on one dataset."""
    return build_custom_supernet(params.search_params(inputs.seed), inputs, name="supernet")


__all__ = ["Supernet", "SupernetParams", "position_ops", "sample_architectures"]
