"""Scenario ``supernet_search``: weight-sharing NAS as a *search* over the ``supernet`` scenario's space, not a fixed
schedule.

The supernet is the ``supernet`` scenario's (``cell: mlp | cnn``, ``layers`` positions x ``ops`` candidate ops, one
shared classifier as in ENAS). Its *candidates* are every architecture of the space (``candidates: null``) or a
seed-drawn sample of ``candidates`` of them.

The search runs ``epochs`` search epochs. Each trains ``turns_per_epoch`` architectures one after another,
``steps_per_turn`` SGD steps each (one turn = one Avalanche experience, so a regularizer's end-of-experience pass
runs once per turn; ENAS samples a new architecture every step, a turn of a few steps keeps those passes
affordable). An architecture becomes a task the first time it is trained, with exactly the parameters it uses, so
every strategy sees which weights it shares with the earlier ones. Which architectures an epoch trains depends on
``search``:

* ``random``: uniform draws from the candidates (random search with weight sharing, Li & Talwalkar 2019).
* ``controller``: draws from an ENAS-style controller (Pham et al., 2018): an LSTM cell (``hidden`` units) that
  picks one op per position, each pick fed back as the next input; logits are ``tanh_constant * tanh(W h)``. After
  every epoch it takes ``steps_per_epoch`` REINFORCE steps (Adam, ``lr``): sample an architecture a, reward r(a) =
  the supernet's accuracy on the validation data, loss = -(r - b) log pi(a) - ``entropy_weight`` H(pi), then
  b <- ``baseline_decay`` b + (1 - ``baseline_decay``) r (b starts at the first reward). It needs the whole space
  as candidates.

The validation data (``validation_size`` samples) is held out of the training data with the run's seed; the test
split is never used to steer the search.

**One engine.** This scenario is a ``custom_supernet`` search (the user path) over the ``supernet`` scenario's model
(:class:`~forgetbench.benchmark.data.scenarios.supernet.Supernet`, one shared head), built by
:meth:`SearchParams.search_params`; its records are ``custom_supernet``'s. The ground truth (``standalone: true``, the
default) is every candidate trained alone from the run's initial weights for ``ground_truth_steps`` steps and
scored on the test data; at the search's end the supernet scores every candidate on the whole validation data
(``search.ground_truth.supernet_accuracy``), picks the best (first on ties), and Kendall tau, Spearman rho,
precision@``top_k`` and the regret of that pick compare its ranking with the ground truth. The ground truth
depends only on the space, the seed and that budget, so every search setting and every strategy of a suite share
one computation, cached under the results folder. ``err1[e][t]`` / ``err2[e][t]``: the validation error of the
architecture of turn t of epoch e right after that turn / at the epoch's end, so err2 - err1 > 0 is the
multi-model forgetting of the WPL paper's Figure.
"""

from __future__ import annotations

import itertools
from typing import Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from forgetbench.benchmark.data.datasets import dataset_info, load_dataset
from forgetbench.benchmark.data.scenarios.base import SCENARIOS, Scenario, ScenarioInputs, ScenarioParams
from forgetbench.benchmark.data.scenarios.custom_supernet import (
    MAX_ENUMERATED,
    PROBED_AT_PREFLIGHT,
    CustomSupernetParams,
    GroundTruthParams,
    SupernetControllerParams,
    build_custom_supernet,
)
from forgetbench.benchmark.data.scenarios.split import validate_dataset_name
from forgetbench.benchmark.data.scenarios.supernet import NETWORK, OP_CATALOGUE, position_ops, sample_architectures

SPACE = "forgetbench.benchmark.data.scenarios.search:CandidateSpace"


class ControllerParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hidden: PositiveInt = 32  # the controller LSTM's hidden size
    lr: PositiveFloat = 0.01  # the controller's learning rate (Adam)
    steps_per_epoch: PositiveInt = 30  # controller updates per search epoch
    entropy_weight: NonNegativeFloat = 1e-3  # weight of the policy's entropy bonus
    baseline_decay: float = Field(0.9, ge=0.0, lt=1.0)  # decay of REINFORCE's moving-average baseline
    tanh_constant: PositiveFloat = 2.5  # the logits are c * tanh(W h) (ENAS)


