"""NAS as a search: the supernet_search scenario, its controller, the ground-truth cache, the search metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from forgetbench.benchmark.run import assemble, references
from forgetbench.benchmark.core import store
from forgetbench.benchmark.core.config import ComponentSpec, TrainingConfig
from forgetbench.benchmark.run.spec import RunSpec
from forgetbench.benchmark.run.runner import run
from forgetbench.benchmark.data.scenarios import SCENARIOS, ScenarioInputs
from forgetbench.benchmark.data.scenarios.search import Controller, enumerate_space, epoch_err_tables
from forgetbench.benchmark.core import metrics
from helpers import make_record
from forgetbench.benchmark.core.record import TurnAccuracy
from forgetbench.reports.summary import runs_long

TINY = {
    "dataset": "digits",
    "layers": 2,
    "ops": 2,
    "width": 16,
    "epochs": 3,
    "turns_per_epoch": 3,
    "steps_per_turn": 10,
    "validation_size": 200,
    "ground_truth_steps": 30,
}
TRAINING = TrainingConfig(optimizer="sgd", lr=0.05, momentum=0.0, batch_size=32, eval_batch_size=512)


def spec(strategy="naive", params=None, seed=0, **scenario):
    return RunSpec(
        "t",
        ComponentSpec(name="supernet_search", params=TINY | scenario),
        ComponentSpec(name=strategy, params=params or {}),
        seed,
        TRAINING,
        "cpu",
    )


def scenario(seed=0, **params):
    entry = SCENARIOS.get("supernet_search")
    return entry.factory(entry.parse_params(TINY | params), ScenarioInputs(seed, None))


# ------------------------------------------------------------------ metrics, by hand
def test_spearman_rho_by_hand():
    # ranks a = 1 2 3 4, b = 2 1 4 3: d = -1 1 -1 1, rho = 1 - 6 * 4 / (4 * 15) = 0.6
    assert metrics.spearman_rho([0.1, 0.2, 0.3, 0.4], [0.5, 0.1, 0.9, 0.8]) == pytest.approx(0.6)
    assert metrics.spearman_rho([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    # a tie: ranks of b = 1.5 1.5 3; Pearson of (-1, 0, 1) with (-0.5, -0.5, 1) = 1.5 / sqrt(2 * 1.5)
    assert metrics.spearman_rho([1, 2, 3], [5, 5, 7]) == pytest.approx(1.5 / np.sqrt(3.0))
    assert np.isnan(metrics.spearman_rho([1, 1, 1], [1, 2, 3]))


def test_precision_at_k_and_regret_by_hand():
    supernet = [0.9, 0.8, 0.7, 0.6, 0.5]
    truth = [0.60, 0.95, 0.90, 0.70, 0.80]  # true top-2 = {1, 2}; supernet top-2 = {0, 1}
    assert metrics.precision_at_k(supernet, truth, 2) == pytest.approx(0.5)
    assert metrics.precision_at_k(supernet, truth, 5) == pytest.approx(1.0)
    assert metrics.precision_at_k(supernet, truth, 1) == 0.0
    assert metrics.top_k([0.5, 0.9, 0.9, 0.1], 2) == [1, 2]  # ties: the lower index first
    assert metrics.regret(truth, 0) == pytest.approx(0.35)  # picked 0 (0.60), best 0.95
    assert metrics.regret(truth, 1) == 0.0
    with pytest.raises(ValueError, match="k must be in 1..5"):
        metrics.precision_at_k(supernet, truth, 6)


def test_forgetting_value_by_hand():
    err1 = [0.10, None, 0.20, 0.30, 0.05, 0.40, 0.15]
    err2 = [0.30, 0.50, 0.10, 0.60, 0.05, 0.45, 0.35]  # gaps 0.2 - -0.1 0.3 0 0.05 0.2 (cell 1 undefined)
    mean, top5, largest = metrics.forgetting_value(err1, err2)
    assert mean == pytest.approx((0.2 - 0.1 + 0.3 + 0.0 + 0.05 + 0.2) / 6)
    assert top5 == pytest.approx((0.3 + 0.2 + 0.2 + 0.05 + 0.0) / 5)
    assert largest == pytest.approx(0.3)
    assert all(np.isnan(v) for v in metrics.forgetting_value([None], [0.1]))


def test_search_metrics_of_a_record_by_hand():
    record = make_record(
        {
            "search": {
                "validation_accuracy": [0.8, 0.7, 0.9],
                "chosen": 2,
                "top_k": 1,
                "rewards": [[0.1, 0.3], [0.5, 0.7]],
            },
            "standalone_accuracy": [0.80, 0.85, 0.95],
            "err1": [[0.1, None, 0.3], [None, 0.2, None]],
            "err2": [[0.2, None, 0.3], [None, 0.4, None]],
        }
    )
    out = metrics.search_metrics(record)
    assert out["search_tau"] == pytest.approx(1 / 3)  # pair (0,1) discordant, (0,2) and (1,2) concordant
    assert out["search_rho"] == pytest.approx(0.5)
    assert out["precision_at_k"] == 1.0 and out["regret"] == 0.0
    assert out["forgetting_value_mean"] == pytest.approx((0.05 + 0.2) / 2)
    assert out["forgetting_value_max"] == pytest.approx((0.1 + 0.2) / 2)
    assert out["controller_reward"] == pytest.approx(0.6)


def test_epoch_err_tables_by_hand():
    turns = [
        {"turn": 0, "task": 1, "accuracy": 0.6},
        {"turn": 1, "task": 0, "accuracy": 0.7},
        {"turn": 2, "task": 1, "accuracy": 0.8},  # epoch 0: task 1 twice, the later turn counts
        {"turn": 3, "task": 2, "accuracy": 0.5},
        {"turn": 4, "task": 2, "accuracy": 0.9},
        {"turn": 5, "task": 0, "accuracy": 0.75},
    ]
    R = [[0.65, 0.7, 0.1], [0.7, 0.5, 0.85]]
    err1, err2 = epoch_err_tables([TurnAccuracy(**t) for t in turns], R, turns_per_epoch=3, n_candidates=3)
    assert err1[0][0] == pytest.approx(0.3) and err1[0][1] == pytest.approx(0.2) and err1[0][2] is None
    assert err2[0][0] == pytest.approx(0.35) and err2[0][1] == pytest.approx(0.3) and err2[0][2] is None
    assert err1[1][1] is None and err1[1][2] == pytest.approx(0.1) and err2[1][2] == pytest.approx(0.15)


# ------------------------------------------------------------------ the scenario
def test_the_whole_space_is_the_candidate_set_with_one_shared_head():
    sc = scenario()
    assert [tuple(sc.candidates[k]) for k in range(4)] == enumerate_space(2, 2) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert len(sc.tasks) == 4 and len(sc.model.heads) == 1
    # candidates sharing op 0 at position 0 share those weights: exactly the used-parameter overlap
    shared = sc.tasks[0].used_params & sc.tasks[1].used_params
    assert any(n.startswith("cells.0.relu.") for n in shared) and not any(n.startswith("cells.1.") for n in shared)
    # validation is held out of the training data, disjoint from it
    train = {tuple(x.tolist()) for x in sc.tasks[0].train_x}
    assert not train & {tuple(x.tolist()) for x in sc.validation_tasks[0].test_x}
    assert len(sc.validation_tasks[0].test_y) == 200


def test_a_search_run_records_its_choice_errors_and_ground_truth():
    record = run(spec("wpl", {"alpha": 10.0}, search="controller"), data_root=None)
    assert record.status == "ok", record.error
    search = record.search
    assert len(record.accuracy_matrix) == TINY["epochs"] and len(record.turn_accuracy) == 9
    assert search.chosen == int(np.argmax(search.validation_accuracy))
    assert record.architectures[search.chosen] == search.chosen_architecture
    assert len(search.rewards) == TINY["epochs"] and all(len(r) == 30 for r in search.rewards)
    assert len(record.standalone_accuracy) == 4
    trained = [{t.task for t in record.turn_accuracy[3 * e : 3 * e + 3]} for e in range(3)]
    for e in range(3):  # err1 defined exactly for the candidates the epoch trained
        assert {k for k, v in enumerate(record.err1[e]) if v is not None} == trained[e]
    assert record.timing.search_seconds > 0
    values = metrics.run_metrics(record)
    assert {
        "search_tau",
        "search_rho",
        "precision_at_k",
        "regret",
        "forgetting_value_mean",
        "controller_reward",
    } <= set(values)


def test_wpl_sees_each_added_turn(monkeypatch):
    """The schedule grows while training: WPL's penalty must use the turn actually trained."""
    from forgetbench.strategies.wpl import WPLPlugin

    seen = []
    sc_holder = {}
    real_build = assemble.build_scenario

    def build(*args):
        built = real_build(*args)
        sc_holder.setdefault("s", built)  # the run's own (the standalone references rebuild it later)
        return built

    monkeypatch.setattr(assemble, "build_scenario", build)
    real_before = WPLPlugin.before_training_exp

    def before(self, strategy, **kw):
        index = strategy.experience.current_experience
        seen.append((index, len(self.used_params)))
        return real_before(self, strategy, **kw)

    monkeypatch.setattr(WPLPlugin, "before_training_exp", before)
    record = run(spec("wpl", {"alpha": 10.0}), data_root=None)
    assert record.status == "ok", record.error
    assert [i for i, _ in seen] == list(range(9))
    assert all(known > i for i, known in seen)  # the turn being trained is always known to the plugin
    sc = sc_holder["s"]
    assert len(sc.schedule) == 9 and [t.task for t in sc.schedule] == [t.task for t in record.turn_accuracy]


