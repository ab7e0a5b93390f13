"""``forgetbench perf``: how close the harness is to a plain PyTorch loop, and what regularizers cost.

Pure measurement functions returning JSON-ready dicts. Every comparison runs both sides in one
process, alternating their order from repeat to repeat, and reports medians; ratios are
``harness / plain`` (or ``strategy / naive``), so 1.0 means "no overhead".

Sections (keys of the JSON object):

* ``harness_vs_plain``: the harness's ``naive`` run (strategy built through the registry, with the
  runner's harness plugins) against a hand-written loop doing identical work: same initial
  weights, same data order (the same seeded generator), batch size, optimizer and steps. Both
  must end with the same weights (``weights_equal``), else the comparison is void.
* ``step_overhead``: time per training step of each regularizer (the quadratic ``ewc``, ``si``, ``wpl``, ``mas``,
  ``l2``, and ``lwf``'s distillation) over ``naive`` on the same Split task stream, counted over experiences 1..T-1 (where the penalties are
  active), excluding the once-per-experience importance pass; ``importance_vs_epoch``: the ``after_training_exp``
  work (the importance pass) over one training epoch of the same experience.
* ``fisher_fast_vs_loop``: ``forgetbench.strategies.importance.exact_fisher_diagonal`` against
  ``per_sample_fisher_loop`` on the same samples (speed-up = loop time / fast time).
* ``growth``: per-step time and regularizer memory (``state_bytes``) for T = 5, 10, 20 experiences.
* ``parallel_scaling``: what N worker processes gain over ``local`` on identical runs, and the most
  they could gain. The same K whole runs (``forgetbench.benchmark.run.runner.run`` of ``naive`` on the Split MNIST
  MLP of ``configs/split_mnist.yaml``: scenario, training, evaluation) run one after another in
  this process with one torch thread per core (what ``local`` does), then spread over N worker
  processes with ``cores // N`` threads each (what ``process``/``ray`` with ``--workers N`` do),
  workers started and warmed up beforehand: ``speedup = local seconds / parallel seconds``. Also
  one run alone on one worker (``cores // N`` threads, the other workers idle): if N workers ran each as fast as alone (perfect
  scaling, no start-up), the speed-up would be ``bound = N x local run / lone run``; when
  ``local`` already gains from its extra threads, the bound is below N. It ignores ``--threads``:
  the thread counts are the point.
* ``recurrent_supernet``: the ENAS recurrent supernet's turns (see :func:`recurrent_supernet`).
* ``avalanche_vs_own_loop``: forgetbench's run of Avalanche's GEM, AGEM, DER and ER_ACE against Avalanche's own
  class and loop on the same work (:mod:`forgetbench.benchmark.front.measure.avalanche_loop`).
"""

from __future__ import annotations

import copy
import math
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from avalanche.core import SupervisedPlugin
from torch import nn

from forgetbench.benchmark.core.config import TrainingConfig
from forgetbench.benchmark.data.datasets import TensorData, check_available, load_dataset
from forgetbench.benchmark.data.models import MultiHeadNet, make_trunk
from forgetbench.benchmark.train.harness import Harness
from forgetbench.benchmark.run.runner import regularizer_bytes
from forgetbench.benchmark.run.spec import seed_everything
from forgetbench.benchmark.run.schedule import build_strategy, train_schedule
from forgetbench.benchmark.data.scenarios.base import Scenario, Task, Turn
from forgetbench.benchmark.data.scenarios.split import class_order, select_classes

class DeviceMissingError(RuntimeError):
    """The requested device is not present."""


SECTIONS = ("harness_vs_plain", "step_overhead", "fisher_fast_vs_loop", "growth", "parallel_scaling",
            "recurrent_supernet", "avalanche_vs_own_loop")
NOT_AVAILABLE = "not available"


@dataclass
class PerfOptions:
    """What to measure and at which sizes (``quick`` = tiny sizes for a smoke test)."""

    data_root: Path
    repeats: int = 5
    dataset: str = "mnist"
    only: tuple[str, ...] = SECTIONS
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
            case.update(widths=QUICK_WIDTHS.get(model, []), tasks=2, train_per_task=64 if model not in TEXT_MODELS else 16)
        elif model == "cnn":
            case["train_per_task"] = self.cnn_train_per_task
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
TEXT_MODELS = {"minilm": {"corpus": "bbc_news", "encoder": "minilm", "max_length": 128, "classes_per_task": 2,
                          "trainable_layers": 1, "head": "multi"}}
