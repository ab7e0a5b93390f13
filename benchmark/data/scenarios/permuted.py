"""Scenario ``permuted``: Permuted MNIST (or any dataset), domain-incremental, one shared model.

Task ``t`` is the whole dataset with its pixels (input features) reordered by a fixed permutation
``pi_t`` drawn from the run's seed, the same for training and test data; the labels are unchanged.
One single-head network learns every task (task label 0 for all): every parameter is shared by every
task, the setting in which EWC (Kirkpatrick et al., 2017) and SI (Zenke et al., 2017) were published.
``identity_first: true`` leaves task 0 unpermuted (a common convention).
"""

from __future__ import annotations

import math

import torch
from pydantic import Field, PositiveInt, field_validator

from forgetbench.benchmark.data.datasets import dataset_info, load_dataset
from forgetbench.benchmark.data.models import MultiHeadNet, make_trunk
from forgetbench.benchmark.data.scenarios.base import (
    SCENARIOS,
    Scenario,
    ScenarioInputs,
    ScenarioParams,
    Task,
    count_parameters,
)
from forgetbench.benchmark.data.scenarios.split import validate_dataset_name


class PermutedParams(ScenarioParams):
    dataset: str = "mnist"  # image dataset (`forgetbench list datasets`)
    tasks: PositiveInt = 5  # number of permutations (tasks)
    widths: list[PositiveInt] = Field(default_factory=lambda: [256, 256], min_length=1)  # the MLP's hidden sizes
    identity_first: bool = False  # task 0 sees the unpermuted images
    max_train_per_task: PositiveInt | None = Field(None, description="subsample each task's training data")
    download: bool = False  # fetch the dataset when it is missing (needs internet)

    _check_dataset = field_validator("dataset")(validate_dataset_name)

    def parameter_count(self) -> int:
        info = dataset_info(self.dataset)
        n_features = int(math.prod(info["input_shape"]))

        def build() -> MultiHeadNet:
            trunk, features = make_trunk("mlp", (n_features,), self.widths)
            return MultiHeadNet(trunk, features, [info["num_classes"]])

        return count_parameters(build)

    def model_traits(self) -> frozenset[str]:
        return frozenset({"single_head", "unmasked_outputs"})


def draw_permutations(n_features: int, tasks: int, seed: int, identity_first: bool) -> list[torch.Tensor]:
    """``tasks`` pixel permutations drawn from ``seed`` (the first one the identity if asked)."""
    generator = torch.Generator().manual_seed(seed)
    perms = [torch.randperm(n_features, generator=generator) for _ in range(tasks)]
    if identity_first:
        perms[0] = torch.arange(n_features)
    return perms


@SCENARIOS.register("permuted", params=PermutedParams)
def build_permuted(params: PermutedParams, inputs: ScenarioInputs) -> Scenario:
    """Permuted MNIST: T seeded pixel permutations of one dataset, one shared single-head MLP."""
    data = load_dataset(params.dataset, inputs.data_root, params.download)
    train_x, test_x = data.train_x.flatten(1), data.test_x.flatten(1)
    n_features = train_x.shape[1]
    perms = draw_permutations(n_features, params.tasks, inputs.seed, params.identity_first)
    trunk, features = make_trunk("mlp", (n_features,), params.widths)
    model = MultiHeadNet(trunk, features, [data.num_classes])  # one head: model key 0 for every task
    used = model.used_parameter_names(0)
    # Subsampling draws come from their own generator so the permutations do not depend on it.
    generator = torch.Generator().manual_seed(inputs.seed + 1)
    tasks = []
    for t, perm in enumerate(perms):
        x, y = train_x, data.train_y
        if params.max_train_per_task is not None and len(y) > params.max_train_per_task:
            keep = torch.randperm(len(y), generator=generator)[: params.max_train_per_task].sort().values
            x, y = x[keep], y[keep]
        tasks.append(
            Task(
                name=f"perm{t}",
                model_key=0,
                train_x=x[:, perm].contiguous(),
                train_y=y,
                test_x=test_x[:, perm].contiguous(),
                test_y=data.test_y,
                used_params=used,
                num_classes=data.num_classes,
            )
        )
    return Scenario("permuted", tasks, model, meta={"permutations": [p.tolist() for p in perms]})
