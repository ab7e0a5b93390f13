"""Each baseline really does what its docstring says (tests fail if its penalty/data/copies were wrong)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from avalanche.core import SupervisedPlugin
from avalanche.models.utils import avalanche_forward, avalanche_model_adaptation

from forgetbench.benchmark.core.config import TrainingConfig
from forgetbench.benchmark.data.loaders import dataset_tensors
from forgetbench.benchmark.data.scenarios import SCENARIOS, ScenarioInputs
from forgetbench.strategies import STRATEGIES, StrategyContext
from forgetbench.strategies.joint import JointPlugin
from forgetbench.strategies.l2 import L2Plugin
from forgetbench.strategies.lwf import lwf_state_plugin
from forgetbench.strategies.mas import fast_mas_plugin
from forgetbench.strategies.replay import MixedTensorLoader, fast_replay_plugin
from forgetbench.strategies.standalone import StandaloneModels

# the classes that extend Avalanche's plugins are built (and Avalanche imported) when first asked for
LwFStatePlugin, FastMASPlugin, FastReplayPlugin = lwf_state_plugin(), fast_mas_plugin(), fast_replay_plugin()


def scenario_of(name: str, seed: int = 0, **params):
    base = {
        "split": {"dataset": "digits", "tasks": 3, "classes_per_task": 2, "widths": [16]},
        "two_model": {
            "dataset": "digits",
            "depth_a": 2,
            "depth_b": 3,
            "width": 16,
            "shared": 1,
            "a_steps": 20,
            "b_steps": 20,
        },
    }[name] | params
    entry = SCENARIOS.get(name)
    torch.manual_seed(seed)
    return entry.factory(entry.parse_params(base), ScenarioInputs(seed, None))


class Recorder(SupervisedPlugin):
    """Keeps every training mini-batch's task labels and the weights after each experience."""

    def __init__(self):
        super().__init__()
        self.batches: list[list[torch.Tensor]] = []
        self.weights: list[dict[str, torch.Tensor]] = []

    def before_training_exp(self, strategy, **kwargs):
        self.batches.append([])

    def after_training_iteration(self, strategy, **kwargs):
        self.batches[-1].append(strategy.mb_task_id.clone())

    def after_training_exp(self, strategy, **kwargs):
        self.weights.append({k: v.detach().clone() for k, v in strategy.model.state_dict().items()})


def train(name: str, scenario, params: dict | None = None, epochs: int = 1):
    recorder = Recorder()
    training = TrainingConfig(lr=0.05, momentum=0.9, batch_size=32, epochs=epochs)
    ctx = StrategyContext(
        scenario.model, training, torch.device("cpu"), scenario.turn_used_params, 0, harness_plugins=[recorder]
    )
    entry = STRATEGIES.get(name)
    strategy = entry.factory(ctx, entry.parse_params(params or {}))
    for experience in scenario.avalanche_benchmark().train_stream:
        strategy.train(experience, eval_streams=[], reset_optimizer_state=True)
    return strategy, recorder


def plugin_of(strategy, kind):
    return next(p for p in strategy.plugins if isinstance(p, kind))


# --------------------------------------------------------------------------------------- mas
def test_mas_importance_matches_avalanche_and_penalty_matches_formula():
    scenario = scenario_of("split", tasks=2)
    strategy, _ = train("mas", scenario, {"lambda_reg": 2.0, "alpha": 0.5})
    plugin = plugin_of(strategy, FastMASPlugin)
    view = strategy_at(strategy, scenario.avalanche_benchmark().train_stream[1])
    assert plugin.skipped == [1]  # the run skipped the pass after its last experience; computed here on purpose
    plugin.used_params = None  # schedule unknown: the pass runs
    fast = plugin._get_importance(view)
    # reference: a plain loop over mini-batches of 32 of task 1's data, the formula in strategies/mas.py
    model = strategy.model
    x = scenario.tasks[1].train_x
    reference = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    batches = range(0, len(x), 32)
    for start in batches:
        model.zero_grad()
        model.forward_single_task(x[start : start + 32], 1).pow(2).sum(1).mean().backward()
        for n, p in model.named_parameters():
            if p.grad is not None:
                reference[n] += p.grad.abs() / len(batches)
    for name in fast:
        torch.testing.assert_close(fast[name].data, reference[name], rtol=1e-5, atol=1e-7)
    assert fast["trunk.1.weight"].data.abs().sum() > 0 and fast["heads.0.weight"].data.abs().sum() == 0
    # penalty = lambda * sum Omega (theta - theta*)^2
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)

    def expected(cap):  # the default cap clamps Omega at max_curvature / (2 lambda) for the penalty only
        return 2.0 * sum(
            float((plugin.importance[n].data.clamp(max=cap) * 0.01**2).sum()) for n, _ in model.named_parameters()
        )

    for cap in (plugin.max_curvature, None):  # None: Avalanche's own before_backward
        plugin.max_curvature = cap
        fake = SimpleNamespace(model=model, loss=torch.ones(()), clock=SimpleNamespace(train_exp_counter=1))
        plugin.before_training_exp(fake)
        plugin.before_backward(fake)  # (Avalanche refuses a zero loss)
        want = expected(cap / (2 * 2.0) if cap else float("inf"))
        assert float(fake.loss.detach()) - 1.0 == pytest.approx(want, rel=1e-4) and want > 0
    assert plugin.state_bytes() == 2 * sum(p.numel() * 4 for p in model.parameters())