@pytest.mark.effect
def test_the_controller_learns_to_prefer_the_rewarded_architecture():
    torch.manual_seed(0)
    sc = scenario(search="controller", controller={"lr": 0.05, "steps_per_epoch": 150, "entropy_weight": 0.0})
    target = 2  # reward 1 for candidate 2 only
    before = sc.controller.probabilities()
    sc._train_controller(lambda task: 1.0 if task.model_key == target else 0.0)
    after = sc.controller.probabilities()
    arch = sc.candidates[target]
    assert after[0][arch[0]] > max(0.8, before[0][arch[0]]) and after[1][arch[1]] > 0.8
    draws = [sc._draw() for _ in range(50)]
    assert draws.count(target) > 35


def test_controller_sampling_matches_its_log_probability():
    torch.manual_seed(0)
    controller = Controller([3, 3, 3], hidden=8, tanh_constant=2.5)
    arch, log_prob, entropy = controller.sample(torch.Generator().manual_seed(1))
    probs = controller.probabilities()  # greedy path: equal to the sampled path's only where they agree
    counts = {}
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for _ in range(3000):
            a, _, _ = controller.sample(generator)
            counts[a] = counts.get(a, 0) + 1
    assert counts.get(arch, 0) / 3000 == pytest.approx(float(log_prob.detach().exp()), abs=0.03)
    assert 0 < float(entropy) <= 3 * np.log(3) + 1e-6 and len(probs) == 3


