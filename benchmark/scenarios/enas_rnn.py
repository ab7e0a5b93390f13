"""Scenario ``enas_rnn``: ENAS's recurrent-cell search on a word-level language model (multi-model forgetting
where Benyahia, Yu et al., ICML 2019, measured it).

**The supernet** (Pham et al., 2018, "Efficient Neural Architecture Search"). A cell of ``nodes`` nodes
maps the word embedding ``x_t`` and the previous state ``h_{t-1}`` to ``h_t``:

    node 0:      c = sigmoid(x W_xc + h_{t-1} W_hc),  s_0 = c * f_0(x W_xh + h_{t-1} W_hh) + (1 - c) * h_{t-1}
    node i >= 1: c = sigmoid(s_j W_c^{j,i}),          s_i = c * f_i(s_j W_h^{j,i}) + (1 - c) * s_j

where node ``i`` picks an earlier node ``j = prev_i`` and an activation ``f_i`` from ``activations``
(tanh, relu, identity, sigmoid); ``h_t`` is the mean of the loose ends (nodes no later node reads),
rescaled to an L2 norm of at most ``max_hidden_norm`` per sample (the ENAS PyTorch port's 25: a cell of
relu / identity nodes otherwise grows without bound over the window).
Every edge ``j -> i`` has its own weights ``edges.<j>_<i>`` (``[W_c; W_h]``, hidden x 2 hidden), shared
by every architecture that draws that edge, whatever activation it picks; the embedding, node 0's
weights and the softmax (tied to the embedding with ``tied: true``) are shared by all. An architecture
is the decision sequence ``(f_0, prev_1, f_1, ..., prev_{n-1}, f_{n-1})``.

**Data.** The corpus (:mod:`benchmark.language`: ``austen``, ``folder:/path``, ``hf:<id>``) is cut into
non-overlapping ``bptt``-token windows; each window is one sample (inputs, next tokens), read from a
zero state (windows are shuffled, so no hidden state is carried between batches: a deliberate
departure from ENAS's stateful BPTT that makes an architecture's error a function of the weights only).
``max_train_tokens`` caps the training tokens (from the start). Each sampled architecture is a task
whose test data is the first ``eval_tokens`` tokens of the validation split (``null``: all of it); the
test split is used only for the derived architecture.

**Error.** The harness's score of a language-model task is exp(-mean token NLL) = 1 / perplexity; here
err = validation **log-perplexity** (nats per token) = -log(score), for err1, err2, rewards and the
derived architecture alike. ``err1`` is an architecture's err right after its turn, ``err2`` the same
architecture's err at the end of that search epoch; both are tables ``[epoch][turn of the epoch]``, so
err2 - err1 > 0 is the multi-model forgetting of the WPL paper's Figure 3.

**The search** (adaptive: the runner asks :meth:`RecurrentSearch.next_turns` for each epoch). An epoch is
``turns_per_epoch`` turns; each samples one architecture (``search: controller``: from the controller;
``random``: uniformly) and trains it for ``steps_per_turn`` SGD steps (the authors' ``num_batch_per_iter``
= 7; a turn is one Avalanche experience, so every regularizer runs unchanged, its end-of-experience pass
once per turn). Between epochs the controller (:class:`~benchmark.scenarios.search.Controller`: LSTM of
``hidden`` units, logits tanh_constant * tanh(z / temperature)) takes ``steps_per_epoch`` REINFORCE
steps, reward = ``reward_c`` / perplexity on ``reward_windows`` validation windows (a rotating slice, as the
authors' one validation batch per step). After the last epoch the controller samples ``derive_samples``
architectures, the best by validation perplexity on the shared weights is *derived*; its validation
and test perplexity are recorded under ``search.derived``. With ``retrain_steps > 0`` the derived cell is
then trained alone from the run's initial weights (the same seed, so the same start as the search),
with the suite's optimizer and clipping and no regularizer, for that many steps, and its validation and
test perplexity are recorded under ``search.derived.retrained`` (ENAS retrains the derived cell from
scratch; the budget is stated, not the authors' full training).

``measure_from_epoch`` (the authors' ``start_evaluate_diff``): the forgetting metrics of the report average
the epochs from this one on; the err tables and the figure keep every epoch. While the shared weights
still learn what every architecture needs (the embedding, the softmax), training any architecture helps
the others and err2 - err1 is negative for reasons that are not forgetting; the README says how large
that phase is, and reports the whole-search mean beside it.

Result keys: ``search`` = {kind, rewards per epoch, derived, controller_probabilities, measured_from_epoch}, ``err1``,
``err2``, ``epoch_architectures`` (task index per turn of each epoch), ``architectures`` (the decisions
of every sampled architecture, by task), ``corpus`` (tokens per split, vocabulary, unk rate).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, model_validator
from torch import nn

from benchmark import language
from benchmark.models import TaskRoutedModule
from benchmark.scenarios.base import (SCENARIOS, Scenario, ScenarioInputs, ScenarioParams, Task, Turn,
                                      Retraining, count_parameters, schedule_from_state, schedule_state)
from benchmark.scenarios.search import Controller, Reinforce

Activation = Literal["tanh", "relu", "identity", "sigmoid"]
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh, "relu": torch.relu, "identity": lambda z: z, "sigmoid": torch.sigmoid,
}


class RecurrentControllerParams(BaseModel):
    """The ENAS controller of the recurrent search; defaults are the WPL authors' (their ``config.py``)."""

    model_config = ConfigDict(extra="forbid")

    hidden: PositiveInt = 100
    lr: PositiveFloat = 3.5e-4
    steps_per_epoch: PositiveInt = 2000
    entropy_weight: NonNegativeFloat = 1e-4
    baseline_decay: float = Field(0.95, ge=0.0, lt=1.0)
    tanh_constant: PositiveFloat = 2.5
    temperature: PositiveFloat = 5.0
    reward_c: PositiveFloat = 80.0
    reward_windows: PositiveInt = 64