def strategy_at(strategy, experience):
    """The strategy seen as if it were at ``experience`` (for the importance pass)."""
    return SimpleNamespace(
        model=strategy.model,
        experience=experience,
        device=strategy.device,
        train_mb_size=strategy.train_mb_size,
        optimizer=strategy.optimizer,
    )


# --------------------------------------------------------------------------------------- lwf
def test_lwf_penalises_drift_of_earlier_heads_only():
    scenario = scenario_of("split", tasks=2)
    recorder = Recorder()
    ctx = StrategyContext(
        scenario.model,
        TrainingConfig(lr=0.05, batch_size=32),
        torch.device("cpu"),
        scenario.turn_used_params,
        0,
        harness_plugins=[recorder],
    )
    strategy = STRATEGIES.get("lwf").factory(ctx, STRATEGIES.get("lwf").parse_params({"alpha": 1.0}))
    strategy.train(scenario.avalanche_benchmark().train_stream[0], eval_streams=[])
    lwf = plugin_of(strategy, LwFStatePlugin).lwf
    model = strategy.model
    x = scenario.tasks[1].train_x[:64]
    assert float(lwf(x, None, model).detach()) == pytest.approx(0.0, abs=1e-7)  # the copy equals the model
    with torch.no_grad():
        model.heads[1].weight.add_(1.0)  # the current head is not distilled
    assert float(lwf(x, None, model).detach()) == pytest.approx(0.0, abs=1e-7)
    with torch.no_grad():
        model.heads[0].weight.add_(torch.randn_like(model.heads[0].weight))
    assert float(lwf(x, None, model).detach()) > 1e-3
    assert plugin_of(strategy, LwFStatePlugin).state_bytes() > 0


@pytest.mark.parametrize("setting", ["task-IL", "class-IL"])
def test_forward_all_tasks_runs_the_trunk_once_and_gives_each_tasks_logits(setting):
    """model(x, None), LwF's call: one trunk pass (Avalanche's default ran one per task), the logits
    forward_single_task gives for every task seen in training, bit for bit."""
    scenario = scenario_of("split", tasks=3, setting=setting)
    model = scenario.model
    for experience in scenario.avalanche_benchmark().train_stream:
        avalanche_model_adaptation(model, experience)
    calls = []
    model.trunk.register_forward_hook(lambda *args: calls.append(1))
    x = scenario.tasks[0].train_x[:20]
    everything = model(x, None)
    assert len(calls) == 1 and sorted(everything) == [0, 1, 2]
    for task, logits in everything.items():
        assert torch.equal(logits, model.forward_single_task(x, task))


def test_lwf_trains_as_with_avalanches_per_task_forwards(monkeypatch):
    """A whole LwF run with the one-trunk-pass forward_all_tasks ends where Avalanche's per-task passes end (the same
    maths on a deterministic trunk; only the order of float sums in the trunk's gradient differs)."""
    from avalanche.models.dynamic_modules import MultiTaskModule

    from forgetbench.benchmark.data.models import MultiHeadNet

    torch.manual_seed(0)
    fast = train("lwf", scenario_of("split"), {"alpha": 2.0})[1].weights
    monkeypatch.setattr(MultiHeadNet, "forward_all_tasks", MultiTaskModule.forward_all_tasks)
    torch.manual_seed(0)
    reference = train("lwf", scenario_of("split"), {"alpha": 2.0})[1].weights
    for got, expected in zip(fast, reference):
        for key in expected:
            torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-6)
    naive = train("naive", scenario_of("split"))[1].weights
    assert any(not torch.allclose(fast[2][k], naive[2][k], atol=1e-4) for k in naive[2])  # the distillation acts


