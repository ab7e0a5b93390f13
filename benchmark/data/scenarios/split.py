"""Scenario ``split``: a dataset's classes split into T tasks, a shared trunk and one head per task.

Task ``t`` sees ``classes_per_task`` classes; the class order is a permutation drawn from the run's
seed. ``setting`` names the three scenarios of van de Ven & Tolias (2019, "Three scenarios for
continual learning"):

* ``task-IL`` (default): one head per task, labels 0..k-1 within the task, the task label selects
  head ``t`` at training and test time. Model ``t`` uses the trunk (shared) and its own head (private).
* ``domain-IL``: one k-way head shared by every task, labels 0..k-1 within the task ("which of the
  task's k classes", e.g. even / odd on Split MNIST); the task label is not read.
* ``class-IL``: one head over the classes seen so far, each class labelled by its position in the
  class order (task t's classes are t*k .. t*k+k-1); the task label is not read, so at test time
  the model must tell apart classes of different tasks. Units of classes not yet trained on are
  masked (``MultiHeadNet(seen_classes_only=True)``), as in van de Ven & Tolias's code.

In domain-IL and class-IL every task uses the trunk and the one head.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field, PositiveInt, field_validator, model_validator

from forgetbench.benchmark.data.datasets import DATASETS, dataset_info, load_dataset
from forgetbench.benchmark.data.models import MultiHeadNet, make_trunk
from forgetbench.benchmark.data.scenarios.base import (
    SCENARIOS,
    Scenario,
    ScenarioInputs,
    ScenarioParams,
    Task,
    count_parameters,
)


def validate_dataset_name(name: str) -> str:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS.names())}")
    return name


class SplitParams(ScenarioParams):
    dataset: str = "mnist"  # image dataset (`forgetbench list datasets`)
    tasks: PositiveInt = 5  # number of tasks T
    classes_per_task: PositiveInt = 2  # classes in each task (drawn in a seed-drawn order)
    trunk: Literal["mlp", "cnn", "resnet18"] = "mlp"  # the shared trunk's architecture
    # mlp: hidden sizes; cnn: channels per conv layer; resnet18: [nf] (default 20, the reduced ResNet-18)
    widths: list[PositiveInt] = Field(default_factory=lambda: [256], min_length=1)
    download: bool = False  # fetch the dataset when it is missing (needs internet)
    max_train_per_task: PositiveInt | None = None  # subsample each task's training data (speed)
    setting: Literal["task-IL", "domain-IL", "class-IL"] = (
        "task-IL"  # van de Ven & Tolias's setting: a head per task, one shared k-way head, or one head over every class
    )
    # class-IL: hold the output units of classes no training experience has shown yet at a constant (see
    # MultiHeadNet.seen_classes_only); False keeps every unit live from the start (Avalanche's plain classifier,
    # which DER's stored logits need)
    mask_unseen_classes: bool = True

    _check_dataset = field_validator("dataset")(validate_dataset_name)

    @model_validator(mode="after")
    def _enough_classes(self) -> "SplitParams":
        if self.trunk == "resnet18":
            if "widths" not in self.model_fields_set:
                self.widths = [20]
            elif len(self.widths) != 1:
                raise ValueError(f"widths: trunk 'resnet18' takes one width, nf (e.g. [20]); got {self.widths}")
            if len(dataset_info(self.dataset)["input_shape"]) != 3:
                raise ValueError(f"trunk 'resnet18' needs an image dataset (C, H, W); {self.dataset!r} is not one")
        if not self.mask_unseen_classes and self.setting != "class-IL":
            raise ValueError(
                "mask_unseen_classes: applies to setting 'class-IL' only (the other settings mask nothing)"
            )
        available = dataset_info(self.dataset)["num_classes"]
        if self.tasks * self.classes_per_task > available:
            raise ValueError(
                f"tasks x classes_per_task = {self.tasks * self.classes_per_task} exceeds the "
                f"{available} classes of {self.dataset!r}"
            )
        return self

    def parameter_count(self) -> int:
        shape, k = dataset_info(self.dataset)["input_shape"], self.classes_per_task

        def build() -> MultiHeadNet:
            trunk, features = make_trunk(self.trunk, shape, self.widths)
            heads = (
                [k] * self.tasks
                if self.setting == "task-IL"
                else [k if self.setting == "domain-IL" else k * self.tasks]
            )
            return MultiHeadNet(trunk, features, heads, shared_head=self.setting != "task-IL")

        return count_parameters(build)

    def model_traits(self) -> frozenset[str]:
        if self.setting == "task-IL":
            return frozenset({"task_heads", "unmasked_outputs"})
        masked = self.setting == "class-IL" and self.mask_unseen_classes
        return frozenset(
            {"single_head"}
            | (set() if masked else {"unmasked_outputs"})
            | ({"disjoint_labels"} if self.setting == "class-IL" else set())
        )


def class_order(num_classes: int, seed: int) -> list[int]:
    """The seed's permutation of class ids (the same for every strategy on that seed)."""
    return np.random.default_rng(seed).permutation(num_classes).tolist()


def select_classes(x: torch.Tensor, y: torch.Tensor, classes: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples of ``classes``, relabelled to their position in ``classes``."""
    lookup = torch.full((int(y.max()) + 1,), -1, dtype=torch.int64)
    lookup[torch.tensor(classes)] = torch.arange(len(classes))
    new_y = lookup[y]
    keep = new_y >= 0
    return x[keep], new_y[keep]


@SCENARIOS.register("split", params=SplitParams)
def build_split(params: SplitParams, inputs: ScenarioInputs) -> Scenario:
    """Class-split tasks on a shared trunk: task-, domain- or class-incremental (``setting``)."""
    data = load_dataset(params.dataset, inputs.data_root, params.download)
    order = class_order(data.num_classes, inputs.seed)
    trunk, features = make_trunk(params.trunk, data.input_shape, params.widths)
    k = params.classes_per_task
    if params.setting == "task-IL":
        model = MultiHeadNet(trunk, features, [k] * params.tasks)
    else:
        model = MultiHeadNet(
            trunk,
            features,
            [k if params.setting == "domain-IL" else k * params.tasks],
            shared_head=True,
            seen_classes_only=params.setting == "class-IL" and params.mask_unseen_classes,
        )
    generator = torch.Generator().manual_seed(inputs.seed)
    tasks = []
    for t in range(params.tasks):
        classes = order[t * params.classes_per_task : (t + 1) * params.classes_per_task]
        train_x, train_y = select_classes(data.train_x, data.train_y, classes)
        if params.max_train_per_task is not None and len(train_y) > params.max_train_per_task:
            keep = torch.randperm(len(train_y), generator=generator)[: params.max_train_per_task]
            train_x, train_y = train_x[keep.sort().values], train_y[keep.sort().values]
        test_x, test_y = select_classes(data.test_x, data.test_y, classes)
        if params.setting == "class-IL":  # global labels: the class's position in the order
            train_y, test_y = train_y + t * k, test_y + t * k
        tasks.append(
            Task(
                name=f"task{t}(" + ",".join(map(str, classes)) + ")",
                model_key=t,
                train_x=train_x,
                train_y=train_y,
                test_x=test_x,
                test_y=test_y,
                used_params=model.used_parameter_names(t),
                num_classes=k * params.tasks if params.setting == "class-IL" else k,
            )
        )
    return Scenario("split", tasks, model, meta={"class_order": order, "scenario_type": params.setting})