class RecurrentSearchParams(ScenarioParams):
    corpus: str = "austen"
    download: bool = False
    text_column: str | None = None
    vocabulary: int | None = Field(10000, ge=2, description="most frequent training tokens kept (<unk> included)")
    nodes: int = Field(12, ge=1)
    activations: list[Activation] = Field(["tanh", "relu", "identity", "sigmoid"], min_length=1)
    embedding: PositiveInt = 1000
    hidden: PositiveInt = 1000
    tied: bool = True
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    max_hidden_norm: PositiveFloat | None = Field(25.0, description="rescale h_t to at most this L2 norm per sample")
    bptt: PositiveInt = 35
    max_train_tokens: PositiveInt | None = None
    eval_tokens: PositiveInt | None = Field(None, description="validation tokens an architecture's err is measured on")
    search: Literal["random", "controller"] = "controller"
    epochs: PositiveInt = 150
    turns_per_epoch: PositiveInt = 60
    steps_per_turn: PositiveInt = 7
    controller: RecurrentControllerParams = Field(default_factory=RecurrentControllerParams)
    derive_samples: PositiveInt = 100
    retrain_steps: NonNegativeInt = Field(0, description="train the derived cell alone from the initial weights "
                                                         "for this many steps (0: no retraining)")
    measure_from_epoch: int = Field(0, ge=0, description="first epoch the forgetting metrics average over")

    @model_validator(mode="after")
    def _shapes(self) -> "RecurrentSearchParams":
        if len(set(self.activations)) != len(self.activations):
            raise ValueError(f"activations: each may appear once, got {self.activations}")
        if self.tied and self.embedding != self.hidden:
            raise ValueError(f"tied: the softmax shares the embedding's weights, so embedding must equal hidden "
                             f"(got {self.embedding} and {self.hidden}); set tied: false to untie them")
        if self.measure_from_epoch >= self.epochs:
            raise ValueError(f"measure_from_epoch must be below epochs ({self.epochs}), got {self.measure_from_epoch}")
        if self.eval_tokens is not None and self.eval_tokens < self.bptt + 1:
            raise ValueError(f"eval_tokens must hold at least one window of bptt + 1 = {self.bptt + 1} tokens, "
                             f"got {self.eval_tokens}")
        return self

    def data_requirements(self) -> list[tuple[str, bool]]:
        return []  # a text corpus, not an image dataset: preflight reads it

    def needs_data_files(self) -> bool:
        return self.corpus.startswith(("folder:", "hf:"))  # a corpus folder, or the Hub (network and its cache)

    def preflight(self, data_root: Any, seed: int) -> None:
        corpus = load_corpus(self)
        check_corpus(self, corpus)

    def parameter_count(self) -> int | None:
        if self.vocabulary is None:
            return None
        return count_parameters(lambda: RecurrentSupernet(self, self.vocabulary))


def load_corpus(params: RecurrentSearchParams) -> language.LanguageCorpus:
    try:
        return language.load_language_corpus(params.corpus, params.vocabulary, params.download, params.text_column)
    except language.CorpusError as exc:
        raise ValueError(f"corpus: {exc}") from None


