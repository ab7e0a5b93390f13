"""What ``forgetbench perf``'s sections share: the options, the workloads (a Split stream or a text scenario with
fixed initial weights), the harness run with its timing probe, the plain loop it is compared with, and the
medians and ratios (every section reports medians of alternating repeats; see :mod:`.perf`)."""

from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from avalanche.core import SupervisedPlugin
from torch import nn

from forgetbench.benchmark.core.training import TrainingConfig
from forgetbench.benchmark.data.datasets import TensorData
from forgetbench.benchmark.data.models import MultiHeadNet, TrunkKind, make_trunk
from forgetbench.benchmark.train.harness import Harness
from forgetbench.benchmark.run.runner import regularizer_bytes
from forgetbench.benchmark.run.spec import seed_everything
from forgetbench.benchmark.run.schedule import build_strategy, train_schedule
from forgetbench.benchmark.data.scenarios.base import Scenario, Task, Turn
from forgetbench.benchmark.data.scenarios.split import class_order, select_classes


class DeviceMissingError(RuntimeError):
    """The requested device is not present."""


NOT_AVAILABLE = "not available"


@dataclass
class PerfOptions:
    """What to measure and at which sizes (``quick`` = tiny sizes for a smoke test)."""

    data_root: Path
    repeats: int = 5
    dataset: str = "mnist"
    only: tuple[str, ...] = ()  # the measurements to run, in order (none named: the default ones)
    quick: bool = False
    seed: int = 0
    growth_tasks: tuple[int, ...] = (5, 10, 20)
    cnn_train_per_task: int = 2000
    fisher_samples: int = 10_000
    growth_train_per_task: int = 1024
    scaling_workers: int = 2
    scaling_jobs_per_worker: int = 3
    device: str = "cpu"
    model: str | None = None  # None: mlp (and cnn in harness_vs_plain), as before --model existed
    params: dict[str, Any] = field(default_factory=dict)  # measurement name -> its params (none: its defaults)
    training: TrainingConfig = field(
        default_factory=lambda: TrainingConfig(
            optimizer="sgd", lr=0.01, momentum=0.9, batch_size=128, epochs=1, eval_batch_size=1024
        )
    )

    def __post_init__(self) -> None:
        if self.model in TEXT_MODELS:  # the text scenario trains with batches of 32 (configs/text_bbc.yaml)
            self.training = self.training.model_copy(update={"batch_size": TEXT_BATCH})
        if self.quick:
            self.growth_tasks = (2, 4)
            self.cnn_train_per_task = 64
            self.fisher_samples = 64
            self.growth_train_per_task = 64
            self.scaling_jobs_per_worker = 1
            self.training = self.training.model_copy(update={"batch_size": 32})

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    def case(self, model: str) -> dict[str, Any]:
        """The workload of ``model``: trunk, widths, tasks and samples per task (tiny with ``quick``)."""
        case = dict(MODELS[model])
        if self.quick:
            case.update(
                widths=QUICK_WIDTHS.get(model, []), tasks=2, train_per_task=64 if model not in TEXT_MODELS else 16
            )
        elif model == "cnn":
            case["train_per_task"] = self.cnn_train_per_task
        elif model == "resnet18" and self.device == "cuda":
            case["train_per_task"] = CUDA_RESNET_PER_TASK
        return case


