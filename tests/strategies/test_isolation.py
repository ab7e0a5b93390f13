"""Parameter isolation: SupSup, ExSSNeT (with KKT) and pic, by hand and through the harness."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from forgetbench.benchmark.core.config import ComponentSpec, ConfigError, TrainingConfig, resolve_config
from forgetbench.benchmark.data.models import MultiHeadNet, TaskRoutedModule
from forgetbench.benchmark.front import testing
from forgetbench.benchmark.run.spec import RunSpec
from forgetbench.benchmark.core.record import PICResult, RunRecord
from forgetbench.benchmark.run.runner import run, strategy_extra_results
from forgetbench.benchmark.data.scenarios import SCENARIOS, Scenario, ScenarioInputs, ScenarioParams, Task
from forgetbench.strategies import StrategyContext
from forgetbench.strategies.exssnet import ExSSNeTParams, build_exssnet, kkt_sources, knn_accuracy
from forgetbench.strategies.masking import MaskedNet, _StraightThroughTopK, kept, topk_mask
from forgetbench.strategies.pic import PICNet, PICParams, build_pic
from forgetbench.strategies.supsup import SupSupParams, build_supsup
from conftest import tiny_suite

TRAINING = TrainingConfig(optimizer="sgd", lr=0.1, momentum=0.9, batch_size=32, epochs=3, eval_batch_size=512)
# LoRA's product B A is unstable under lr 0.1 with heavy momentum; pic runs with a gentler optimizer
PIC_TRAINING = TRAINING.model_copy(update={"lr": 0.05, "momentum": 0.5, "epochs": 2})


# --------------------------------------------------------------------------- a `permuted` stand-in
class PermutedParams(ScenarioParams):
    tasks: int = 3


class SingleHeadNet(TaskRoutedModule):
    """One model for every task (task label 0): an MLP with one head."""

    def __init__(self, inputs: int, width: int, classes: int):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(inputs, width), nn.ReLU(), nn.Linear(width, classes))

    def forward_single_task(self, x, task_label):
        return self.body(x)

    def used_parameter_names(self, task_label):
        return frozenset(n for n, _ in self.named_parameters())


def _build_test_permuted(params: PermutedParams, inputs: ScenarioInputs) -> Scenario:
    """Digits under a seeded pixel permutation per task; one single-head model, every label 0."""
    from forgetbench.benchmark.data.datasets import load_dataset

    data = load_dataset("digits", inputs.data_root, False)
    g = torch.Generator().manual_seed(inputs.seed)
    x_tr, x_te = data.train_x.flatten(1), data.test_x.flatten(1)
    model = SingleHeadNet(x_tr.shape[1], 64, data.num_classes)
    tasks = []
    for t in range(params.tasks):
        perm = torch.arange(x_tr.shape[1]) if t == 0 else torch.randperm(x_tr.shape[1], generator=g)
        tasks.append(
            Task(
                f"perm{t}",
                0,
                x_tr[:, perm],
                data.train_y,
                x_te[:, perm],
                data.test_y,
                model.used_parameter_names(0),
                data.num_classes,
            )
        )
    return Scenario("test_permuted", tasks, model)


if "test_permuted" not in SCENARIOS:
    SCENARIOS.register("test_permuted", params=PermutedParams)(_build_test_permuted)

PERMUTED = (
    {"name": "permuted", "params": {"dataset": "digits", "tasks": 3}}
    if "permuted" in SCENARIOS
    else {"name": "test_permuted", "params": {"tasks": 3}}
)
SPLIT_MLP = {"name": "split", "params": {"dataset": "digits", "tasks": 3, "classes_per_task": 2, "widths": [64]}}
SPLIT_CNN = {
    "name": "split",
    "params": {"dataset": "digits", "tasks": 2, "classes_per_task": 2, "trunk": "cnn", "widths": [8, 8]},
}
TWO_MODEL = {"name": "two_model", "params": {"dataset": "digits", "depth_a": 2, "depth_b": 3, "width": 32, "shared": 1}}


def run_one(strategy: str, params: dict | None = None, scenario: dict = SPLIT_MLP, training=TRAINING, seed=0):
    spec = RunSpec(
        "t", ComponentSpec(**scenario), ComponentSpec(name=strategy, params=params or {}), seed, training, "cpu"
    )
    record = run(spec, data_root=None)
    assert record.status == "ok", record.get("traceback", record.error)
    return record


def scenario_of(spec: dict, seed: int = 0) -> Scenario:
    torch.manual_seed(seed)
    entry = SCENARIOS.get(spec["name"])
    return entry.factory(entry.parse_params(spec["params"]), ScenarioInputs(seed, None))


def context(scenario: Scenario, training=TRAINING, seed=0) -> StrategyContext:
    return StrategyContext(
        model=scenario.model,
        training=training,
        device=torch.device("cpu"),
        used_params=scenario.turn_used_params,
        seed=seed,
    )


# --------------------------------------------------------------------------- masking machinery
def test_topk_mask_keeps_exactly_k_largest_magnitudes():
    scores = torch.tensor([[0.5, -3.0, 0.1], [2.0, -0.2, 1.0]])
    mask = topk_mask(scores, 3)
    assert mask.tolist() == [[False, True, False], [True, False, True]]
    assert kept(1000, 0.1) == 100 and kept(5, 0.01) == 1


def test_straight_through_gradient_is_the_upstream_gradient():
    scores = torch.randn(4, 5, requires_grad=True)
    upstream = torch.randn(4, 5)
    mask = _StraightThroughTopK.apply(scores, 6)
    assert int(mask.sum()) == 6
    (mask * upstream).sum().backward()
    torch.testing.assert_close(scores.grad, upstream)


def test_masked_net_uses_signed_constant_weights_and_the_slot_mask():
    torch.manual_seed(0)
    net = MultiHeadNet(nn.Sequential(nn.Flatten(), nn.Linear(6, 4), nn.ReLU()), 4, [2, 2])
    masked = MaskedNet(net, slots=2, sparsity=0.5, generator=torch.Generator().manual_seed(0))
    layer = dict(masked.masked_layers())["trunk.1"]
    assert torch.allclose(layer.weight.abs(), torch.full_like(layer.weight, math.sqrt(2) / math.sqrt(6)))
    x = torch.randn(3, 6)
    masked.eval()
    masked.begin_slot(1, key=1)
    masked.end_slot()
    out = masked.forward_single_task(x, 1)
    m_trunk = topk_mask(layer.scores[1].detach(), 12).float()
    head = dict(masked.masked_layers())["heads.1"]
    m_head = topk_mask(head.scores[1].detach(), 4).float()
    expected = torch.relu(x @ (layer.weight * m_trunk).T) @ (head.weight * m_head).T
    torch.testing.assert_close(out, expected)


def test_ownership_counts_new_weights_of_each_mask():
    net = SingleHeadNet(2, 2, 2)  # two 2x2 layers: 8 masked weights
    masked = MaskedNet(net, slots=2, sparsity=0.5, generator=torch.Generator().manual_seed(0))
    l1, l2 = (layer for _, layer in masked.masked_layers())
    with torch.no_grad():
        l1.scores[0].copy_(torch.tensor([[1.0, 2.0], [0.0, 0.0]]))  # M0: row 0
        l2.scores[0].copy_(torch.tensor([[1.0, 0.0], [1.0, 0.0]]))  # M0: column 0
        l1.scores[1].copy_(torch.tensor([[0.0, 2.0], [3.0, 0.0]]))  # M1: (0,1) old, (1,0) new
        l2.scores[1].copy_(torch.tensor([[0.0, 1.0], [0.0, 1.0]]))  # M1: column 1, both new
    for slot in (0, 1):
        masked.begin_slot(slot, key=0)
        masked.end_slot()
    stats = masked.ownership()
    assert stats["mask_density"] == [0.5, 0.5]
    assert stats["owned_fraction"] == [0.5, 3 / 8]
    assert stats["union_fraction"] == 7 / 8


# --------------------------------------------------------------------------- SupSup
def assert_no_forgetting(record: dict) -> np.ndarray:
    """Every task's final accuracy equals its accuracy right after training; returns the matrix."""
    R = np.array(record.accuracy_matrix)
    for j in range(len(R)):
        assert abs(R[-1][j] - R[j][j]) <= 1e-6, f"task {j} forgot: {R[:, j]}"
    return R