def test_lwf_alpha_list_gives_each_experience_its_own_weight():
    """alpha [0, 0, 0] is naive exactly; [0, 0, 5] changes only what the third experience learns."""
    torch.manual_seed(0)
    naive_weights = train("naive", scenario_of("split"))[1].weights
    torch.manual_seed(0)
    off = train("lwf", scenario_of("split"), {"alpha": [0.0, 0.0, 0.0]})[1].weights
    torch.manual_seed(0)
    late = train("lwf", scenario_of("split"), {"alpha": [0.0, 0.0, 5.0]})[1].weights
    for before, after in zip(naive_weights, off):
        assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(torch.equal(naive_weights[1][k], late[1][k]) for k in late[1])
    assert any(not torch.equal(naive_weights[2][k], late[2][k]) for k in late[2])
    with pytest.raises(ValueError, match="one weight per experience"):
        train("lwf", scenario_of("split"), {"alpha": [1.0, 1.0]})


@pytest.mark.effect
def test_lwf_seen_units_puts_the_new_classes_in_the_students_softmax():
    """units=seen (van de Ven & Tolias's class-IL LwF): one KL(q_old || softmax over old + new classes
    restricted to the old ones) over *every* earlier class together, by hand, on the third experience;
    raising a new class's logit raises it, while Avalanche's per-task ``previous`` ignores it."""
    scenario = scenario_of("split", tasks=3, setting="class-IL")
    ctx = StrategyContext(
        scenario.model, TrainingConfig(lr=0.05, batch_size=32), torch.device("cpu"), scenario.turn_used_params, 0
    )
    entry = STRATEGIES.get("lwf")
    strategy = entry.factory(ctx, entry.parse_params({"alpha": 1.0, "units": "seen"}))
    stream = scenario.avalanche_benchmark().train_stream
    strategy.train(stream[0], eval_streams=[])
    strategy.train(stream[1], eval_streams=[])
    plugin = plugin_of(strategy, LwFStatePlugin)
    model = strategy.model.train()
    avalanche_model_adaptation(model, stream[2])  # as Avalanche does before the plugins' before_training_exp
    plugin.before_training_exp(SimpleNamespace(experience=stream[2]))
    lwf = plugin.lwf
    assert lwf.student_units == [0, 1, 2, 3, 4, 5] and lwf.prev_classes_by_task == {0: {0, 1}, 1: {2, 3}}
    x = scenario.tasks[2].train_x[:64]
    labels = torch.full((len(x),), 2, dtype=torch.long)
    lwf.task_labels = labels
    with torch.no_grad():
        model.heads[0].bias[4] += 3.0  # the student now favours new class 4 on every input
        student = avalanche_forward(model, x, labels)
        teacher = avalanche_forward(lwf.prev_model, x, labels)
    T = 2.0
    log_p = torch.log_softmax(student[:, [0, 1, 2, 3, 4, 5]] / T, dim=1)[:, :4]
    q = torch.softmax(teacher[:, [0, 1, 2, 3]] / T, dim=1)
    by_hand = float((q * (q.log() - log_p)).sum(1).mean())
    assert float(lwf(x, student, model)) == pytest.approx(by_hand, rel=1e-5)
    per_task = sum(  # what distilling each earlier task's classes apart would give instead
        float((qk * (qk.log() - torch.log_softmax(student[:, units + [4, 5]] / T, dim=1)[:, :2])).sum(1).mean())
        for units in ([0, 1], [2, 3])
        for qk in [torch.softmax(teacher[:, units] / T, dim=1)]
    )
    assert abs(per_task - by_hand) > 0.05
    previous = entry.factory(ctx, entry.parse_params({"alpha": 1.0}))
    prev_lwf = plugin_of(previous, LwFStatePlugin).lwf
    prev_lwf.prev_model, prev_lwf.prev_classes_by_task = lwf.prev_model, lwf.prev_classes_by_task
    assert float(prev_lwf(x, None, model).detach()) < 1e-6  # old-class logits untouched: Avalanche's KD is 0
    assert by_hand > 0.05


def _step_gradients(model, strategy, plugin_step, x, task):
    """.grad after one backward of the data loss on (x, task) with ``plugin_step(strategy)`` run before it."""
    model.zero_grad()
    strategy.loss = model.forward_single_task(x, task).pow(2).mean()  # any differentiable data loss
    plugin_step(strategy)
    strategy.loss.backward()
    return {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}


