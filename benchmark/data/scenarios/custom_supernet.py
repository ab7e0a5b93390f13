"""Scenario ``custom_supernet``: your own weight-sharing supernet, searched and measured as the built-in ENAS searches.

    scenarios:
      - name: custom_supernet
        params:
          model: my_nas.spos:make_supernet            # "module.path:attribute" (trusted configs only)
          model_params: {channels: 16}
          choices: [[c3, c5, skip], [c3, c5, skip], [c3, c5, skip]]   # one list of option names per decision
          dataset: fashion_mnist                      # a registered dataset, or data: my_nas.data:make_splits
          search: controller                          # random | controller | fixed
          ground_truth: {architectures: 8, steps: 300}

**The model**: ``model(**model_params)`` returns an ``nn.Module`` whose ``forward(x, arch)`` runs architecture
``arch``, a tuple of option names, one per decision (``("c3", "skip", "c5")``). The factory also receives
``choices``, ``input_shape``, ``num_classes`` and ``seed`` when its signature names them; weights are initialised
under the run's seed. Which parameters an architecture uses is found by gradient reachability on a probe batch
(:mod:`forgetbench.benchmark.data.detect`; ``used_params: declared`` reads the model's
``used_parameter_names(arch)`` instead), so every regularizer knows what each architecture shares with the ones
trained before it. An architecture that uses no trainable parameter is refused (it could not be trained).

**The space**: ``choices`` in the YAML, or ``space: pkg:factory`` returning an object with ``choices`` (the option
names per decision), and optionally ``sample(rng)`` (a NumPy ``Generator`` in, one architecture as option names
out: a constrained or non-uniform sampler that random search and the ground truth draw from) and ``all()`` (every
architecture of a constrained finite space).

**The data**: ``dataset`` (``forgetbench list datasets``; ``validation_size`` training samples are held out with
the run's seed) or ``data: pkg:factory`` returning a mapping with ``train``, ``test`` and optionally ``valid``, each
an ``(x, y)`` pair of tensors or a dataset of ``(x, y)`` samples (without ``valid`` it is held out of ``train``).
err = 1 - accuracy on the first ``eval_size`` validation samples.

**The search** (the engine of every built-in search: ``supernet``, ``supernet_search``, ``nb201``, ``enas_rnn``,
``enas_cnn``;
:class:`~forgetbench.benchmark.data.scenarios.cell_search.CellSearch`): ``epochs`` epochs, each of ``turns_per_epoch``
turns that train one architecture for ``steps_per_turn`` steps. ``random`` draws each turn's architecture
uniformly (or from the space's ``sample``); ``controller`` from the ENAS LSTM controller over the decisions,
trained between epochs by REINFORCE on the validation accuracy; ``fixed`` trains the ``architectures`` listed
(default: every architecture of the space) in order, once per epoch: round-robin rounds, as the WPL paper's
multi-model experiment, with an accuracy-matrix row (every trained architecture on the evaluation data) at each
round's end, and after every turn when there is one round (``epochs: 1``: a square matrix). At the end the best of ``derive_samples`` draws (fixed: of the list) on the shared weights
is derived and, with ``retrain_steps``, retrained alone.

**Ground truth** (``ground_truth``): K architectures (seed-drawn, distinct, or listed) are each trained alone from
the run's initial weights for ``steps`` steps and scored on the test split; the search's ranking of the same K
(their accuracy on the shared weights at the end, on the evaluation data) is compared with it: Kendall tau,
precision@K and the regret of the search's pick among them. The K trainings depend only on the space, data,
model, seed and training settings, not on the strategy, so a suite computes them once (cached under its results
folder).

Result keys are those of the cell searches (``err1``, ``err2``, ``search``, ...) with architectures named by their
options (``c3-c5-skip``): ``architecture_names`` per task, and ``search.ground_truth``.
"""

from __future__ import annotations

import inspect
import itertools
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Literal, Sequence

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, field_validator, model_validator
from torch import nn

from forgetbench.benchmark.core.record import RunRecord
from forgetbench.benchmark.core.references import REFERENCE_FORMAT, import_object
from forgetbench.benchmark.data.detect import used_parameters
from forgetbench.benchmark.data.models import TaskRoutedModule
from forgetbench.benchmark.data.scenarios.base import SCENARIOS, Retraining, Scenario, ScenarioInputs, Task, Turn
from forgetbench.benchmark.data.scenarios.cell_search import (
    CellControllerParams,
    AccuracySearch,
    CellSearchParams,
    SearchData,
)
from forgetbench.benchmark.data.scenarios.custom import _call
from forgetbench.benchmark.data.scenarios.split import validate_dataset_name
from forgetbench.benchmark.data.scenarios.search_splits import (
    search_data,
)