@pytest.mark.parametrize("scenario", [SPLIT_MLP, SPLIT_CNN], ids=["mlp", "cnn"])
@pytest.mark.effect
def test_supsup_has_zero_forgetting_on_split(scenario):
    record = run_one("supsup", {"sparsity": 0.1}, scenario)
    R = assert_no_forgetting(record)
    T = len(R)
    assert np.diag(R).mean() > (0.8 if scenario is SPLIT_MLP else 0.6), f"supsup did not learn: {R}"
    iso = record.isolation
    assert iso.slots == list(range(T))
    assert all(abs(d - 0.1) < 0.01 for d in iso.mask_density)
    assert iso.owned_fraction[0] == pytest.approx(iso.mask_density[0])
    assert 0 < iso.owned_fraction[-1] < iso.mask_density[-1]


def test_supsup_never_changes_the_weights_and_trains_only_its_slot():
    scenario = scenario_of(SPLIT_MLP)
    strategy = build_supsup(context(scenario), SupSupParams(sparsity=0.2))
    model = strategy.model
    weights0 = {n: l.weight.clone() for n, l in model.masked_layers()}
    stream = scenario.avalanche_benchmark().train_stream
    strategy.train(stream[0])
    scores_after0 = {n: l.scores[0].detach().clone() for n, l in model.masked_layers()}
    strategy.train(stream[1])
    for n, layer in model.masked_layers():
        assert torch.equal(layer.weight, weights0[n])
        assert torch.equal(layer.scores[0], scores_after0[n]), "slot 0 scores moved in experience 1"
    assert any(not torch.equal(l.scores[1], scores_after0[n]) for n, l in model.masked_layers() if "trunk" in n)