TEXT_BATCH = 32
GROWTH_RESNET_PER_TASK = 128
AVALANCHE_TRAIN_PER_TASK = 2000  # avalanche_vs_own_loop: 5 tasks x 2,000 samples, MLP 256, one epoch
QUICK_WIDTHS = {"mlp": [32], "cnn": [4], "resnet18": [4]}

# Targets per (device, model, figure): what the issues ask; printed next to each figure.
TARGETS: dict[tuple[str, str], dict[str, str]] = {
    ("cpu", "mlp"): {"harness_vs_plain": "<= 1.15", "ewc": "<= 1.15", "wpl": "<= 1.15", "si": "<= 1.20"},  # issue 36
    ("cpu", "cnn"): {"harness_vs_plain": "<= 1.10"},
    ("cpu", "resnet18"): {"harness_vs_plain": "<= 1.05", "ewc": "<= 1.10", "wpl": "<= 1.10", "si": "<= 1.15",
                          "fisher_vs_epoch": "<= 1.0"},
    ("cuda", "resnet18"): {"harness_vs_plain": "<= 1.03", "ewc": "<= 1.05", "wpl": "<= 1.05", "si": "<= 1.05"},
    ("cpu", "minilm"): {"harness_vs_plain": "<= 1.05", "ewc": "<= 1.10", "wpl": "<= 1.10", "fisher_vs_epoch": "<= 1.0"},
    ("cuda", "minilm"): {"harness_vs_plain": "<= 1.03", "ewc": "<= 1.05", "wpl": "<= 1.05", "si": "<= 1.05"},
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
    trunk: str,
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
        task_list.append(
            Task(f"task{t}", t, train_x, train_y, test_x, test_y, model.used_parameter_names(t), 2)
        )
    scenario = Scenario(name, task_list, model)
    return Workload(name, scenario, copy.deepcopy(model.state_dict()))


def text_workload(opts: PerfOptions, name: str, model: str, *, tasks: int | None = None,
                  train_per_task: int | None = None) -> Workload:
    """The text scenario of ``TEXT_MODELS[model]`` (encoder and corpus from the data root or their packages), each
    task cut to its first ``train_per_task`` training documents; ``tasks`` (at most the scenario's) keeps the
    first ones."""
    from forgetbench.benchmark.data.scenarios import SCENARIOS, ScenarioInputs

    case = opts.case(model)
    entry = SCENARIOS.get("text")
    params = entry.parse_params({**TEXT_MODELS[model], "max_train_per_task": train_per_task or case["train_per_task"],
                                 "max_test_per_task": 16})
    seed_everything(opts.seed)
    scenario = entry.factory(params, ScenarioInputs(opts.seed, opts.data_root))
    if tasks is not None:
        scenario = Scenario(scenario.name, scenario.tasks[:tasks], scenario.model, meta=scenario.meta)
    scenario.model.to(opts.torch_device)
    return Workload(name, scenario, copy.deepcopy(scenario.model.state_dict()))


# The recurrent supernet's perf workload: the sizes of configs/enas_rnn_austen.yaml on random tokens.
RECURRENT = dict(vocabulary=2000, hidden=64, nodes=6, bptt=35, windows=2048, turns=8, steps=7, batch=32)
RECURRENT_QUICK = dict(vocabulary=50, hidden=8, nodes=3, bptt=6, windows=64, turns=3, steps=2, batch=8)
RECURRENT_WPL = {"alpha": 60.0, "fisher": "online", "fisher_batches": 1, "accumulate": "momentum", "momentum": 0.9,
                 "clip_norm": 10.0, "max_curvature": None}


def recurrent_workload(opts: PerfOptions) -> tuple[Workload, TrainingConfig]:
    """ENAS turns on the recurrent supernet: ``turns`` architectures drawn with the seed, ``steps`` steps each
    (SGD lr 20, gradient norm clipped to 0.25, as the search trains)."""
    from forgetbench.benchmark.data import language
    from forgetbench.benchmark.data.scenarios.enas_rnn import RecurrentSearchParams, RecurrentSupernet, decision_choices

    sizes = RECURRENT_QUICK if opts.quick else RECURRENT
    seed_everything(opts.seed)
    params = RecurrentSearchParams(vocabulary=sizes["vocabulary"], nodes=sizes["nodes"], embedding=sizes["hidden"],
                                   hidden=sizes["hidden"], bptt=sizes["bptt"])
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


def recurrent_supernet(opts: PerfOptions) -> dict[str, Any]:
    """One shared step of the recurrent supernet: the harness (naive) against the plain loop on the same turns,
    WPL's (online Fisher) step against naive's, and WPL's Fisher update against the turn's own batches."""
    workload, training = recurrent_workload(opts)
    device = opts.torch_device
    sizes = RECURRENT_QUICK if opts.quick else RECURRENT
    plain_train(workload, training, opts.seed, device)  # warm-up, untimed
    harness_s, plain_s, naive_step, wpl_step, fisher_share, diffs = [], [], [], [], [], []
    steps = steps_plain = 0
    for r in range(opts.repeats):
        order = ["plain", "harness", "wpl"] if r % 2 == 0 else ["wpl", "harness", "plain"]
        models = {}
        for side in order:
            if side == "plain":
                models["plain"], seconds, steps_plain = plain_train(workload, training, opts.seed, device)
                plain_s.append(seconds)
            elif side == "harness":
                run = harness_train(workload, "naive", training, opts.seed, device=device)
                models["harness"], steps = run.model, run.steps
                harness_s.append(run.train_seconds)
                naive_step.append(_per_step(run, first_exp=0))
            else:
                run = harness_train(workload, "wpl", training, opts.seed, RECURRENT_WPL, device)
                wpl_step.append(_per_step(run))
                fisher_share.append(_importance_ratio(run))
        diffs.append(max_weight_diff(models["plain"], models["harness"]))
    h, p = _median(harness_s), _median(plain_s)
    return {
        "model": (f"ENAS cell {sizes['nodes']} nodes, hidden {sizes['hidden']}, vocabulary {sizes['vocabulary']}, "
                  f"bptt {sizes['bptt']}, batch {sizes['batch']}; {sizes['turns']} turns x {sizes['steps']} steps"),
        "harness_seconds": h, "plain_seconds": p, "ratio": _ratio(h, p), "steps": steps, "steps_plain": steps_plain,
        "max_weight_diff": max(diffs), "weights_equal": bool(max(diffs) <= 1e-5 and steps == steps_plain),
        "step_seconds": _median(naive_step), "wpl_step_seconds": _median(wpl_step),
        "wpl_vs_naive": _ratio(_median(wpl_step), _median(naive_step)),
        "fisher_vs_turn": _median(fisher_share),
        "harness_seconds_all": harness_s, "plain_seconds_all": plain_s,
    }


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
                (strategy.clock.train_exp_counter, time.perf_counter() - self.log["_epoch_t0"][0],
                 strategy.clock.train_epoch_iterations)
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
            model.parameters(), lr=training.lr, momentum=training.momentum,
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


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


# ----------------------------------------------------------------------------- sections


def model_workload(opts: PerfOptions, data: TensorData, model: str, *, tasks: int | None = None,
                   train_per_task: int | None = None, name: str | None = None) -> Workload:
    """The Split workload of ``model`` on the perf device (``tasks``/``train_per_task`` override its sizes); for a
    text model, its text scenario (:func:`text_workload`)."""
    if model in TEXT_MODELS:
        return text_workload(opts, name or model, model, tasks=tasks, train_per_task=train_per_task)
    case = opts.case(model)
    return split_workload(
        name or model, data, tasks=tasks or case["tasks"], trunk=case["trunk"], widths=case["widths"],
        seed=opts.seed, train_per_task=train_per_task or case["train_per_task"], device=opts.torch_device,
    )


def harness_vs_plain(opts: PerfOptions, data: TensorData) -> dict[str, Any]:
    """Harness ``naive`` vs the plain loop per model (medians, ratio, weights equal)."""
    device = opts.torch_device
    out: dict[str, Any] = {}
    for name in (opts.model,) if opts.model else ("mlp", "cnn"):
        case = opts.case(name)
        workload = model_workload(opts, data, name)
        harness_s, plain_s, diffs = [], [], []
        steps = steps_plain = 0
        plain_train(workload, opts.training, opts.seed, device)  # warm-up (kernels, allocator), untimed
        for r in range(opts.repeats):
            sides = ["plain", "harness"] if r % 2 == 0 else ["harness", "plain"]
            models = {}
            for side in sides:
                if side == "plain":
                    models["plain"], s, steps_plain = plain_train(workload, opts.training, opts.seed, device)
                    plain_s.append(s)
                else:
                    run = harness_train(workload, "naive", opts.training, opts.seed, device=device)
                    models["harness"], steps = run.model, run.steps
                    harness_s.append(run.train_seconds)
            diffs.append(max_weight_diff(models["plain"], models["harness"]))
        h, p = _median(harness_s), _median(plain_s)
        out[name] = {
            "harness_seconds": h,
            "plain_seconds": p,
            "ratio": _ratio(h, p),
            "steps": steps,
            "steps_plain": steps_plain,
            "max_weight_diff": max(diffs),
            "weights_equal": bool(max(diffs) <= 1e-5 and steps == steps_plain),
            "model": f"{name} {case['widths']}, {case['tasks']} tasks, batch {opts.training.batch_size}",
            "train_per_task": case["train_per_task"],
            "target": target(opts.device, name, "harness_vs_plain"),
            "harness_seconds_all": harness_s,
            "plain_seconds_all": plain_s,
        }
    return out


def _per_step(run: HarnessRun, first_exp: int = 1) -> float:
    """Seconds per training step over the epochs of experiences >= ``first_exp``."""
    spans = [(s, n) for exp, s, n in run.epochs if exp >= first_exp]
    total_steps = sum(n for _, n in spans)
    return sum(s for s, _ in spans) / total_steps if total_steps else float("nan")


def _importance_ratio(run: HarnessRun) -> float:
    """Median over experiences but the last of (after_training_exp time) / (that experience's epoch time): after the
    last one no importance pass runs (nothing trains again, see ``importance_needed``)."""
    epoch_by_exp: dict[int, float] = {}
    for exp, s, _ in run.epochs:
        epoch_by_exp.setdefault(exp, s)  # the first epoch of the experience
    ratios = [
        t / epoch_by_exp[i] for i, t in enumerate(run.after_exp_seconds[:-1]) if epoch_by_exp.get(i)
    ]
    return _median(ratios)


def _strategy_cases() -> dict[str, tuple[str, dict]]:
    from forgetbench.strategies import STRATEGIES

    cases: dict[str, tuple[str, dict]] = {"naive": ("naive", {}), "ewc": ("ewc", {}), "si": ("si", {})}
    for name in ("wpl", "mas", "l2", "lwf"):
        if name in STRATEGIES:
            cases[name] = (name, {})
    return cases


def step_overhead(opts: PerfOptions, data: TensorData) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per-step time of each strategy over ``naive`` and importance-pass time over one epoch."""
    model = opts.model or "mlp"
    workload = model_workload(opts, data, model)
    cases = _strategy_cases()
    per_step: dict[str, list[float]] = {k: [] for k in cases}
    importance: dict[str, list[float]] = {k: [] for k in cases}
    labels = list(cases)
    harness_train(workload, "naive", opts.training, opts.seed, device=opts.torch_device)  # warm-up, untimed
    for r in range(opts.repeats):
        rotation = labels[r % len(labels):] + labels[: r % len(labels)]  # rotate who runs first
        for label in rotation:
            name, params = cases[label]
            run = harness_train(workload, name, opts.training, opts.seed, params, opts.torch_device)
            per_step[label].append(_per_step(run))
            importance[label].append(_importance_ratio(run))
    naive = _median(per_step["naive"])
    overhead: dict[str, Any] = {"naive_step_seconds": naive, "model": model,
                                "naive_step_seconds_all": per_step["naive"]}
    for label in labels:
        if label == "naive":
            continue
        overhead[label] = {
            "step_seconds": _median(per_step[label]),
            "ratio": _ratio(_median(per_step[label]), naive),
            "target": target(opts.device, model, label),
            "step_seconds_all": per_step[label],
        }
    if "wpl" not in cases:
        overhead["wpl"] = NOT_AVAILABLE
    imp: dict[str, Any] = {
        label: _median(importance[label]) for label in labels if label != "naive"
    }
    if "wpl" not in cases:
        imp["wpl"] = NOT_AVAILABLE
    return overhead, imp


def fisher_fast_vs_loop(opts: PerfOptions, data: TensorData) -> dict[str, Any] | str:
    """Exact diagonal Fisher, fast vs per-sample loop (loop / fast), and fast vs one training epoch
    of the plain loop on the same samples (``fisher_vs_epoch``: the pass WPL and EWC-exact add per
    experience, against what one epoch of that experience costs)."""
    try:
        from forgetbench.strategies.importance import exact_fisher_diagonal, per_sample_fisher_loop
    except ImportError:
        return NOT_AVAILABLE
    model_name = opts.model or "mlp"
    samples = opts.fisher_samples if model_name == "mlp" or opts.quick else opts.case(model_name)["train_per_task"]
    workload = model_workload(opts, data, model_name, tasks=1, train_per_task=samples, name="fisher")
    device = opts.torch_device
    model = workload.fresh_model()
    task = workload.scenario.tasks[0]
    n = min(samples, len(task.train_y))
    x, y = task.train_x[:n].to(device), task.train_y[:n].to(device)
    batch = opts.training.batch_size
    times: dict[str, list[float]] = {"fast": [], "loop": [], "epoch": []}
    fast = loop = None
    sides = ["fast", "loop", "epoch"]
    for r in range(opts.repeats):
        for side in sides[r % 3:] + sides[: r % 3]:
            synchronize(device)
            t0 = time.perf_counter()
            if side == "fast":
                fast = exact_fisher_diagonal(model, x, y, task.model_key, batch)
            elif side == "loop":
                loop = per_sample_fisher_loop(model, x, y, task.model_key)
            else:
                _, seconds, _ = plain_train(workload, opts.training, opts.seed, device)
            synchronize(device)
            times[side].append(seconds if side == "epoch" else time.perf_counter() - t0)
    # relative to each tensor's largest entry, floored at 1e-8 of the largest overall: a tensor whose Fisher is 0 in
    # exact arithmetic (attention's key bias: softmax ignores a shift) holds only rounding noise on both sides
    floor = 1e-8 * max(float(v.abs().max()) for v in loop.values())
    max_rel = max(
        float((fast[k] - loop[k]).abs().max() / loop[k].abs().max().clamp_min(max(floor, 1e-30))) for k in loop
    )
    f, lo, ep = (_median(times[k]) for k in sides)
    return {
        "model": model_name,
        "samples": n,
        "fast_seconds": f,
        "loop_seconds": lo,
        "epoch_seconds": ep,
        "speedup": _ratio(lo, f),
        "fisher_vs_epoch": _ratio(f, ep),
        "fisher_vs_epoch_target": target(opts.device, model_name, "fisher_vs_epoch"),
        "max_relative_diff": max_rel,
        "equal": bool(max_rel < 1e-3),
    }


def growth(opts: PerfOptions, data: TensorData) -> dict[str, Any]:
    """Per-step time and regularizer bytes for T experiences, per strategy (medians)."""
    from forgetbench.strategies import STRATEGIES

    if opts.model in TEXT_MODELS:
        return f"{NOT_AVAILABLE}: the text corpus has too few classes for T = {opts.growth_tasks}"

    cases = {
        "naive": ("naive", {}),
        "ewc_separate": ("ewc", {"mode": "separate"}),
        "ewc_online": ("ewc", {"mode": "online", "decay_factor": 1.0}),
        "si": ("si", {}),
    }
    if "wpl" in STRATEGIES:
        cases["wpl"] = ("wpl", {})
    out: dict[str, Any] = {"tasks": list(opts.growth_tasks), "train_per_task": opts.growth_train_per_task}
    results: dict[str, dict[int, dict[str, float]]] = {label: {} for label in cases}
    model = opts.model or "mlp"
    out["model"] = model
    # one ResNet-18 step costs ~1.7 s on one CPU thread: one step per task keeps T = 20 affordable
    per_task = GROWTH_RESNET_PER_TASK if model == "resnet18" and not opts.quick else opts.growth_train_per_task
    out["train_per_task"] = per_task
    for T in opts.growth_tasks:
        workload = model_workload(opts, data, model, tasks=T, train_per_task=per_task, name=f"growth{T}")
        trunk, heads = _parameter_bytes(workload.scenario.model)
        out.setdefault("trunk_bytes", trunk)
        out.setdefault("head_bytes", {})[str(T)] = heads
        times: dict[str, list[float]] = {label: [] for label in cases}
        memory: dict[str, int] = {}
        labels = list(cases)
        for r in range(opts.repeats):
            for label in labels[r % len(labels):] + labels[: r % len(labels)]:
                name, params = cases[label]
                run = harness_train(workload, name, opts.training, opts.seed, params, opts.torch_device)
                times[label].append(_per_step(run))
                memory[label] = run.regularizer_bytes
        for label in cases:
            results[label][T] = {"step_seconds": _median(times[label]), "regularizer_bytes": memory[label]}
    first, last = opts.growth_tasks[0], opts.growth_tasks[-1]
    for label, by_t in results.items():
        for T, v in by_t.items():  # naive runs interleaved at the same T: cancels machine-load drift
            v["vs_naive"] = _ratio(v["step_seconds"], results["naive"][T]["step_seconds"])
        out[label] = {
            "per_T": {str(T): v for T, v in by_t.items()},
            "step_ratio_last_vs_first": _ratio(by_t[last]["step_seconds"], by_t[first]["step_seconds"]),
            "vs_naive_ratio_last_vs_first": _ratio(by_t[last]["vs_naive"], by_t[first]["vs_naive"]),
            "bytes_ratio_last_vs_first": _ratio(by_t[last]["regularizer_bytes"], by_t[first]["regularizer_bytes"])
            if by_t[first]["regularizer_bytes"] else None,
        }
    if "wpl" not in cases:
        out["wpl"] = NOT_AVAILABLE
    return out


def _parameter_bytes(model: nn.Module) -> tuple[int, int]:
    """(bytes of the trunk's parameters, bytes of all heads' parameters) of a multi-head model."""
    trunk = sum(p.nbytes for name, p in model.named_parameters() if name.startswith("trunk."))
    total = sum(p.nbytes for p in model.parameters())
    return trunk, total - trunk


def scaling_spec(opts: PerfOptions, seed: int) -> Any:
    """One run of configs/split_mnist.yaml's suite (``naive``; tiny with ``quick``) as a RunSpec."""
    from forgetbench.benchmark.core.config import ComponentSpec
    from forgetbench.benchmark.run.spec import RunSpec

    params: dict[str, Any] = dict(dataset=opts.dataset, tasks=5, classes_per_task=2, trunk="mlp", widths=[256, 256])
    if opts.quick:
        params.update(tasks=2, widths=[32], max_train_per_task=64)
    scenario = ComponentSpec(name="split", params=params)
    return RunSpec("perf_scaling", scenario, ComponentSpec(name="naive"), seed, opts.training, "cpu")


def _scaling_worker_init(threads: int) -> None:
    torch.set_num_threads(threads)


def _scaling_job(spec: Any, data_root: Path) -> float:
    """One whole run, as the suite's executors do it (scenario, training, evaluation); its wall time."""
    from forgetbench.benchmark.run.runner import run

    t0 = time.perf_counter()
    record = run(spec, data_root)
    if record.status not in ("ok", "collapsed"):  # collapsed: --quick sizes learn nothing; the time counts
        raise RuntimeError(f"parallel_scaling: the run failed: {record.error}")
    return time.perf_counter() - t0


def parallel_scaling(opts: PerfOptions) -> dict[str, Any]:
    """K identical runs: in this process on every core vs over N worker processes; one run alone."""
    from concurrent.futures import ProcessPoolExecutor

    from forgetbench.benchmark.run.executors import available_cores, threads_per_worker, worker_context

    cores = available_cores()
    workers = opts.scaling_workers
    worker_threads = threads_per_worker(workers, cores)
    jobs = workers * opts.scaling_jobs_per_worker
    specs = [scaling_spec(opts, opts.seed)] * jobs
    roots = [opts.data_root] * jobs
    times: dict[str, list[float]] = {"local": [], "parallel": [], "local_job": [], "worker_job": [], "lone_job": []}
    previous_threads = torch.get_num_threads()
    with ProcessPoolExecutor(
        workers, mp_context=worker_context(), initializer=_scaling_worker_init, initargs=(worker_threads,)
    ) as pool:
        try:
            # Warm-up, untimed: imports and the dataset cache, here and in every worker.
            torch.set_num_threads(cores)
            _scaling_job(specs[0], opts.data_root)
            list(pool.map(_scaling_job, specs[:workers], roots[:workers]))
            for r in range(opts.repeats):
                for side in (["local", "parallel", "lone"] if r % 2 == 0 else ["lone", "parallel", "local"]):
                    t0 = time.perf_counter()
                    if side == "local":
                        times["local_job"].extend(_scaling_job(spec, root) for spec, root in zip(specs, roots))
                        times["local"].append(time.perf_counter() - t0)
                    elif side == "parallel":
                        times["worker_job"].extend(pool.map(_scaling_job, specs, roots))
                        times["parallel"].append(time.perf_counter() - t0)
                    else:  # one worker busy, the others idle
                        times["lone_job"].append(pool.submit(_scaling_job, specs[0], opts.data_root).result())
        finally:
            torch.set_num_threads(previous_threads)
    median = {key: _median(values) for key, values in times.items()}
    scenario = specs[0].scenario.params
    return {
        "cores": cores,
        "workers": workers,
        "jobs": jobs,
        "local_threads": cores,
        "worker_threads": worker_threads,
        "local_seconds": median["local"],
        "parallel_seconds": median["parallel"],
        "speedup": _ratio(median["local"], median["parallel"]),
        "local_job_seconds": median["local_job"],
        "worker_job_seconds": median["worker_job"],
        "lone_job_seconds": median["lone_job"],
        "bound": workers * _ratio(median["local_job"], median["lone_job"]),
        "job": f"naive run, split {scenario['dataset']} mlp {scenario['widths']}, {scenario['tasks']} tasks",
        "local_seconds_all": times["local"],
        "parallel_seconds_all": times["parallel"],
    }


# ----------------------------------------------------------------------------- entry point


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()})"


