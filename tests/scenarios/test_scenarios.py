"""The split scenario and the fast data path into Avalanche."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from forgetbench.benchmark.data.loaders import TensorBatchLoader, dataset_tensors
from forgetbench.benchmark.data.scenarios import SCENARIOS, ScenarioInputs


def build(seed=0, **params):
    entry = SCENARIOS.get("split")
    base = {"dataset": "digits", "tasks": 3, "classes_per_task": 3, "widths": [16]}
    return entry.factory(entry.parse_params(base | params), ScenarioInputs(seed, None))


def test_class_order_from_seed_and_relabelling():
    a, b, c = build(0), build(0), build(1)
    assert [t.name for t in a.tasks] == [t.name for t in b.tasks]
    assert a.meta["class_order"] != c.meta["class_order"]
    for task in a.tasks:
        assert set(task.train_y.unique().tolist()) == {0, 1, 2}
        assert set(task.test_y.unique().tolist()) == {0, 1, 2}
    all_classes = sum((a.meta["class_order"][3 * t : 3 * t + 3] for t in range(3)), [])
    assert len(set(all_classes)) == 9


def test_used_params_are_trunk_plus_own_head():
    scenario = build()
    names = {n for n, _ in scenario.model.named_parameters()}
    trunk = {n for n in names if n.startswith("trunk.")}
    for t, used in enumerate(scenario.turn_used_params):
        assert used == trunk | {f"heads.{t}.weight", f"heads.{t}.bias"}
    shared = scenario.turn_used_params[0] & scenario.turn_used_params[1]
    assert shared == trunk


def test_head_selected_by_task_label():
    scenario = build()
    x = scenario.tasks[0].test_x[:4]
    out0 = scenario.model(x, torch.zeros(4, dtype=torch.long))
    out2 = scenario.model(x, torch.full((4,), 2, dtype=torch.long))
    torch.testing.assert_close(out0, scenario.model.heads[0](scenario.model.trunk(x)))
    torch.testing.assert_close(out2, scenario.model.heads[2](scenario.model.trunk(x)))


def test_cnn_trunk_builds_and_runs():
    scenario = build(trunk="cnn", widths=[4, 8])
    out = scenario.model(scenario.tasks[0].test_x[:5], 0)
    assert out.shape == (5, 3)


def test_avalanche_datasets_are_sliced_without_copy():
    scenario = build()
    bench = scenario.avalanche_benchmark()
    exp = bench.train_stream[1]
    x, y, t = dataset_tensors(exp.dataset.train())
    assert x.data_ptr() == scenario.tasks[1].train_x.data_ptr()  # the very same storage
    assert (t == 1).all() and torch.equal(y, scenario.tasks[1].train_y)
    assert exp.task_labels == [1]


def test_the_class_timeline_gets_the_label_set_without_reading_labels_one_by_one():
    from avalanche.benchmarks.utils.data_attribute import DataAttribute

    from forgetbench.benchmark.data.scenarios.base import _benchmark, _dataset

    labels = [3, 1, 3, 7, 1]
    # Avalanche keeps the set it would build element by element in `_uniques`: given here, it reads it as is
    assert vars(DataAttribute(labels, "targets"))["_uniques"] is None
    given = _dataset(torch.zeros(5, 2), torch.tensor(labels), 0)
    assert given.targets._uniques == DataAttribute(labels, "targets").uniques == {1, 3, 7}
    [experience] = _benchmark(train=[given, _dataset(torch.zeros(2, 2), torch.tensor([0, 9]), 1)]).train_stream[:1]
    assert experience.classes_in_this_experience == {1, 3, 7} and experience.future_classes == {0, 9}


def test_dataset_tensors_materialises_subsets_and_concats():
    scenario = build()
    bench = scenario.avalanche_benchmark()
    d0, d1 = bench.train_stream[0].dataset, bench.train_stream[1].dataset
    mixed = d0.subset([0, 1, 2]).concat(d1.subset([5]))
    x, y, t = dataset_tensors(mixed)
    torch.testing.assert_close(x[:3], scenario.tasks[0].train_x[:3])
    torch.testing.assert_close(x[3], scenario.tasks[1].train_x[5])
    assert t.tolist() == [0, 0, 0, 1]


def test_tensor_batch_loader_covers_each_sample_once_per_pass():
    x = torch.arange(10).float()[:, None]
    loader = TensorBatchLoader(
        (x, torch.arange(10)), batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    assert len(loader) == 3
    seen = torch.cat([b[1] for b in loader])
    assert sorted(seen.tolist()) == list(range(10))
    again = torch.cat([b[1] for b in loader])
    assert again.tolist() != seen.tolist()  # reshuffled each pass
    dropped = TensorBatchLoader((x,), batch_size=4, shuffle=False, drop_last=True)
    assert len(dropped) == 2 and sum(len(b[0]) for b in dropped) == 8


@pytest.mark.parametrize(
    "shuffle, same_data, row",
    [(True, False, (2, 3)), (True, True, (2, 3)), (False, False, (2, 3)), (True, False, (64, 80))],
)
def test_lockstep_batches_are_each_loaders_own_batches_stacked(shuffle, same_data, row):
    """K loaders' epochs gathered at once: row k of every step is loader k's own batch (its order drawn from its own
    generator), the last, partial batch included; loaders of another form are declined. The seeds' own datasets
    are joined into one where their batches are small, and gathered seed by seed where not (a (64, 80) row)."""
    from forgetbench.benchmark.data.loaders import STACK_ROWS_BELOW_BYTES, lockstep_batches

    assert (4 * 2 * 3 * 4 <= STACK_ROWS_BELOW_BYTES) and 4 * 64 * 80 * 4 > STACK_ROWS_BELOW_BYTES  # both paths

    def loaders(seed_offset: int = 0) -> list[TensorBatchLoader]:
        out = []
        for k in range(3):
            x = torch.randn(10, *row) if not same_data else shared_x
            out.append(
                TensorBatchLoader(
                    (x, torch.arange(10) + 10 * k, torch.zeros(10, dtype=torch.long)), batch_size=4, shuffle=shuffle,
                    generator=torch.Generator().manual_seed(k + seed_offset),
                )
            )  # fmt: skip
        return out

    shared_x = torch.randn(10, *row)
    torch.manual_seed(0)
    own = [list(loader) for loader in loaders()]
    torch.manual_seed(0)
    together = list(lockstep_batches(loaders()))
    assert len(together) == 3 and together[-1][0].shape == (3, 2, *row)
    for step, stacked in enumerate(together):
        for k in range(3):
            for mine, theirs in zip(own[k][step], stacked):
                assert torch.equal(mine, theirs[k])
    other = loaders()
    other[1].batch_size = 5
    assert lockstep_batches(other) is None
    assert lockstep_batches(loaders()[:2] + [TensorBatchLoader((torch.zeros(10, 2, 4),), 4, shuffle)]) is None


# --------------------------------------------------------- automatic shared-parameter detection
BUILTIN_SMALL = [
    ("split", {"dataset": "digits", "tasks": 3, "classes_per_task": 2, "widths": [8]}),
    ("split", {"dataset": "digits", "tasks": 2, "classes_per_task": 2, "trunk": "cnn", "widths": [4]}),
    ("split", {"dataset": "digits", "tasks": 3, "classes_per_task": 2, "widths": [8], "setting": "domain-IL"}),
    ("split", {"dataset": "digits", "tasks": 3, "classes_per_task": 2, "widths": [8], "setting": "class-IL"}),
    ("split", {"dataset": "digits", "tasks": 2, "classes_per_task": 2, "trunk": "resnet18", "widths": [4]}),
    ("permuted", {"dataset": "digits", "tasks": 3, "widths": [8]}),
    ("two_model", {"dataset": "digits", "depth_a": 2, "depth_b": 3, "width": 8, "shared": 1}),
    ("supernet", {"dataset": "digits", "layers": 3, "ops": 4, "width": 8, "architectures": 6}),
    (
        "supernet",
        {"dataset": "digits", "cell": "cnn", "layers": 2, "ops": 3, "width": 4, "architectures": 4, "head": "shared"},
    ),
]


@pytest.mark.parametrize("name, params", BUILTIN_SMALL)
def test_detected_used_params_equal_the_declared_ones_on_builtin_scenarios(name, params):
    from forgetbench.benchmark.data.detect import used_parameters

    entry = SCENARIOS.get(name)
    scenario = entry.factory(entry.parse_params(params), ScenarioInputs(0, None))
    for task in scenario.tasks:
        probe = torch.zeros_like(task.train_x[:4])  # all-zero input: many zero gradients, still reachable
        assert used_parameters(scenario.model, probe, task.model_key) == task.used_params, task.name


def test_detection_leaves_out_an_op_an_architecture_skips_and_frozen_units_and_keeps_dead_ones():
    from forgetbench.benchmark.data.detect import used_parameters
    from forgetbench.benchmark.data.models import TaskRoutedModule

    class TinySupernet(TaskRoutedModule):  # architecture 1 skips op "b" (identity instead)
        def __init__(self):
            super().__init__()
            self.a, self.b, self.head = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)
            with torch.no_grad():
                self.a.weight.fill_(-1.0), self.a.bias.fill_(-1.0)  # ReLU(a(x)) is dead for x >= 0
            self.head.requires_grad_(False)  # frozen: reached, but training cannot move it

        def forward_single_task(self, x, task_label):
            h = torch.relu(self.a(x))
            return self.head(self.b(h) if task_label == 0 else h)

    model = TinySupernet()
    x = torch.rand(8, 4)
    assert used_parameters(model, x, 0) == {"a.weight", "a.bias", "b.weight", "b.bias"}
    assert used_parameters(model, x, 1) == {"a.weight", "a.bias"}
    assert not model.head.weight.requires_grad and model.training  # restored


def test_detection_reads_a_forward_that_switches_requires_grad_per_task():
    """PEFT's set_adapter freezes every adapter but the active one inside the forward: detection used to die
    with 'One of the differentiated Tensors does not require grad' (issue 34, item 15)."""
    from forgetbench.benchmark.data.detect import used_parameters
    from forgetbench.benchmark.data.models import TaskRoutedModule

    class SwitchedAdapters(TaskRoutedModule):
        def __init__(self):
            super().__init__()
            self.base = nn.Linear(4, 4)
            self.adapters = nn.ModuleList(nn.Linear(4, 4) for _ in range(2))
            self.head = nn.Linear(4, 2)

        def forward_single_task(self, x, task_label):
            for t, adapter in enumerate(self.adapters):  # what set_adapter(task_label) does
                adapter.requires_grad_(t == task_label)
            h = self.base(x)
            return self.head(h + sum(a(h) for a in self.adapters))  # inactive adapters still run, frozen

    model = SwitchedAdapters()
    for t in (0, 1):
        used = used_parameters(model, torch.rand(8, 4), t)
        assert used == {
            "base.weight",
            "base.bias",
            f"adapters.{t}.weight",
            f"adapters.{t}.bias",
            "head.weight",
            "head.bias",
        }


@pytest.mark.parametrize("name, params", BUILTIN_SMALL)
def test_builtin_scenarios_pass_the_scenario_contract(name, params):
    from forgetbench.benchmark.front.testing import check_scenario

    check_scenario(name, params)


def test_scenario_contract_catches_a_wrong_used_params_declaration(monkeypatch):
    from forgetbench.benchmark.front.testing import check_scenario

    entry = SCENARIOS.get("two_model")

    def lying(params, inputs):  # declares model B without the layers it shares with A
        scenario = entry.factory(params, inputs)
        b = scenario.tasks[1]
        b.used_params = frozenset(n for n in b.used_params if not n.startswith("shared."))
        return scenario

    monkeypatch.setitem(
        SCENARIOS._entries, "two_model", type(entry)(entry.name, lying, entry.params, entry.description)
    )
    with pytest.raises(AssertionError, match=r"declared but unused \[\], used but undeclared \['shared"):
        check_scenario("two_model", {"dataset": "digits", "depth_a": 2, "depth_b": 2, "width": 8, "shared": 1})


def test_reduced_resnet18_has_the_papers_sizes_and_trains_with_regularizers():
    from forgetbench.benchmark.core.config import ComponentSpec
    from forgetbench.benchmark.data.models import resnet18_trunk
    from forgetbench.benchmark.run.spec import RunSpec
    from forgetbench.benchmark.run.runner import run
    from forgetbench.benchmark.front.testing import TRAINING

    def weights(shape, nf):
        trunk, features = resnet18_trunk(shape, [nf])
        return sum(p.numel() for p in trunk.parameters()), features

    assert weights((3, 32, 32), 64) == (11_168_832, 512)  # the CIFAR ResNet-18 trunk (11.17M without its fc)
    assert weights((3, 32, 32), 20) == (1_093_140, 160)  # GEM / Mammoth's reduced ResNet-18, nf = 20
    assert SCENARIOS.get("split").parse_params({"dataset": "digits", "trunk": "resnet18"}).widths == [20]
    spec = ComponentSpec(
        name="split",
        params={"dataset": "digits", "tasks": 2, "classes_per_task": 2, "trunk": "resnet18", "widths": [4]},
    )
    for strategy in ("naive", "ewc", "wpl"):
        record = run(RunSpec("resnet", spec, ComponentSpec(name=strategy), 0, TRAINING, "cpu"), None)
        assert record.status in ("ok", "collapsed"), record.error  # 1 epoch of a tiny ResNet may not learn
        assert len(record.accuracy_matrix) == 2


# ------------------------------------------------------------------ van de Ven & Tolias's three settings
def test_domain_il_has_one_k_way_head_and_ignores_the_task_label():
    scenario = build(setting="domain-IL")
    model = scenario.model
    assert len(model.heads) == 1 and model.heads[0].out_features == 3
    assert all(set(t.train_y.unique().tolist()) == {0, 1, 2} for t in scenario.tasks)
    assert len({frozenset(u) for u in scenario.turn_used_params}) == 1
    x = scenario.tasks[2].test_x[:4]
    with torch.no_grad():
        torch.testing.assert_close(model.forward_single_task(x, 0), model.forward_single_task(x, 2))
    assert scenario.meta["scenario_type"] == "domain-IL" and scenario.tasks[0].num_classes == 3


def test_class_il_labels_each_class_by_its_position_in_the_class_order():
    scenario = build(setting="class-IL")
    assert len(scenario.model.heads) == 1 and scenario.model.heads[0].out_features == 9
    order = scenario.meta["class_order"]
    from forgetbench.benchmark.data.datasets import load_dataset

    data = load_dataset("digits", None, False)
    for t, task in enumerate(scenario.tasks):
        assert set(task.train_y.unique().tolist()) == {3 * t, 3 * t + 1, 3 * t + 2}
        # the test sample's original digit is the class at its label's position in the order
        original = data.test_y[torch.isin(data.test_y, torch.tensor(order[3 * t : 3 * t + 3]))]
        assert sorted(order[int(y)] for y in task.test_y) == sorted(original.tolist())
        assert task.num_classes == 9
    assert scenario.meta["scenario_type"] == "class-IL"


def test_class_il_head_covers_only_the_classes_seen_in_training():
    """van de Ven & Tolias's active classes: while training task t (and when testing after it) the
    units of tasks > t take no part; they are never trained before their task, evaluation does not
    mark anything seen, and after the last task every unit is live."""
    from forgetbench.benchmark.core.config import ComponentSpec
    from forgetbench.benchmark.train.harness import Harness
    from forgetbench.benchmark.run.spec import RunSpec
    from forgetbench.benchmark.run.assemble import build_run_strategy, seeded_scenario
    from forgetbench.benchmark.run.schedule import scheduled_experiences, train_schedule
    from forgetbench.benchmark.core.training import TrainingConfig

    training = TrainingConfig(optimizer="adam", lr=1e-2, batch_size=32, epochs=1, eval_batch_size=512)
    spec = RunSpec(
        "t",
        ComponentSpec(
            name="split",
            params={"dataset": "digits", "tasks": 3, "classes_per_task": 3, "widths": [16], "setting": "class-IL"},
        ),
        ComponentSpec(name="naive"),
        0,
        training,
        "cpu",
    )
    scenario = seeded_scenario(spec, None)
    model = scenario.model
    x = scenario.tasks[0].test_x[:8]
    with torch.no_grad():  # before any training nothing is masked
        assert (model.forward_single_task(x, 0) > -100).all()
    head = model.heads[0]
    initial_rows = head.weight.detach().clone(), head.bias.detach().clone()
    harness = Harness()
    strategy = build_run_strategy(spec, scenario, model, torch.device("cpu"), harness)
    turns = scheduled_experiences(scenario)
    for t, _ in enumerate(train_schedule(strategy, harness, turns, training)):
        seen = torch.arange(9) < 3 * (t + 1)
        assert torch.equal(model.seen_classes, seen), t
        strategy.eval([experience for _, experience in turns])
        assert torch.equal(model.seen_classes, seen), "evaluation must not mark classes as seen"
        with torch.no_grad():
            out = model.forward_single_task(x, 0)
        assert (out[:, ~seen] == model.UNSEEN_LOGIT).all() and (out[:, seen] > -100).all()
        # the units of later tasks were never trained (no gradient reached them, so Adam left them as they were)
        assert torch.equal(head.weight[~seen], initial_rows[0][~seen]), t
        assert torch.equal(head.bias[~seen], initial_rows[1][~seen]), t
        assert not torch.equal(head.weight[seen], initial_rows[0][seen]), t
    assert t == 2 and bool(model.seen_classes.all())
    assert "seen_classes" in model.state_dict()  # checkpoints carry it


def test_masked_unseen_units_give_van_de_ven_s_loss_on_the_active_classes_exactly():
    """Their code slices the logits to the active classes before the cross-entropy; masking the
    other units to UNSEEN_LOGIT must give the same loss and the same gradients."""
    from forgetbench.benchmark.data.models import MultiHeadNet

    torch.manual_seed(0)
    model = MultiHeadNet(nn.Sequential(nn.Linear(5, 7), nn.ReLU()), 7, [6], shared_head=True, seen_classes_only=True)
    model.seen_classes[:4] = True
    x, y = torch.randn(11, 5), torch.randint(0, 4, (11,))
    masked = nn.functional.cross_entropy(model.forward_single_task(x, 0), y)
    grads = torch.autograd.grad(masked, list(model.parameters()))
    sliced = nn.functional.cross_entropy(model.heads[0](model.trunk(x))[:, :4], y)
    reference = torch.autograd.grad(sliced, list(model.parameters()))
    torch.testing.assert_close(masked, sliced, rtol=0, atol=1e-6)
    for g, r in zip(grads, reference):
        torch.testing.assert_close(g, r, rtol=0, atol=1e-7)
    assert (grads[-2][4:] == 0).all() and (grads[-1][4:] == 0).all()
    with pytest.raises(ValueError, match="shared head"):
        MultiHeadNet(nn.Identity(), 5, [2, 2], seen_classes_only=True)


@pytest.mark.effect
def test_naive_forgets_everything_in_class_il_and_the_record_and_report_say_which_setting(tmp_path):
    """The known class-IL failure: after the last task the single head predicts only its classes."""
    from forgetbench.benchmark.core.config import ComponentSpec, TrainingConfig
    from forgetbench.benchmark.run.spec import RunSpec
    from forgetbench.benchmark.run.runner import run

    training = TrainingConfig(optimizer="adam", lr=1e-3, batch_size=32, epochs=3, eval_batch_size=512)
    params = {"dataset": "digits", "tasks": 3, "classes_per_task": 3, "widths": [64]}
    records = {}
    for setting in ("task-IL", "class-IL"):
        spec = RunSpec(
            "t",
            ComponentSpec(name="split", label=setting, params=params | {"setting": setting}),
            ComponentSpec(name="naive"),
            0,
            training,
            "cpu",
        )
        records[setting] = run(spec, None)
        assert records[setting].scenario_type == setting
    R = records["class-IL"].accuracy_matrix
    assert R[0][0] > 0.8 and R[-1][0] < 0.1 and R[-1][-1] > 0.8, R
    assert records["task-IL"].accuracy_matrix[-1][0] > 0.5
    from forgetbench.benchmark.core import store
    from forgetbench.reports.html import write_report

    for record in records.values():
        store.write_result(tmp_path, record)
    html = write_report([tmp_path]).read_text()
    assert "· class-IL ·" in html and "· task-IL ·" in html