MAX_ENUMERATED = 4096  # a fixed search over "every architecture" enumerates at most this many
PROBED_AT_PREFLIGHT = 64  # architectures whose parameters `validate` checks (all of a smaller space)
Names = tuple[Any, ...]  # one architecture as option names, one per decision


class SupernetControllerParams(CellControllerParams):
    """The ENAS controller over the declared decisions (ENAS's micro-search values, a shorter epoch)."""

    hidden: PositiveInt = 64  # the controller LSTM's hidden size
    lr: PositiveFloat = 0.0035  # the controller's learning rate (Adam)
    steps_per_epoch: PositiveInt = 50  # controller updates per search epoch
    tanh_constant: PositiveFloat = 1.1  # logits = c * tanh(logits / T) (ENAS)
    temperature: PositiveFloat = 5.0  # T in the line above
    reward_c: PositiveFloat = 1.0  # reward = c * validation accuracy
    reward_samples: PositiveInt = Field(128, description="validation samples per reward (a rotating slice)")


class GroundTruthParams(BaseModel):
    """K architectures trained alone: what the search's ranking is measured against."""

    model_config = ConfigDict(extra="forbid")

    architectures: PositiveInt | list[list[Any]] = Field(
        8, description="K architectures drawn with the run's seed, or the list of them (option names)"
    )
    steps: PositiveInt = 300  # training steps of each architecture alone
    top_k: PositiveInt | None = Field(None, description="K of precision@K; null = min(3, architectures)")

    @model_validator(mode="after")
    def _enough(self) -> "GroundTruthParams":
        k = self.architectures if isinstance(self.architectures, int) else len(self.architectures)
        if k < 2:
            raise ValueError(f"ground_truth.architectures: a ranking needs at least 2 architectures, got {k}")
        if self.top_k is not None and self.top_k > k:
            raise ValueError(f"ground_truth.top_k must be in 1..{k} (the architectures), got {self.top_k}")
        return self


class CustomSupernetParams(CellSearchParams):
    model: str = Field(description=f"supernet factory, {REFERENCE_FORMAT}; forward(x, arch) runs architecture arch")
    model_params: dict[str, Any] = Field(default_factory=dict)  # keyword arguments of the model factory
    choices: list[list[Any]] | None = Field(None, description="option names per decision (or give space)")
    space: str | None = Field(None, description=f"search space object or factory, {REFERENCE_FORMAT}")
    space_params: dict[str, Any] = Field(default_factory=dict)  # keyword arguments of the space factory
    dataset: str | None = None  # a registered dataset (`forgetbench list datasets`), or give data
    download: bool = False  # fetch the dataset when it is missing (needs internet)
    data: str | None = Field(None, description=f"data factory returning train / valid / test, {REFERENCE_FORMAT}")
    data_params: dict[str, Any] = Field(default_factory=dict)  # keyword arguments of the data factory
    search: Literal["random", "controller", "fixed"] = "controller"  # type: ignore[assignment]
    architectures: list[list[Any]] | None = Field(
        None, description="search fixed: the architectures each epoch trains in order (null: the whole space)"
    )
    epochs: PositiveInt = 10  # search epochs (rounds, for a fixed search)
    turns_per_epoch: PositiveInt | None = Field(  # type: ignore[assignment]
        None, description="architectures trained per epoch (null: 20, or the fixed list's length)"
    )
    steps_per_turn: PositiveInt = 20  # training steps per turn
    derive_samples: PositiveInt = 20  # draws at the end; the best on the shared weights is derived
    validation_size: PositiveInt = 1000  # held out of the training data when the data gives no validation split
    eval_size: PositiveInt | None = Field(500, description="validation samples err1 / err2 are measured on")
    max_train: PositiveInt | None = Field(None, description="cap on the training samples (speed)")
    max_test: PositiveInt | None = Field(None, description="cap on the test samples (speed)")
    probe_size: PositiveInt = Field(16, description="samples of the probe that finds each architecture's parameters")
    used_params: Literal["auto", "declared"] = Field(
        "auto", description="auto: found by gradient reachability; declared: the model's used_parameter_names(arch)"
    )
    controller: SupernetControllerParams = Field(default_factory=SupernetControllerParams)
    ground_truth: GroundTruthParams | None = None  # K architectures trained alone (tau, precision@K, regret)

    @field_validator("model", "space", "data")
    @classmethod
    def _imports(cls, reference: str | None) -> str | None:
        if reference is not None:
            import_object(reference)
        return reference

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, name: str | None) -> str | None:
        return None if name is None else validate_dataset_name(name)

    @model_validator(mode="after")
    def _consistent(self) -> "CustomSupernetParams":
        if (self.choices is None) == (self.space is None):
            raise ValueError("give the search space either as choices (option names per decision) or as space")
        if (self.dataset is None) == (self.data is None):
            raise ValueError("give the data either as dataset (a registered name) or as data (a factory)")
        if self.choices is not None:
            check_choices(self.choices)
        if self.search != "fixed" and self.architectures is not None:
            raise ValueError("architectures: only search 'fixed' trains a list of architectures")
        if self.search == "fixed" and self.architectures is not None and self.turns_per_epoch is not None:
            if self.turns_per_epoch != len(self.architectures):
                raise ValueError(
                    f"turns_per_epoch: search 'fixed' trains the {len(self.architectures)} listed architectures "
                    f"once per epoch; leave it out or give {len(self.architectures)}, got {self.turns_per_epoch}"
                )
        return self

    def preflight(self, data_root: Any, seed: int) -> None:
        """Build the search once and probe the architectures it can train (all of a small space, the fixed list,
        the ground truth, or a sample), so a factory that raises, an architecture with an unknown option or one
        that uses no trainable parameter is a config error before anything runs."""
        try:
            scenario = build_custom_supernet(self, ScenarioInputs(seed, data_root))
            scenario.probe_space(PROBED_AT_PREFLIGHT)
        except ValueError:
            raise
        except Exception as exc:  # anything else the user's code raised while being built
            raise ValueError(f"building the supernet search raised {type(exc).__name__}: {exc}") from exc