# --------------------------------------------------------------------------- ExSSNeT
@pytest.mark.parametrize("scenario", [SPLIT_MLP, SPLIT_CNN], ids=["mlp", "cnn"])
def test_exssnet_has_zero_forgetting_on_split(scenario):
    record = run_one("exssnet", {"sparsity": 0.1}, scenario)
    R = assert_no_forgetting(record)
    T = len(R)
    iso = record.isolation
    assert len(iso.exclusive_fraction) == T
    assert iso.exclusive_fraction == pytest.approx(iso.owned_fraction)


def test_exssnet_weight_phase_changes_only_exclusive_weights():
    training = TRAINING.model_copy(update={"weight_decay": 0.01})  # decay must not leak outside E_t
    scenario = scenario_of(SPLIT_MLP)
    strategy = build_exssnet(context(scenario, training), ExSSNeTParams(sparsity=0.3))
    model = strategy.model
    stream = scenario.avalanche_benchmark().train_stream
    for t, experience in enumerate(stream):
        before = {n: l.weight.detach().clone() for n, l in model.masked_layers()}
        union_before = {n: l.union.clone() for n, l in model.masked_layers()}
        strategy.train(experience)
        moved_any = False
        for n, layer in model.masked_layers():
            changed = layer.weight.detach() != before[n]
            exclusive = layer.frozen[t] & ~union_before[n]
            assert not (changed & ~exclusive).any(), f"{n}: weights outside E_{t} changed"
            assert not (changed & union_before[n]).any(), f"{n}: weights inside an earlier mask changed"
            moved_any |= bool(changed.any())
        assert moved_any, f"weight phase of experience {t} trained nothing"


def test_exssnet_learning_accuracy_beats_supsup_on_digits():
    supsup = np.diag(run_one("supsup", {"sparsity": 0.1}).accuracy_matrix).mean()
    exssnet = np.diag(run_one("exssnet", {"sparsity": 0.1}).accuracy_matrix).mean()
    assert exssnet >= supsup, (exssnet, supsup)


def test_exssnet_counts_both_phases_under_a_step_budget():
    record = run_one(
        "exssnet", {"sparsity": 0.1}, {**TWO_MODEL, "params": {**TWO_MODEL["params"], "a_steps": 7, "b_steps": 5}}
    )
    assert record.timing.steps == 2 * (7 + 5)


