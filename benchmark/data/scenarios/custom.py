"""Scenario ``custom``: the user's own model on the user's own Avalanche benchmark.

    scenarios:
      - name: custom
        label: my-split
        params:
          model: my_pkg.models:make_model          # "module.path:attribute", imported (trusted configs only)
          model_params: {width: 64}
          benchmark: my_pkg.data:make_benchmark
          benchmark_params: {n_experiences: 5}

``benchmark(**benchmark_params)`` returns an Avalanche benchmark (``CLScenario`` /
``GenericCLScenario``) whose train and test streams have one experience per task, each with one task
label; it also receives ``seed`` and ``data_root`` when its signature names them.
``model(**model_params)`` returns an ``nn.Module``; it also receives ``benchmark`` (to size its
heads) and ``seed`` when its signature names them. Weights are initialised under the run's seed.

* A **multi-task model** (Avalanche's ``MultiTaskModule``, e.g. a trunk + ``MultiHeadClassifier``)
  runs ``forward_single_task(x, task_label)``; its benchmark must carry distinct task labels.
  Avalanche's dynamic modules add a head when they first see a task label: forgetbench adapts the
  model to every experience before training, so parameter names are fixed for the whole run (a model
  whose names still change between experiences is refused).
* A **plain module** ``model(x)`` is one model for every experience (domain-incremental).

Task ``j`` is train experience ``j`` with test experience ``j``. With a multi-task model, an experience whose
task label came before is a later **round** of that task (the same data again: a supernet's architectures
trained in turn, several times): the tasks are the distinct labels, the schedule trains every experience in
order, and the accuracy matrix gets a row at the end of each round (a round ends before a task it already
trained comes again). A repeat holding other data is refused. Which parameters each task's model
uses is found, not declared: gradient reachability on a probe batch of the task's data
(:mod:`forgetbench.benchmark.data.detect`), so WPL, L2, SPG and the mask methods know what is shared.
Experiences are materialised as tensors once (``max_train`` / ``max_test`` subsample them).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Literal

import torch
from pydantic import Field, PositiveInt, field_validator
from torch import nn

from forgetbench.benchmark.data.models import TaskRoutedModule
from forgetbench.benchmark.data.loaders import dataset_tensors
from forgetbench.benchmark.data.detect import used_parameters
from forgetbench.benchmark.core.references import REFERENCE_FORMAT, import_object  # noqa: F401  (re-exported)
from forgetbench.benchmark.data.scenarios.base import SCENARIOS, Scenario, ScenarioInputs, ScenarioParams, Task, Turn


def _call(factory: Callable[..., Any], params: dict[str, Any], offered: dict[str, Any], what: str) -> Any:
    """``factory(**params, **offered[k] for k the factory's signature names)``; ValueError with its message."""
    try:
        signature = inspect.signature(factory)
        takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
        extra = {k: v for k, v in offered.items() if (k in signature.parameters or takes_any) and k not in params}
    except (TypeError, ValueError):
        extra = {}
    try:
        return factory(**params, **extra)
    except Exception as exc:
        raise ValueError(f"{what} raised {type(exc).__name__}: {exc}") from exc


class CustomParams(ScenarioParams):
    model: str = Field(description=f"model factory, {REFERENCE_FORMAT}")
    model_params: dict[str, Any] = Field(default_factory=dict)  # keyword arguments of the model factory
    benchmark: str = Field(description=f"Avalanche benchmark factory, {REFERENCE_FORMAT}")
    benchmark_params: dict[str, Any] = Field(default_factory=dict)  # keyword arguments of the benchmark factory
    max_train: PositiveInt | None = Field(None, description="subsample each training experience (speed)")
    max_test: PositiveInt | None = Field(None, description="subsample each test experience (speed)")
    probe_size: PositiveInt = Field(16, description="samples per task for shared-parameter detection")
    used_params: Literal["auto", "declared"] = Field(
        "auto", description="auto: found by gradient reachability; declared: the model's used_parameter_names(task)"
    )

    @field_validator("model", "benchmark")
    @classmethod
    def _imports(cls, reference: str) -> str:
        import_object(reference)
        return reference

    def preflight(self, data_root, seed: int) -> None:
        """Build the benchmark and the model once, so a factory that raises, a benchmark without the
        task labels a multi-task model needs, or a model whose parameter names change, is a config
        error before anything runs."""
        try:
            build_custom(self, ScenarioInputs(seed, data_root))
        except ValueError:
            raise
        except Exception as exc:  # anything else the user's code raised while being built
            raise ValueError(f"building the scenario raised {type(exc).__name__}: {exc}") from exc


class UserModel(TaskRoutedModule):
    """The user's module behind forgetbench's routing: ``forward_single_task(x, t)`` runs the user's
    multi-task model on task ``t``, or a plain module on ``x``. Parameter names get the ``net.`` prefix
    (:attr:`parameter_prefix`); ``StrategyContext.own_name`` / ``harness_name`` map between the two."""

    parameter_prefix = "net."

    def __init__(self, net: Any, used: dict[int, frozenset[str]] | None = None, max_class_label: int = 1):
        super().__init__()
        self.net = net
        self.multi_task = callable(getattr(net, "forward_single_task", None))
        self.used = dict(used or {})
        self.max_class_label = max_class_label

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        return self.net.forward_single_task(x, task_label) if self.multi_task else self.net(x)

    def used_parameter_names(self, task_label: int) -> frozenset[str]:
        return self.used[task_label]


class _ListedClasses:
    """An experience whose ``classes_in_this_experience`` is a sorted list: Avalanche's generic
    benchmarks give a set, which its own MultiHeadClassifier cannot index its masks with."""

    def __init__(self, experience):
        self._experience = experience
        self.classes_in_this_experience = sorted(experience.classes_in_this_experience)

    def __getattr__(self, name):
        return getattr(self._experience, name)


def _adapt(net: nn.Module, experiences) -> None:
    """Avalanche's dynamic modules grow heads when they meet a task label: meet them all now."""
    from avalanche.models.utils import avalanche_model_adaptation

    for experience in experiences:
        avalanche_model_adaptation(net, _ListedClasses(experience))


def _freeze_structure(net: nn.Module) -> None:
    """Training must not adapt the model again: its structure is fixed once it has met every task."""
    from avalanche.models import DynamicModule

    for module in net.modules():
        if isinstance(module, DynamicModule):
            module._auto_adapt = False


def _tensors(experience, limit: int | None, generator: torch.Generator, keep: list[int] | None = None):
    """(x, y, task label, the subsample's indices or None); ``keep``: take these indices (a later round)."""

    labels = sorted(set(int(t) for t in experience.task_labels))
    if len(labels) != 1:
        raise ValueError(
            f"experience {experience.current_experience} holds task labels {labels}; "
            "each experience must hold exactly one task"
        )
    dataset = experience.dataset
    if keep is None and limit is not None and limit < len(dataset):  # subsample first: only `limit` samples load
        keep = torch.randperm(len(dataset), generator=generator)[:limit].sort().values.tolist()
    if keep is not None and len(dataset) > max(keep, default=-1):
        dataset = dataset.subset(keep)
    x, y, _ = dataset_tensors(dataset)
    return torch.as_tensor(x).contiguous(), torch.as_tensor(y).long().contiguous(), labels[0], keep


def _materialise(stream, limit: int | None, generator: torch.Generator, what: str, rounds: bool):
    """Each experience as (x, y, task label). With ``rounds`` (a multi-task model, whose task label picks the
    model), an experience whose task label came before is a later round of that task: it must hold the same data
    (subsampled at the same indices)."""
    first: dict[int | None, tuple] = {}
    out = []
    for j, experience in enumerate(stream):
        label = next(iter({int(t) for t in experience.task_labels}), None)
        if rounds and label in first:
            x, y, label, _ = _tensors(experience, limit, generator, first[label][3])
            if not (
                x.shape == first[label][0].shape and torch.equal(x, first[label][0]) and torch.equal(y, first[label][1])
            ):
                raise ValueError(
                    f"{what} experience {j} repeats task label {label} (a later round of its task) but "
                    "holds other data than its first experience; every round of a task trains the "
                    "same data: give each task its own label, or repeat the same experience"
                )
        else:
            first[label] = _tensors(experience, limit, generator)
            x, y, label, _ = first[label]
        out.append((x, y, label))
    return out


def _user_benchmark(params: CustomParams, inputs: ScenarioInputs) -> Any:
    """The user's benchmark, checked: an Avalanche benchmark with a class timeline and paired train and test
    experiences."""
    offered = {"seed": inputs.seed, "data_root": inputs.data_root}
    bm = _call(import_object(params.benchmark), params.benchmark_params, offered, f"benchmark {params.benchmark}")
    if not hasattr(bm, "train_stream") or not hasattr(bm, "test_stream"):
        raise ValueError(
            f"benchmark {params.benchmark} returned {type(bm).__name__}, not an Avalanche benchmark "
            "(an object with train_stream and test_stream)"
        )
    if not hasattr(bm.train_stream[0], "classes_in_this_experience"):
        from avalanche.benchmarks.scenarios.supervised import with_classes_timeline

        bm = with_classes_timeline(bm)  # Avalanche's dynamic heads read each experience's classes
    train, test = list(bm.train_stream), list(bm.test_stream)
    if len(train) != len(test) or not train:
        raise ValueError(
            f"benchmark {params.benchmark}: {len(train)} train and {len(test)} test experiences; "
            "forgetbench pairs train experience j with test experience j (one per task)"
        )
    return bm


def _user_model(params: CustomParams, bm: Any, seed: int) -> nn.Module:
    """The user's network, built under the run's seed; its parameter names fixed after meeting every experience."""
    torch.manual_seed(seed)
    net = _call(
        import_object(params.model), params.model_params, {"benchmark": bm, "seed": seed}, f"model {params.model}"
    )
    if not isinstance(net, nn.Module):
        raise ValueError(f"model {params.model} returned {type(net).__name__}, not a torch nn.Module")
    return net


def _fixed_names(net: nn.Module, train: list, model_ref: str) -> None:
    """Let the network meet every experience (Avalanche's dynamic heads grow then), twice: its parameter names
    must have settled, then they are frozen."""
    _adapt(net, train)
    names = [n for n, _ in net.named_parameters()]
    _adapt(net, train)
    if [n for n, _ in net.named_parameters()] != names:
        raise ValueError(
            f"model {model_ref}: its parameter names change between experiences even after "
            "meeting every task label; forgetbench's regularizers anchor parameters by name"
        )
    _freeze_structure(net)


def _used_params(params: CustomParams, net: nn.Module, model: UserModel, train_t: list) -> dict[int, frozenset[str]]:
    """Task label -> the parameters its model uses (declared by the model, or found by reachability), each
    task's holding a trainable one."""
    if params.used_params == "declared":
        declared = getattr(net, "used_parameter_names", None)
        if not callable(declared):
            raise ValueError(
                f"used_params: 'declared' but model {params.model} has no used_parameter_names(task_label)"
            )
        used = {label: frozenset(f"net.{n}" for n in declared(label)) for _, _, label in train_t}
        unknown = set().union(*used.values()) - {n for n, _ in model.named_parameters()}
        if unknown:
            raise ValueError(
                f"model {params.model}: used_parameter_names names unknown parameters {sorted(unknown)[:5]}"
            )
    else:
        used = {label: used_parameters(model, x[: params.probe_size], label) for x, _, label in train_t}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    untrainable = [
        f"experience{j} (task label {label})" for j, (_, _, label) in enumerate(train_t) if not used[label] & trainable
    ]
    if untrainable:
        raise ValueError(
            f"model {params.model}: {', '.join(untrainable)} uses no trainable parameter, so its loss "
            "has no gradient and it cannot be trained; give every task's model a parameter to train"
        )
    return used


def _tasks_and_schedule(
    train_t: list, test_t: list, used: dict[int, frozenset[str]], num_classes: int, multi_task: bool
) -> tuple[list[Task], list[Turn]]:
    """One task per task label, in order of first appearance (a repeated label is a later round of its task), and
    the rounds' schedule: a row of the accuracy matrix after each round's last turn (none without rounds)."""
    task_labels = [label for _, _, label in train_t]
    order = list(dict.fromkeys(task_labels)) if multi_task else list(range(len(task_labels)))
    first = {key: task_labels.index(key) if multi_task else key for key in order}
    tasks = [
        Task(
            name=f"experience{first[key]}",
            model_key=train_t[first[key]][2],
            train_x=train_t[first[key]][0],
            train_y=train_t[first[key]][1],
            test_x=test_t[first[key]][0],
            test_y=test_t[first[key]][1],
            used_params=used[train_t[first[key]][2]],
            num_classes=num_classes,
        )
        for key in order
    ]
    schedule = []
    if len(order) < len(task_labels):
        turns = [order.index(label) for label in task_labels]
        ends = [j == len(turns) - 1 or turns[j + 1] in turns[_round_start(turns, j) : j + 1] for j in range(len(turns))]
        schedule = [Turn(task=k, record=end) for k, end in zip(turns, ends)]
    return tasks, schedule


def build_custom(params: CustomParams, inputs: ScenarioInputs) -> Scenario:
    """The user's benchmark and model as a scenario: tasks as tensors (at most ``max_train`` / ``max_test`` each),
    the parameters each task's model uses, and the rounds' schedule where a task label comes back."""
    bm = _user_benchmark(params, inputs)
    train, test = list(bm.train_stream), list(bm.test_stream)
    net = _user_model(params, bm, inputs.seed)
    generator = torch.Generator().manual_seed(inputs.seed)
    multi_task = callable(getattr(net, "forward_single_task", None))
    # before the rounds' check: one label on every experience is a benchmark built without them, not rounds
    labels = {int(t) for experience in train for t in experience.task_labels}
    if multi_task and len(train) > 1 and len(labels) == 1:
        raise ValueError(
            f"benchmark {params.benchmark} has no task labels (every experience has task label "
            f"{labels.pop()}) but model {params.model} is a multi-task model that needs them; "
            "build the benchmark with task labels (e.g. SplitMNIST(..., return_task_id=True)) or use "
            "a plain single-head module"
        )
    train_t = _materialise(train, params.max_train, generator, "train", rounds=multi_task)
    test_t = _materialise(test, params.max_test, generator, "test", rounds=multi_task)
    task_labels = [label for _, _, label in train_t]
    if [label for _, _, label in test_t] != task_labels:
        raise ValueError(
            f"benchmark {params.benchmark}: test experiences' task labels "
            f"{[label for _, _, label in test_t]} differ from the train experiences' {task_labels}"
        )
    _fixed_names(net, train, params.model)
    num_classes = int(max(int(y.max()) for _, y, _ in train_t + test_t)) + 1
    model = UserModel(net, max_class_label=num_classes)
    model.used = used = _used_params(params, net, model, train_t)
    tasks, schedule = _tasks_and_schedule(train_t, test_t, used, num_classes, multi_task)
    return Scenario(
        name="custom",
        tasks=tasks,
        model=model,
        schedule=schedule,
        meta={
            "model": params.model,
            "benchmark": params.benchmark,
            "task_labels": task_labels,
            "multi_task": multi_task,
        },
    )


def _round_start(turns: list[int], j: int) -> int:
    """Where the round holding turn ``j`` began: a round ends before a task it already trained comes again."""
    start = 0
    for i in range(1, j + 1):
        if turns[i] in turns[start:i]:
            start = i
    return start


@SCENARIOS.register("custom", params=CustomParams)
def custom_scenario(params: CustomParams, inputs: ScenarioInputs) -> Scenario:
    """Your own nn.Module on your own Avalanche benchmark, by reference (module.path:attribute)."""
    return build_custom(params, inputs)