def test_mas_step_gradient_is_avalanches_penalty_differentiated_and_unused_heads_are_left_alone():
    """before_backward adds 2 lambda Omega (theta - theta*) into .grad when the backward pass ends: the gradient
    Avalanche's own MASPlugin.before_backward gives by autograd (no cap), and data loss + penalty() with the cap; the
    heads task 2 does not use sit at their anchor and get no gradient (Avalanche gives them an exact 0)."""
    from avalanche.training.plugins import MASPlugin

    scenario = scenario_of("split", tasks=3)
    strategy, _ = train("mas", scenario, {"lambda_reg": 2.0, "alpha": 0.5})
    plugin = plugin_of(strategy, FastMASPlugin)
    model = strategy.model
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith("heads.0") and not name.startswith("heads.1"):
                p.add_(0.05 * torch.randn_like(p))  # trunk and head 2 moved away from their anchors
    x = scenario.tasks[2].train_x[:16]
    stream = scenario.avalanche_benchmark().train_stream
    fake = SimpleNamespace(
        model=model,
        clock=SimpleNamespace(train_exp_counter=2),
        experience=stream[2],
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
    )
    for cap in (None, plugin.max_curvature):
        plugin.max_curvature = cap
        plugin.before_training_exp(fake)
        got = _step_gradients(model, fake, plugin.before_backward, x, 2)
        assert got["heads.0.weight"] is None and got["heads.1.weight"] is None  # left out: unused, at their anchor
        if cap is None:
            expected = _step_gradients(model, fake, lambda s: MASPlugin.before_backward(plugin, s), x, 2)
        else:
            expected = _step_gradients(model, fake, lambda s: setattr(s, "loss", s.loss + plugin.penalty()), x, 2)
        data_only = _step_gradients(model, fake, lambda s: None, x, 2)
        for name in ("trunk.1.weight", "trunk.1.bias", "heads.2.weight"):  # head 2: Omega 0, the data's alone
            torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-7)
        for name in ("trunk.1.weight", "trunk.1.bias"):
            assert float((got[name] - data_only[name]).abs().max()) > 1e-6, name  # the penalty really acts
        assert float(plugin.penalty()) > 0


def test_lwf_seen_units_needs_one_shared_head():
    with pytest.raises(ValueError, match="units 'previous'"):
        train("lwf", scenario_of("split"), {"units": "seen"})