# --------------------------------------------------------------------------- KKT
def test_knn_accuracy_hand_example():
    # two well separated clusters: every query's neighbours share its label
    features = torch.tensor([[0.0], [0.1], [0.2], [10.0], [10.1], [10.2]] * 3)
    labels = torch.tensor([0, 0, 0, 1, 1, 1] * 3)
    assert knn_accuracy(features, labels, k=3, generator=torch.Generator().manual_seed(0)) == 1.0
    # a constant feature: the vote is the majority label of the reference set
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(18, generator=torch.Generator().manual_seed(0))
    ref, query = labels[order[:12]], labels[order[12:]]
    majority = int(torch.bincount(ref).argmax())
    expected = float((query == majority).double().mean())
    assert knn_accuracy(torch.zeros(18, 1), labels, k=200, generator=g) == pytest.approx(expected)


def test_kkt_source_rules():
    acc = {0: 0.45, 1: 0.9, 2: 0.7}
    assert kkt_sources(acc, 0.5, "off") == {}
    assert kkt_sources(acc, 0.5, "best") == {1: 1.0}
    assert kkt_sources({0: 0.4}, 0.5, "best") == {}
    assert kkt_sources({0: 0.4}, 0.5, "always") == {0: 1.0}
    assert kkt_sources(acc, 0.5, "all") == pytest.approx({1: 0.9 / 1.6, 2: 0.7 / 1.6})


