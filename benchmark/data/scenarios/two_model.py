"""Scenario ``two_model``: the two-model setup of the WPL paper (Benyahia, Yu et al., ICML 2019).

Models A and B are ReLU MLPs over one dataset: A has ``depth_a`` hidden layers, B ``depth_b``, both of
width ``width`` with their own classifier; the first ``shared`` hidden layers are the *same modules*.
Experience 0 trains A, experience 1 trains B; training B moves the shared layers and A's accuracy
falls ("multi-model forgetting").

``data_b`` chooses what B learns:

* ``same``: the paper's literal setting, B learns A's data (the shared features suit both; little
  forgetting is expected);
* ``permuted`` (default): B learns a fixed pixel permutation of the data, drawn from the seed, which
  pulls the shared layers towards conflicting features;
* a list of class ids: B learns only those classes (relabelled 0..k-1 for its own classifier).

``a_steps`` / ``b_steps`` train A / B for a fixed number of iterations instead of the suite's epochs
(``a_steps`` small = the paper's "loose convergence" study).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, PositiveInt, field_validator, model_validator
from torch import nn

from forgetbench.benchmark.data.datasets import dataset_info, load_dataset
from forgetbench.benchmark.data.models import TaskRoutedModule
from forgetbench.benchmark.data.scenarios.base import (
    SCENARIOS,
    Scenario,
    ScenarioInputs,
    ScenarioParams,
    Task,
    Turn,
    count_parameters,
)
from forgetbench.benchmark.data.scenarios.split import select_classes, validate_dataset_name


class TwoModelParams(ScenarioParams):
    dataset: str = "mnist"  # image dataset (`forgetbench list datasets`)
    depth_a: PositiveInt = 4  # model A's hidden layers
    depth_b: PositiveInt = 6  # model B's hidden layers
    width: PositiveInt = 256  # units per hidden layer
    shared: PositiveInt = 3  # first hidden layers A and B share (the same modules)
    data_b: Literal["same", "permuted"] | list[int] = (
        "permuted"  # B's data: A's, a seeded pixel permutation of it, or these classes
    )
    a_steps: PositiveInt | None = None  # A's training steps (null: the suite's epochs)
    b_steps: PositiveInt | None = None  # B's training steps (null: the suite's epochs)
    max_train: PositiveInt | None = Field(None, description="subsample the training data (speed)")
    download: bool = False  # fetch the dataset when it is missing (needs internet)

    _check_dataset = field_validator("dataset")(validate_dataset_name)

    @model_validator(mode="after")
    def _shared_fits(self) -> "TwoModelParams":
        if self.shared > min(self.depth_a, self.depth_b):
            raise ValueError(
                f"shared must be in 1..min(depth_a, depth_b) = 1..{min(self.depth_a, self.depth_b)}, got {self.shared}"
            )
        if isinstance(self.data_b, list):
            if len(self.data_b) < 2 or len(set(self.data_b)) != len(self.data_b):
                raise ValueError("data_b as a class list needs at least two distinct class ids")
            classes = dataset_info(self.dataset)["num_classes"]
            outside = [c for c in self.data_b if not 0 <= c < classes]
            if outside:
                raise ValueError(f"data_b: class ids {outside} are not classes of {self.dataset} (0..{classes - 1})")
        return self

    def parameter_count(self) -> int:
        info = dataset_info(self.dataset)
        in_features, classes = int(math.prod(info["input_shape"])), info["num_classes"]
        return count_parameters(lambda: TwoModelNet(in_features, self, classes, classes))


def _hidden(fan_in: int, width: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(fan_in, width), nn.ReLU())


class TwoModelNet(TaskRoutedModule):
    """A = shared -> private_a -> head_a (task label 0); B = shared -> private_b -> head_b (label 1)."""

    def __init__(self, in_features: int, params: TwoModelParams, classes_a: int, classes_b: int):
        super().__init__()
        w = params.width
        self.flatten = nn.Flatten()
        self.shared = nn.ModuleList(_hidden(in_features if i == 0 else w, w) for i in range(params.shared))
        self.private_a = nn.ModuleList(_hidden(w, w) for _ in range(params.depth_a - params.shared))
        self.private_b = nn.ModuleList(_hidden(w, w) for _ in range(params.depth_b - params.shared))
        self.head_a = nn.Linear(w, classes_a)
        self.head_b = nn.Linear(w, classes_b)
        self.max_class_label = max(classes_a, classes_b)

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        h = self.flatten(x)
        for layer in self.shared:
            h = layer(h)
        private, head = (self.private_a, self.head_a) if task_label == 0 else (self.private_b, self.head_b)
        for layer in private:
            h = layer(h)
        return head(h)

    def used_parameter_names(self, task_label: int) -> frozenset[str]:
        own = ("private_a.", "head_a.") if task_label == 0 else ("private_b.", "head_b.")
        return frozenset(n for n, _ in self.named_parameters() if n.startswith(("shared.", *own)))


@SCENARIOS.register("two_model", params=TwoModelParams)
def build_two_model(params: TwoModelParams, inputs: ScenarioInputs) -> Scenario:
    """WPL paper's two models A and B sharing their first k hidden layers; B trains after A."""
    data = load_dataset(params.dataset, inputs.data_root, params.download)
    generator = torch.Generator().manual_seed(inputs.seed)
    train_x, train_y = data.train_x.flatten(1), data.train_y
    if params.max_train is not None and len(train_y) > params.max_train:
        keep = torch.randperm(len(train_y), generator=generator)[: params.max_train].sort().values
        train_x, train_y = train_x[keep], train_y[keep]
    test_x, test_y = data.test_x.flatten(1), data.test_y

    meta: dict = {"data_b": params.data_b}
    if params.data_b == "same":
        b_train, b_test, classes_b = (train_x, train_y), (test_x, test_y), data.num_classes
    elif params.data_b == "permuted":
        permutation = torch.randperm(train_x.shape[1], generator=generator)
        b_train, b_test = (train_x[:, permutation], train_y), (test_x[:, permutation], test_y)
        classes_b = data.num_classes
        meta["permutation"] = permutation.tolist()
    else:
        b_train = select_classes(train_x, train_y, params.data_b)
        b_test = select_classes(test_x, test_y, params.data_b)
        classes_b = len(params.data_b)

    model = TwoModelNet(train_x.shape[1], params, data.num_classes, classes_b)
    tasks = [
        Task("A", 0, train_x, train_y, test_x, test_y, model.used_parameter_names(0), data.num_classes),
        Task("B", 1, *b_train, *b_test, model.used_parameter_names(1), classes_b),
    ]
    schedule = [Turn(task=0, max_steps=params.a_steps), Turn(task=1, max_steps=params.b_steps)]
    return Scenario("two_model", tasks, model, schedule=schedule, meta=meta)