# ---------------------------------------------------------------------------------------- l2
def test_l2_pulls_only_shared_parameters_with_importance_one():
    scenario = scenario_of("two_model")
    plugin = L2Plugin(3.0, scenario.turn_used_params)
    model = scenario.model
    stream = scenario.avalanche_benchmark().train_stream
    fake = SimpleNamespace(model=model, experience=stream[0], loss=torch.zeros(()))
    plugin.before_training_exp(fake)
    assert plugin.penalty() == 0.0  # nothing to pull towards in the first experience
    plugin.after_training_exp(fake)
    anchor = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    fake = SimpleNamespace(model=model, experience=stream[1], loss=torch.zeros(()))
    plugin.before_training_exp(fake)
    shared = scenario.tasks[0].used_params & scenario.tasks[1].used_params
    named = dict(model.named_parameters())
    expected = 1.5 * sum(float(((named[n] - anchor[n]) ** 2).sum().detach()) for n in shared)
    assert float(plugin.penalty().detach()) == pytest.approx(expected, rel=1e-5)
    plugin.penalty().backward()
    for name, p in named.items():
        if name in shared:
            torch.testing.assert_close(p.grad, 3.0 * (p - anchor[name]).detach())
        else:
            assert p.grad is None, f"{name} is not shared but was pulled"
    # the training step's path: before_backward puts the same pull into .grad when the backward pass ends
    model.zero_grad()
    fake.loss = sum(p.sum() for p in model.parameters())  # data gradient 1 everywhere
    plugin.before_backward(fake)
    fake.loss.backward()
    for name, p in named.items():
        pull = 3.0 * (p - anchor[name]).detach() if name in shared else 0.0
        torch.testing.assert_close(p.grad, torch.ones_like(p) + pull, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------------ replay
def test_replay_batches_mix_memory_of_earlier_tasks():
    scenario = scenario_of("split")
    strategy, recorder = train("replay", scenario, {"mem_size": 60, "batch_size_mem": 8})
    buffer = plugin_of(strategy, FastReplayPlugin).storage_policy.buffer
    _, _, t = dataset_tensors(buffer)
    assert len(t) == 60 and sorted(t.bincount().tolist()) == [20, 20, 20]  # balanced over experiences
    assert all(set(b.tolist()) == {0} for b in recorder.batches[0])  # nothing to replay yet
    for exp, batches in enumerate(recorder.batches[1:], start=1):
        for labels in batches:
            counts = labels.bincount(minlength=3)
            assert int(counts[:exp].sum()) == 8  # every batch carries 8 memory samples of earlier tasks
        assert len(batches) == -(-len(scenario.tasks[exp].train_y) // 32)


def test_mixed_loader_cycles_through_memory():
    current = [torch.arange(10.0), torch.zeros(10, dtype=torch.long), torch.ones(10, dtype=torch.long)]
    memory = (torch.arange(100.0, 105.0), torch.zeros(5, dtype=torch.long), torch.zeros(5, dtype=torch.long))
    from forgetbench.benchmark.data.loaders import TensorBatchLoader

    loader = MixedTensorLoader(
        TensorBatchLoader(tuple(current), 4, shuffle=False), memory, 2, torch.Generator().manual_seed(0)
    )
    batches = list(loader)
    assert len(batches) == 3 and [len(b[0]) for b in batches] == [6, 6, 4]
    seen = torch.cat([b[0][-2:] for b in batches[:2]])
    assert set(seen.tolist()) <= set(range(100, 105)) and len(set(seen.tolist())) == 4  # no repeat within a pass


# ------------------------------------------------------------------------------------- joint
@pytest.mark.parametrize("scenario_name", ["split", "two_model"])
def test_joint_trains_on_the_union_of_experiences(scenario_name):
    scenario = scenario_of(scenario_name)
    strategy, recorder = train("joint", scenario)
    for exp, batches in enumerate(recorder.batches):
        labels = torch.cat(batches)
        seen_keys = {scenario.tasks[turn.task].model_key for turn in scenario.schedule[: exp + 1]}
        assert set(labels.tolist()) == seen_keys
        if scenario.schedule[exp].max_steps is None:  # a full epoch over the union
            assert len(labels) == sum(len(scenario.tasks[k].train_y) for k in seen_keys)
    assert plugin_of(strategy, JointPlugin).state_bytes() > 0


# -------------------------------------------------------------------------------- standalone
@pytest.mark.parametrize("scenario_name", ["split", "two_model"])
def test_standalone_trains_each_model_from_scratch_and_never_forgets(scenario_name):
    scenario = scenario_of(scenario_name)
    initial = {k: v.clone() for k, v in scenario.model.state_dict().items()}
    strategy, recorder = train("standalone", scenario)
    models = strategy.model
    assert isinstance(models, StandaloneModels)
    assert [n for n, _ in models.named_parameters()] == [f"live.{n}" for n, _ in scenario.model.named_parameters()]
    # each copy equals the live network right after its own experience
    for exp, turn in enumerate(scenario.schedule):
        key = scenario.tasks[turn.task].model_key
        snapshot = models.snapshots[key].state_dict()
        for name, value in snapshot.items():
            assert torch.equal(value, recorder.weights[exp][f"live.{name}"])
    # ... and each was trained from the initial weights: the last experience's copy differs from
    # the initial weights only where the last model's parameters are
    last = scenario.schedule[-1]
    used = scenario.tasks[last.task].used_params
    snapshot = models.snapshots[scenario.tasks[last.task].model_key].state_dict()
    for name, value in snapshot.items():
        if name not in used:
            assert torch.equal(value, initial[name]), f"{name} carried over from an earlier experience"
    # evaluation of an earlier model uses its copy, untouched by later training
    task = scenario.tasks[0]
    with torch.no_grad():
        np.testing.assert_array_equal(
            models.forward_single_task(task.test_x[:16], task.model_key).numpy(),
            models.snapshots[task.model_key].forward_single_task(task.test_x[:16], task.model_key).numpy(),
        )
    assert models.state_bytes() == len(scenario.schedule) * sum(v.numel() * 4 for v in initial.values())


def test_standalone_result_has_zero_forgetting(write_suite, cli, tmp_path):
    from conftest import read_json, tiny_suite

    out = tmp_path / "out"
    suite = tiny_suite(
        strategies=[{"name": "standalone"}],
        scenarios=[
            {"name": "split", "params": {"dataset": "digits", "tasks": 3, "classes_per_task": 2, "widths": [16]}}
        ],
    )
    assert cli("run", "--no-report", write_suite(suite), "--out", out, "--quiet") == 0
    R = np.array(read_json(out / "runs" / "split__standalone__seed0" / "result.json")["accuracy_matrix"])
    for k in range(3):
        assert (R[k:, k] == R[k, k]).all()
