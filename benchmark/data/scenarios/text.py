"""Scenario ``text``: continual text classification on a pretrained transformer encoder.

A corpus's classes (``bbc_news``, ``austen``, a ``folder:`` of ``<class>/<doc>.txt``, or ``hf:`` a
Hugging Face dataset, with ``text_column`` / ``label_column`` and ``download: true`` for the Hub; see
:mod:`forgetbench.benchmark.data.text`; ``max_per_class`` caps each class in each split) are split into tasks: ``tasks`` lists each task's class names, else the classes
in order in groups of ``classes_per_task`` (a remainder smaller than that joins the last task).
``corpora`` instead lists several datasets, each one task in that order (the text-CL sequences: AG News,
Amazon, Yelp, DBpedia, Yahoo), each with its own columns; their classes are named ``<task name>/<class>``. The
encoder (``minilm`` = all-MiniLM-L6-v2, 6 layers, hidden 384) is shared by every task:

* the top ``trainable_layers`` transformer layers are trained (6 = full fine-tuning of the layers;
  0 = a frozen encoder, only the heads learn); the embeddings and the layers below are frozen, and
  their output is computed once per corpus and cached (:func:`forgetbench.benchmark.data.text.frozen_features`);
* mean pooling over the real tokens (sentence-transformers' pooling), then the task's head:
  ``head: multi`` = one linear head per task over its own classes (task-incremental; the task label
  picks the head), ``head: single`` = one head over every class of every task, labels global
  (class-incremental when the task label is not used at test time: the single head never reads it),
  ``head: shared`` = one head over each task's *local* labels (as many outputs as the largest task),
  shared by every task (domain-incremental: task t's class j and task u's class j are one output, so
  later tasks relabel what earlier tasks learnt, and the task label is never read).

**Adapters** (``adapters: {rank, alpha, target_modules, train_encoder}``): every task gets its own
Hugging Face PEFT LoRA adapter (``task<t>``, Delta W = (alpha / rank) B A on the ``target_modules`` of
the top ``trainable_layers`` layers, B = 0 at the start); the task label picks the adapter, as it picks
the head (so adapters need ``head: multi``). With ``train_encoder: false`` (default) the layers' own
weights are frozen (kept as buffers, so no model lists them): each task trains only its adapter and
head, nothing is shared, and no strategy can forget in task-IL (parameter isolation on one backbone).
With ``train_encoder: true`` the layers' weights are shared by every task and trained too: the
regularizers (ewc / si / wpl / l2 / spg) protect them while each adapter stays private.

Model ``t`` uses the trainable layers (shared by every task), its own adapter and its own head
(private; the single head is shared). Frozen weights cannot change, so no model lists them. Each document is given to the
model as its frozen-part token states with the attention mask in one extra channel
(``(length, hidden + 1)``, float16), so the harness's tensor loaders carry text like any other data.
The test split is fixed (every fifth document of each class), the same for every seed.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Literal, cast

import torch
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt, model_validator
from torch import nn

from forgetbench.benchmark.data import text
from forgetbench.benchmark.data.datasets import default_data_root
from forgetbench.benchmark.data.models import TaskRoutedModule
from forgetbench.benchmark.data.scenarios.base import SCENARIOS, Scenario, ScenarioInputs, ScenarioParams, Task


class AdapterParams(BaseModel):
    """One PEFT LoRA adapter per task on the trained layers (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")
    rank: PositiveInt = 8  # LoRA's rank
    alpha: PositiveFloat = 16.0  # LoRA's scale numerator (update = alpha / rank * B A)
    target_modules: list[str] = Field(
        ["query", "value"], min_length=1
    )  # module names of the trained layers that get an adapter
    train_encoder: bool = False  # also train the layers' own weights (shared by every task)


class CorpusPart(BaseModel):
    """One dataset of a sequence (``corpora``): it is one task, with its own columns."""

    model_config = ConfigDict(extra="forbid")
    corpus: str  # a corpus name as in `corpus` (hf:<id> for the Hub, with download: true)
    text_column: str | list[str] = "text"  # its text column (a list is joined)
    label_column: str = "label"  # its label column
    name: str | None = None  # the task's name (default: the corpus name without its hf: prefix)

    @property
    def task_name(self) -> str:
        return self.name or self.corpus.removeprefix("hf:")


class TextParams(ScenarioParams):
    corpus: str = "bbc_news"  # text corpus (see Datasets and corpora)
    encoder: str = "minilm"  # minilm, a local Hugging Face model folder, or a Hub id with download
    max_length: PositiveInt = 128  # tokens per document (truncated)
    classes_per_task: int = Field(2, ge=2)  # classes per task (a smaller remainder joins the last task)
    tasks: list[list[str]] | None = Field(None, min_length=1, description="class names per task")
    trainable_layers: NonNegativeInt = (
        1  # the encoder's top layers trained and shared (0: frozen; the rest are computed once)
    )
    head: Literal["multi", "single", "shared"] = (
        "multi"  # a head per task (task-IL), one head over every class (class-IL), or one head over local labels (domain-IL)
    )
    max_train_per_task: PositiveInt | None = None  # cap on each task's training documents
    max_test_per_task: PositiveInt | None = None  # cap on each task's test documents
    max_per_class: PositiveInt | None = Field(None, description="first N documents per class and split")
    text_column: str | list[str] = "text"  # the text column (a list is joined)
    label_column: str = "label"  # the label column
    download: bool = False  # fetch the corpus / encoder when missing (needs internet)
    adapters: AdapterParams | None = None  # one PEFT LoRA adapter per task (null: none)
    corpora: list[CorpusPart] | None = Field(
        None,
        min_length=2,
        description=("a sequence of datasets, one task each, in order (replaces corpus, tasks and classes_per_task)"),
    )

    @model_validator(mode="after")
    def _tasks(self) -> "TextParams":
        if self.adapters is not None and self.head != "multi":
            raise ValueError(
                f"adapters: one adapter per task is chosen by the task label, which head: {self.head} "
                "(class-IL / domain-IL) does not read; use head: multi"
            )
        if self.adapters is not None and self.trainable_layers == 0:
            raise ValueError("adapters: they sit in the top trainable_layers layers; set trainable_layers >= 1")
        if self.corpora is not None and self.tasks is not None:
            raise ValueError("tasks: with corpora every dataset is one task; leave tasks out")
        names = [part.task_name for part in self.corpora or []]
        clash = sorted({a for a in names for b in names if a is not b and (a == b or b.startswith(a + "/"))})
        if clash:
            raise ValueError(
                f"corpora: task names must differ and none may start with another's '<name>/', "
                f"got {clash}: give each part a `name`"
            )
        if self.tasks is not None:
            flat = [c for task in self.tasks for c in task]
            if len(set(flat)) != len(flat):
                raise ValueError(f"tasks: a class may appear in one task only, got {self.tasks}")
            if any(len(task) < 2 for task in self.tasks):
                raise ValueError(f"tasks: each task needs at least 2 classes, got {self.tasks}")
        return self

    def data_requirements(self) -> list[tuple[str, bool]]:
        return []  # text corpora are not image datasets; preflight checks them

    def model_traits(self) -> frozenset[str]:
        heads = {"multi": {"task_heads"}, "single": {"single_head", "disjoint_labels"}, "shared": {"single_head"}}
        return frozenset({"pretrained_backbone", "unmasked_outputs"} | heads[self.head])

    def needs_data_files(self) -> bool:
        return True  # the encoder (and a corpus folder) may live under the data root

    def preflight(self, data_root: Any, seed: int) -> None:
        try:
            corpus = load_corpus(self)
            directory = text.encoder_dir(self.encoder, data_root or default_data_root(), self.download)
        except text.TextUnavailableError as exc:
            raise ValueError(str(exc)) from None
        task_classes(corpus, self)
        layers = _read_layers(directory)
        if self.trainable_layers > layers:
            raise ValueError(
                f"trainable_layers must be in 0..{layers} (the encoder's layers), got {self.trainable_layers}"
            )
        if self.adapters is not None:
            names = _linear_names(directory)
            unknown = [t for t in self.adapters.target_modules if not any(n == t or n.endswith("." + t) for n in names)]
            if unknown:
                raise ValueError(
                    f"adapters.target_modules: {unknown} name no Linear layer of the encoder's layers; "
                    f"allowed: {', '.join(names)}"
                )


def _linear_names(directory) -> list[str]:
    """The Linear layers' names inside one transformer layer (from the encoder's config; no weights read)."""
    transformers = text._import_transformers()
    config = transformers.AutoConfig.from_pretrained(str(directory), local_files_only=True)
    config.num_hidden_layers = 1
    layer = transformers.AutoModel.from_config(config).encoder.layer[0]
    return [n for n, m in layer.named_modules() if isinstance(m, nn.Linear)]


def load_corpus(params: TextParams) -> text.Corpus:
    """The scenario's corpus: ``corpus``, or the ``corpora`` one after another (their classes named
    ``<task name>/<class>``)."""
    if params.corpora is None:
        return text.load_corpus(
            params.corpus,
            download=params.download,
            text_column=params.text_column,
            label_column=params.label_column,
            max_per_class=params.max_per_class,
        )
    parts = [
        (
            part.task_name,
            text.load_corpus(
                part.corpus,
                download=params.download,
                text_column=part.text_column,
                label_column=part.label_column,
                max_per_class=params.max_per_class,
            ),
        )
        for part in params.corpora
    ]
    return text.concatenate_corpora(parts)[0]


def _read_layers(directory) -> int:
    return int(json.loads((directory / "config.json").read_text())["num_hidden_layers"])


def task_classes(corpus: text.Corpus, params: TextParams) -> list[list[int]]:
    """Each task's class indices in the corpus."""
    if params.corpora is not None:  # one task per dataset, its classes named <task name>/<class>
        return [
            [i for i, c in enumerate(corpus.classes) if c.startswith(part.task_name + "/")] for part in params.corpora
        ]
    if params.tasks is not None:
        unknown = sorted({c for task in params.tasks for c in task} - set(corpus.classes))
        if unknown:
            raise ValueError(
                f"tasks: unknown class(es) {unknown} of corpus {corpus.name!r}; "
                f"its classes: {', '.join(corpus.classes)}"
            )
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

    def __init__(
        self,
        layers: list[nn.Module],
        hidden: int,
        head_sizes: list[int],
        head: str,
        adapters: AdapterParams | None = None,
    ):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.adapters = adapters is not None
        if adapters is not None:
            _add_task_adapters(self.layers, adapters, len(head_sizes))
        self.hidden = hidden
        self.single_head = head != "multi"
        sizes = {"multi": head_sizes, "single": [sum(head_sizes)], "shared": [max(head_sizes)]}[head]
        heads = [nn.Linear(hidden, n) for n in sizes]
        self.heads = nn.ModuleList(heads)
        self.max_class_label = max(h.out_features for h in heads)

    def head_index(self, task_label: int) -> int:
        return 0 if self.single_head else task_label

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        hidden = x[..., : self.hidden].to(cast(nn.Linear, self.heads[0]).weight.dtype)
        mask = x[..., self.hidden]
        additive = (1.0 - mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
        if self.adapters:
            _select_adapter(self.layers, _adapter_name(task_label))
        for layer in self.layers:
            out = layer(hidden, attention_mask=additive)
            hidden = out[0] if isinstance(out, tuple) else out
        return self.heads[self.head_index(task_label)](text.mean_pooled(hidden, mask))

    def used_parameter_names(self, task_label: int) -> frozenset[str]:
        head = f"heads.{self.head_index(task_label)}."
        own = (f".lora_A.{_adapter_name(task_label)}.", f".lora_B.{_adapter_name(task_label)}.")
        return frozenset(
            n
            for n, _ in self.named_parameters()
            if (n.startswith("layers.") and (".lora_" not in n or any(o in n for o in own))) or n.startswith(head)
        )


def _adapter_name(task_label: int) -> str:
    return f"task{task_label}"


def _add_task_adapters(layers: nn.Module, params: AdapterParams, tasks: int) -> None:
    """One PEFT LoRA adapter per task on ``target_modules``; the layers' own weights become buffers
    unless ``train_encoder`` (a frozen weight is not a parameter of any model)."""
    import warnings

    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(
        r=params.rank,
        lora_alpha=params.alpha,  # type: ignore[arg-type]  # peft declares int; the scale alpha / rank takes a float
        lora_dropout=0.0,
        target_modules=list(params.target_modules),
    )
    with warnings.catch_warnings():  # "multiple adapters in the model": one per task, by design
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        for t in range(tasks):
            inject_adapter_in_model(config, layers, adapter_name=_adapter_name(t))
    if not params.train_encoder:
        adapter = {id(p) for n, p in layers.named_parameters() if ".lora_" in n}
        for module in layers.modules():
            for name, p in list(module.named_parameters(recurse=False)):
                if id(p) not in adapter:
                    delattr(module, name)
                    module.register_buffer(name, p.detach())
    for p in layers.parameters():
        p.requires_grad_(True)  # PEFT freezes all but the active adapter; what trains is the strategy's call


def _select_adapter(layers: nn.Module, name: str) -> None:
    """Make ``name`` the one active adapter of every LoRA layer, leaving requires_grad alone (PEFT's
    ``set_adapter`` would also freeze the other tasks' adapters, which is the strategy's decision)."""
    from peft.tuners.lora import LoraLayer

    for module in layers.modules():
        if isinstance(module, LoraLayer) and module.active_adapters != [name]:
            module._active_adapter = [name]


@SCENARIOS.register("text", params=TextParams)
def build_text(params: TextParams, inputs: ScenarioInputs) -> Scenario:
    """Text classification tasks (BBC News, Jane Austen, your folder) on a shared pretrained encoder."""
    root = inputs.data_root if inputs.data_root is not None else default_data_root()
    try:
        corpus = load_corpus(params)
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
    model = EncoderTasks(layers, hidden, [len(g) for g in groups], params.head, params.adapters)

    labels, is_test = tokens["labels"], tokens["test"]
    generator = torch.Generator().manual_seed(inputs.seed)
    offset, tasks = 0, []
    for t, classes in enumerate(groups):
        local = torch.full((int(labels.max()) + 1,), -1, dtype=torch.long)
        local[torch.tensor(classes)] = torch.arange(len(classes)) + (offset if params.head == "single" else 0)
        split = {}
        for name, in_split, limit in (
            ("train", ~is_test, params.max_train_per_task),
            ("test", is_test, params.max_test_per_task),
        ):
            index = torch.nonzero(in_split & (local[labels] >= 0)).flatten()
            if limit is not None and len(index) > limit:
                index = index[torch.randperm(len(index), generator=generator)[:limit]].sort().values
            split[name] = (x[index], local[labels[index]])
        tasks.append(
            Task(
                name=f"task{t}(" + ",".join(corpus.classes[c] for c in classes) + ")",
                model_key=t,
                train_x=split["train"][0],
                train_y=split["train"][1],
                test_x=split["test"][0],
                test_y=split["test"][1],
                used_params=model.used_parameter_names(t),
                num_classes={"single": sum(len(g) for g in groups), "shared": max(len(g) for g in groups)}.get(
                    params.head, len(classes)
                ),
            )
        )
        offset += len(classes)
    meta = {
        "corpus": corpus.name,
        "classes": [[corpus.classes[c] for c in g] for g in groups],
        "frozen_layers": frozen,
        "adapters": params.adapters is not None,
        "scenario_type": {"single": "class-IL", "shared": "domain-IL"}.get(params.head, "task-IL"),
    }
    return Scenario("text", tasks, model, meta=meta)