class _Probe(TaskRoutedModule):
    """x in R^2 -> Linear(2, 2) -> head; the class is in x[:, 0], x[:, 1] is noise."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(2, 2)
        self.head = nn.Linear(2, 2)

    def forward_single_task(self, x, task_label):
        return self.head(self.body(x))

    def used_parameter_names(self, task_label):
        return frozenset(n for n, _ in self.named_parameters())


def test_kkt_picks_the_obvious_earlier_mask():
    """Mask 1 passes the informative input, mask 0 only the noise: task 2 must start from mask 1."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (300,), generator=g)
    x = torch.stack([y.float() * 4 - 2, torch.randn(300, generator=g)], 1)
    tasks = [Task(f"t{i}", i, x, y, x, y, frozenset({"body.weight", "head.weight"}), 2) for i in range(3)]

    class Heads(_Probe):
        def used_parameter_names(self, task_label):
            return frozenset({"body.weight", "body.bias", "head.weight", "head.bias"})

    scenario = Scenario("probe", tasks, Heads())
    params = ExSSNeTParams(sparsity=0.5, kkt="best", knn_k=5, kkt_fraction=1.0, weight_epochs=0)
    strategy = build_exssnet(context(scenario), params)
    model = strategy.model
    body = dict(model.masked_layers())["body"]
    with torch.no_grad():  # hand-set masks: slot 0 reads only x[:, 1], slot 1 only x[:, 0]
        body.weight.copy_(torch.ones(2, 2))
        body.scores[0].copy_(torch.tensor([[0.0, 1.0], [0.0, 1.0]]))
        body.scores[1].copy_(torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    for slot in (0, 1):
        model.begin_slot(slot, slot)
        model.end_slot()
    plugin = strategy.exssnet
    fake = type("S", (), {})()
    fake.experience = scenario.avalanche_benchmark().train_stream[2]
    fake.device = torch.device("cpu")
    model.begin_slot(2, 2)
    plugin.transfer(fake)
    log = plugin.kkt_log[-1]
    assert log["knn_accuracy"][1] == 1.0 and log["knn_accuracy"][0] < 0.8
    assert log["sources"] == {1: 1.0}
    torch.testing.assert_close(body.scores[2], body.scores[1])


def test_exssnet_with_kkt_runs_and_is_reproducible():
    a = run_one("exssnet", {"sparsity": 0.1, "kkt": "best", "knn_k": 50})
    b = run_one("exssnet", {"sparsity": 0.1, "kkt": "best", "knn_k": 50})
    assert a.accuracy_matrix == b.accuracy_matrix
    assert [e.experience for e in a.kkt] == [1, 2]
    assert all(set(e.knn_accuracy) == {str(i) for i in range(e.experience)} for e in a.kkt)


# --------------------------------------------------------------------------- permuted (labels all 0)
@pytest.mark.parametrize("strategy", ["supsup", "exssnet"])
@pytest.mark.effect
def test_mask_methods_infer_the_task_when_labels_are_shared(strategy):
    record = run_one(strategy, {"sparsity": 0.2}, PERMUTED)
    R = np.array(record.accuracy_matrix)
    assert np.diag(R).min() > 0.5, R
    # one-shot inference must find each task's mask: the final row stays close to the diagonal
    assert (R[-1] >= np.diag(R) - 0.1).all(), R


def test_pic_runs_on_permuted_with_merged_weights():
    record = run_one("pic", {"lam": 0.5}, PERMUTED, PIC_TRAINING)
    assert record.pic.lam == [None, 0.5, 0.5]


# --------------------------------------------------------------------------- two_model
@pytest.mark.parametrize("strategy", ["supsup", "exssnet", "pic"])
def test_isolation_strategies_run_on_two_model(strategy):
    record = run_one(strategy, None, TWO_MODEL, PIC_TRAINING.model_copy(update={"epochs": 1}))
    assert np.array(record.accuracy_matrix).shape == (2, 2)
    if strategy != "pic":
        R = record.accuracy_matrix
        assert abs(R[1][0] - R[0][0]) <= 1e-6


# --------------------------------------------------------------------------- pic
def test_pic_lambda_zero_is_exactly_the_frozen_backbone():
    scenario = scenario_of(SPLIT_MLP)
    strategy = build_pic(context(scenario, PIC_TRAINING), PICParams(lam=0.0, rank=2))
    model = strategy.model
    stream = scenario.avalanche_benchmark().train_stream
    strategy.train(stream[0])
    named = dict(model.named_parameters())
    backbone = {n: named[model.param_name(n)].detach().clone() for n in ("trunk.1.weight", "heads.0.weight")}
    model.eval()
    x = scenario.tasks[0].test_x
    out0 = model.forward_single_task(x, 0).detach()
    for experience in stream[1:]:
        strategy.train(experience)
    model.eval()
    torch.testing.assert_close(model.effective_weight("trunk.1"), backbone["trunk.1.weight"], rtol=0, atol=0)
    torch.testing.assert_close(named[model.param_name("heads.0.weight")], backbone["heads.0.weight"], rtol=0, atol=0)
    adapters = model.adapter_tensors()
    assert set(adapters) == {"trunk.1"}, "only the shared trunk carries adapters (heads are each task's own)"
    assert adapters["trunk.1"]["task2"]["B"].abs().sum() > 0, "adapters unused"
    torch.testing.assert_close(model.forward_single_task(x, 0), out0, rtol=0, atol=0)


def test_pic_task_arithmetic_matches_hand_computation():
    net = SingleHeadNet(3, 2, 2)
    every = frozenset(n for n, _ in net.named_parameters())
    model = PICNet(net, rank=1, alpha=2.0, used_params=[every] * 3)  # scale alpha / rank = 2
    assert model.adapted == [[], ["body.1", "body.3"], ["body.1", "body.3"]]
    layer = dict(model.lora_layers())["body.1"]
    W, b = layer.base_layer.weight.detach().clone(), layer.base_layer.bias.detach().clone()
    B1, A1 = torch.tensor([[1.0], [2.0]]), torch.tensor([[1.0, 0.0, -1.0]])
    B2, A2 = torch.tensor([[0.5], [0.0]]), torch.tensor([[2.0, 1.0, 0.0]])
    with torch.no_grad():
        for name, (B, A) in {"task1": (B1, A1), "task2": (B2, A2)}.items():
            layer.lora_B[name].weight.copy_(B)
            layer.lora_A[name].weight.copy_(A)
    model.finished = [1, 2]
    model.merge(0.3)
    model.eval()
    tau1 = torch.tensor([[2.0, 0.0, -2.0], [4.0, 0.0, -4.0]])  # 2 * B1 A1 by hand
    tau2 = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0]])  # 2 * B2 A2 by hand
    merged = W + 0.3 * (tau1 + tau2)
    torch.testing.assert_close(model.effective_weight("body.1"), merged)
    x = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, 1.0]])
    torch.testing.assert_close(layer(x), x @ merged.T + b)  # PEFT's forward computes with the merged weight
    model.finished = [1]
    model.start_adapter(2, "fresh", torch.Generator().manual_seed(0))
    with torch.no_grad():
        layer.lora_B["task2"].weight.copy_(B2)
        layer.lora_A["task2"].weight.copy_(A2)
    model.train()
    torch.testing.assert_close(model.effective_weight("body.1"), W + tau2)  # training: own adapter only
    torch.testing.assert_close(layer(x), x @ (W + tau2).T + b)


