"""Scenario ``text``: continual text classification on a pretrained transformer encoder.

A corpus's classes (``bbc_news``, ``austen``, or a ``folder:`` of ``<class>/<doc>.txt``; see
:mod:`benchmark.text`) are split into tasks: ``tasks`` lists each task's class names, else the classes
in order in groups of ``classes_per_task`` (a remainder smaller than that joins the last task). The
encoder (``minilm`` = all-MiniLM-L6-v2, 6 layers, hidden 384) is shared by every task:

* the top ``trainable_layers`` transformer layers are trained (6 = full fine-tuning of the layers;
  0 = a frozen encoder, only the heads learn); the embeddings and the layers below are frozen, and
  their output is computed once per corpus and cached (:func:`benchmark.text.frozen_features`);
* mean pooling over the real tokens (sentence-transformers' pooling), then the task's head:
  ``head: multi`` = one linear head per task over its own classes (task-incremental; the task label
  picks the head), ``head: single`` = one head over every class of every task, labels global
  (class-incremental when the task label is not used at test time: the single head never reads it).

Model ``t`` uses the trainable layers (shared by every task) and its own head (private; the single
head is shared). Frozen weights cannot change, so no model lists them. Each document is given to the
model as its frozen-part token states with the attention mask in one extra channel
(``(length, hidden + 1)``, float16), so the harness's tensor loaders carry text like any other data.
The test split is fixed (every fifth document of each class), the same for every seed.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Literal

import torch
from pydantic import Field, NonNegativeInt, PositiveInt, model_validator
from torch import nn

from benchmark import text
from benchmark.datasets import default_data_root
from benchmark.models import TaskRoutedModule
from benchmark.scenarios.base import SCENARIOS, Scenario, ScenarioInputs, ScenarioParams, Task


class TextParams(ScenarioParams):
    corpus: str = "bbc_news"
    encoder: str = "minilm"
    max_length: PositiveInt = 128
    classes_per_task: int = Field(2, ge=2)
    tasks: list[list[str]] | None = Field(None, min_length=1, description="class names per task")
    trainable_layers: NonNegativeInt = 1
    head: Literal["multi", "single"] = "multi"
    max_train_per_task: PositiveInt | None = None
    max_test_per_task: PositiveInt | None = None
    download: bool = False

    @model_validator(mode="after")
    def _tasks(self) -> "TextParams":
        if self.tasks is not None:
            flat = [c for task in self.tasks for c in task]
            if len(set(flat)) != len(flat):
                raise ValueError(f"tasks: a class may appear in one task only, got {self.tasks}")
            if any(len(task) < 2 for task in self.tasks):
                raise ValueError(f"tasks: each task needs at least 2 classes, got {self.tasks}")
        return self

    def data_requirements(self) -> list[tuple[str, bool]]:
        return []  # text corpora are not image datasets; preflight checks them

    def preflight(self, data_root: Any, seed: int) -> None:
        try:
            corpus = text.load_corpus(self.corpus)
            directory = text.encoder_dir(self.encoder, data_root or default_data_root(), self.download)
        except text.TextUnavailableError as exc:
            raise ValueError(str(exc)) from None
        task_classes(corpus, self)
        layers = _read_layers(directory)
        if self.trainable_layers > layers:
            raise ValueError(f"trainable_layers must be in 0..{layers} (the encoder's layers), got {self.trainable_layers}")


def _read_layers(directory) -> int:
    return int(json.loads((directory / "config.json").read_text())["num_hidden_layers"])


def task_classes(corpus: text.Corpus, params: TextParams) -> list[list[int]]:
    """Each task's class indices in the corpus."""
    if params.tasks is not None:
        unknown = sorted({c for task in params.tasks for c in task} - set(corpus.classes))
        if unknown:
            raise ValueError(f"tasks: unknown class(es) {unknown} of corpus {corpus.name!r}; "
                             f"its classes: {', '.join(corpus.classes)}")
        return [[corpus.classes.index(c) for c in task] for task in params.tasks]
    k, n = params.classes_per_task, len(corpus.classes)
    if n < k:
        raise ValueError(f"classes_per_task must be at most the {n} classes of corpus {corpus.name!r}, got {k}")
    groups = [list(range(start, min(start + k, n))) for start in range(0, n, k)]
    if len(groups) > 1 and len(groups[-1]) < k:
        groups[-2].extend(groups.pop())
    return groups


