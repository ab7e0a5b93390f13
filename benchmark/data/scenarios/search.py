"""Scenario ``supernet_search``: weight-sharing NAS as a *search* over one supernet, not a fixed schedule.

The supernet is the ``supernet`` scenario's (``cell: mlp | cnn``, ``layers`` positions x ``ops``
candidate ops, one shared classifier as in ENAS). Its *candidates* are every architecture of the
space (``candidates: null``, enumerated position by position: index = sum_l op_l * ops**(L-1-l)) or
a seed-drawn sample of ``candidates`` of them; candidate ``k`` is task ``k`` (task label ``k``), so
every strategy sees which weights each trained architecture shares with the earlier ones.

The search runs ``epochs`` search epochs. Each trains ``turns_per_epoch`` architectures one after
another, ``steps_per_turn`` SGD steps each (one turn = one Avalanche experience, so a regularizer's
end-of-experience pass runs once per turn; ENAS samples a new architecture every step, a turn of a
few steps keeps those passes affordable). Which architectures an epoch trains depends on ``search``:

* ``random``: uniform draws from the candidates (random search with weight sharing, Li & Talwalkar 2019).
* ``controller``: draws from an ENAS-style controller (Pham et al., 2018): an LSTM cell (``hidden``
  units) that picks one op per position, each pick fed back as the next input; logits are
  ``tanh_constant * tanh(W h)``. After every epoch it takes ``steps_per_epoch`` REINFORCE steps
  (Adam, ``lr``): sample an architecture a, reward r(a) = the supernet's accuracy on the validation
  data, loss = -(r - b) log pi(a) - ``entropy_weight`` H(pi), then b <- ``baseline_decay`` b +
  (1 - ``baseline_decay``) r (b starts at the first reward). It needs the whole space as candidates.

The validation data (``validation_size`` samples) is held out of the training data with the run's
seed; the test split is never used to steer the search. At the end the search scores every
candidate on the validation data with the trained supernet and picks the best (first on ties).

Ground truth: with ``standalone: true`` (the default) each candidate is also trained alone from the
supernet's initial weights for ``ground_truth_steps`` steps and evaluated on the test data
(``standalone_accuracy``). It depends only on the space, the seed and that budget, so every search
setting and every strategy of a suite share one computation, cached under the results folder.

Result keys (besides the usual): ``architectures`` (op names per candidate); ``search`` = {kind,
validation_accuracy per candidate, chosen, chosen_architecture, rewards per epoch (controller)};
``err1[e][k]`` / ``err2[e][k]``: test error of candidate k right after its last turn in epoch e / at
the end of epoch e (None for candidates the epoch did not train), so err2 - err1 > 0 is the
multi-model forgetting of the WPL paper's Figure. The accuracy matrix has one row per epoch.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch
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
from torch import nn

from forgetbench.benchmark.core.record import RunRecord, TurnAccuracy
from forgetbench.benchmark.data.loaders import seeded_subset
from forgetbench.benchmark.data.datasets import dataset_info, load_dataset
from forgetbench.benchmark.data.scenarios.base import (
    SCENARIOS,
    Scenario,
    ScenarioInputs,
    ScenarioParams,
    Task,
    Turn,
    schedule_from_state,
    schedule_state,
)
from forgetbench.benchmark.data.scenarios.split import validate_dataset_name
from forgetbench.benchmark.data.scenarios.supernet import OP_CATALOGUE, Supernet, SupernetParams, sample_architectures

MAX_ENUMERATED = 4096  # candidates: null enumerates the space; above this size give a sample size instead
SPACE_KEYS = (
    "dataset",
    "cell",
    "layers",
    "ops",
    "width",
    "candidates",
    "validation_size",
    "ground_truth_steps",
    "max_train",
    "max_test",
)  # what the ground truth depends on (besides seed and training)


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
        if self.top_k is not None and self.top_k > (self.candidates or space):
            raise ValueError(
                f"top_k must be in 1..{self.candidates or space} (the number of candidates), got {self.top_k}"
            )
        if self.cell == "cnn" and len(dataset_info(self.dataset)["input_shape"]) != 3:
            raise ValueError(f"cell 'cnn' needs an image dataset (C, H, W); {self.dataset!r} is not one")
        return self

    def preflight(self, data_root: Any, seed: int) -> None:
        check_validation_size(self, len(load_dataset(self.dataset, data_root, self.download).train_y))


def check_validation_size(params: SearchParams, n_train: int) -> None:
    if params.validation_size >= n_train:
        raise ValueError(
            f"validation_size must be below the {n_train} training samples of {params.dataset!r} "
            f"(the rest trains the supernet), got {params.validation_size}"
        )


def enumerate_space(layers: int, ops: int) -> list[tuple[int, ...]]:
    """Every architecture (op index per position), the first position varying slowest."""
    return [tuple(a) for a in itertools.product(range(ops), repeat=layers)]


class Controller(nn.Module):
    """ENAS-style LSTM controller: a sequence of categorical decisions, each pick fed back as the next input.

    Decision ``d`` chooses among ``choices[d]`` options; its logits are ``tanh_constant * tanh(W_d h /
    temperature)`` (Pham et al. 2018: the temperature flattens, the tanh bounds them). A pick is fed back
    through one embedding table of ``max(choices) + 1`` rows (the last row is the start token). For an
    ops-per-position space ``choices = [ops] * layers``.
    """

    def __init__(self, choices: Sequence[int], hidden: int, tanh_constant: float, temperature: float = 1.0):
        super().__init__()
        self.choices = [int(c) for c in choices]
        self.start = max(self.choices)
        self.tanh_constant, self.temperature = tanh_constant, temperature
        self.embedding = nn.Embedding(self.start + 1, hidden)
        self.cell = nn.LSTMCell(hidden, hidden)
        self.decoders = nn.ModuleList(nn.Linear(hidden, c) for c in self.choices)

    def _logits(self, decoder: nn.Module, h: torch.Tensor) -> torch.Tensor:
        z = decoder(h)[0]
        if self.temperature != 1.0:
            z = z / self.temperature
        return self.tanh_constant * torch.tanh(z)

    def sample(self, generator: torch.Generator) -> tuple[tuple[int, ...], torch.Tensor, torch.Tensor]:
        """``(architecture, log pi(architecture), entropy summed over decisions)``."""
        hidden = self.cell.hidden_size
        state = (torch.zeros(1, hidden), torch.zeros(1, hidden))
        token = torch.tensor([self.start])
        picks, log_prob, entropy = [], torch.zeros(()), torch.zeros(())
        for decoder in self.decoders:
            state = self.cell(self.embedding(token), state)
            log_p = torch.log_softmax(self._logits(decoder, state[0]), dim=0)
            op = int(torch.multinomial(log_p.exp().detach(), 1, generator=generator))
            picks.append(op)
            log_prob = log_prob + log_p[op]
            entropy = entropy - (log_p.exp() * log_p).sum()
            token = torch.tensor([op])
        return tuple(picks), log_prob, entropy

    def probabilities(self) -> list[list[float]]:
        """Each decision's probabilities along the most likely path (what the controller has learnt)."""
        with torch.no_grad():
            hidden = self.cell.hidden_size
            state = (torch.zeros(1, hidden), torch.zeros(1, hidden))
            token, out = torch.tensor([self.start]), []
            for decoder in self.decoders:
                state = self.cell(self.embedding(token), state)
                p = torch.softmax(self._logits(decoder, state[0]), dim=0)
                out.append([float(v) for v in p])
                token = torch.tensor([int(p.argmax())])
        return out