def conditions(opts: PerfOptions) -> dict[str, Any]:
    """What the figures depend on: machine, threads, load, versions, sizes."""
    import avalanche

    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    return {
        "torch": torch.__version__,
        "avalanche": avalanche.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1m": load[0],
        "repeats": opts.repeats,
        "dataset": opts.dataset,
        "quick": opts.quick,
        "device": _device_name(opts.torch_device),
        "model": opts.model or "mlp (and cnn in harness_vs_plain)",
        "precision": opts.training.precision,
        "channels_last": opts.training.channels_last,
        "batch_size": opts.training.batch_size,
        "optimizer": f"{opts.training.optimizer} lr={opts.training.lr} momentum={opts.training.momentum}",
        "epochs_per_experience": opts.training.epochs,
    }


def run_perf(opts: PerfOptions, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the selected sections; raises DataMissingError when the dataset is not under the root."""
    if opts.device == "cuda" and not torch.cuda.is_available():
        raise DeviceMissingError("--device cuda: torch sees no CUDA device on this machine (torch.cuda.is_available() is False)")
    check_available(opts.dataset, opts.data_root, download=False)
    data = load_dataset(opts.dataset, opts.data_root)
    result: dict[str, Any] = {"conditions": conditions(opts)}
    note = progress or (lambda message: None)
    if "harness_vs_plain" in opts.only:
        note("harness_vs_plain")
        result["harness_vs_plain"] = harness_vs_plain(opts, data)
    if "step_overhead" in opts.only:
        note("step_overhead")
        result["step_overhead"], result["importance_vs_epoch"] = step_overhead(opts, data)
    if "fisher_fast_vs_loop" in opts.only:
        note("fisher_fast_vs_loop")
        result["fisher_fast_vs_loop"] = fisher_fast_vs_loop(opts, data)
    if "growth" in opts.only:
        note("growth")
        result["growth"] = growth(opts, data)
    if "parallel_scaling" in opts.only:
        note("parallel_scaling")
        result["parallel_scaling"] = parallel_scaling(opts)
    if "recurrent_supernet" in opts.only:
        note("recurrent_supernet")
        result["recurrent_supernet"] = recurrent_supernet(opts)
    if "avalanche_vs_own_loop" in opts.only:
        from forgetbench.benchmark.front.measure.avalanche_loop import avalanche_vs_own_loop

        note("avalanche_vs_own_loop")
        result["avalanche_vs_own_loop"] = avalanche_vs_own_loop(
            opts.data_root, opts.dataset, opts.training, opts.repeats, opts.seed,
            64 if opts.quick else AVALANCHE_TRAIN_PER_TASK, opts.torch_device)
    result["conditions"]["load_average_1m_after"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return result


def format_table(result: dict[str, Any]) -> str:
    """The plain-text report of :func:`run_perf`'s result."""
    lines = []
    c = result["conditions"]
    lines.append(
        f"forgetbench perf: {c['dataset']}, {c['repeats']} repeats (medians), torch {c['torch']}, "
        f"{c['torch_threads']} threads on {c['cpus']} CPUs, load {c['load_average_1m']:.2f}"
    )
    lines.append(f"device {c['device']}, model {c['model']}, precision {c['precision']}"
                 f"{', channels_last' if c['channels_last'] else ''}, batch {c['batch_size']}")

    def goal(text: str) -> str:
        return f"target {text}" if text else ""

    def row(label: str, value: str, target: str = "") -> None:
        lines.append(f"  {label:<34} {value:>28}  {target}")

    if "harness_vs_plain" in result:
        lines.append("harness_vs_plain (harness naive / plain PyTorch loop)")
        for name, r in result["harness_vs_plain"].items():
            row(
                f"{name}: {r['harness_seconds']:.3f}s / {r['plain_seconds']:.3f}s",
                f"ratio {r['ratio']:.3f}, weights {'equal' if r['weights_equal'] else 'DIFFER'}",
                goal(r["target"]),
            )
    if "step_overhead" in result:
        lines.append("step_overhead (per-step time / naive, experiences 2..T)")
        so = result["step_overhead"]
        row("naive", f"{so['naive_step_seconds'] * 1e3:.3f} ms/step")
        for label, r in so.items():
            if label in ("naive_step_seconds", "model", "naive_step_seconds_all"):
                continue
            value = r if isinstance(r, str) else f"{r['step_seconds'] * 1e3:.3f} ms, ratio {r['ratio']:.3f}"
            row(label, value, "" if isinstance(r, str) else goal(r["target"]))
        lines.append("importance_vs_epoch (after-experience work / one epoch)")
        for label, r in result["importance_vs_epoch"].items():
            row(label, r if isinstance(r, str) else f"{r:.3f}", "target <= 1.0" if label in ("ewc", "wpl") else "")
    if "fisher_fast_vs_loop" in result:
        r = result["fisher_fast_vs_loop"]
        lines.append("fisher_fast_vs_loop (loop time / fast time)")
        if isinstance(r, str):
            row("exact Fisher", r)
        else:
            row(
                f"{r['samples']} samples",
                f"{r['speedup']:.1f}x ({'equal' if r['equal'] else 'DIFFER'})",
                "target >= 10" if r["model"] == "mlp" else "",
            )
            row(f"fast pass / one epoch ({r['fast_seconds']:.3f}s / {r['epoch_seconds']:.3f}s)",
                f"{r['fisher_vs_epoch']:.3f}", goal(r["fisher_vs_epoch_target"]))
    if isinstance(result.get("growth"), str):
        lines.append("growth")
        row("growth", result["growth"])
    elif "growth" in result:
        g = result["growth"]
        lines.append(f"growth (T = {g['tasks']}; ms/step and regularizer bytes; T={g['tasks'][-1]} / T={g['tasks'][0]})")
        for label, r in g.items():
            if label in ("tasks", "train_per_task", "model", "trunk_bytes", "head_bytes"):
                continue
            if isinstance(r, str):
                row(label, r)
                continue
            cells = ", ".join(
                f"T={T}: {v['step_seconds'] * 1e3:.2f}ms ({v['vs_naive']:.2f}x naive) {v['regularizer_bytes']}B" for T, v in r["per_T"].items()
            )
            br = r["bytes_ratio_last_vs_first"]
            value = (f"time x{r['step_ratio_last_vs_first']:.2f} "
                     f"(vs naive x{r['vs_naive_ratio_last_vs_first']:.2f})")
            row(label, f"{value}, bytes x{br:.2f}" if br else value)
            lines.append(f"      {cells}")
        last = str(g["tasks"][-1])
        lines.append(f"      (2 x (trunk + heads) at T={last}: 2 x ({g['trunk_bytes']} + {g['head_bytes'][last]}) = "
                     f"{2 * (g['trunk_bytes'] + g['head_bytes'][last])}B)")
    if "parallel_scaling" in result:
        r = result["parallel_scaling"]
        lines.append(f"parallel_scaling ({r['jobs']} x {r['job']}; local / parallel)")
        row(f"local, {r['local_threads']} threads: {r['local_seconds']:.2f}s", f"{r['local_job_seconds']:.3f} s/run")
        row(
            f"{r['workers']} workers x {r['worker_threads']} thread(s): {r['parallel_seconds']:.2f}s",
            f"{r['worker_job_seconds']:.3f} s/run",
        )
        row(f"one run alone, {r['worker_threads']} thread(s)", f"{r['lone_job_seconds']:.3f} s/run")
        row("speedup", f"{r['speedup']:.2f}x")
        row("bound (perfect scaling)", f"{r['bound']:.2f}x", "(N x local run / lone run)")
    if "recurrent_supernet" in result:
        r = result["recurrent_supernet"]
        lines.append(f"recurrent_supernet ({r['model']})")
        row(f"harness naive / plain: {r['harness_seconds']:.3f}s / {r['plain_seconds']:.3f}s",
            f"ratio {r['ratio']:.3f}, weights {'equal' if r['weights_equal'] else 'DIFFER'}", "target <= 1.10")
        row(f"wpl (online) / naive step ({r['wpl_step_seconds'] * 1e3:.1f} / {r['step_seconds'] * 1e3:.1f} ms)",
            f"{r['wpl_vs_naive']:.3f}", "target <= 1.15")
        row("Fisher update / the turn's batches", f"{r['fisher_vs_turn']:.3f}", "target <= 1.0")
    if "avalanche_vs_own_loop" in result:
        lines.append("avalanche_vs_own_loop (harness's avalanche.<Method> / Avalanche's own class and loop, same order)")
        for name, r in result["avalanche_vs_own_loop"].items():
            row(f"{name} ({r['setting']}): {r['harness_seconds']:.3f}s / {r['own_loop_seconds']:.3f}s",
                f"ratio {r['ratio']:.3f}, weights {'equal' if r['weights_equal'] else 'DIFFER'}", "lower is better")
    return "\n".join(lines)