def check_choices(choices: Sequence[Sequence[Any]]) -> None:
    """Every decision offers at least one option, each named once, by a string or an integer."""
    if not choices:
        raise ValueError("choices: the space needs at least one decision")
    for d, options in enumerate(choices):
        if not options:
            raise ValueError(f"choices: decision {d} offers no option")
        if any(not isinstance(o, (str, int)) or isinstance(o, bool) for o in options):
            raise ValueError(f"choices: decision {d}'s options must be names (strings or integers), got {options}")
        if len(set(options)) != len(options):
            raise ValueError(f"choices: decision {d} names an option twice: {options}")


@dataclass
class Space:
    """The decisions and their option names; architectures are index tuples inside, names outside."""

    choices: list[list[Any]]
    sampler: Callable[[np.random.Generator], Iterable[Any]] | None = None
    every: Callable[[], Iterable[Iterable[Any]]] | None = None

    @property
    def size(self) -> int:
        return math.prod(len(c) for c in self.choices)

    def index(self, names: Iterable[Any], where: str) -> tuple[int, ...]:
        """The index tuple of ``names``; ValueError naming ``where`` and the allowed options."""
        names = tuple(names)
        if len(names) != len(self.choices):
            raise ValueError(f"{where}: {list(names)} has {len(names)} decisions, the space {len(self.choices)}")
        out = []
        for d, (name, options) in enumerate(zip(names, self.choices)):
            if name not in options:
                raise ValueError(f"{where}: decision {d} has no option {name!r} (allowed: {options})")
            out.append(options.index(name))
        return tuple(out)

    def names(self, arch: Sequence[int]) -> Names:
        return tuple(options[i] for options, i in zip(self.choices, arch))

    def sample(self, rng: np.random.Generator) -> tuple[int, ...]:
        if self.sampler is not None:
            return self.index(self.sampler(rng), "the space's sample(rng)")
        return tuple(int(rng.integers(len(c))) for c in self.choices)

    def all(self) -> list[tuple[int, ...]]:
        """Every architecture (the space's ``all()``, else the product of the choices), at most MAX_ENUMERATED."""
        if self.every is not None:
            listed = [self.index(a, "the space's all()") for a in itertools.islice(self.every(), MAX_ENUMERATED + 1)]
        else:
            if self.size > MAX_ENUMERATED:
                listed = [()] * (MAX_ENUMERATED + 1)
            else:
                listed = [tuple(a) for a in itertools.product(*(range(len(c)) for c in self.choices))]
        if len(listed) > MAX_ENUMERATED:
            raise ValueError(
                f"the space has more than {MAX_ENUMERATED} architectures: list the ones to train (architectures) "
                "or search it (random, controller)"
            )
        return listed