def test_pic_previous_init_starts_from_the_last_adapter_and_chooses_lambda():
    record = run_one("pic", {"rank": 2}, training=PIC_TRAINING)
    lams = record.pic.lam
    assert lams[0] is None and all(lam in [round(0.1 * i, 1) for i in range(1, 11)] for lam in lams[1:])
    scenario = scenario_of(SPLIT_MLP)
    strategy = build_pic(context(scenario, PIC_TRAINING), PICParams(lam=1.0, rank=2, init="previous"))
    stream = scenario.avalanche_benchmark().train_stream
    strategy.train(stream[0])
    strategy.train(stream[1])
    layer = dict(strategy.model.lora_layers())["trunk.1"]
    B1, A1 = layer.lora_B["task1"].weight.detach().clone(), layer.lora_A["task1"].weight.detach().clone()
    assert B1.abs().sum() > 0
    strategy.model.start_adapter(2, "previous", torch.Generator())
    assert torch.equal(layer.lora_B["task2"].weight, B1) and torch.equal(layer.lora_A["task2"].weight, A1)
    strategy.model.finished.append(2)  # a fresh adapter ignores what came before
    strategy.model.start_adapter(2, "fresh", torch.Generator().manual_seed(0))
    assert not layer.lora_B["task2"].weight.any() and layer.lora_A["task2"].weight.abs().max() <= 1 / math.sqrt(64)


def test_pic_backbone_is_frozen_after_experience_zero_and_heads_train():
    scenario = scenario_of(SPLIT_MLP)
    strategy = build_pic(context(scenario, PIC_TRAINING), PICParams(lam=1.0, rank=2))
    stream = scenario.avalanche_benchmark().train_stream
    strategy.train(stream[0])
    named = dict(strategy.model.named_parameters())
    trunk = strategy.model.param_name("trunk.1.weight")
    assert trunk == "inner.trunk.1.base_layer.weight"
    trunk0 = named[trunk].detach().clone()
    head1 = named["inner.heads.1.weight"].detach().clone()
    adapter1 = named["inner.trunk.1.lora_B.task1.weight"].detach().clone()
    strategy.train(stream[1])
    assert torch.equal(named[trunk], trunk0)
    assert not torch.equal(named["inner.heads.1.weight"], head1)
    assert not torch.equal(named["inner.trunk.1.lora_B.task1.weight"], adapter1)
    after1 = named["inner.trunk.1.lora_B.task1.weight"].detach().clone()
    strategy.train(stream[2])  # a finished adapter stays as it was
    assert torch.equal(named["inner.trunk.1.lora_B.task1.weight"], after1)


# --------------------------------------------------------------------------- harness plumbing
def test_extra_results_may_not_overwrite_record_keys():
    class Strat:
        plugins = []

        def extra_results(self):
            return {"accuracy_matrix": []}

    record = RunRecord.from_dict(
        {
            "run_id": "r",
            "suite": "s",
            "seed": 0,
            "accuracy_matrix": [[1.0]],
            "scenario": {"name": "a", "label": "a"},
            "strategy": {"name": "b", "label": "b"},
        }
    )
    with pytest.raises(ValueError, match="accuracy_matrix"):
        record.add_results(strategy_extra_results(Strat()), source="Strat")

    class Twice:  # two plugins reporting the same key: one would silently win
        plugins = [type("P", (), {"extra_results": lambda self: {"mine": 1}})()]

        def extra_results(self):
            return {"mine": 2}

    with pytest.raises(ValueError, match="repeats result keys"):
        strategy_extra_results(Twice())