@dataclasses.dataclass
class Reinforce:
    """REINFORCE with a moving-average baseline for a :class:`Controller` (Williams 1992; ENAS).

    One step samples a, gets r(a), minimises -(r - b) log pi(a) - entropy_weight H(pi) with Adam, then
    b <- decay b + (1 - decay) r (b starts at the first reward)."""

    controller: Controller
    lr: float
    entropy_weight: float
    baseline_decay: float
    baseline: float | None = None

    def __post_init__(self) -> None:
        self.optimizer = torch.optim.Adam(self.controller.parameters(), lr=self.lr)

    def step(self, generator: torch.Generator, reward_of: Callable[[tuple[int, ...]], float]) -> float:
        arch, log_prob, entropy = self.controller.sample(generator)
        reward = reward_of(arch)
        if not math.isfinite(reward):
            raise FloatingPointError(
                f"controller reward {reward} is not finite: the shared weights score no architecture (diverged?)"
            )
        baseline = reward if self.baseline is None else self.baseline
        loss = -(reward - baseline) * log_prob - self.entropy_weight * entropy
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.baseline = self.baseline_decay * baseline + (1.0 - self.baseline_decay) * reward
        return reward

    def state_dict(self) -> dict[str, Any]:
        return {
            "controller": self.controller.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "baseline": self.baseline,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.controller.load_state_dict(state["controller"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = state["baseline"]


class SearchScenario(Scenario):
    """The candidates as tasks; :meth:`next_turns` runs the search between epochs."""

    def __init__(
        self,
        tasks: list[Task],
        model: Supernet,
        params: SearchParams,
        candidates: list[tuple[int, ...]],
        validation: tuple[torch.Tensor, torch.Tensor],
        seed: int,
    ):
        # schedule: a placeholder until epoch 0 is drawn below (the draw needs the generator and controller)
        super().__init__(
            "supernet_search",
            tasks,
            model,
            schedule=[Turn(task=0)],
            standalone=params.standalone,
            ground_truth_params={k: getattr(params, k) for k in SPACE_KEYS},
            adaptive=True,
            meta={"search": params.search},
        )
        self.params = params
        self.candidates = candidates
        self.index = {arch: k for k, arch in enumerate(candidates)}
        self.validation_tasks = [dataclasses.replace(t, test_x=validation[0], test_y=validation[1]) for t in tasks]
        self.generator = torch.Generator().manual_seed(seed * 7919 + 17)  # the search's own draws
        self.controller: Controller | None = None
        self.rewards: list[list[float]] = []
        if params.search == "controller":
            c = params.controller
            with torch.random.fork_rng(devices=[]):  # the supernet's init and data order stay as without it
                torch.manual_seed(seed * 7919 + 29)
                self.controller = Controller([params.ops] * params.layers, c.hidden, c.tanh_constant)
            self.reinforce = Reinforce(self.controller, c.lr, c.entropy_weight, c.baseline_decay)
        self.epoch = 0
        self.validation_accuracy: list[float] | None = None
        self.schedule = self._epoch_turns()

    def _draw(self) -> int:
        if self.controller is None:
            return int(torch.randint(len(self.candidates), (1,), generator=self.generator))
        with torch.no_grad():
            arch, _, _ = self.controller.sample(self.generator)
        return self.index[arch]

    def _epoch_turns(self) -> list[Turn]:
        n = self.params.turns_per_epoch
        return [Turn(task=self._draw(), max_steps=self.params.steps_per_turn, record=(i == n - 1)) for i in range(n)]

    def _train_controller(self, accuracy: Callable[[Task], float]) -> list[float]:
        def reward_of(arch: tuple[int, ...]) -> float:
            return accuracy(self.validation_tasks[self.index[arch]])

        return [self.reinforce.step(self.generator, reward_of) for _ in range(self.params.controller.steps_per_epoch)]

    def standalone_steps(self, training_steps: Callable[[Turn, int], int]) -> list[int]:
        return [self.params.ground_truth_steps] * len(self.tasks)

    def next_turns(self, accuracy: Callable[[Task], float]) -> list[Turn]:
        self.epoch += 1
        if self.controller is not None:
            self.rewards.append(self._train_controller(accuracy))
        if self.epoch < self.params.epochs:
            return self._epoch_turns()
        self.validation_accuracy = [accuracy(task) for task in self.validation_tasks]
        return []

    def state_dict(self) -> dict[str, Any]:
        return {
            "schedule": schedule_state(self.schedule),
            "epoch": self.epoch,
            "generator": self.generator.get_state(),
            "rewards": self.rewards,
            "validation_accuracy": self.validation_accuracy,
            "reinforce": self.reinforce.state_dict() if self.controller is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.schedule = schedule_from_state(state["schedule"])
        self.epoch, self.rewards = int(state["epoch"]), [list(r) for r in state["rewards"]]
        self.validation_accuracy = state["validation_accuracy"]
        self.generator.set_state(state["generator"].cpu())
        if self.controller is not None:
            self.reinforce.load_state_dict(state["reinforce"])

    def summarize(self, record: RunRecord) -> dict[str, Any]:
        model: Supernet = self.model  # type: ignore[assignment]
        n = len(self.tasks)
        extra: dict[str, Any] = {"architectures": [model.arch_ops(k) for k in range(n)]}
        if self.validation_accuracy is not None:
            chosen = int(np.argmax(self.validation_accuracy))
            extra["search"] = {
                "kind": self.params.search,
                "top_k": self.params.top_k or min(5, n),
                "validation_accuracy": self.validation_accuracy,
                "chosen": chosen,
                "chosen_architecture": model.arch_ops(chosen),
                "rewards": self.rewards if self.controller is not None else None,
                "controller_probabilities": self.controller.probabilities() if self.controller is not None else None,
            }
        extra["err1"], extra["err2"] = epoch_err_tables(
            record.turn_accuracy or [], record.accuracy_matrix, self.params.turns_per_epoch, n
        )
        return extra


def epoch_err_tables(
    turn_accuracy: list[TurnAccuracy], accuracy_matrix: list[list[float]], turns_per_epoch: int, n_candidates: int
) -> tuple[list[list[float | None]], list[list[float | None]]]:
    """``(err1, err2)``, each ``[epoch][candidate]``: error right after the candidate's last turn in the
    epoch, and at the epoch's end (row ``e`` of the accuracy matrix); None where the epoch did not train it."""
    err1: list[list[float | None]] = []
    err2: list[list[float | None]] = []
    for e, row in enumerate(accuracy_matrix):
        after: dict[int, float] = {}
        for entry in turn_accuracy[e * turns_per_epoch : (e + 1) * turns_per_epoch]:
            after[entry.task] = 1.0 - float(entry.accuracy)  # a later turn of the same one wins
        err1.append([after.get(k) for k in range(n_candidates)])
        err2.append([1.0 - row[k] if k in after else None for k in range(n_candidates)])
    return err1, err2


@SCENARIOS.register("supernet_search", params=SearchParams)
def build_search(params: SearchParams, inputs: ScenarioInputs) -> Scenario:
    """Weight-sharing NAS search (random or ENAS controller) over one supernet, with standalone ground truth."""
    data = load_dataset(params.dataset, inputs.data_root, params.download)
    generator = torch.Generator().manual_seed(inputs.seed)
    train_x, train_y, test_x, test_y = data.train_x, data.train_y, data.test_x, data.test_y
    check_validation_size(params, len(train_y))
    order = torch.randperm(len(train_y), generator=generator)
    val, train = order[: params.validation_size].sort().values, order[params.validation_size :]
    if params.max_train is not None:
        train = train[: params.max_train]
    train = train.sort().values
    val_x, val_y, train_x, train_y = train_x[val], train_y[val], train_x[train], train_y[train]
    test_x, test_y = seeded_subset(test_x, test_y, params.max_test, generator)
    if params.cell == "mlp":
        train_x, val_x, test_x = train_x.flatten(1), val_x.flatten(1), test_x.flatten(1)

    if params.candidates is None:
        candidates = enumerate_space(params.layers, params.ops)
    else:
        candidates = sample_architectures(params.layers, params.ops, params.candidates, inputs.seed)
    net_params = SupernetParams(
        dataset=params.dataset,
        cell=params.cell,
        layers=params.layers,
        ops=params.ops,
        width=params.width,
        architectures=len(candidates),
        head="shared",
    )
    model = Supernet(tuple(data.train_x.shape[1:]), net_params, candidates, data.num_classes)
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
        for k in range(len(candidates))
    ]
    return SearchScenario(tasks, model, params, candidates, (val_x, val_y), inputs.seed)