def resolve_space(params: CustomSupernetParams) -> Space:
    if params.choices is not None:
        return Space([list(c) for c in params.choices])
    reference = str(params.space)
    obj: Any = import_object(reference)
    if inspect.isclass(obj) or (callable(obj) and not hasattr(obj, "choices")):  # a class or a factory: make one
        obj = _call(obj, params.space_params, {}, f"space {reference}")
    choices = getattr(obj, "choices", None)
    if choices is None:
        raise ValueError(f"space {reference}: the object has no choices (the option names of each decision)")
    choices = [list(c) for c in choices]
    check_choices(choices)
    sampler, every = getattr(obj, "sample", None), getattr(obj, "all", None)
    return Space(choices, sampler if callable(sampler) else None, every if callable(every) else None)


class ArchitectureSupernet(TaskRoutedModule):
    """The user's supernet behind forgetbench's routing: task label k runs ``net(x, names of architecture k)``.
    Parameter names get the ``net.`` prefix, as the ``custom`` scenario's."""

    parameter_prefix = "net."

    def __init__(self, net: nn.Module, space: Space, probe: torch.Tensor, declared: bool, num_classes: int):
        super().__init__()
        self.net, self.space, self.probe, self.declared = net, space, probe, declared
        self.architectures: list[tuple[int, ...]] = []  # task label -> architecture (a search may reset the list)
        self.used: dict[tuple[int, ...], frozenset[str]] = {}  # architecture -> the parameters it uses
        self.max_class_label = num_classes

    def add_architecture(self, arch: tuple[int, ...]) -> int:
        arch = tuple(arch)
        self.architectures.append(arch)
        key = len(self.architectures) - 1
        if arch in self.used:
            return key
        try:
            used = self._declared(key) if self.declared else used_parameters(self, self._probe(), key)
        except Exception:
            self.architectures.pop()
            raise
        trainable = {n for n, p in self.named_parameters() if p.requires_grad}
        if not used & trainable:
            self.architectures.pop()
            raise ValueError(
                f"architecture {self.describe(arch)} uses no trainable parameter, so its loss has no gradient and "
                "it cannot be trained; leave it out of the space or give it a parameter to train"
            )
        self.used[arch] = used
        return key

    def _probe(self) -> torch.Tensor:
        # a search adds architectures while it trains, on whatever device the runner moved the network to
        weight = next(self.parameters(), None)
        return self.probe if weight is None else self.probe.to(weight.device)

    def _declared(self, key: int) -> frozenset[str]:
        declared = getattr(self.net, "used_parameter_names", None)
        if not callable(declared):
            raise ValueError("used_params: 'declared' but the model has no used_parameter_names(arch)")
        used = frozenset(f"net.{n}" for n in declared(self.space.names(self.architectures[key])))
        unknown = used - {n for n, _ in self.named_parameters()}
        if unknown:
            raise ValueError(f"used_parameter_names names unknown parameters {sorted(unknown)[:5]}")
        return used

    def describe(self, arch: Sequence[int]) -> str:
        return "-".join(str(name) for name in self.space.names(arch))

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        return self.net(x, self.space.names(self.architectures[task_label]))

    # K seeds of one run trained as one stacked model (forgetbench.benchmark.run.batching): their supernets'
    # parameters correspond by position (a private head is named by each seed's own architecture), and a net with
    # forward_seeds(x, archs, slot, choose) runs them at once, each seed on its own architecture
    seeds_align_by_position = True

    def seed_route(self, task_label: int) -> tuple[Any, ...]:
        """The option names model ``task_label`` runs (what a batch of seeds routes each seed by)."""
        return tuple(self.space.names(self.architectures[task_label]))

    def forward_seeds(
        self, x: torch.Tensor, task_label: int, routes: Sequence[Sequence[Any]], choose: Callable[..., torch.Tensor]
    ) -> torch.Tensor:
        """Seed k's model ``task_label`` on its route ``routes[k]`` (this module a stacked copy): the net's own
        ``forward_seeds``, with the head of the ``task_label``-th architecture."""
        forward_seeds = getattr(self.net, "forward_seeds", None)
        if forward_seeds is None:
            raise NotImplementedError(f"{type(self.net).__name__} has no forward_seeds(x, archs, slot, choose)")
        return forward_seeds(x, routes, task_label, choose)

    def used_parameter_names(self, task_label: int) -> frozenset[str]:
        return self.used[self.architectures[task_label]]