class EncoderTasks(TaskRoutedModule):
    """The encoder's top layers (shared) and the task heads, on cached frozen-part token states."""

    def __init__(self, layers: list[nn.Module], hidden: int, head_sizes: list[int], single_head: bool):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.hidden = hidden
        self.single_head = single_head
        self.heads = nn.ModuleList(nn.Linear(hidden, n) for n in ([sum(head_sizes)] if single_head else head_sizes))
        self.max_class_label = max(h.out_features for h in self.heads)

    def head_index(self, task_label: int) -> int:
        return 0 if self.single_head else task_label

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        hidden = x[..., : self.hidden].to(self.heads[0].weight.dtype)
        mask = x[..., self.hidden]
        additive = (1.0 - mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
        for layer in self.layers:
            out = layer(hidden, attention_mask=additive)
            hidden = out[0] if isinstance(out, tuple) else out
        return self.heads[self.head_index(task_label)](text.mean_pooled(hidden, mask))

    def used_parameter_names(self, task_label: int) -> frozenset[str]:
        head = f"heads.{self.head_index(task_label)}."
        return frozenset(n for n, _ in self.named_parameters() if n.startswith("layers.") or n.startswith(head))


@SCENARIOS.register("text", params=TextParams)
def build_text(params: TextParams, inputs: ScenarioInputs) -> Scenario:
    """Text classification tasks (BBC News, Jane Austen, your folder) on a shared pretrained encoder."""
    root = inputs.data_root if inputs.data_root is not None else default_data_root()
    try:
        corpus = text.load_corpus(params.corpus)
        directory = text.encoder_dir(params.encoder, root, params.download)
    except text.TextUnavailableError as exc:
        raise ValueError(str(exc)) from None
    groups = task_classes(corpus, params)
    tokens = text.tokenize_corpus(corpus, directory, params.max_length, root)
    encoder = text.load_encoder(directory)
    n_layers = len(encoder.encoder.layer)
    if params.trainable_layers > n_layers:
        raise ValueError(f"trainable_layers must be in 0..{n_layers}, got {params.trainable_layers}")
    frozen = n_layers - params.trainable_layers
    states = text.frozen_features(tokens, directory, frozen, root)
    x = torch.cat([states, tokens["attention_mask"].to(states.dtype)[..., None]], dim=-1)
    layers = [copy.deepcopy(layer) for layer in encoder.encoder.layer[frozen:]]
    hidden = int(encoder.config.hidden_size)
    del encoder
    model = EncoderTasks(layers, hidden, [len(g) for g in groups], params.head == "single")

    labels, is_test = tokens["labels"], tokens["test"]
    generator = torch.Generator().manual_seed(inputs.seed)
    offset, tasks = 0, []
    for t, classes in enumerate(groups):
        local = torch.full((int(labels.max()) + 1,), -1, dtype=torch.long)
        local[torch.tensor(classes)] = torch.arange(len(classes)) + (offset if params.head == "single" else 0)
        split = {}
        for name, in_split, limit in (("train", ~is_test, params.max_train_per_task),
                                      ("test", is_test, params.max_test_per_task)):
            index = torch.nonzero(in_split & (local[labels] >= 0)).flatten()
            if limit is not None and len(index) > limit:
                index = index[torch.randperm(len(index), generator=generator)[:limit]].sort().values
            split[name] = (x[index], local[labels[index]])
        tasks.append(Task(
            name=f"task{t}(" + ",".join(corpus.classes[c] for c in classes) + ")", model_key=t,
            train_x=split["train"][0], train_y=split["train"][1], test_x=split["test"][0], test_y=split["test"][1],
            used_params=model.used_parameter_names(t),
            num_classes=sum(len(g) for g in groups) if params.head == "single" else len(classes)))
        offset += len(classes)
    meta = {"corpus": corpus.name, "classes": [[corpus.classes[c] for c in g] for g in groups],
            "frozen_layers": frozen, "scenario_type": "class-IL" if params.head == "single" else "task-IL"}
    return Scenario("text", tasks, model, meta=meta)
