"""Avalanche's own methods run by forgetbench against Avalanche's own class and loop, on the same work.

``forgetbench perf --only avalanche_vs_own_loop``: for GEM, AGEM, DER and ER_ACE, the harness's run of
``avalanche.<Method>`` (forgetbench's tensor loaders and lean loop, the class's own epoch where it has one) against
Avalanche's stock class and training loop, reading its samples one by one through the dataset and collating them
as its DataLoader does, in the same order (:class:`SeededBatches`). Same scenario, initial weights, seed and data
order on both sides, so the final weights must agree (``weights_equal``); the ratio is harness / own loop, training
time only, medians over repeats (lower is better).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Iterator

import torch

from forgetbench.benchmark.core.config import ComponentSpec
from forgetbench.benchmark.core.training import TrainingConfig
from forgetbench.benchmark.data.scenarios import Scenario
from forgetbench.benchmark.run.assemble import build_run_strategy, build_scenario
from forgetbench.benchmark.run.schedule import scheduled_experiences, train_schedule
from forgetbench.benchmark.run.spec import RunSpec, seed_everything
from forgetbench.benchmark.train.harness import Harness
from forgetbench.benchmark.perf.common import AVALANCHE_TRAIN_PER_TASK
from forgetbench.benchmark.perf.measurements import NoParams, section, row, ratio_and_weights

# method -> (setting its network needs, its arguments); DER and ER_ACE on one live head (class-IL, every unit live)
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "GEM": ("task-IL", {"patterns_per_exp": 256, "memory_strength": 0.5}),
    "AGEM": ("task-IL", {"patterns_per_exp": 256, "sample_size": 64}),
    "DER": ("class-IL", {"mem_size": 200}),
    "ER_ACE": ("class-IL", {"mem_size": 200, "batch_size_mem": 32}),
}


class SeededBatches:
    """The training batches of an Avalanche ``dataset`` in the order forgetbench's tensor loader draws them (one
    ``torch.randperm(n, generator)`` per epoch, cut into batches), each sample read through the dataset and the batch
    made by its collate function, as Avalanche's DataLoader does. Not a torch DataLoader: that draws a base seed from
    the global RNG every epoch even with a fixed sampler, and GEM, DER and ER_ACE sample their memories from the
    global RNG, so it would shift them (torch's RandomSampler also draws one permutation more per epoch)."""

    def __init__(self, dataset: Any, batch_size: int, generator: torch.Generator):
        self.dataset, self.batch_size, self.generator = dataset, batch_size, generator

    def __len__(self) -> int:
        return -(-len(self.dataset) // self.batch_size)

    def __iter__(self) -> Iterator[Any]:
        order = torch.randperm(len(self.dataset), generator=self.generator).tolist()
        for start in range(0, len(order), self.batch_size):
            yield self.dataset.collate_fn([self.dataset[i] for i in order[start : start + self.batch_size]])


def own_loop_strategy(
    cls: type, scenario: Scenario, args: dict[str, Any], training: TrainingConfig, seed: int, device: torch.device
):
    """Avalanche's stock ``cls`` on ``scenario.model`` with the suite's SGD optimiser, batches in forgetbench's order."""
    if training.optimizer != "sgd":
        raise ValueError("the own-loop reference builds SGD, as the suite's optimizer must be here")
    generator = torch.Generator().manual_seed(seed)

    class Ordered(cls):  # type: ignore[misc, valid-type]
        def make_train_dataloader(self, **kwargs: Any) -> None:
            self.dataloader = SeededBatches(self.adapted_dataset, self.train_mb_size, generator)

    model = scenario.model.to(device)
    return Ordered(
        model=model,
        optimizer=torch.optim.SGD(
            model.parameters(), lr=training.lr, momentum=training.momentum, weight_decay=training.weight_decay
        ),
        criterion=torch.nn.CrossEntropyLoss(),
        train_mb_size=training.batch_size,
        train_epochs=training.epochs,
        eval_mb_size=training.eval_batch_size,
        device=device,
        evaluator=None,
        **args,
    )


def train_own_loop(strategy: Any, scenario: Scenario, training: TrainingConfig) -> float:
    """Train every experience with Avalanche's own ``train``; returns the seconds spent in it."""
    seconds = 0.0
    for _, experience in scheduled_experiences(scenario):
        started = time.perf_counter()
        strategy.train(experience, reset_optimizer_state=training.reset_optimizer)
        seconds += time.perf_counter() - started
    return seconds


def method_spec(
    method: str, dataset: str, training: TrainingConfig, seed: int, train_per_task: int | None, device: str = "cpu"
) -> RunSpec:
    setting, args = METHODS[method]
    params = {
        "dataset": dataset,
        "tasks": 5,
        "classes_per_task": 2,
        "trunk": "mlp",
        "widths": [256],
        "max_train_per_task": train_per_task,
        "setting": setting,
    }
    if setting == "class-IL":
        params["mask_unseen_classes"] = False
    return RunSpec(
        "perf",
        ComponentSpec(name="split", params=params),
        ComponentSpec(name=f"avalanche.{method}", params=args),
        seed,
        training,
        device,
    )


def _harness_side(spec: RunSpec, data_root: Path, device: torch.device) -> tuple[torch.nn.Module, float]:
    seed_everything(spec.seed)
    scenario = build_scenario(spec, data_root)
    model = scenario.model.to(device)
    harness = Harness()
    strategy = build_run_strategy(spec, scenario, model, device, harness)
    seconds = sum(
        done.train_seconds for done in train_schedule(strategy, harness, scheduled_experiences(scenario), spec.training)
    )
    return model, seconds


def _own_side(spec: RunSpec, data_root: Path, device: torch.device) -> tuple[torch.nn.Module, float]:
    import avalanche.training

    seed_everything(spec.seed)
    scenario = build_scenario(spec, data_root)
    cls = getattr(avalanche.training, spec.strategy.name.split(".", 1)[1])
    strategy = own_loop_strategy(cls, scenario, dict(spec.strategy.params), spec.training, spec.seed, device)
    return strategy.model, train_own_loop(strategy, scenario, spec.training)


def avalanche_vs_own_loop(
    data_root: Path,
    dataset: str,
    training: TrainingConfig,
    repeats: int,
    seed: int,
    train_per_task: int | None,
    device: torch.device,
) -> dict[str, Any]:
    """Per method: harness and own-loop training seconds (medians), their ratio, and whether the weights agree."""
    result: dict[str, Any] = {}
    for method in METHODS:
        spec = method_spec(method, dataset, training, seed, train_per_task, device.type)
        harness_times, own_times, equal = [], [], True
        for repeat in range(repeats):
            sides = [_harness_side, _own_side] if repeat % 2 == 0 else [_own_side, _harness_side]
            outcome = {side: side(spec, data_root, device) for side in sides}
            (ours, ours_s), (theirs, theirs_s) = outcome[_harness_side], outcome[_own_side]
            harness_times.append(ours_s)
            own_times.append(theirs_s)
            equal = equal and all(
                torch.allclose(a, b, atol=1e-5)
                for a, b in zip(ours.state_dict().values(), theirs.state_dict().values())
            )
        harness_s, own_s = statistics.median(harness_times), statistics.median(own_times)
        result[method] = {
            "harness_seconds": harness_s,
            "own_loop_seconds": own_s,
            "ratio": harness_s / own_s if own_s > 0 else float("nan"),
            "weights_equal": equal,
            "setting": METHODS[method][0],
        }
    return result


def run(opts: Any, params: NoParams, data: Any) -> Any:
    return avalanche_vs_own_loop(
        opts.data_root,
        opts.dataset,
        opts.training,
        opts.repeats,
        opts.seed,
        64 if opts.quick else AVALANCHE_TRAIN_PER_TASK,
        opts.torch_device,
    )


def lines(value: Any) -> list[str]:
    """Its block of perf's table."""
    return ["avalanche_vs_own_loop (harness's avalanche.<Method> / Avalanche's own class and loop, same order)"] + [
        row(
            f"{name} ({r['setting']}): {r['harness_seconds']:.3f}s / {r['own_loop_seconds']:.3f}s",
            ratio_and_weights(r),
            "lower is better",
        )
        for name, r in value.items()
    ]


section(
    __name__,
    "forgetbench's run of Avalanche's methods against Avalanche's own loop",
    run,
    lines,
    needs_data=True,
    rank=9,
)