class CustomSupernetSearch(AccuracySearch):
    """:class:`CellSearch` over a user's supernet: err = 1 - accuracy, names for architectures, fixed schedules
    and a K-architecture ground truth."""

    def __init__(
        self,
        model: ArchitectureSupernet,
        params: CustomSupernetParams,
        data: SearchData,
        seed: int,
        fixed: list[tuple[int, ...]] | None,
        truth: list[tuple[int, ...]],
        truth_key: dict[str, Any],
        published: list[float] | None = None,
        name: str = "custom_supernet",
    ):
        """``truth``: the ground truth's architectures, trained alone after the run unless ``published`` gives
        their accuracies (a benchmark's table, e.g. NAS-Bench-201's); ``truth_key``: what that training depends on
        (the cache key shared by the strategies)."""
        self.space, self.fixed, self.truth, self.truth_key = model.space, fixed, truth, truth_key
        self.truth_scores: list[float | None] = list(published) if published is not None else [None] * len(truth)
        self.truth_source = "published" if published is not None else "standalone"
        self.truth_supernet: list[float] | None = None
        super().__init__(
            name, model, params, params.controller, [len(c) for c in self.space.choices], data,
            params.controller.reward_samples, seed,
        )  # fmt: skip

    def _sample(self) -> tuple[int, ...]:
        if self.controller is None and self.space.sampler is not None:
            return self.space.sample(self._numpy_rng())
        return super()._sample()

    def _numpy_rng(self) -> np.random.Generator:
        # drawn from the search's torch generator, so a checkpoint of that generator resumes the same draws
        return np.random.default_rng(int(torch.randint(2**62, (1,), generator=self.generator)))

    def _epoch_turns(self) -> list[Turn]:
        if self.fixed is None:
            return super()._epoch_turns()
        keys = [self.task_of(arch).model_key for arch in self.fixed]
        self.epoch_tasks.append(keys)
        # an accuracy-matrix row at each round's end; one round (a sequential schedule): after every turn, so the
        # matrix is square and gives forgetting and BWT
        last, sequential = len(keys) - 1, self.params.epochs == 1
        return [
            Turn(task=k, max_steps=self.params.steps_per_turn, record=sequential or i == last)
            for i, k in enumerate(keys)
        ]

    def _derive_candidates(self) -> list[tuple[int, ...]]:
        return list(self.fixed) if self.fixed is not None else super()._derive_candidates()

    def next_turns(self, accuracy: Callable[[Task], float]) -> list[Turn]:
        more = super().next_turns(accuracy)
        if not more and self.truth:  # the search's ranking of the ground truth's architectures, at its end
            self.truth_supernet = [accuracy(self.task_of(arch)) for arch in self.truth]
        return more

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "truth_supernet": self.truth_supernet}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.truth_supernet = state["truth_supernet"]

    def probe_space(self, limit: int) -> None:
        """Add (and so probe) the architectures this search can train: the fixed list, the ground truth, and
        the whole space when it has at most ``limit`` architectures, else ``limit`` draws."""
        listed = list(self.fixed or []) + list(self.truth)
        if self.space.size <= limit:
            listed += self.space.all()
        rng = np.random.default_rng(0)
        listed += [self.space.sample(rng) for _ in range(max(0, limit - len(listed)))]
        for arch in dict.fromkeys(listed):
            self.task_of(arch)

    def retrainings(self) -> list[Retraining]:
        out = super().retrainings()
        top = self.truth_key

        def recorder(j: int) -> Callable[[dict[str, float]], None]:
            def report(scores: dict[str, float]) -> None:
                self.truth_scores[j] = scores["test"]

            return report

        for j, arch in enumerate(self.truth if self.truth_source == "standalone" else []):
            out.append(
                Retraining(
                    top["steps"],
                    lambda fresh, arch=arch: fresh.task_of(arch),  # type: ignore[attr-defined, misc]
                    {"test": self.data.test},
                    recorder(j),
                    cache_key={**top, "architecture": list(arch)},
                )
            )
        return out

    def summarize(self, record: RunRecord) -> dict[str, Any]:
        out = super().summarize(record)
        model: ArchitectureSupernet = self.model  # type: ignore[assignment]
        out["architecture_names"] = [model.describe(a) for a in model.architectures]
        if self.truth and self.truth_supernet is not None and all(s is not None for s in self.truth_scores):
            params: CustomSupernetParams = self.params  # type: ignore[assignment]
            gt = params.ground_truth
            out["search"]["ground_truth"] = {
                "architectures": [model.describe(a) for a in self.truth],
                "source": self.truth_source,
                "steps": gt.steps if gt is not None and self.truth_source == "standalone" else None,
                "top_k": (gt.top_k if gt is not None and gt.top_k else None) or min(3, len(self.truth)),
                "supernet_accuracy": self.truth_supernet,
                "standalone_accuracy": self.truth_scores,
            }
        return out


