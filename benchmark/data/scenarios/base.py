"""What a scenario is: a family of models that share parameters, and the tasks that train them.

A scenario yields

* ``tasks``: the evaluation units. Task ``j`` has its own train and test tensors, the task label
  (``model_key``) that selects its model inside the shared network, and the exact set of parameter
  names that model uses. ``R[i][j]`` in a result is the accuracy on task ``j``'s test data.
* ``model``: one :class:`~forgetbench.benchmark.data.models.TaskRoutedModule` holding every model of the family.
* ``schedule``: the training turns in order (by default one turn per task, each followed by an
  evaluation row). Each turn becomes one Avalanche experience.

Strategies read ``used_params`` to tell shared from private parameters; nothing else of the
scenario leaks into them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, overload

import torch
from pydantic import BaseModel, ConfigDict


if TYPE_CHECKING:
    from avalanche.benchmarks import CLScenario
from forgetbench.benchmark.data.loaders import LabelledTensors
from forgetbench.benchmark.data.models import TaskRoutedModule
from forgetbench.benchmark.data.datasets import dataset_info
from forgetbench.benchmark.core.record import RunRecord
from forgetbench.benchmark.core.components import SCENARIOS as _SCENARIOS
from forgetbench.benchmark.core.registry import Registry


class ScenarioParams(BaseModel):
    """Base of scenario parameter models: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    def data_requirements(self) -> list[tuple[str, bool]]:
        """``(dataset name, download allowed)`` pairs this scenario will load (checked up front)."""
        name = getattr(self, "dataset", None)
        return [(name, bool(getattr(self, "download", False)))] if name else []

    def needs_data_files(self) -> bool:
        """True when building the scenario reads files under the data root (``validate --skip-data`` then
        skips its :meth:`preflight`); default: a dataset of :meth:`data_requirements` has files."""

        return any(
            dataset_info(name).get("files") or dataset_info(name).get("layouts") for name, _ in self.data_requirements()
        )

    def preflight(self, data_root: Any, seed: int) -> None:
        """Raise ValueError if this scenario cannot be built (checked before a suite runs; default: nothing)."""

    def parameter_count(self) -> int | None:
        """Parameters of the scenario's whole network when known without its data (the preflight's memory
        estimate; default: unknown)."""
        return None

    def model_traits(self) -> frozenset[str] | None:
        """What the scenario's network and labels are, in the words of :data:`MODEL_TRAITS`, when known without building it
        (a strategy that ``requires`` a trait the network lacks is refused at config time); None: not known,
        so nothing is refused up front (the default)."""
        return None


MODEL_TRAITS: dict[str, str] = {
    "single_head": "one output layer that every task uses; `model(x)` without task labels gives its logits",
    "task_heads": "an output layer per task, chosen by the task label",
    "unmasked_outputs": "no output unit is held at a constant (class-IL's units of classes not seen yet are)",
    "disjoint_labels": "each task's classes have labels no other task uses (class-IL), so a label names one class",
    "pretrained_backbone": "a pretrained network every task adapts (the text scenario's encoder), not one trained from scratch",
}


def count_parameters(build: Callable[[], torch.nn.Module]) -> int:
    """Parameters of the module ``build()`` makes, built on the meta device (no memory is allocated, so a
    network of any size is counted in milliseconds)."""
    with torch.device("meta"):
        return sum(p.numel() for p in build().parameters())


