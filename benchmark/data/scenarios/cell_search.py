"""ENAS-style searches whose architectures are sampled while the search runs: what ``enas_rnn`` (the
recurrent cell on a language model) and ``enas_cnn`` (the micro-CNN cell on images) share.

**The search** (adaptive: the runner asks :meth:`CellSearch.next_turns` after each search epoch). An epoch
is ``turns_per_epoch`` turns; each samples one architecture (``search: controller``: from the controller;
``random``: every decision uniform) and trains it for ``steps_per_turn`` SGD steps on the shared weights.
A turn is one Avalanche experience, so every regularizer runs unchanged, its end-of-experience pass once
per turn. An architecture becomes a task the first time it is sampled (task label = the order first seen),
with exactly the parameters it uses, so every strategy sees which weights it shares with earlier ones.

Between epochs the controller (:class:`Controller`, logits
``tanh_constant * tanh(z / temperature)``) takes ``steps_per_epoch`` REINFORCE steps; the reward is
``reward_c`` x the harness's score of the sampled architecture on a rotating slice of the validation data
(one batch per step, as ENAS). After the last epoch the controller (or the uniform sampler) draws
``derive_samples`` architectures; the best by err on the shared weights is *derived*, and its err on the
whole validation and test splits is recorded under ``search.derived``. With ``retrain_steps > 0`` the
derived architecture is then trained alone from the run's initial weights with the suite's optimizer and
no regularizer (:class:`~forgetbench.benchmark.data.scenarios.base.Retraining`), its scores under ``search.derived.retrained``.

**err1 / err2.** ``err1[e][t]`` is the err of the architecture of turn ``t`` of epoch ``e`` right after that
turn, ``err2[e][t]`` the same architecture's err at the end of epoch ``e`` (both on the search's evaluation
data, never the test split): err2 - err1 > 0 is the multi-model forgetting of the WPL paper's Figure 3.
What err is (1 - accuracy, log-perplexity) is each scenario's :meth:`CellSearch.err_of`, named in
``search.error``; ``measure_from_epoch`` is the first epoch the report's forgetting metrics average over.

Result keys: ``search`` = {kind, error, measured_from_epoch, rewards per epoch, derived,
controller_probabilities}, ``err1``, ``err2``, ``epoch_architectures`` (task index per turn of each epoch),
``architectures`` (the decisions of every sampled architecture, by task), plus the scenario's
:meth:`CellSearch.data_summary`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Literal, Protocol, Sequence, cast

import torch
from torch import nn
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    model_validator,
)

from forgetbench.benchmark.core.record import RunRecord
from forgetbench.benchmark.data.scenarios.base import (
    Retraining,
    held_out_split,
    Scenario,
    ScenarioParams,
    Task,
    Turn,
    schedule_from_state,
    schedule_state,
)

Split = tuple[torch.Tensor, torch.Tensor]


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


class CellControllerParams(BaseModel):
    """The ENAS controller of a cell search (each scenario sets its authors' defaults)."""

    model_config = ConfigDict(extra="forbid")

    hidden: PositiveInt = 100  # the controller LSTM's hidden size
    lr: PositiveFloat = 3.5e-4  # the controller's learning rate (Adam)
    steps_per_epoch: PositiveInt = 2000  # controller updates per search epoch
    entropy_weight: NonNegativeFloat = 1e-4  # weight of the policy's entropy bonus
    baseline_decay: float = Field(0.95, ge=0.0, lt=1.0)  # decay of REINFORCE's moving-average baseline
    tanh_constant: PositiveFloat = 2.5  # logits = c * tanh(logits / T) (ENAS)
    temperature: PositiveFloat = 5.0  # T in the line above
    reward_c: PositiveFloat = 80.0  # the reward scale: c / perplexity (recurrent), c x accuracy (CNN)


class CellSearchParams(ScenarioParams):
    """What every sampled-architecture search takes; a scenario adds its space and data, and its defaults."""

    search: Literal["random", "controller"] = (
        "controller"  # cells drawn uniformly, or by the ENAS controller (REINFORCE)
    )
    epochs: PositiveInt = 150  # search epochs (one accuracy-matrix row each)
    turns_per_epoch: PositiveInt = 60  # cells trained per epoch
    steps_per_turn: PositiveInt = 7  # training steps per sampled cell
    derive_samples: PositiveInt = 100  # candidates sampled at the end; the best on the shared weights is derived
    retrain_steps: NonNegativeInt = Field(
        0,
        description="train the derived architecture alone from the initial "
        "weights for this many steps (0: no retraining)",
    )
    measure_from_epoch: int = Field(0, ge=0, description="first epoch the forgetting metrics average over")

    @model_validator(mode="after")
    def _measured_epochs(self) -> "CellSearchParams":
        if self.measure_from_epoch >= self.epochs:
            raise ValueError(f"measure_from_epoch must be below epochs ({self.epochs}), got {self.measure_from_epoch}")
        return self


class SampledSupernet(Protocol):
    """What a cell search needs of its supernet (a :class:`~forgetbench.benchmark.data.models.TaskRoutedModule`)."""

    architectures: list[tuple[int, ...]]
    max_class_label: int

    def add_architecture(self, arch: tuple[int, ...]) -> int: ...

    def describe(self, arch: tuple[int, ...]) -> str: ...

    def used_parameter_names(self, task_label: int) -> frozenset[str]: ...


@dataclasses.dataclass
class SearchData:
    """The tensors of a search: ``train`` trains every architecture; ``evaluation`` (part of the validation
    data) gives err1 / err2 and the derivation's ranking; ``valid`` feeds the controller's rewards and the
    derived architecture's validation score; ``test`` is read only for the derived architecture."""

    train: Split
    evaluation: Split
    valid: Split
    test: Split


class CellSearch(Scenario):
    """Sampled architectures as tasks, added while the search runs; see the module docstring.

    A scenario subclasses it with :meth:`err_of` (the harness's score -> err), :meth:`scores` (the
    derived architecture's record entries) and optionally :meth:`data_summary`."""

    error = "error"  # what err is, in words (recorded as search.error; the report reads its unit from it)

    def __init__(
        self,
        name: str,
        model: Any,
        params: CellSearchParams,
        controller: CellControllerParams,
        choices: list[int],
        data: SearchData,
        reward_batch: int,
        seed: int,
    ):
        self.params, self.controller_params = params, controller
        self.data, self.reward_batch = data, reward_batch
        self.choices = choices
        self.generator = torch.Generator().manual_seed(seed * 7919 + 17)  # the search's own draws
        self.controller: Controller | None = None
        if params.search == "controller":
            c = controller
            with torch.random.fork_rng(devices=[]):  # the supernet's init and data order stay as without it
                torch.manual_seed(seed * 7919 + 29)
                self.controller = Controller(self.choices, c.hidden, c.tanh_constant, c.temperature)
            self.reinforce = Reinforce(self.controller, c.lr, c.entropy_weight, c.baseline_decay)
        self.index: dict[tuple[int, ...], int] = {}
        self.epoch = 0
        self.reward_offset = 0
        self.rewards: list[list[float]] = []
        self.epoch_tasks: list[list[int]] = []
        self.err2: list[list[float]] = []
        self.derived: dict[str, Any] | None = None
        super().__init__(name, [], model, schedule=[Turn(task=0)], adaptive=True, meta={"search": params.search})
        self.schedule = self._epoch_turns()

    # ------------------------------------------------------------- per scenario
    def err_of(self, score: float) -> float:
        """err of an architecture from the harness's score (accuracy, or 1 / perplexity)."""
        raise NotImplementedError

    def scores(self, valid_err: float, test_err: float) -> dict[str, float]:
        """The derived (or retrained) architecture's record entries from its validation and test err."""
        raise NotImplementedError

    def data_summary(self) -> dict[str, Any]:
        """Extra result keys describing the data (default: none)."""
        return {}

    # --------------------------------------------------------------- sampling
    def _sample(self) -> tuple[int, ...]:
        if self.controller is None:
            return tuple(int(torch.randint(c, (1,), generator=self.generator)) for c in self.choices)
        with torch.no_grad():
            arch, _, _ = self.controller.sample(self.generator)
        return arch

    def task_of(self, arch: tuple[int, ...], test: Split | None = None) -> Task:
        """The task of ``arch`` (created on first sight), evaluated on ``test`` when given."""
        model: SampledSupernet = self.model  # type: ignore[assignment]
        if arch not in self.index:
            key = model.add_architecture(arch)
            self.index[arch] = key
            (train_x, train_y), (eval_x, eval_y) = self.data.train, self.data.evaluation
            task = Task(
                name=f"arch{key}({model.describe(arch)})",
                model_key=key,
                train_x=train_x,
                train_y=train_y,
                test_x=eval_x,
                test_y=eval_y,
                used_params=model.used_parameter_names(key),
                num_classes=model.max_class_label,
            )
            self.tasks.append(task)
        task = self.tasks[self.index[arch]]
        return task if test is None else dataclasses.replace(task, test_x=test[0], test_y=test[1])

    def _epoch_turns(self) -> list[Turn]:
        keys = [self.task_of(self._sample()).model_key for _ in range(self.params.turns_per_epoch)]
        self.epoch_tasks.append(keys)
        return [Turn(task=k, max_steps=self.params.steps_per_turn, record=False) for k in keys]

    def hold_out_validation(self, fraction: float, seed: int) -> None:
        """One seeded ``fraction`` of the training data becomes every split the search evaluates on (err1 / err2,
        rewards, the derivation, the ground truth, retraining), removed from training: a tuning or calibration run
        reads neither the validation nor the test split, and the architectures the search adds later get the same
        split as those sampled so far."""
        train_x, train_y = self.data.train
        keep, held = held_out_split(self.data.train, fraction, seed)
        self.data = SearchData(
            train=(train_x[keep], train_y[keep]),
            evaluation=(train_x[held], train_y[held]),
            valid=(train_x[held], train_y[held]),
            test=(train_x[held], train_y[held]),
        )
        self.tasks = [
            dataclasses.replace(
                task,
                train_x=self.data.train[0],
                train_y=self.data.train[1],
                test_x=self.data.evaluation[0],
                test_y=self.data.evaluation[1],
            )
            for task in self.tasks
        ]

    # ----------------------------------------------------------------- search
    def _reward_data(self) -> Split:
        valid_x, valid_y = self.data.valid
        n, size = len(valid_y), min(self.reward_batch, len(valid_y))
        rows = (torch.arange(size) + self.reward_offset) % n
        self.reward_offset = (self.reward_offset + size) % n
        return valid_x[rows], valid_y[rows]

    def next_turns(self, accuracy: Callable[[Task], float]) -> list[Turn]:
        keys = self.epoch_tasks[self.epoch]
        at_end = {k: self.err_of(accuracy(self.tasks[k])) for k in dict.fromkeys(keys)}  # each architecture once
        self.err2.append([at_end[k] for k in keys])
        self.epoch += 1
        if self.controller is not None:
            c = self.controller_params
            self.rewards.append(
                [
                    self.reinforce.step(
                        self.generator, lambda arch: c.reward_c * accuracy(self.task_of(arch, self._reward_data()))
                    )
                    for _ in range(c.steps_per_epoch)
                ]
            )
        if self.epoch < self.params.epochs:
            return self._epoch_turns()
        self.derived = self._derive(accuracy)
        return []

    def _derive_candidates(self) -> list[tuple[int, ...]]:
        """The architectures the derivation ranks: ``derive_samples`` draws of the search's sampler."""
        return [self._sample() for _ in range(self.params.derive_samples)]

    def _derive(self, accuracy: Callable[[Task], float]) -> dict[str, Any]:
        """ENAS's derivation: sample ``derive_samples`` architectures, keep the best by err on the shared
        weights (each on the evaluation data), and score it on the whole validation and test splits."""
        sampled = list(dict.fromkeys(self._derive_candidates()))
        errs = [self.err_of(accuracy(self.task_of(a))) for a in sampled]
        best = min(range(len(sampled)), key=lambda i: errs[i])
        arch = sampled[best]
        valid = self.err_of(accuracy(self.task_of(arch, self.data.valid)))
        test = self.err_of(accuracy(self.task_of(arch, self.data.test)))
        model: SampledSupernet = self.model  # type: ignore[assignment]
        return {
            "architecture": list(arch),
            "cell": model.describe(arch),
            "task": self.index[arch],
            "candidates": len(sampled),
            "candidates_err": errs,
            **self.scores(valid, test),
        }

    def retraining(self) -> Retraining | None:
        if self.derived is None or self.params.retrain_steps == 0:
            return None
        arch, derived = tuple(self.derived["architecture"]), self.derived

        def report(scores: dict[str, float]) -> None:
            derived["retrained"] = {
                "steps": self.params.retrain_steps,
                **self.scores(self.err_of(scores["valid"]), self.err_of(scores["test"])),
            }

        return Retraining(
            self.params.retrain_steps,
            lambda fresh: cast(CellSearch, fresh).task_of(arch),
            {"valid": self.data.valid, "test": self.data.test},
            report,
        )

    # ------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        model: SampledSupernet = self.model  # type: ignore[assignment]
        return {
            "schedule": schedule_state(self.schedule),
            "architectures": [list(a) for a in model.architectures],
            "epoch": self.epoch,
            "generator": self.generator.get_state(),
            "reward_offset": self.reward_offset,
            "rewards": self.rewards,
            "epoch_tasks": self.epoch_tasks,
            "err2": self.err2,
            "derived": self.derived,
            "reinforce": self.reinforce.state_dict() if self.controller is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        model: SampledSupernet = self.model  # type: ignore[assignment]
        # the sampled architectures are tasks in the order first seen: re-add them so each keeps its model key
        del model.architectures[:], self.tasks[:]
        self.index.clear()
        for arch in state["architectures"]:
            self.task_of(tuple(int(a) for a in arch))
        self.schedule = schedule_from_state(state["schedule"])
        self.epoch, self.reward_offset = int(state["epoch"]), int(state["reward_offset"])
        self.rewards = [list(r) for r in state["rewards"]]
        self.epoch_tasks = [list(k) for k in state["epoch_tasks"]]
        self.err2 = [list(e) for e in state["err2"]]
        self.derived = state["derived"]
        self.generator.set_state(state["generator"].cpu())
        if self.controller is not None:
            self.reinforce.load_state_dict(state["reinforce"])

    def summarize(self, record: RunRecord) -> dict[str, Any]:
        model: SampledSupernet = self.model  # type: ignore[assignment]
        turns = self.params.turns_per_epoch
        after = [self.err_of(float(t.accuracy)) for t in record.turn_accuracy or []]
        return {
            "architectures": [list(a) for a in model.architectures],
            "epoch_architectures": self.epoch_tasks[: len(self.err2)],
            "err1": [after[e * turns : (e + 1) * turns] for e in range(len(self.err2))],
            "err2": self.err2,
            "search": {
                "kind": self.params.search,
                "error": self.error,
                "measured_from_epoch": self.params.measure_from_epoch,
                "rewards": self.rewards if self.controller is not None else None,
                "derived": self.derived,
                "controller_probabilities": self.controller.probabilities() if self.controller else None,
            },
            **self.data_summary(),
        }


class AccuracySearch(CellSearch):
    """A cell search on classification: err = 1 - accuracy, in the derived architecture's scores both."""

    error = "validation error (1 - accuracy)"

    def err_of(self, score: float) -> float:
        return 1.0 - score

    def scores(self, valid_err: float, test_err: float) -> dict[str, float]:
        return {
            "valid_err": valid_err,
            "valid_accuracy": 1.0 - valid_err,
            "test_err": test_err,
            "test_accuracy": 1.0 - test_err,
        }