def test_declared_results_are_validated_and_plug_in_keys_kept():
    record = RunRecord.from_dict(
        {
            "run_id": "r",
            "suite": "s",
            "seed": 0,
            "scenario": {"name": "a", "label": "a"},
            "strategy": {"name": "b", "label": "b"},
        }
    )
    record.add_results(
        {
            "pic": {"lam": [0.5], "val_accuracy": [0.9], "val_accuracy_per_lambda": [[0.9]]},
            "my_plugin_stat": {"any": [1, 2]},
        },
        source="test",
    )
    assert isinstance(record.pic, PICResult) and record.pic.lam == [0.5]
    assert record.model_extra == {"my_plugin_stat": {"any": [1, 2]}}
    assert record.to_dict()["my_plugin_stat"] == {"any": [1, 2]} and record.to_dict()["pic"]["lam"] == [0.5]
    with pytest.raises(ValueError, match="isolation"):
        record.add_results({"isolation": {"union_fraction": "most"}}, source="test")


def test_bad_params_name_the_field():
    suite = tiny_suite(
        strategies=[
            {"name": "exssnet", "params": {"kkt": "sometimes"}},
            {"name": "supsup", "params": {"sparsity": 1.5}},
        ]
    )
    with pytest.raises(ConfigError) as info:
        resolve_config(suite)
    text = str(info.value)
    assert "strategies[0].params.kkt" in text and "'best'" in text
    assert "strategies[1].params.sparsity" in text


def test_pic_wraps_a_layer_reached_under_two_names_once():
    class Aliased(SingleHeadNet):
        def __init__(self):
            super().__init__(3, 2, 2)
            self.again = self.body[1]  # the same Linear in a second place

        def forward_single_task(self, x, task_label):
            return self.body(x) + self.body[3](torch.relu(self.again(x)))

    net = Aliased()
    every = frozenset(n for n, _ in net.named_parameters())
    model = PICNet(net, rank=1, alpha=1.0, used_params=[every, every])
    assert model.inner.again is model.inner.body[1]
    with torch.no_grad():
        model.inner.body[1].lora_B["task1"].weight.fill_(1.0)
        model.inner.body[1].lora_A["task1"].weight.fill_(1.0)
    model.finished = [1]
    model.merge(1.0)
    model.eval()
    x = torch.ones(1, 3)
    merged = net.body[1].weight + 1.0
    h = torch.relu(x @ merged.T + net.body[1].bias)
    head = model.effective_weight("body.3")
    expected = 2 * (h @ head.T + net.body[3].bias)
    torch.testing.assert_close(model.forward_single_task(x, 0), expected)


# ------------------------------------------------------------------ the shared strategy contract (front.testing)
SPLIT_CNN = {
    "name": "split",
    "params": {"dataset": "digits", "tasks": 2, "classes_per_task": 2, "trunk": "cnn", "widths": [16, 16]},
}
TWO_MODEL = {"name": "two_model", "params": {"dataset": "digits", "depth_a": 2, "depth_b": 3, "width": 32, "shared": 1}}


@pytest.mark.parametrize(
    "name, params",
    [
        ("supsup", {"sparsity": 0.1}),
        ("exssnet", {"sparsity": 0.1}),
        ("exssnet", {"sparsity": 0.1, "kkt": "best", "knn_k": 50}),
        ("pic", {"rank": 2}),
        ("pic", {"rank": 2, "lam": 0.5, "init": "fresh"}),
    ],
)
def test_isolation_strategy_contract(name, params):
    testing.check_strategy(name, params)


@pytest.mark.parametrize("name", ["supsup", "exssnet", "pic"])
@pytest.mark.parametrize("scenario", [SPLIT_CNN, TWO_MODEL], ids=["split-cnn", "two_model"])
def test_isolation_strategy_contract_on_other_scenarios(name, scenario):
    testing.check_strategy(name, None, scenario)


@pytest.mark.parametrize("name", ["supsup", "exssnet", "pic"])
def test_isolation_strategy_contract_on_permuted(name):
    testing.check_strategy(name, None, {"name": "permuted", "params": {"dataset": "digits", "tasks": 3}})