# The workloads per model. resnet18: the reduced ResNet-18 (nf = 20, 1.09M weights) on 3 Split tasks
# of 512 samples (4 steps of 128 per experience): one step costs ~1.7 s on one CPU thread.
MODELS: dict[str, dict[str, Any]] = {
    "mlp": dict(trunk="mlp", widths=[256], tasks=5, train_per_task=None),
    "cnn": dict(trunk="cnn", widths=[16, 32], tasks=5, train_per_task=2000),
    "resnet18": dict(trunk="resnet18", widths=[20], tasks=3, train_per_task=512),
    # configs/text_bbc.yaml's task-IL scenario (all-MiniLM-L6-v2, top layer trained, 128 tokens, a head per task) on
    # the first 256 training documents of each of its two tasks: 8 steps of 32 per experience
    "minilm": dict(trunk="minilm", widths=[], tasks=2, train_per_task=256),
}
TEXT_MODELS = {
    "minilm": {
        "corpus": "bbc_news",
        "encoder": "minilm",
        "max_length": 128,
        "classes_per_task": 2,
        "trainable_layers": 1,
        "head": "multi",
    }
}
TEXT_BATCH = 32
GROWTH_RESNET_PER_TASK = 128
# On a GPU the CPU's 4 steps per experience are over before the per-experience set-up is (an H200, 2026-11-26: 12
# steps in 0.10 s plain, 0.13 s harness, ratio 1.25): 32 steps per experience let the steps dominate.
CUDA_RESNET_PER_TASK = 4096
AVALANCHE_TRAIN_PER_TASK = 2000  # avalanche_vs_own_loop: 5 tasks x 2,000 samples, MLP 256, one epoch
QUICK_WIDTHS = {"mlp": [32], "cnn": [4], "resnet18": [4]}

# Targets per (device, model, figure): what the issues ask; printed next to each figure.
TARGETS: dict[tuple[str, str], dict[str, str]] = {
    ("cpu", "mlp"): {"harness_vs_plain": "<= 1.15", "ewc": "<= 1.15", "wpl": "<= 1.15", "si": "<= 1.20"},  # issue 36
    ("cpu", "cnn"): {"harness_vs_plain": "<= 1.10"},
    ("cpu", "resnet18"): {
        "harness_vs_plain": "<= 1.05",
        "ewc": "<= 1.10",
        "wpl": "<= 1.10",
        "si": "<= 1.15",
        "fisher_vs_epoch": "<= 1.0",
    },
    ("cuda", "resnet18"): {"harness_vs_plain": "<= 1.03", "ewc": "<= 1.05", "wpl": "<= 1.05", "si": "<= 1.05"},
    ("cpu", "minilm"): {"harness_vs_plain": "<= 1.05", "ewc": "<= 1.10", "wpl": "<= 1.10", "fisher_vs_epoch": "<= 1.0"},
    ("cuda", "minilm"): {"harness_vs_plain": "<= 1.03", "ewc": "<= 1.05", "wpl": "<= 1.05", "si": "<= 1.05"},
}


def against_plain(
    harness_s: list[float], plain_s: list[float], steps: int, steps_plain: int, diffs: list[float]
) -> dict[str, Any]:
    """The harness against the plain loop on the same work: median seconds, their ratio, the steps each took and
    whether they ended at the same weights (within 1e-5, as many steps); every repeat's seconds kept."""
    h, p = median_of(harness_s), median_of(plain_s)
    return {
        "harness_seconds": h,
        "plain_seconds": p,
        "ratio": ratio_of(h, p),
        "steps": steps,
        "steps_plain": steps_plain,
        "max_weight_diff": max(diffs),
        "weights_equal": bool(max(diffs) <= 1e-5 and steps == steps_plain),
        "harness_seconds_all": harness_s,
        "plain_seconds_all": plain_s,
    }


def target(device: str, model: str, figure: str) -> str:
    """The target for ``figure`` on (device, model), or "" when none was set."""
    return TARGETS.get((device, model), {}).get(figure, "")


