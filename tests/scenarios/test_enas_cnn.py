"""The ENAS micro-CNN cell search (issue 33): the decision layout, the cell's wiring by hand, which weights an
architecture uses (exactly those its gradient reaches), and the search end to end on digits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from forgetbench.benchmark.core.config import ComponentSpec
from forgetbench.benchmark.run.spec import RunSpec
from forgetbench.benchmark.run.runner import run
from forgetbench.benchmark.data.scenarios.base import ScenarioInputs
from forgetbench.benchmark.data.scenarios.enas_cnn import (
    ConvCellSupernet,
    ConvSearchParams,
    build_enas_cnn,
    decision_choices,
    loose_ends,
    split_cells,
)
from forgetbench.benchmark.core.training import TrainingConfig
from helpers import make_record, check_reduced_strength_study

TRAINING = TrainingConfig(lr=0.05, momentum=0.9, batch_size=16, eval_batch_size=64)


def tiny_params(**overrides) -> ConvSearchParams:
    base = dict(
        dataset="digits",
        nodes=3,
        channels=6,
        cells_per_stage=1,
        reductions=2,
        sep_conv_stack=1,
        validation_size=200,
        eval_size=100,
        max_train=400,
        epochs=2,
        turns_per_epoch=3,
        steps_per_turn=3,
        derive_samples=4,
        controller={"steps_per_epoch": 3, "reward_samples": 32},
    )
    return ConvSearchParams(**(base | overrides))


def test_decisions_are_input_op_input_op_per_node_normal_then_reduction():
    assert decision_choices(2, 5, reductions=0) == [2, 5, 2, 5, 3, 5, 3, 5]
    assert decision_choices(2, 5, reductions=2) == [2, 5, 2, 5, 3, 5, 3, 5] * 2
    arch = (0, 4, 1, 4, 2, 0, 2, 1) + (1, 2, 1, 3, 0, 0, 2, 4)
    assert split_cells(arch, 2) == (arch[:8], arch[8:])
    # normal cell: node 2 reads 0 and 1, node 3 reads 2 twice: only node 3 is a loose end
    assert loose_ends(arch[:8], 2) == [3]
    # reduction cell: node 2 reads 1 twice, node 3 reads 0 and 2: node 3 again
    assert loose_ends(arch[8:], 2) == [3]
    # an input no node reads is a loose end too (ENAS combines it into the output)
    assert loose_ends((1, 0, 1, 4, 2, 0, 1, 1), 2) == [0, 3]


def test_the_cell_computes_its_equations_by_hand():
    """Node 2 = sep_conv_3x3(s0) + identity(s1); node 3 = max_pool(s2) + avg_pool(s1); loose ends {0?, 3}:
    s0 is read, so only node 3; out = BN(W_3 relu(s3))."""
    params = tiny_params(nodes=2, reductions=0, channels=4)
    net = ConvCellSupernet(params, (1, 8, 8), 10)
    cell = net.cells[0]
    ops = params.ops  # sep3, sep5, avg, max, identity
    decisions = (
        0,
        ops.index("sep_conv_3x3"),
        1,
        ops.index("identity"),
        2,
        ops.index("max_pool_3x3"),
        1,
        ops.index("avg_pool_3x3"),
    )
    torch.manual_seed(0)
    s0, s1 = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    out = cell(s0, s1, decisions)

    def bn(x):  # batch statistics, no affine weights
        mean, var = x.mean(dim=(0, 2, 3), keepdim=True), x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
        return (x - mean) / torch.sqrt(var + 1e-5)

    def calibrate(pre, x):
        return bn(F.conv2d(F.relu(x), pre.conv.weight))

    x0, x1 = calibrate(cell.preprocess[0], s0), calibrate(cell.preprocess[1], s1)
    sep = cell.edges["0_2"]["sep_conv_3x3"]
    depthwise, pointwise = sep[1].weight, sep[2].weight
    s2 = bn(F.conv2d(F.conv2d(F.relu(x0), depthwise, padding=1, groups=4), pointwise)) + x1
    s3 = F.max_pool2d(s2, 3, 1, 1) + F.avg_pool2d(x1, 3, 1, 1, count_include_pad=False)
    expected = bn(F.conv2d(F.relu(s3), cell.combine[3].weight))
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("reductions", [0, 1, 2])
def test_an_architecture_uses_exactly_the_weights_its_gradient_reaches(reductions):
    """used_parameter_names (what every regularizer reads to tell shared from private) equals the set of
    parameters with a nonzero gradient after one backward pass, for every sampled architecture."""
    scenario = build_enas_cnn(tiny_params(reductions=reductions, turns_per_epoch=6), ScenarioInputs(0, None))
    model = scenario.model
    assert len(scenario.tasks) >= 4
    x = scenario.tasks[0].train_x[:8]
    for task in scenario.tasks:
        model.zero_grad(set_to_none=True)
        model(x, task.model_key).square().sum().backward()
        reached = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
        assert reached == set(task.used_params), task.name
    # architectures share the stem and the classifier, and differ in the edges they draw
    first, second = scenario.tasks[0].used_params, scenario.tasks[1].used_params
    assert {"stem.0.weight", "classifier.weight"} <= first & second and first != second
    assert any(".edges." in n for n in first - second)


def test_the_reduction_cells_halve_the_resolution_and_double_the_channels():
    params = tiny_params(channels=4, reductions=2, cells_per_stage=2)
    net = ConvCellSupernet(params, (1, 8, 8), 10)
    assert net.reduction_cells == [False, False, True, False, False, True, False, False]
    assert net.classifier.in_features == 16
    arch = tuple(0 for _ in decision_choices(params.nodes, len(params.ops), params.reductions))
    net.add_architecture(arch)
    shapes = []
    hooks = [c.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:]))) for c in net.cells]
    net(torch.randn(2, 1, 8, 8), 0)
    for h in hooks:
        h.remove()
    assert shapes == [(4, 8, 8)] * 2 + [(8, 4, 4)] * 3 + [(16, 2, 2)] * 3
    assert params.parameter_count() == sum(p.numel() for p in net.parameters())


def _record(strategy: ComponentSpec, **overrides) -> dict:
    spec = RunSpec(
        "t",
        ComponentSpec(name="enas_cnn", params=tiny_params(**overrides).model_dump(mode="json")),
        strategy,
        0,
        TRAINING,
        "cpu",
    )
    record = run(spec, Path("."))
    assert record.status == "ok", record.traceback or record.error
    return record


def test_search_records_err_tables_rewards_and_the_derived_architecture():
    record = _record(ComponentSpec(name="naive"), retrain_steps=5, measure_from_epoch=1)
    assert [len(row) for row in record.err1] == [3, 3] and [len(row) for row in record.err2] == [3, 3]
    assert all(0.0 <= e <= 1.0 for row in record.err1 + record.err2 for e in row)
    # the last turn of each epoch: nothing trained after it, so err2 == err1 there
    assert record.err2[0][-1] == pytest.approx(record.err1[0][-1])
    assert record.timing.steps == 2 * 3 * 3
    search = record.search
    assert search.error == "validation error (1 - accuracy)" and search.measured_from_epoch == 1
    assert len(search.rewards) == 2 and len(search.rewards[0]) == 3
    derived = search.derived
    assert derived.test_accuracy == pytest.approx(1 - derived.test_err)
    assert derived.candidates == len(derived.candidates_err) <= 4
    assert derived.retrained.steps == 5 and 0 <= derived.retrained.test_accuracy <= 1
    assert record.data.model_dump() == {"dataset": "digits", "train": 400, "valid": 200, "evaluation": 100, "test": 450}
    again = _record(ComponentSpec(name="naive"), retrain_steps=5, measure_from_epoch=1)
    assert again.err1 == record.err1 and again.search.derived == derived


# 3 s a search: the inner loop runs the quadratic core's (wpl_online) and SI's path integral; the full tier also
# ewc, mas and l2, the core's other importances
FULL_TIER = pytest.mark.slow


@pytest.mark.parametrize(
    "strategy",
    [
        ComponentSpec(name="wpl_online", params={"alpha": 60, "accumulate": "momentum", "clip_norm": 10.0}),
        pytest.param(
            ComponentSpec(name="ewc", params={"ewc_lambda": 10, "mode": "online", "decay_factor": 0.9}), marks=FULL_TIER
        ),
        ComponentSpec(name="si"),
        pytest.param(ComponentSpec(name="mas"), marks=FULL_TIER),
        pytest.param(ComponentSpec(name="l2"), marks=FULL_TIER),
    ],
)
def test_regularizers_run_in_the_search_unchanged(strategy):
    record = _record(strategy, search="random")
    assert len(record.err1) == 2 and record.search.derived.test_accuracy >= 0


def test_the_report_metrics_of_a_cnn_search_are_in_points_from_measure_from_epoch():
    from forgetbench.benchmark.core.metrics import run_metrics

    record = make_record(
        {
            "status": "ok",
            "search": {
                "error": "validation error (1 - accuracy)",
                "measured_from_epoch": 1,
                "rewards": [[0.5, 0.7], [0.8, 0.9]],
                "derived": {
                    "architecture": [0],
                    "valid_accuracy": 0.8,
                    "test_accuracy": 0.75,
                    "retrained": {"steps": 5, "valid_accuracy": 0.9, "test_accuracy": 0.85},
                },
            },
            "err1": [[0.5, 0.4], [0.3, 0.2]],
            "err2": [[0.4, 0.4], [0.5, 0.2]],
        }
    )
    m = run_metrics(record)
    # epoch 1 only: gaps 0.2 and 0.0
    assert m["forgetting_value_mean"] == pytest.approx(0.1) and m["forgetting_value_max"] == pytest.approx(0.2)
    # every epoch: (-0.05 + 0.1) / 2
    assert m["forgetting_value_whole_search"] == pytest.approx(0.025)
    assert m["derived_test_accuracy"] == 0.75 and m["retrained_test_accuracy"] == 0.85
    assert m["controller_reward"] == pytest.approx(0.85)


def test_the_report_of_a_cnn_search_opens_on_the_four_panels_in_points(write_suite, cli, tmp_path):
    params = tiny_params(search="controller").model_dump(mode="json")
    suite = {
        "name": "enas_cnn_tiny",
        "seeds": [0, 1],
        "device": "cpu",
        "training": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "batch_size": 16, "eval_batch_size": 64},
        "scenarios": [{"name": "enas_cnn", "label": "cnn_tiny", "params": params}],
        "strategies": [{"name": "naive"}, {"name": "wpl_online", "label": "wpl", "params": {"alpha": 60}}],
    }
    out = tmp_path / "out"
    assert cli("run", write_suite(suite), "--out", out, "--quiet") == 0
    html = (out / "report.html").read_text()
    headline = html.index('<figure class="headline" id="headline-s-cnn-tiny"')
    assert "err2 − err1 in points (validation error)" in html[headline : html.index("</figure>", headline)]
    assert html.index('<figure class="headline"') == headline  # the first figure of the report
    assert "What the search ships, wpl vs naive on the same seeds" in html and "derived test acc" in html


@pytest.mark.slow  # a reduced strength study: 10-60 s, for the full tier (make test), not the inner loop (make test-fast)
def test_the_cnn_strength_study_runs_reduced_and_its_strengths_order_the_penalty(write_suite, cli, tmp_path):
    """configs/enas_cnn_wpl_strength.yaml (issue 52, item 4) reduced: one seed, each sweep's weakest and strongest
    point, a tiny cell on digits, the penalty started after 2 turns and reset every 4 (the config's 12 and 24 are
    counted for 60 turns). Every run finishes, and within each method the strongest point's penalty is the larger
    share of the data gradient (the ends are 1,000x or 100x apart: a wide margin on any CPU)."""
    check_reduced_strength_study(
        "enas_cnn_wpl_strength.yaml",
        tiny_params(epochs=3, search="controller").model_dump(mode="json"),
        {"batch_size": 16, "eval_batch_size": 64},
        {"start_after": 2, "reset_every": 4},
        cli,
        write_suite,
        tmp_path / "out",
    )