class SearchParams(ScenarioParams):
    dataset: str = "mnist"  # image dataset (`forgetbench list datasets`)
    cell: Literal["mlp", "cnn"] = "mlp"  # what a position holds: MLP layers or conv layers
    layers: PositiveInt = 4  # the supernet's positions
    ops: int = Field(3, ge=2, le=len(OP_CATALOGUE) - 1)  # candidate ops per position
    width: int = Field(64, ge=2)  # units (mlp) or channels (cnn) per op
    search: Literal["random", "controller"] = (
        "random"  # architectures drawn uniformly, or by an ENAS-style LSTM controller (REINFORCE)
    )
    epochs: PositiveInt = 5  # search epochs (one accuracy-matrix row each)
    turns_per_epoch: PositiveInt = 20  # architectures trained per epoch
    steps_per_turn: PositiveInt = 20  # training steps per sampled architecture
    candidates: PositiveInt | None = Field(None, description="null = every architecture of the space")
    validation_size: PositiveInt = 1000  # held out of the training data; the search ranks on it
    ground_truth_steps: PositiveInt = 300  # steps each candidate is trained alone for the ground truth (cached)
    top_k: PositiveInt | None = Field(None, description="K of precision@K; null = min(5, candidates)")
    controller: ControllerParams = Field(default_factory=ControllerParams)
    standalone: bool = True  # train the ground truth (every candidate alone)
    max_train: PositiveInt | None = Field(None, description="subsample the training data (speed)")
    max_test: PositiveInt | None = Field(None, description="subsample the evaluation data (speed)")
    download: bool = False  # fetch the dataset when it is missing (needs internet)

    _check_dataset = field_validator("dataset")(validate_dataset_name)

    @model_validator(mode="after")
    def _space(self) -> "SearchParams":
        space = self.ops**self.layers
        if self.candidates is None and space > MAX_ENUMERATED:
            raise ValueError(
                f"candidates: the space has ops**layers = {space} architectures, more than "
                f"{MAX_ENUMERATED} can be enumerated; give a sample size (1..{space})"
            )
        if self.candidates is not None and self.candidates > space:
            raise ValueError(f"candidates must be in 1..ops**layers = 1..{space}, got {self.candidates}")
        if self.search == "controller" and self.candidates is not None and self.candidates != space:
            raise ValueError("candidates: search 'controller' samples from the whole space; use candidates: null")
        if self.standalone and (self.candidates or space) < 2:
            raise ValueError("candidates: the ground truth's ranking (standalone) needs at least 2 candidates, got 1")
        if self.top_k is not None and self.top_k > (self.candidates or space):
            raise ValueError(
                f"top_k must be in 1..{self.candidates or space} (the number of candidates), got {self.top_k}"
            )
        if self.cell == "cnn" and len(dataset_info(self.dataset)["input_shape"]) != 3:
            raise ValueError(f"cell 'cnn' needs an image dataset (C, H, W); {self.dataset!r} is not one")
        return self

    def candidate_names(self, seed: int) -> list[list[str]]:
        """Every architecture of the space (the first position varying slowest), or the seed's sample of them."""
        choices = [position_ops(position, self.ops) for position in range(self.layers)]
        if self.candidates is None:
            archs = [tuple(a) for a in itertools.product(range(self.ops), repeat=self.layers)]
        else:
            archs = sample_architectures(self.layers, self.ops, self.candidates, seed)
        return [[choices[position][op] for position, op in enumerate(arch)] for arch in archs]

    def search_params(self, seed: int) -> CustomSupernetParams:
        """The ``custom_supernet`` search this scenario is (see the module docstring)."""
        names = self.candidate_names(seed)
        c = self.controller
        truth = (
            GroundTruthParams(
                architectures=names, steps=self.ground_truth_steps, top_k=self.top_k or min(5, len(names))
            )
            if self.standalone
            else None
        )
        return CustomSupernetParams(
            model=NETWORK,
            model_params={"cell": self.cell, "width": self.width},
            space=SPACE,
            space_params={"layers": self.layers, "ops": self.ops, "candidates": names},
            dataset=self.dataset,
            download=self.download,
            search=self.search,
            epochs=self.epochs,
            turns_per_epoch=self.turns_per_epoch,
            steps_per_turn=self.steps_per_turn,
            validation_size=self.validation_size,
            eval_size=None,  # err1 / err2 and the ranking on the whole validation data
            max_train=self.max_train,
            max_test=self.max_test,
            used_params="declared",
            controller=SupernetControllerParams(
                hidden=c.hidden,
                lr=c.lr,
                steps_per_epoch=c.steps_per_epoch,
                entropy_weight=c.entropy_weight,
                baseline_decay=c.baseline_decay,
                tanh_constant=c.tanh_constant,
                temperature=1.0,
                reward_c=1.0,
                reward_samples=self.validation_size,  # every reward on the whole validation data
            ),
            ground_truth=truth,
        )

    def preflight(self, data_root: Any, seed: int) -> None:
        n_train = len(load_dataset(self.dataset, data_root, self.download).train_y)
        if self.validation_size >= n_train:
            raise ValueError(
                f"validation_size must be below the {n_train} training samples of {self.dataset!r} "
                f"(the rest trains the supernet), got {self.validation_size}"
            )
        build_custom_supernet(self.search_params(seed), ScenarioInputs(seed, data_root)).probe_space(
            PROBED_AT_PREFLIGHT
        )


class CandidateSpace:
    """The supernet's ops per position, searched over ``candidates`` (option names) only: random search draws
    uniformly from them; ``all()`` lists them."""

    def __init__(self, layers: int, ops: int, candidates: list[list[str]]):
        self.choices = [position_ops(position, ops) for position in range(layers)]
        self.candidates = [tuple(c) for c in candidates]

    def sample(self, rng: np.random.Generator) -> tuple[str, ...]:
        return self.candidates[int(rng.integers(len(self.candidates)))]

    def all(self) -> list[tuple[str, ...]]:
        return list(self.candidates)


@SCENARIOS.register("supernet_search", params=SearchParams)
def build_search(params: SearchParams, inputs: ScenarioInputs) -> Scenario:
    """Weight-sharing NAS search (random or ENAS controller) over one supernet, with standalone ground truth."""
    return build_custom_supernet(params.search_params(inputs.seed), inputs, name="supernet_search")


__all__ = ["CandidateSpace", "ControllerParams", "SearchParams"]
