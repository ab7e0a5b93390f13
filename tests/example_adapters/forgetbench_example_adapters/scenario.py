"""Scenario ``adapters``: one backbone shared by every task, a bottleneck adapter and a head per task.

Model t = backbone -> adapter_t -> head_t, with adapter_t(h) = h + up_t(relu(down_t(h))) (Houlsby et
al., 2019). With ``train_backbone: true`` the backbone is shared and trained by every task (what a
regularizer must protect); with ``false`` it is frozen (a pretrained encoder), so only the adapters and
heads learn and nothing can be forgotten: a frozen weight cannot move, so no task's used set names it
(the harness's detection leaves frozen parameters out, and the declared sets below agree). Tasks are class splits of a forgetbench dataset, as in ``split``.
"""

from __future__ import annotations

import torch
from pydantic import PositiveInt
from torch import nn

from forgetbench.benchmark.data.datasets import dataset_info, load_dataset
from forgetbench.benchmark.data.models import TaskRoutedModule, mlp_trunk
from forgetbench.benchmark.data.scenarios import SCENARIOS, Scenario, ScenarioInputs, ScenarioParams, Task
from forgetbench.benchmark.data.scenarios.split import class_order, select_classes


class AdaptersParams(ScenarioParams):
    dataset: str = "digits"
    tasks: PositiveInt = 5
    classes_per_task: PositiveInt = 2
    width: PositiveInt = 64
    bottleneck: PositiveInt = 8
    train_backbone: bool = True
    download: bool = False


class Adapter(nn.Module):
    def __init__(self, width: int, bottleneck: int):
        super().__init__()
        self.down, self.up = nn.Linear(width, bottleneck), nn.Linear(bottleneck, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(torch.relu(self.down(h)))


class AdapterNet(TaskRoutedModule):
    def __init__(self, input_shape, params: AdaptersParams):
        super().__init__()
        self.backbone, width = mlp_trunk(input_shape, [params.width, params.width])
        self.backbone.requires_grad_(params.train_backbone)
        self.adapters = nn.ModuleList(Adapter(width, params.bottleneck) for _ in range(params.tasks))
        self.heads = nn.ModuleList(nn.Linear(width, params.classes_per_task) for _ in range(params.tasks))
        self.max_class_label = params.classes_per_task

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        return self.heads[task_label](self.adapters[task_label](self.backbone(x)))

    def used_parameter_names(self, task_label: int) -> frozenset[str]:
        prefixes = ("backbone.", f"adapters.{task_label}.", f"heads.{task_label}.")
        return frozenset(n for n, p in self.named_parameters() if n.startswith(prefixes) and p.requires_grad)


@SCENARIOS.register("adapters", params=AdaptersParams)
def build_adapters(params: AdaptersParams, inputs: ScenarioInputs) -> Scenario:
    """Per-task bottleneck adapters and heads on one shared MLP backbone (example plug-in)."""
    if params.tasks * params.classes_per_task > dataset_info(params.dataset)["num_classes"]:
        raise ValueError("tasks x classes_per_task exceeds the dataset's classes")
    data = load_dataset(params.dataset, inputs.data_root, params.download)
    order = class_order(data.num_classes, inputs.seed)
    model = AdapterNet(data.input_shape, params)
    tasks = []
    for t in range(params.tasks):
        classes = order[t * params.classes_per_task : (t + 1) * params.classes_per_task]
        train_x, train_y = select_classes(data.train_x, data.train_y, classes)
        test_x, test_y = select_classes(data.test_x, data.test_y, classes)
        tasks.append(
            Task(
                f"task{t}", t, train_x, train_y, test_x, test_y, model.used_parameter_names(t), params.classes_per_task
            )
        )
    return Scenario("adapters", tasks, model)