def test_search_is_reproducible_within_and_across_executors(tmp_path):
    from forgetbench.benchmark.run.executors import Job, make_executor

    a = run(spec(search="controller", seed=3), data_root=None)
    b = run(spec(search="controller", seed=3), data_root=None)
    for key in ("search", "accuracy_matrix", "turn_accuracy", "err1", "err2", "standalone_accuracy"):
        assert getattr(a, key) == getattr(b, key), key
    executor = make_executor("process", workers=1, data_root=None)
    try:
        [(_, c)] = list(executor.execute([Job("k", spec(search="controller", seed=3))]))
    finally:
        executor.close()
    assert c.status == "ok", c.error
    for key in ("search", "accuracy_matrix", "turn_accuracy", "err1", "err2", "standalone_accuracy"):
        assert getattr(c, key) == getattr(a, key), key


def test_ground_truth_is_cached_on_disk_shared_by_search_settings_and_resumed(tmp_path, monkeypatch):
    references.STANDALONE_CACHE.clear()
    trained = []
    real = references.train_schedule

    def counting(strategy, harness, turns, *args, **kw):
        if len(turns) == 1 and turns[0][0].max_steps == TINY["ground_truth_steps"]:
            trained.append(turns[0][0].task)
        return real(strategy, harness, turns, *args, **kw)

    monkeypatch.setattr(references, "train_schedule", counting)
    first = run(spec(search="random"), data_root=None, cache_dir=tmp_path)
    assert sorted(trained) == [0, 1, 2, 3]
    files = list((tmp_path / store.GROUND_TRUTH_DIR).glob("*.json"))
    assert len(files) == 1
    stored = json.loads(files[0].read_text())
    assert stored["key"]["steps"] == [TINY["ground_truth_steps"]] * 4 and "search" not in stored["key"]["params"]
    assert [stored["accuracy"][str(k)] for k in range(4)] == first.standalone_accuracy

    # another search setting and another process (in-process cache cleared): read from disk, nothing trained
    references.STANDALONE_CACHE.clear()
    trained.clear()
    other = run(spec("ewc", {"ewc_lambda": 1.0}, search="controller"), data_root=None, cache_dir=tmp_path)
    assert trained == [] and other.standalone_accuracy == first.standalone_accuracy

    # an interrupted computation (two entries saved) resumes: only the missing ones are trained
    references.STANDALONE_CACHE.clear()
    store.save_ground_truth(files[0], stored["key"], {0: 0.125, 3: 0.5})
    resumed = run(spec(search="random"), data_root=None, cache_dir=tmp_path)
    assert sorted(trained) == [1, 2]
    assert resumed.standalone_accuracy[0] == 0.125 and resumed.standalone_accuracy[3] == 0.5
    assert resumed.standalone_accuracy[1:3] == first.standalone_accuracy[1:3]

    # a truncated file (a crash mid-write cannot leave one, an edit can) is recomputed, not trusted
    references.STANDALONE_CACHE.clear()
    trained.clear()
    files[0].write_text('{"key": ')
    again = run(spec(search="random"), data_root=None, cache_dir=tmp_path)
    assert sorted(trained) == [0, 1, 2, 3] and again.standalone_accuracy == first.standalone_accuracy