def synchronize(device: torch.device) -> None:
    """Wait for queued accelerator work, so a wall-clock reading covers it (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- workloads


@dataclass
class Workload:
    """A Split stream (tasks + multi-head model with fixed initial weights) to train repeatedly."""

    name: str
    scenario: Scenario
    init_state: dict[str, torch.Tensor]
    bench: Any = None  # the Avalanche benchmark, built on first use

    def fresh_model(self) -> MultiHeadNet:
        model = copy.deepcopy(self.scenario.model)
        model.load_state_dict(self.init_state)
        return model


def split_workload(
    name: str,
    data: TensorData,
    *,
    tasks: int,
    trunk: TrunkKind,
    widths: list[int],
    seed: int,
    train_per_task: int | None = None,
    device: torch.device = torch.device("cpu"),
) -> Workload:
    """Split-style tasks; with more tasks than class pairs, pairs repeat on disjoint samples.

    Task t uses class pair ``t % P`` (P = num_classes // 2, in the seed's class order) and the
    ``t // P``-th block of ``train_per_task`` samples of that pair, so T may exceed P (``growth``).
    """
    seed_everything(seed)
    order = class_order(data.num_classes, seed)
    pairs = data.num_classes // 2
    trunk_module, features = make_trunk(trunk, data.input_shape, widths)
    model = MultiHeadNet(trunk_module, features, [2] * tasks).to(device)
    task_list = []
    for t in range(tasks):
        classes = order[2 * (t % pairs) : 2 * (t % pairs) + 2]
        train_x, train_y = select_classes(data.train_x, data.train_y, classes)
        if train_per_task is not None:
            block = t // pairs
            start = (block * train_per_task) % max(len(train_y) - train_per_task, 1)
            train_x = train_x[start : start + train_per_task]
            train_y = train_y[start : start + train_per_task]
        test_x, test_y = select_classes(data.test_x, data.test_y, classes)
        task_list.append(Task(f"task{t}", t, train_x, train_y, test_x, test_y, model.used_parameter_names(t), 2))
    scenario = Scenario(name, task_list, model)
    return Workload(name, scenario, copy.deepcopy(model.state_dict()))


def text_workload(
    opts: PerfOptions, name: str, model: str, *, tasks: int | None = None, train_per_task: int | None = None
) -> Workload:
    """The text scenario of ``TEXT_MODELS[model]`` (encoder and corpus from the data root or their packages), each
    task cut to its first ``train_per_task`` training documents; ``tasks`` (at most the scenario's) keeps the
    first ones."""
    from forgetbench.benchmark.data.scenarios import SCENARIOS, ScenarioInputs

    case = opts.case(model)
    entry = SCENARIOS.get("text")
    params = entry.parse_params(
        {**TEXT_MODELS[model], "max_train_per_task": train_per_task or case["train_per_task"], "max_test_per_task": 16}
    )
    seed_everything(opts.seed)
    scenario = entry.factory(params, ScenarioInputs(opts.seed, opts.data_root))
    if tasks is not None:
        scenario = Scenario(scenario.name, scenario.tasks[:tasks], scenario.model, meta=scenario.meta)
    scenario.model.to(opts.torch_device)
    return Workload(name, scenario, copy.deepcopy(scenario.model.state_dict()))


# The recurrent supernet's perf workload: the sizes of configs/enas_rnn_austen.yaml on random tokens.
RECURRENT = dict(vocabulary=2000, hidden=64, nodes=6, bptt=35, windows=2048, turns=8, steps=7, batch=32)
RECURRENT_QUICK = dict(vocabulary=50, hidden=8, nodes=3, bptt=6, windows=64, turns=3, steps=2, batch=8)
RECURRENT_WPL = {
    "alpha": 60.0,
    "fisher_batches": 1,
    "accumulate": "momentum",
    "momentum": 0.9,
    "clip_norm": 10.0,
    "max_curvature": None,
}


def recurrent_workload(opts: PerfOptions) -> tuple[Workload, TrainingConfig]:
    """ENAS turns on the recurrent supernet: ``turns`` architectures drawn with the seed, ``steps`` steps each
    (SGD lr 20, gradient norm clipped to 0.25, as the search trains)."""
    from forgetbench.benchmark.data import language
    from forgetbench.benchmark.data.scenarios.enas_rnn import RecurrentSearchParams, RecurrentSupernet, decision_choices

    sizes = RECURRENT_QUICK if opts.quick else RECURRENT
    seed_everything(opts.seed)
    params = RecurrentSearchParams(
        vocabulary=sizes["vocabulary"],
        nodes=sizes["nodes"],
        embedding=sizes["hidden"],
        hidden=sizes["hidden"],
        bptt=sizes["bptt"],
    )
    model = RecurrentSupernet(params, sizes["vocabulary"]).to(opts.torch_device)
    generator = torch.Generator().manual_seed(opts.seed)
    tokens = torch.randint(sizes["vocabulary"], (sizes["windows"] * sizes["bptt"] + 1,), generator=generator)
    x, y = language.windows(tokens, sizes["bptt"])
    choices = decision_choices(sizes["nodes"], len(params.activations))
    tasks, schedule = [], []
    for k in range(sizes["turns"]):
        key = model.add_architecture(tuple(int(torch.randint(c, (1,), generator=generator)) for c in choices))
        tasks.append(Task(f"arch{k}", key, x, y, x[:64], y[:64], model.used_parameter_names(key), sizes["vocabulary"]))
        schedule.append(Turn(task=k, max_steps=sizes["steps"]))
    scenario = Scenario("enas_rnn_perf", tasks, model, schedule=schedule)
    training = TrainingConfig(optimizer="sgd", lr=20.0, grad_clip_norm=0.25, batch_size=sizes["batch"])
    return Workload("recurrent", scenario, copy.deepcopy(model.state_dict())), training


# ----------------------------------------------------------------------------- timing plugins


class _Probe(SupervisedPlugin):
    """Wall-clock marks around epochs and around the ``after_training_exp`` work.

    One instance goes first in the plugin list (``start``) and one last (``end``), so the spans
    cover every plugin's callbacks for those events; no per-iteration callback is added.
    """

    def __init__(self, role: str, log: dict[str, list]) -> None:
        super().__init__()
        self.role = role
        self.log = log

    def before_training_epoch(self, strategy, **kwargs) -> None:
        if self.role == "start":
            synchronize(strategy.device)
            self.log["_epoch_t0"] = [time.perf_counter()]

    def after_training_epoch(self, strategy, **kwargs) -> None:
        if self.role == "end":
            synchronize(strategy.device)
            self.log["epochs"].append(
                (
                    strategy.clock.train_exp_counter,
                    time.perf_counter() - self.log["_epoch_t0"][0],
                    strategy.clock.train_epoch_iterations,
                )
            )

    def after_training_exp(self, strategy, **kwargs) -> None:
        synchronize(strategy.device)
        if self.role == "start":
            self.log["_exp_t0"] = [time.perf_counter()]
        else:
            self.log["after_exp"].append(time.perf_counter() - self.log["_exp_t0"][0])


@dataclass
class HarnessRun:
    model: nn.Module
    train_seconds: float
    steps: int
    epochs: list[tuple[int, float, int]]  # (experience, seconds, iterations)
    after_exp_seconds: list[float]
    regularizer_bytes: int


def harness_train(
    workload: Workload,
    strategy_name: str,
    training: TrainingConfig,
    seed: int,
    params: dict[str, Any] | None = None,
    device: torch.device = torch.device("cpu"),
) -> HarnessRun:
    """Train ``workload`` with a registered strategy through the runner's own
    :func:`~forgetbench.benchmark.run.schedule.train_schedule`; time the train calls."""
    model = workload.fresh_model()
    harness = Harness()
    scenario = workload.scenario
    torch.manual_seed(seed)  # the global RNG draws dropout masks (the transformer): the same on both sides
    strategy = build_strategy(strategy_name, params or {}, scenario, model, training, device, seed, harness)
    log: dict[str, list] = {"epochs": [], "after_exp": []}
    strategy.plugins.insert(0, _Probe("start", log))
    strategy.plugins.append(_Probe("end", log))
    turns = list(zip(scenario.schedule, _benchmark(workload).train_stream))
    seconds, steps = 0.0, 0
    for done in train_schedule(strategy, harness, turns, training):
        seconds += done.train_seconds
        steps += done.steps
    return HarnessRun(
        strategy.model, seconds, steps, log["epochs"], log["after_exp"], regularizer_bytes(strategy, harness)
    )


def _benchmark(workload: Workload):
    """The workload's Avalanche benchmark, built once per workload (experiences are reusable)."""
    if workload.bench is None:
        workload.bench = workload.scenario.avalanche_benchmark()
    return workload.bench


def plain_train(
    workload: Workload, training: TrainingConfig, seed: int, device: torch.device = torch.device("cpu")
) -> tuple[nn.Module, float, int]:
    """The hand-written PyTorch loop on the same work; returns (model, seconds, steps).

    Same initial weights, the same seeded generator drawing one permutation per epoch (as
    :class:`~forgetbench.benchmark.data.loaders.TensorBatchLoader` does), a fresh optimizer per experience (the
    harness resets optimizer state), task-head forward, mean cross-entropy; on an accelerator the
    experience's data copied there first, bf16 autocast and channels-last as ``training`` says.
    """
    model = workload.fresh_model()
    model.train()
    torch.manual_seed(seed)  # as harness_train: the same dropout masks
    if training.channels_last:
        model.to(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(seed)
    criterion = nn.CrossEntropyLoss()
    bs = training.batch_size
    bf16 = training.precision == "bf16"
    seconds, steps = 0.0, 0
    for turn in workload.scenario.schedule:
        task = workload.scenario.tasks[turn.task]
        synchronize(device)
        t0 = time.perf_counter()
        optimizer = torch.optim.SGD(
            model.parameters(),
            lr=training.lr,
            momentum=training.momentum,
            weight_decay=training.weight_decay,
        )
        train_x, train_y = task.train_x.to(device), task.train_y.to(device)
        n = len(train_y)
        budget, taken = turn.max_steps, 0  # a turn with a step budget: that many steps, fresh draws per pass
        for _ in range(budget or training.epochs):
            order = torch.randperm(n, generator=generator).to(device)
            x, y = train_x[order], train_y[order]
            if training.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            for start in range(0, n, bs):
                if budget is not None and taken == budget:
                    break
                optimizer.zero_grad()
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    out = model.forward_single_task(x[start : start + bs], task.model_key)
                    loss = criterion(out, y[start : start + bs])
                loss.backward()
                if training.grad_clip_norm is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), training.grad_clip_norm, foreach=True)
                optimizer.step()
                steps += 1
                taken += 1
            if budget is not None and taken == budget:
                break
        synchronize(device)
        seconds += time.perf_counter() - t0
    return model, seconds, steps


def max_weight_diff(a: nn.Module, b: nn.Module) -> float:
    """Largest absolute difference between corresponding parameters of two models."""
    return max(float((p.detach() - q.detach()).abs().max()) for p, q in zip(a.parameters(), b.parameters()))


def median_of(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def ratio_of(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def model_workload(
    opts: PerfOptions,
    data: TensorData,
    model: str,
    *,
    tasks: int | None = None,
    train_per_task: int | None = None,
    name: str | None = None,
) -> Workload:
    """The Split workload of ``model`` on the perf device (``tasks``/``train_per_task`` override its sizes); for a
    text model, its text scenario (:func:`text_workload`)."""
    if model in TEXT_MODELS:
        return text_workload(opts, name or model, model, tasks=tasks, train_per_task=train_per_task)
    case = opts.case(model)
    return split_workload(
        name or model,
        data,
        tasks=tasks or case["tasks"],
        trunk=case["trunk"],
        widths=case["widths"],
        seed=opts.seed,
        train_per_task=train_per_task or case["train_per_task"],
        device=opts.torch_device,
    )


def seconds_per_step(run: HarnessRun, first_exp: int = 1) -> float:
    """Seconds per training step over the epochs of experiences >= ``first_exp``."""
    spans = [(s, n) for exp, s, n in run.epochs if exp >= first_exp]
    total_steps = sum(n for _, n in spans)
    return sum(s for s, _ in spans) / total_steps if total_steps else float("nan")


def importance_ratio(run: HarnessRun) -> float:
    """Median over experiences but the last of (after_training_exp time) / (that experience's epoch time): after the
    last one no importance pass runs (nothing trains again, see ``importance_needed``)."""
    epoch_by_exp: dict[int, float] = {}
    for exp, s, _ in run.epochs:
        epoch_by_exp.setdefault(exp, s)  # the first epoch of the experience
    ratios = [t / epoch_by_exp[i] for i, t in enumerate(run.after_exp_seconds[:-1]) if epoch_by_exp.get(i)]
    return median_of(ratios)