def check_corpus(params: RecurrentSearchParams, corpus: language.LanguageCorpus) -> None:
    for split, ids in (("validation", corpus.valid), ("training", corpus.train), ("test", corpus.test)):
        if len(ids) < params.bptt + 1:
            raise ValueError(f"bptt must be below the {split} split's {len(ids)} tokens of corpus {params.corpus!r} "
                             f"(a window needs bptt + 1 tokens), got {params.bptt}")


def decision_choices(nodes: int, activations: int) -> list[int]:
    """Options per controller decision: node 0's activation, then (previous node, activation) per node."""
    choices = [activations]
    for i in range(1, nodes):
        choices += [i, activations]
    return choices


def decode(arch: tuple[int, ...]) -> tuple[list[int], list[int]]:
    """``(prev, act)`` per node (``prev[0] = -1``: node 0 reads the input and the previous state)."""
    prev, act = [-1], [arch[0]]
    for i in range(1, (len(arch) + 1) // 2):
        prev.append(arch[2 * i - 1])
        act.append(arch[2 * i])
    return prev, act


def loose_ends(prev: list[int]) -> list[int]:
    """Nodes no later node reads: the cell's output is their mean."""
    read = set(prev[1:])
    return [i for i in range(len(prev)) if i not in read]


class RecurrentSupernet(TaskRoutedModule):
    """Every edge of the ENAS recurrent cell, the embedding and the softmax; task label k runs architecture k."""

    def __init__(self, params: RecurrentSearchParams, vocabulary: int):
        super().__init__()
        h = params.hidden
        self.hidden_size, self.activation_names = h, list(params.activations)
        self.encoder = nn.Embedding(vocabulary, params.embedding)
        self.w_x = nn.Linear(params.embedding, 2 * h)  # node 0: [W_xc; W_xh]
        self.w_h = nn.Linear(h, 2 * h, bias=False)  # node 0: [W_hc; W_hh]
        self.edges = nn.ModuleDict({f"{j}_{i}": nn.Linear(h, 2 * h, bias=False)
                                    for i in range(1, params.nodes) for j in range(i)})
        self.decoder = nn.Linear(h, vocabulary)
        if params.tied:
            self.decoder.weight = self.encoder.weight
        self.dropout = nn.Dropout(params.dropout)
        self.max_hidden_norm = params.max_hidden_norm
        self.architectures: list[tuple[int, ...]] = []
        self.max_class_label = vocabulary
        with torch.no_grad():  # ENAS's uniform init keeps the gated cell away from saturation at the start
            for p in self.parameters():
                p.uniform_(-0.1, 0.1)

    def add_architecture(self, arch: tuple[int, ...]) -> int:
        self.architectures.append(tuple(arch))
        return len(self.architectures) - 1

    def describe(self, arch: tuple[int, ...]) -> str:
        prev, act = decode(arch)
        names = [self.activation_names[a] for a in act]
        return " ".join([names[0]] + [f"{p}>{n}" for p, n in zip(prev[1:], names[1:])])

    def cell(self, x_proj: torch.Tensor, h: torch.Tensor, prev: list[int], act: list[Callable],
             ends: list[int]) -> torch.Tensor:
        c, z = (x_proj + self.w_h(h)).chunk(2, dim=-1)
        c = torch.sigmoid(c)
        states = [h + c * (act[0](z) - h)]  # = c f(z) + (1 - c) h
        for i in range(1, len(prev)):
            source = states[prev[i]]
            c, z = self.edges[f"{prev[i]}_{i}"](source).chunk(2, dim=-1)
            c = torch.sigmoid(c)
            states.append(source + c * (act[i](z) - source))
        if len(ends) == 1:
            return states[ends[0]]
        return torch.stack([states[i] for i in ends]).mean(dim=0)

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        """Logits ``(batch, vocabulary, time)`` for token windows ``x`` ``(batch, time)`` (cross-entropy's layout)."""
        prev, act_index = decode(self.architectures[task_label])
        act = [ACTIVATIONS[self.activation_names[a]] for a in act_index]
        ends = loose_ends(prev)
        x_proj = self.w_x(self.dropout(self.encoder(x)))  # every time step's input projection in one matmul
        h = x_proj.new_zeros(x.shape[0], self.hidden_size)
        outputs = []
        for t in range(x.shape[1]):
            h = self.cell(x_proj[:, t], h, prev, act, ends)
            if self.max_hidden_norm is not None:
                h = h * (self.max_hidden_norm / h.norm(dim=-1, keepdim=True).clamp_min(self.max_hidden_norm))
            outputs.append(h)
        logits = self.decoder(self.dropout(torch.stack(outputs, dim=1)))
        return logits.transpose(1, 2)

    def used_parameter_names(self, task_label: int) -> frozenset[str]:
        prev, _ = decode(self.architectures[task_label])
        prefixes = ("encoder.", "w_x.", "w_h.", "decoder.", *(f"edges.{prev[i]}_{i}." for i in range(1, len(prev))))
        return frozenset(n for n, _ in self.named_parameters() if n.startswith(prefixes))


class RecurrentSearch(Scenario):
    """Sampled architectures as tasks, added while the search runs; see the module docstring."""

    def __init__(self, model: RecurrentSupernet, params: RecurrentSearchParams, corpus: language.LanguageCorpus,
                 seed: int):
        self.params = params
        self.corpus = corpus
        self.train_x, self.train_y = language.windows(self._train_ids(corpus), params.bptt)
        valid = corpus.valid if params.eval_tokens is None else corpus.valid[: params.eval_tokens]
        self.eval_x, self.eval_y = language.windows(valid, params.bptt)
        self.valid_x, self.valid_y = language.windows(corpus.valid, params.bptt)
        self.test_x, self.test_y = language.windows(corpus.test, params.bptt)
        self.choices = decision_choices(params.nodes, len(params.activations))
        self.generator = torch.Generator().manual_seed(seed * 7919 + 17)  # the search's own draws
        self.controller: Controller | None = None
        if params.search == "controller":
            c = params.controller
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
        super().__init__("enas_rnn", [], model, schedule=[Turn(task=0)], adaptive=True,
                         meta={"search": params.search})
        self.schedule = self._epoch_turns()

    def _train_ids(self, corpus: language.LanguageCorpus) -> torch.Tensor:
        cap = self.params.max_train_tokens
        return corpus.train if cap is None else corpus.train[: cap + 1]

    # --------------------------------------------------------------- sampling
    def _sample(self) -> tuple[int, ...]:
        if self.controller is None:
            return tuple(int(torch.randint(c, (1,), generator=self.generator)) for c in self.choices)
        with torch.no_grad():
            arch, _, _ = self.controller.sample(self.generator)
        return arch

    def task_of(self, arch: tuple[int, ...], test: tuple[torch.Tensor, torch.Tensor] | None = None) -> Task:
        """The task of ``arch`` (created on first sight), evaluated on ``test`` when given."""
        model: RecurrentSupernet = self.model  # type: ignore[assignment]
        if arch not in self.index:
            key = model.add_architecture(arch)
            self.index[arch] = key
            self.tasks.append(Task(name=f"arch{key}({model.describe(arch)})", model_key=key, train_x=self.train_x,
                                   train_y=self.train_y, test_x=self.eval_x, test_y=self.eval_y,
                                   used_params=model.used_parameter_names(key), num_classes=model.max_class_label))
        task = self.tasks[self.index[arch]]
        return task if test is None else dataclasses.replace(task, test_x=test[0], test_y=test[1])

    def _epoch_turns(self) -> list[Turn]:
        keys = [self.task_of(self._sample()).model_key for _ in range(self.params.turns_per_epoch)]
        self.epoch_tasks.append(keys)
        return [Turn(task=k, max_steps=self.params.steps_per_turn, record=False) for k in keys]

    # ----------------------------------------------------------------- search
    def _reward_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        n, size = len(self.valid_y), min(self.params.controller.reward_windows, len(self.valid_y))
        rows = (torch.arange(size) + self.reward_offset) % n
        self.reward_offset = (self.reward_offset + size) % n
        return self.valid_x[rows], self.valid_y[rows]

    def next_turns(self, accuracy: Callable[[Task], float]) -> list[Turn]:
        keys = self.epoch_tasks[self.epoch]
        self.err2.append([log_perplexity(accuracy(self.tasks[k])) for k in keys])
        self.epoch += 1
        if self.controller is not None:
            c = self.params.controller
            self.rewards.append([
                self.reinforce.step(self.generator, lambda arch: c.reward_c * accuracy(self.task_of(arch, self._reward_batch())))
                for _ in range(c.steps_per_epoch)])
        if self.epoch < self.params.epochs:
            return self._epoch_turns()
        self.derived = self._derive(accuracy)
        return []

    def _derive(self, accuracy: Callable[[Task], float]) -> dict[str, Any]:
        """ENAS's derivation: sample ``derive_samples`` architectures (uniformly under random search), keep
        the best by err on the shared weights (each on the ``eval_tokens`` validation tokens), and measure
        it on the whole validation and test splits."""
        sampled = list(dict.fromkeys(self._sample() for _ in range(self.params.derive_samples)))
        scores = [log_perplexity(accuracy(self.task_of(a))) for a in sampled]
        best = min(range(len(sampled)), key=lambda i: scores[i])
        arch = sampled[best]
        valid = log_perplexity(accuracy(self.task_of(arch, (self.valid_x, self.valid_y))))
        test = log_perplexity(accuracy(self.task_of(arch, (self.test_x, self.test_y))))
        model: RecurrentSupernet = self.model  # type: ignore[assignment]
        return {"architecture": list(arch), "cell": model.describe(arch), "task": self.index[arch],
                "candidates": len(sampled), "candidates_err": scores,
                "valid_log_ppl": valid, "valid_ppl": math.exp(valid), "test_log_ppl": test, "test_ppl": math.exp(test)}

    def retraining(self) -> Retraining | None:
        if self.derived is None or self.params.retrain_steps == 0:
            return None
        arch, derived = tuple(self.derived["architecture"]), self.derived

        def report(scores: dict[str, float]) -> None:
            valid, test = log_perplexity(scores["valid"]), log_perplexity(scores["test"])
            derived["retrained"] = {"steps": self.params.retrain_steps, "valid_log_ppl": valid,
                                    "valid_ppl": math.exp(valid), "test_log_ppl": test, "test_ppl": math.exp(test)}

        return Retraining(self.params.retrain_steps, lambda fresh: fresh.task_of(arch),
                          {"valid": (self.valid_x, self.valid_y), "test": (self.test_x, self.test_y)}, report)

    def state_dict(self) -> dict[str, Any]:
        model: RecurrentSupernet = self.model  # type: ignore[assignment]
        return {"schedule": schedule_state(self.schedule), "architectures": [list(a) for a in model.architectures],
                "epoch": self.epoch, "generator": self.generator.get_state(), "reward_offset": self.reward_offset,
                "rewards": self.rewards, "epoch_tasks": self.epoch_tasks, "err2": self.err2, "derived": self.derived,
                "reinforce": self.reinforce.state_dict() if self.controller is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        model: RecurrentSupernet = self.model  # type: ignore[assignment]
        # the sampled cells are tasks in the order first seen: re-add them so every task keeps its model key
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

    def summarize(self, record: dict[str, Any]) -> dict[str, Any]:
        model: RecurrentSupernet = self.model  # type: ignore[assignment]
        turns = self.params.turns_per_epoch
        after = [log_perplexity(float(t["accuracy"])) for t in record.get("turn_accuracy") or []]
        err1 = [after[e * turns:(e + 1) * turns] for e in range(len(self.err2))]
        return {
            "architectures": [list(a) for a in model.architectures],
            "epoch_architectures": self.epoch_tasks[: len(self.err2)],
            "err1": err1,
            "err2": self.err2,
            "search": {"kind": self.params.search, "error": "validation log-perplexity (nats per token)",
                       "measured_from_epoch": self.params.measure_from_epoch,
                       "rewards": self.rewards if self.controller is not None else None,
                       "derived": self.derived,
                       "controller_probabilities": self.controller.probabilities() if self.controller else None},
            "corpus": {"name": self.corpus.name, "vocabulary": len(self.corpus.vocabulary),
                       "tokens": {s: len(getattr(self.corpus, s)) for s in language.SPLITS},
                       "train_tokens_used": int(self.train_y.numel()), "eval_tokens": int(self.eval_y.numel()),
                       "unk_rate": self.corpus.unk_rate},
        }


def log_perplexity(score: float) -> float:
    """err of a language-model task from its harness score (1 / perplexity)."""
    return -math.log(max(score, 1e-300))


@SCENARIOS.register("enas_rnn", params=RecurrentSearchParams)
def build_enas_rnn(params: RecurrentSearchParams, inputs: ScenarioInputs) -> Scenario:
    """ENAS recurrent-cell search on a word-level language model (Pham et al. 2018; Benyahia et al. 2019)."""
    corpus = load_corpus(params)
    check_corpus(params, corpus)
    model = RecurrentSupernet(params, len(corpus.vocabulary))
    return RecurrentSearch(model, params, corpus, inputs.seed)