def ground_truth_architectures(params: CustomSupernetParams, space: Space, seed: int) -> list[tuple[int, ...]]:
    """The K architectures of the ground truth: listed, or drawn distinct with the run's seed (a stream of its own)."""
    gt = params.ground_truth
    if gt is None:
        return []
    if isinstance(gt.architectures, list):
        listed = [space.index(a, f"ground_truth.architectures[{i}]") for i, a in enumerate(gt.architectures)]
        if len(set(listed)) != len(listed):
            raise ValueError("ground_truth.architectures: an architecture is listed twice")
        return listed
    k = gt.architectures
    if k > space.size:
        raise ValueError(f"ground_truth.architectures must be in 1..{space.size} (the space's size), got {k}")
    rng = np.random.default_rng([seed, 0x6717])
    drawn: dict[tuple[int, ...], None] = {}
    for _ in range(1000 * k):
        drawn[space.sample(rng)] = None
        if len(drawn) == k:
            return list(drawn)
    raise ValueError(
        f"ground_truth.architectures: the space's sampler gave {len(drawn)} distinct architectures, not {k}"
    )


def build_custom_supernet(
    params: CustomSupernetParams,
    inputs: ScenarioInputs,
    published: Callable[[Names], float] | None = None,
    name: str = "custom_supernet",
) -> CustomSupernetSearch:
    """The search of ``params``; ``published`` maps an architecture's option names to its accuracy in a benchmark's
    table (the ground truth is then read, not trained); ``name``: the scenario a built-in space builds it as."""
    space = resolve_space(params)
    data = search_data(params, inputs)
    fixed = None
    if params.search == "fixed":
        if params.architectures is None:
            fixed = space.all()
        else:
            fixed = [space.index(a, f"architectures[{i}]") for i, a in enumerate(params.architectures)]
    truth = ground_truth_architectures(params, space, inputs.seed)
    num_classes = int(max(int(data.train[1].max()), int(data.test[1].max()))) + 1
    input_shape = tuple(data.train[0].shape[1:])
    torch.manual_seed(inputs.seed)
    offered = {"choices": space.choices, "input_shape": input_shape, "num_classes": num_classes, "seed": inputs.seed}
    net = _call(import_object(params.model), params.model_params, offered, f"model {params.model}")
    if not isinstance(net, nn.Module):
        raise ValueError(f"model {params.model} returned {type(net).__name__}, not a torch nn.Module")
    probe = data.train[0][: params.probe_size]
    model = ArchitectureSupernet(net, space, probe, params.used_params == "declared", num_classes)
    turns = len(fixed) if fixed is not None else (params.turns_per_epoch or 20)
    resolved = params.model_copy(update={"turns_per_epoch": turns})
    truth_key = {
        "what": "custom_supernet ground truth",
        "params": params.model_dump(
            mode="json", include={"model", "model_params", "choices", "space", "space_params", "dataset", "data",
                                  "data_params", "validation_size", "max_train", "max_test", "ground_truth"},
        ),
        "steps": params.ground_truth.steps if params.ground_truth is not None else 0,
    }  # fmt: skip
    scores = None if published is None else [published(space.names(arch)) for arch in truth]
    return CustomSupernetSearch(model, resolved, data, inputs.seed, fixed, truth, truth_key, scores, name)


@SCENARIOS.register("custom_supernet", params=CustomSupernetParams)
def custom_supernet_scenario(params: CustomSupernetParams, inputs: ScenarioInputs) -> Scenario:
    """Your own weight-sharing supernet (forward(x, arch)), searched: random, ENAS controller or fixed rounds."""
    return build_custom_supernet(params, inputs)
