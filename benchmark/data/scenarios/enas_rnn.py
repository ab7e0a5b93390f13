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

**Data.** The corpus (:mod:`forgetbench.benchmark.data.language`: ``austen``, ``folder:/path``, ``hf:<id>``) is cut into
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

**The search** is :mod:`forgetbench.benchmark.data.scenarios.cell_search`'s (shared with ``enas_cnn``): ``turns_per_epoch``
turns of ``steps_per_turn`` SGD steps (the authors' ``num_batch_per_iter`` = 7) per epoch, each on one sampled
cell; between epochs the controller (LSTM of ``hidden`` units) takes ``steps_per_epoch`` REINFORCE steps,
reward = ``reward_c`` / perplexity on ``reward_windows`` validation windows (a rotating slice, as the
authors' one validation batch per step). After the last epoch the best of ``derive_samples`` cells by
validation perplexity on the shared weights is *derived*; its validation and test perplexity are recorded
under ``search.derived``, and with ``retrain_steps > 0`` the cell is retrained alone from the run's initial
weights (ENAS retrains the derived cell from scratch; the budget is stated, not the authors' full training),
its perplexities under ``search.derived.retrained``.

``measure_from_epoch`` (the authors' ``start_evaluate_diff``): the forgetting metrics of the report average
the epochs from this one on; the err tables and the figure keep every epoch. While the shared weights
still learn what every architecture needs (the embedding, the softmax), training any architecture helps
the others and err2 - err1 is negative for reasons that are not forgetting; docs/studies/enas-rnn.md says how large
that phase is, and reports the whole-search mean beside it.

Result keys: those of :mod:`~forgetbench.benchmark.data.scenarios.cell_search` (``search.error`` = validation
log-perplexity), and ``corpus`` (tokens per split, vocabulary, unk rate).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Literal

import torch
from pydantic import Field, PositiveFloat, PositiveInt, model_validator
from torch import nn

from forgetbench.benchmark.core.components import LANGUAGE_CORPORA, corpus_entry
from forgetbench.benchmark.data import language
from forgetbench.benchmark.data.models import TaskRoutedModule
from forgetbench.benchmark.data.scenarios.base import SCENARIOS, Scenario, ScenarioInputs, count_parameters
from forgetbench.benchmark.data.scenarios.cell_search import (
    CellControllerParams,
    CellSearch,
    CellSearchParams,
    SearchData,
)

Activation = Literal["tanh", "relu", "identity", "sigmoid"]
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "identity": lambda z: z,
    "sigmoid": torch.sigmoid,
}


class RecurrentControllerParams(CellControllerParams):
    """The ENAS controller of the recurrent search; defaults are the WPL authors' (their ``config.py``)."""

    reward_windows: PositiveInt = 64  # validation windows per reward (a rotating slice)


class RecurrentSearchParams(CellSearchParams):
    corpus: str = "austen"  # language-modelling corpus (see Datasets and corpora)
    download: bool = False  # fetch the corpus when it is missing (needs internet)
    text_column: str | None = None  # hf: corpora: the dataset's text column
    vocabulary: int | None = Field(10000, ge=2, description="most frequent training tokens kept (<unk> included)")
    nodes: int = Field(12, ge=1)  # nodes of the recurrent cell
    activations: list[Activation] = Field(
        ["tanh", "relu", "identity", "sigmoid"], min_length=1
    )  # candidate activations of a node
    embedding: PositiveInt = 1000  # word embedding size
    hidden: PositiveInt = 1000  # the cell's hidden size
    tied: bool = True  # share the embedding and output weights (embedding = hidden)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)  # dropout on embeddings and outputs
    max_hidden_norm: PositiveFloat | None = Field(25.0, description="rescale h_t to at most this L2 norm per sample")
    bptt: PositiveInt = 35  # tokens per truncated back-propagation window
    max_train_tokens: PositiveInt | None = None  # cap on the training tokens (speed)
    eval_tokens: PositiveInt | None = Field(None, description="validation tokens an architecture's err is measured on")
    controller: RecurrentControllerParams = Field(
        default_factory=RecurrentControllerParams
    )  # the ENAS controller's settings

    @model_validator(mode="after")
    def _shapes(self) -> "RecurrentSearchParams":
        if len(set(self.activations)) != len(self.activations):
            raise ValueError(f"activations: each may appear once, got {self.activations}")
        if self.tied and self.embedding != self.hidden:
            raise ValueError(
                f"tied: the softmax shares the embedding's weights, so embedding must equal hidden "
                f"(got {self.embedding} and {self.hidden}); set tied: false to untie them"
            )
        if self.eval_tokens is not None and self.eval_tokens < self.bptt + 1:
            raise ValueError(
                f"eval_tokens must hold at least one window of bptt + 1 = {self.bptt + 1} tokens, "
                f"got {self.eval_tokens}"
            )
        return self

    def data_requirements(self) -> list[tuple[str, bool]]:
        return []  # a text corpus, not an image dataset: preflight reads it

    def needs_data_files(self) -> bool:
        # a corpus declares whether it reads files (a folder, the Hub's cache); one that does not say is assumed to
        found = corpus_entry(LANGUAGE_CORPORA, self.corpus)
        return found is None or bool(found[0].extra.get("reads_files", True))

    def preflight(self, data_root: Any, seed: int) -> None:
        corpus = load_corpus(self)
        check_corpus(self, corpus)

    def parameter_count(self) -> int | None:
        vocabulary = self.vocabulary
        if vocabulary is None:
            return None
        return count_parameters(lambda: RecurrentSupernet(self, vocabulary))


def load_corpus(params: RecurrentSearchParams) -> language.LanguageCorpus:
    try:
        return language.load_language_corpus(params.corpus, params.vocabulary, params.download, params.text_column)
    except language.CorpusError as exc:
        raise ValueError(f"corpus: {exc}") from None


def check_corpus(params: RecurrentSearchParams, corpus: language.LanguageCorpus) -> None:
    for split, ids in (("validation", corpus.valid), ("training", corpus.train), ("test", corpus.test)):
        if len(ids) < params.bptt + 1:
            raise ValueError(
                f"bptt must be below the {split} split's {len(ids)} tokens of corpus {params.corpus!r} "
                f"(a window needs bptt + 1 tokens), got {params.bptt}"
            )


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
        self.edges = nn.ModuleDict(
            {f"{j}_{i}": nn.Linear(h, 2 * h, bias=False) for i in range(1, params.nodes) for j in range(i)}
        )
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

    def cell(
        self, x_proj: torch.Tensor, h: torch.Tensor, prev: list[int], act: list[Callable], ends: list[int]
    ) -> torch.Tensor:
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


class RecurrentSearch(CellSearch):
    """The recurrent-cell search: :class:`~forgetbench.benchmark.data.scenarios.cell_search.CellSearch` on token windows,
    err = validation log-perplexity."""

    error = "validation log-perplexity (nats per token)"

    def __init__(
        self, model: RecurrentSupernet, params: RecurrentSearchParams, corpus: language.LanguageCorpus, seed: int
    ):
        self.corpus = corpus
        cap = params.max_train_tokens
        valid = corpus.valid if params.eval_tokens is None else corpus.valid[: params.eval_tokens]
        data = SearchData(
            train=language.windows(corpus.train if cap is None else corpus.train[: cap + 1], params.bptt),
            evaluation=language.windows(valid, params.bptt),
            valid=language.windows(corpus.valid, params.bptt),
            test=language.windows(corpus.test, params.bptt),
        )
        super().__init__(
            "enas_rnn",
            model,
            params,
            params.controller,
            decision_choices(params.nodes, len(params.activations)),
            data,
            params.controller.reward_windows,
            seed,
        )

    def err_of(self, score: float) -> float:
        return log_perplexity(score)

    def scores(self, valid_err: float, test_err: float) -> dict[str, float]:
        return {
            "valid_log_ppl": valid_err,
            "valid_ppl": math.exp(valid_err),
            "test_log_ppl": test_err,
            "test_ppl": math.exp(test_err),
        }

    def data_summary(self) -> dict[str, Any]:
        return {
            "corpus": {
                "name": self.corpus.name,
                "vocabulary": len(self.corpus.vocabulary),
                "tokens": {s: len(getattr(self.corpus, s)) for s in language.SPLITS},
                "train_tokens_used": int(self.data.train[1].numel()),
                "eval_tokens": int(self.data.evaluation[1].numel()),
                "unk_rate": self.corpus.unk_rate,
            }
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
