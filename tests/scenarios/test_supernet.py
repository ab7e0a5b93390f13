"""The supernet scenario: sampling, real weight sharing, exact used parameters, err1/err2, the ground truth.

It is a ``custom_supernet`` search (one engine): a fixed schedule over seed-drawn architectures of the built-in
model, so these tests check that the built-in space keeps its contract through the user path."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from forgetbench.benchmark.run import trained_alone
from forgetbench.benchmark.core.config import ConfigError, resolve_config
from forgetbench.benchmark.core.metrics import kendall_tau, mean_err_gap, search_metrics
from forgetbench.benchmark.run.runner import run
from forgetbench.benchmark.data.scenarios import SCENARIOS
from forgetbench.benchmark.data.scenarios.supernet import position_ops, sample_architectures
from conftest import tiny_suite
from helpers import SCENARIO_TRAINING, make_record, scenario_and_spec

TINY = {
    "dataset": "digits",
    "layers": 3,
    "ops": 4,
    "width": 8,
    "architectures": 4,
    "rounds": 2,
    "steps_per_turn": 12,
}  # enough to leave chance level (else the run is `collapsed`)
TRAINING = SCENARIO_TRAINING
supernet, spec = scenario_and_spec("supernet", TINY)


def ops_of(scenario, k):
    """Op names architecture (task) ``k`` picks, one per position."""
    model = scenario.model
    return list(model.space.names(model.architectures[k]))


# ------------------------------------------------------------------ sampling
def test_sampling_is_deterministic_per_seed_and_distinct():
    a = sample_architectures(layers=4, ops=4, count=10, seed=3)
    assert a == sample_architectures(layers=4, ops=4, count=10, seed=3)
    assert a != sample_architectures(layers=4, ops=4, count=10, seed=4)
    assert len(set(a)) == 10 and all(len(x) == 4 and all(0 <= i < 4 for i in x) for x in a)
    # the whole space can be drawn, and then every architecture appears once
    everything = sample_architectures(layers=2, ops=3, count=9, seed=0)
    assert sorted(everything) == list(itertools.product(range(3), repeat=2))
    names = [t.name for t in supernet(seed=1).tasks]
    assert names == [t.name for t in supernet(seed=1).tasks] and len(set(names)) == 4
    assert names != [t.name for t in supernet(seed=2).tasks]


def test_too_many_architectures_is_a_config_error():
    raw = tiny_suite(
        scenarios=[{"name": "supernet", "params": {"dataset": "digits", "layers": 2, "ops": 2, "architectures": 5}}]
    )
    with pytest.raises(
        ConfigError, match=r"scenarios\[0\]\.params: .*architectures must be in 1\.\.ops\*\*layers = 1\.\.4"
    ):
        resolve_config(raw)
    raw = tiny_suite(scenarios=[{"name": "supernet", "params": {"dataset": "digits", "ops": 9}}])
    with pytest.raises(ConfigError, match=r"scenarios\[0\]\.params\.ops"):
        resolve_config(raw)


def test_identity_only_where_shapes_allow():
    assert "identity" not in position_ops(0, 6) and len(position_ops(0, 6)) == 6
    assert position_ops(1, 4) == ["relu", "tanh", "bottleneck", "identity"]
    assert position_ops(0, 4) == ["relu", "tanh", "bottleneck", "sigmoid"]


# ------------------------------------------------------------------ sharing
def _op_tensors(scenario, position, op):
    return list(scenario.model.net.cells[position][op].parameters())


@pytest.mark.parametrize("cell", ["mlp", "cnn"])
def test_same_op_same_storage_different_op_different_storage(cell):
    scenario = supernet(cell=cell, layers=2, ops=3, architectures=9)  # every architecture of 3**2
    model = scenario.model
    named = dict(model.named_parameters())
    for a, b in itertools.combinations(range(9), 2):
        for position in range(2):
            ops_a, ops_b = ops_of(scenario, a)[position], ops_of(scenario, b)[position]
            prefix = f"net.cells.{position}."
            ptr_a = {named[n].data_ptr() for n in scenario.tasks[a].used_params if n.startswith(prefix)}
            ptr_b = {named[n].data_ptr() for n in scenario.tasks[b].used_params if n.startswith(prefix)}
            if ops_a == ops_b:
                assert ptr_a == ptr_b and ptr_a  # the very same tensors
            else:
                assert not ptr_a & ptr_b
    # and a change to a shared op's weight changes both architectures' outputs
    a, b = next(
        (a, b)
        for a, b in itertools.combinations(range(9), 2)
        if ops_of(scenario, a)[0] == ops_of(scenario, b)[0] and ops_of(scenario, a)[1] != ops_of(scenario, b)[1]
    )
    x = scenario.tasks[0].test_x[:4]
    out_a, out_b, others = model(x, a), model(x, b), [model(x, k) for k in range(9)]
    with torch.no_grad():
        _op_tensors(scenario, 0, ops_of(scenario, a)[0])[0].add_(0.5)
    assert not torch.equal(out_a, model(x, a)) and not torch.equal(out_b, model(x, b))
    for k in range(9):  # architectures with another op at position 0 are untouched
        if ops_of(scenario, k)[0] != ops_of(scenario, a)[0]:
            assert torch.equal(others[k], model(x, k))


@pytest.mark.parametrize("head", ["private", "shared"])
@pytest.mark.parametrize("cell", ["mlp", "cnn"])
def test_used_params_are_exactly_what_gets_gradients(head, cell):
    scenario = supernet(head=head, cell=cell, layers=3, ops=4, architectures=8)
    model = scenario.model
    for task in scenario.tasks:
        model.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(task.train_x[:8], task.model_key), task.train_y[:8])
        loss.backward()
        assert {n for n, p in model.named_parameters() if p.grad is not None} == task.used_params
    heads = {n.split(".")[2] for t in scenario.tasks for n in t.used_params if n.startswith("net.heads.")}
    assert heads == ({"shared"} if head == "shared" else {"-".join(ops_of(scenario, k)) for k in range(8)})


# ------------------------------------------------------------------ schedule and err1/err2
def test_round_robin_records_each_rounds_last_turn_and_sequential_every_turn():
    scenario = supernet(rounds=3, architectures=4, steps_per_turn=5)
    assert [t.task for t in scenario.schedule] == [0, 1, 2, 3]  # round 0; the search adds the next at its end
    assert [t.record for t in scenario.schedule] == [False, False, False, True]
    assert {t.max_steps for t in scenario.schedule} == {5}
    seq = supernet(schedule="sequential")
    assert [t.task for t in seq.schedule] == [0, 1, 2, 3] and all(t.record for t in seq.schedule)


def test_mean_err_gap_by_hand():
    err1, err2 = [[0.4, 0.3], [0.2, 0.1]], [[0.5, 0.3], [0.25, 0.1]]
    assert mean_err_gap(err1, err2) == pytest.approx((0.1 + 0 + 0.05 + 0) / 4)


def test_run_records_err1_err2_consistent_with_matrix_and_turns():
    record = run(spec(rounds=2, architectures=3), data_root=None)
    assert record.status == "ok", record.traceback
    R, turns = record.accuracy_matrix, record.turn_accuracy
    assert np.shape(R) == (2, 3) and [t.task for t in turns] == [0, 1, 2, 0, 1, 2]
    assert record.timing.steps == 6 * TINY["steps_per_turn"]
    err1, err2 = record.err1, record.err2
    assert np.shape(err1) == np.shape(err2) == (2, 3)
    for r in range(2):
        for k in range(3):
            assert err1[r][k] == pytest.approx(1 - turns[3 * r + k].accuracy)
            assert err2[r][k] == pytest.approx(1 - R[r][k])
        # the last architecture of a round is evaluated right after its turn = at the end of the round
        assert err1[r][2] == pytest.approx(err2[r][2])
    scenario = supernet(architectures=3)
    assert record.architecture_names == ["-".join(ops_of(scenario, k)) for k in range(3)]
    assert record.search.ground_truth is None


def test_a_score_at_unchanged_weights_is_read_again_and_the_record_is_the_recomputed_one(monkeypatch):
    """A round's end scores each architecture for the accuracy-matrix row, again for the search's err2, and the
    derivation scores them once more, all at the same weights: each is evaluated once (harness.Scores), and the
    record equals the one that evaluating every time gives."""
    from forgetbench.benchmark.train import harness

    evaluated: list[int] = []
    real = harness.evaluate
    monkeypatch.setattr(harness, "evaluate", lambda *args: evaluated.append(args[1].model_key) or real(*args))
    once = run(spec("ewc", rounds=2, architectures=3), data_root=None).to_dict()
    read_again = len(evaluated)
    evaluated.clear()
    monkeypatch.setattr(
        harness.Scores,
        "__call__",
        lambda self, task: harness.evaluate(self.strategy.model, task, self.batch_size, "cpu"),
    )
    every_time = run(spec("ewc", rounds=2, architectures=3), data_root=None).to_dict()
    for record in (once, every_time):
        for key in ("timing", "started_at", "finished_at"):
            record.pop(key)
    assert once == every_time
    # evaluated: 2 rows of 3, the 4 turns not recorded, the derived architecture on the validation split; read
    # again: err2 (2 x 3) and the 3 derivation candidates at the rows' weights, the test split (the validation one)
    assert read_again == 6 + 4 + 1 and len(evaluated) == read_again + 6 + 3 + 1


def test_sequential_schedule_gives_a_square_matrix_and_one_round():
    record = run(spec(schedule="sequential", architectures=3), data_root=None)
    R = np.array(record.accuracy_matrix)
    assert R.shape == (3, 3)
    np.testing.assert_allclose(record.err1, [1 - np.diag(R)])
    np.testing.assert_allclose(record.err2, [1 - R[-1]])


def test_standalone_is_strategy_independent_cached_and_matches_a_manual_run(monkeypatch, tmp_path):
    monkeypatch.setattr(trained_alone, "RETRAINED_CACHE", {})
    naive = run(spec(standalone=True), data_root=None, cache_dir=tmp_path)
    monkeypatch.setattr(trained_alone, "RETRAINED_CACHE", {})  # another process: only the results folder is shared
    trained = []
    original = trained_alone._retrain
    monkeypatch.setattr(trained_alone, "_retrain", lambda *a: trained.append(1) or original(*a))
    wpl = run(spec("wpl", {"alpha": 10.0}, standalone=True), data_root=None, cache_dir=tmp_path)
    assert naive.status == wpl.status == "ok"
    a, b = naive.search.ground_truth, wpl.search.ground_truth
    assert trained == []  # the 4 standalone models came from the results folder
    assert a.standalone_accuracy == b.standalone_accuracy and len(a.standalone_accuracy) == 4
    assert a.architectures == naive.architecture_names and a.steps == 2 * TINY["steps_per_turn"]
    # the search's ranking is the supernet's final accuracy of each architecture (the last accuracy row)
    assert a.supernet_accuracy == pytest.approx(naive.accuracy_matrix[-1])
    assert search_metrics(naive)["search_tau"] == pytest.approx(kendall_tau(a.supernet_accuracy, a.standalone_accuracy))
    # a fresh computation gives the same numbers (reproducible, not an artefact of the cache)
    monkeypatch.setattr(trained_alone, "RETRAINED_CACHE", {})
    again = run(spec(standalone=True), data_root=None)
    assert again.search.ground_truth.standalone_accuracy == a.standalone_accuracy

    # by hand: architecture 1 alone, from the same initial weights, for rounds x steps_per_turn steps
    from forgetbench.benchmark.run import spec as run_spec
    from forgetbench.benchmark.run.assemble import build_scenario
    from forgetbench.benchmark.train.harness import evaluate

    run_spec.seed_everything(0)
    scenario = build_scenario(spec(standalone=True), None)
    model, task = scenario.model, scenario.tasks[1]
    opt = torch.optim.SGD(model.parameters(), lr=TRAINING.lr)
    gen = torch.Generator().manual_seed(0)
    steps = 0
    budget = 2 * TINY["steps_per_turn"]  # rounds x steps_per_turn
    while steps < budget:
        order = torch.randperm(len(task.train_y), generator=gen)
        x, y = task.train_x[order], task.train_y[order]
        for start in range(0, len(y), TRAINING.batch_size):
            if steps == budget:
                break
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[start : start + 32], 1), y[start : start + 32]).backward()
            opt.step()
            steps += 1
    assert torch.equal(task.test_y, scenario.data.test[1])  # a fixed schedule evaluates on the test split
    assert evaluate(model, task, 512, torch.device("cpu")) == pytest.approx(a.standalone_accuracy[1])


def test_same_seed_same_numbers():
    a = run(spec("wpl", {"alpha": 50.0}), data_root=None)
    b = run(spec("wpl", {"alpha": 50.0}), data_root=None)
    assert a.accuracy_matrix == b.accuracy_matrix and a.err1 == b.err1


def test_supernet_summary_table_by_hand():
    from forgetbench.reports.supernet import supernet_frame, supernet_summary

    def rec(strategy, seed, final, standalone):
        truth = {"architectures": ["a", "b", "c"], "supernet_accuracy": final, "standalone_accuracy": standalone}
        return make_record(
            {
                "status": "ok",
                "scenario": {"label": "s"},
                "strategy": {"label": strategy},
                "seed": seed,
                "accuracy_matrix": [[0.0, 0.0, 0.0], final],
                "err1": [[0.1, 0.2, 0.3]],
                "err2": [[0.2, 0.2, 0.3]],
                "search": {"kind": "fixed", "ground_truth": truth},
            }
        )

    records = [
        rec("naive", 0, [0.9, 0.8, 0.7], [0.9, 0.8, 0.7]),
        rec("naive", 1, [0.9, 0.8, 0.7], [0.7, 0.8, 0.9]),
        make_record({"status": "failed", "scenario": {"label": "s"}, "strategy": {"label": "x"}}),
    ]
    frame = supernet_frame(records)
    assert len(frame) == 2 and frame.err_gap.tolist() == pytest.approx([0.1 / 3] * 2)
    table = supernet_summary(records)
    assert len(table) == 1
    row = table.iloc[0]
    assert row.err_gap_mean == pytest.approx(0.1 / 3)
    assert row.kendall_tau_mean == pytest.approx(0.0)  # +1 and -1
    assert row.final_acc_mean == pytest.approx(0.8)


@pytest.mark.parametrize("head", ["private", "shared"])
def test_the_memory_preflight_counts_the_network_it_builds(head):
    entry = SCENARIOS.get("supernet")
    params = entry.parse_params(TINY | {"head": head})
    built = supernet(head=head).model
    assert params.parameter_count() == sum(p.numel() for p in built.parameters())