def held_out_split(
    train: tuple[torch.Tensor, torch.Tensor], fraction: float, seed: int, index: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(kept, held out)`` row indices of ``train``: a seeded ``fraction`` (at least one row, never all) held out.

    Drawn from ``seed`` and ``index`` (a task's) with a private generator, so the global RNG (model init, data order)
    is untouched and every strategy on the same seed sees the same split."""
    n = len(train[1])
    n_val = min(max(1, round(n * fraction)), n - 1)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + index))
    return order[n_val:].sort().values, order[:n_val].sort().values


def held_out(task: "Task", index: int, fraction: float, seed: int) -> "Task":
    """``task`` with a seeded ``fraction`` of its training data as its test data, removed from its training data
    (:func:`held_out_split`, task ``index``'s own draw)."""
    keep, val = held_out_split((task.train_x, task.train_y), fraction, seed, index)
    return dataclasses.replace(
        task,
        train_x=task.train_x[keep],
        train_y=task.train_y[keep],
        test_x=task.train_x[val],
        test_y=task.train_y[val],
    )


@dataclass
class Task:
    """One model of the family and the data it is trained and evaluated on."""

    name: str
    model_key: int
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    used_params: frozenset[str]
    num_classes: int


@dataclass
class Turn:
    """One training turn (an Avalanche experience): train ``task`` for its data or ``max_steps``."""

    task: int
    max_steps: int | None = None
    record: bool = True  # append a row to the accuracy matrix after this turn


@dataclass
class Scenario:
    name: str
    tasks: list[Task]
    model: TaskRoutedModule
    schedule: list[Turn] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    # True when :meth:`next_turns` may add turns while the run trains (a search decides them from the
    # trained model); the schedule is then known only up to the turn being trained.
    adaptive: bool = False

    def __post_init__(self) -> None:
        if not self.schedule:
            self.schedule = [Turn(task=j) for j in range(len(self.tasks))]

    @property
    def turn_used_params(self) -> Sequence[frozenset[str]]:
        """Parameter names used in each training turn (= Avalanche experience index).

        A live view of the schedule: turns an adaptive scenario adds later appear in it too, so a
        strategy should keep this sequence rather than a copy of it."""
        return TurnUsedParams(self)

    def next_turns(self, accuracy: Callable[[Task], float]) -> list[Turn]:
        """Turns to train once every turn scheduled so far is trained (default: none, the schedule is fixed).

        ``accuracy(task)`` is the current model's top-1 accuracy on ``task.test_x``/``test_y`` (the
        harness's evaluation), so a search can score architectures on its own validation data. The
        runner appends what this returns to :attr:`schedule` and trains it, then asks again, until
        it gets an empty list.
        """
        return []

    def hold_out_validation(self, fraction: float, seed: int) -> None:
        """Replace each task's test data by a seeded ``fraction`` of its training data, removed from it (tuning
        and calibration runs: the test split is never read); see :func:`held_out`."""
        self.tasks = [held_out(task, j, fraction, seed) for j, task in enumerate(self.tasks)]

    def summarize(self, record: RunRecord) -> dict[str, Any]:
        """Extra result keys derived from a finished run's record (default: none); the keys the project uses
        are declared, typed, on :class:`~forgetbench.benchmark.core.record.RunRecord`.

        Scenarios override this to add their own views of the run (e.g. the supernet's ``err1`` /
        ``err2``), so the runner never special-cases a scenario by name.
        """
        return {}

    def retraining(self) -> "Retraining | None":
        """After the run, a model to train *alone* from the run's initial weights (e.g. the architecture a
        search derived, as ENAS retrains it); None (default) for nothing. See :class:`Retraining`."""
        return None

    def retrainings(self) -> "list[Retraining]":
        """Every model the runner trains alone after the run, in order (default: :meth:`retraining`'s, if any;
        a search adds its ground truth's architectures)."""
        one = self.retraining()
        return [] if one is None else [one]

    def state_dict(self) -> dict[str, Any] | None:
        """What a checkpoint must keep of the scenario itself: None for a fixed schedule (the spec rebuilds
        it). An adaptive scenario returns its search state as plain data (tensors, numbers, strings, lists,
        dicts: checkpoints load with ``weights_only=True``): the schedule so far, its own RNG, its
        controller; without it a search run is not checkpointed and its record says why."""
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Put back what :meth:`state_dict` returned, into a scenario freshly built from the same spec."""
        if state is not None:
            raise NotImplementedError(f"{type(self).__name__} keeps no checkpoint state")

    def avalanche_benchmark(self) -> "CLScenario":
        """Train stream: one experience per turn; test stream: one per task."""
        train = [
            _dataset(self.tasks[t.task].train_x, self.tasks[t.task].train_y, self.tasks[t.task].model_key)
            for t in self.schedule
        ]
        test = [_dataset(t.test_x, t.test_y, t.model_key) for t in self.tasks]
        return _benchmark(train=train, test=test)

    def train_experiences(self, start: int = 0) -> list[Any]:
        """The Avalanche training experiences of ``schedule[start:]``, numbered ``start, start + 1, ...``
        (what :meth:`avalanche_benchmark`'s train stream holds there, without rebuilding the rest)."""
        turns = self.schedule[start:]
        # one dataset per task, shared by its turns: Avalanche's class timeline reads each dataset's labels in Python
        # (40 ms for 10,000), once per dataset, which dominated a search of many short turns
        datasets: dict[int, Any] = {}
        for t in dict.fromkeys(t.task for t in turns):
            task = self.tasks[t]
            datasets[t] = _dataset(task.train_x, task.train_y, task.model_key)
        train = [datasets[t.task] for t in turns]
        experiences = list(_benchmark(train=train).train_stream)
        for offset, experience in enumerate(experiences):
            experience.current_experience = start + offset
        return experiences


@dataclass
class Retraining:
    """What :meth:`Scenario.retraining` asks the runner for: train one model alone, score it, report back.

    The runner rebuilds the scenario from the run's spec and seed (so the weights are the run's initial
    ones), calls ``task_in(fresh)`` for the model's task in that fresh scenario, trains it with the suite's
    optimizer and no regularizer for ``steps`` steps (the ``naive`` strategy through the same training
    loop as every run), scores it with the harness's ``evaluate`` on each of ``evaluate_on`` (name ->
    (x, y)) and passes ``{name: score}`` to ``report``, which keeps them for the scenario's
    :meth:`Scenario.summarize` (a search puts them under its derived architecture)."""

    steps: int
    task_in: Callable[["Scenario"], Task]
    evaluate_on: dict[str, tuple[torch.Tensor, torch.Tensor]]
    report: Callable[[dict[str, float]], None]
    # what the scores depend on besides the run's seed, training and device, when not on the strategy: the runner
    # then computes them once per results folder (a ground truth every strategy of a suite shares); None: every run
    cache_key: dict[str, Any] | None = None


def schedule_state(schedule: Sequence[Turn]) -> list[list[Any]]:
    """A schedule as plain data for a checkpoint: ``[task, max_steps, record]`` per turn."""
    return [[t.task, t.max_steps, t.record] for t in schedule]


def schedule_from_state(state: Sequence[Sequence[Any]]) -> list[Turn]:
    return [
        Turn(task=int(task), max_steps=None if steps is None else int(steps), record=bool(record))
        for task, steps, record in state
    ]


def _benchmark(**streams: list[Any]) -> "CLScenario":
    """Avalanche's benchmark of the streams' datasets, with task labels and class timelines (Avalanche is imported
    here, when a run builds its benchmark: never to read a config)."""
    from avalanche.benchmarks import benchmark_from_datasets, with_task_labels
    from avalanche.benchmarks.scenarios.supervised import with_classes_timeline

    return with_classes_timeline(with_task_labels(benchmark_from_datasets(**streams)))


def _dataset(x: torch.Tensor, y: torch.Tensor, task_label: int) -> Any:  # an Avalanche classification dataset
    from avalanche.benchmarks.utils import _make_taskaware_classification_dataset

    # Avalanche's class timeline wants one label per sample: a token window's first next token stands in
    # (the training loop reads the tensors themselves, all of y)
    targets = y if y.dim() == 1 else y[:, 0]
    dataset = _make_taskaware_classification_dataset(
        LabelledTensors(x, y, task_label), task_labels=task_label, targets=targets.tolist()
    )
    # The class timeline asks for the set of labels, which Avalanche 0.6.0 builds by reading one element at a time
    # through its dataset layers (8% of an MNIST supernet run); torch.unique gives the same set at once.
    dataset.targets._uniques = set(torch.unique(targets).tolist())
    return dataset


class TurnUsedParams(Sequence[frozenset[str]]):
    """``used_params`` of each turn of a scenario's schedule, read when asked (see ``turn_used_params``)."""

    def __init__(self, scenario: Scenario):
        self._scenario = scenario

    def __len__(self) -> int:
        return len(self._scenario.schedule)

    @overload
    def __getitem__(self, index: int) -> frozenset[str]: ...
    @overload
    def __getitem__(self, index: slice) -> list[frozenset[str]]: ...
    def __getitem__(self, index: int | slice) -> frozenset[str] | list[frozenset[str]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self._scenario.tasks[self._scenario.schedule[index].task].used_params


ScenarioBuilder = Callable[[Any, "ScenarioInputs"], Scenario]  # Any: each builder takes its own params model


@dataclass(frozen=True)
class ScenarioInputs:
    """What the harness hands a scenario builder besides its params."""

    seed: int
    data_root: Any  # pathlib.Path


SCENARIOS: Registry[ScenarioBuilder] = _SCENARIOS