def test_search_metrics_reach_the_summary_and_report(tmp_path):
    records = [run(spec(strategy, seed=seed), data_root=None) for strategy in ("naive", "wpl") for seed in (0, 1)]
    long = runs_long(records)
    for metric in ("search_tau", "regret", "precision_at_k", "forgetting_value_mean"):
        assert len(long[long.metric == metric]) == 4
    out = tmp_path / "results"
    for record in records:
        store.write_result(out, record)
    from forgetbench.reports.html import write_report

    html = write_report([out]).read_text()
    assert "Search: does the supernet find the architectures that are best alone?" in html
    assert "Regret" in html and "Forgetting value (mean)" in html


def test_every_registered_strategy_runs_a_search_or_refuses_clearly():
    """A search is one more scenario: every regularizer runs on it unchanged; the methods that size
    themselves by the number of experiences up front (one mask or adapter each) refuse with a reason."""
    from helpers import builtin_strategies

    refusing = {"supsup", "exssnet", "pic", "merge", "olora", "inflora", "osf"}
    built_in = builtin_strategies()
    assert {"naive", "ewc", "si", "wpl", "mas", "l2", "spg", "lwf"} <= set(built_in)
    for name in built_in:
        record = run(spec(name, search="random", epochs=2), data_root=None)
        if name in refusing:
            assert record.status == "failed" and "needs the whole schedule up front" in record.error, name
        else:
            assert record.status == "ok", (name, record.error)
            assert len(record.accuracy_matrix) == 2 and record.search is not None, name
