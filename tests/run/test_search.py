"""NAS as a search: the supernet_search scenario (a ``custom_supernet`` search over the built-in space: one engine),
its controller, the ground-truth cache, the search metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from forgetbench.benchmark.run import assemble, trained_alone
from forgetbench.benchmark.core import store
from forgetbench.benchmark.run.runner import run
from forgetbench.benchmark.data.scenarios.cell_search import Controller
from forgetbench.benchmark.core import metrics
from helpers import SCENARIO_TRAINING, TINY_SEARCH, make_record, scenario_and_spec
from forgetbench.reports.summary import runs_long

TINY = TINY_SEARCH
TRAINING = SCENARIO_TRAINING
scenario, spec = scenario_and_spec("supernet_search", TINY)


# ------------------------------------------------------------------ metrics, by hand
def test_spearman_rho_by_hand():
    # ranks a = 1 2 3 4, b = 2 1 4 3: d = -1 1 -1 1, rho = 1 - 6 * 4 / (4 * 15) = 0.6
    assert metrics.spearman_rho([0.1, 0.2, 0.3, 0.4], [0.5, 0.1, 0.9, 0.8]) == pytest.approx(0.6)
    assert metrics.spearman_rho([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    # a tie: ranks of b = 1.5 1.5 3; Pearson of (-1, 0, 1) with (-0.5, -0.5, 1) = 1.5 / sqrt(2 * 1.5)
    assert metrics.spearman_rho([1, 2, 3], [5, 5, 7]) == pytest.approx(1.5 / np.sqrt(3.0))
    assert np.isnan(metrics.spearman_rho([1, 1, 1], [1, 2, 3]))


def test_average_ranks_are_scipys_rankdata():
    """The reference: scipy.stats.rankdata's average ranks, on scorings with many ties and on distinct ones."""
    from scipy.stats import rankdata

    rng = np.random.default_rng(0)
    assert metrics.average_ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]
    for n in (1, 2, 7, 40, 500):
        for values in (rng.integers(0, 4, n).astype(float), rng.normal(size=n)):
            assert np.array_equal(metrics.average_ranks(values), rankdata(values)), values


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


def test_search_metrics_of_a_record_written_before_the_ground_truth_key_by_hand():
    """Results folders written before the built-in search became a ``custom_supernet`` one rank every candidate
    under ``search.validation_accuracy`` against ``standalone_accuracy``; the report still reads them."""
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


# ------------------------------------------------------------------ the scenario
def test_the_whole_space_is_the_ground_truth_with_one_shared_head():
    sc = scenario()
    assert [sc.space.names(a) for a in sc.truth] == [
        ("relu", "relu"),
        ("relu", "tanh"),
        ("tanh", "relu"),
        ("tanh", "tanh"),
    ]  # every architecture of 2 x 2, the first position varying slowest
    assert list(sc.model.net.heads) == ["shared"]
    # architectures sharing op 0 at position 0 share those weights: exactly the used-parameter overlap
    relu_relu, relu_tanh = (sc.task_of(a).used_params for a in sc.truth[:2])
    shared = relu_relu & relu_tanh
    assert any(n.startswith("net.cells.0.relu.") for n in shared)
    assert not any(n.startswith("net.cells.1.") for n in shared)
    # validation is held out of the training data, disjoint from it
    train = {tuple(x.flatten().tolist()) for x in sc.data.train[0]}
    assert not train & {tuple(x.flatten().tolist()) for x in sc.data.valid[0]}
    assert len(sc.data.valid[1]) == len(sc.data.evaluation[1]) == 200


def test_a_sample_of_candidates_is_all_random_search_draws():
    sc = scenario(layers=3, ops=3, candidates=5)
    names = {sc.space.names(a) for a in sc.truth}
    assert len(names) == 5 and len(sc.truth) == 5
    assert {sc.space.names(sc._sample()) for _ in range(200)} == names


def test_a_search_run_records_its_choice_errors_and_ground_truth():
    record = run(spec("wpl", {"alpha": 10.0}, search="controller"), data_root=None)
    assert record.status == "ok", record.error
    search = record.search
    assert len(record.err1) == len(record.err2) == TINY["epochs"] and len(record.turn_accuracy) == 9
    assert all(len(row) == 3 for row in record.err1)  # one err per turn of the epoch
    truth = search.ground_truth
    assert len(truth.architectures) == len(truth.standalone_accuracy) == len(truth.supernet_accuracy) == 4
    assert truth.top_k == 4  # min(5, candidates)
    assert len(search.rewards) == TINY["epochs"] and all(len(r) == 30 for r in search.rewards)
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
    picked = int(np.argmax(truth.supernet_accuracy))
    assert values["regret"] == pytest.approx(max(truth.standalone_accuracy) - truth.standalone_accuracy[picked])


def test_wpl_sees_each_added_turn(monkeypatch):
    """The schedule grows while training: WPL's penalty must use the turn actually trained."""
    from forgetbench.strategies.wpl import WPLPlugin

    seen = []
    sc_holder = {}
    real_build = assemble.build_scenario

    def build(*args):
        built = real_build(*args)
        sc_holder.setdefault("s", built)  # the run's own (the ground truth rebuilds it later)
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
    target = (1, 0)  # reward 1 for tanh-relu only
    before = sc.controller.probabilities()
    for _ in range(150):
        sc.reinforce.step(sc.generator, lambda arch: 1.0 if arch == target else 0.0)
    after = sc.controller.probabilities()
    assert after[0][target[0]] > max(0.8, before[0][target[0]]) and after[1][target[1]] > 0.8
    draws = [sc._sample() for _ in range(50)]
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


SEARCH_KEYS = ("search", "turn_accuracy", "err1", "err2", "architecture_names")


def test_search_is_reproducible(tmp_path):
    a = run(spec(search="controller", seed=3), data_root=None)
    b = run(spec(search="controller", seed=3), data_root=None)
    for key in SEARCH_KEYS:
        assert getattr(a, key) == getattr(b, key), key


@pytest.mark.slow  # a worker process importing torch and Avalanche: for the full tier (make test), not the inner loop
def test_search_is_reproducible_across_executors(tmp_path):
    from forgetbench.benchmark.run.executors import Job, make_executor

    a = run(spec(search="controller", seed=3), data_root=None)
    executor = make_executor("process", workers=1, data_root=None)
    try:
        [(_, c)] = list(executor.execute([Job("k", spec(search="controller", seed=3))]))
    finally:
        executor.close()
    assert c.status == "ok", c.error
    for key in SEARCH_KEYS:
        assert getattr(c, key) == getattr(a, key), key


def test_ground_truth_is_cached_on_disk_shared_by_search_settings_and_resumed(tmp_path, monkeypatch):
    trained = []
    real = trained_alone._retrain
    monkeypatch.setattr(trained_alone, "_retrain", lambda *a: trained.append(a[3].steps) or real(*a))
    monkeypatch.setattr(trained_alone, "RETRAINED_CACHE", {})
    first = run(spec(search="random"), data_root=None, cache_dir=tmp_path)
    assert trained == [TINY["ground_truth_steps"]] * 4
    files = sorted((tmp_path / store.GROUND_TRUTH_DIR).glob("*.json"), key=lambda f: f.stat().st_mtime_ns)
    assert len(files) == 4  # one per architecture, each written when it is trained

    # another search setting, strategy and process (in-process cache cleared): read from disk, nothing trained
    monkeypatch.setattr(trained_alone, "RETRAINED_CACHE", {})
    trained.clear()
    other = run(spec("ewc", {"ewc_lambda": 1.0}, search="controller"), data_root=None, cache_dir=tmp_path)
    assert trained == []
    assert other.search.ground_truth.standalone_accuracy == first.search.ground_truth.standalone_accuracy

    # an interrupted computation (two architectures saved) resumes: only the missing ones are trained
    monkeypatch.setattr(trained_alone, "RETRAINED_CACHE", {})
    for f in files[2:]:
        f.unlink()
    resumed = run(spec(search="random"), data_root=None, cache_dir=tmp_path)
    assert trained == [TINY["ground_truth_steps"]] * 2
    assert resumed.search.ground_truth == first.search.ground_truth

    # a truncated file (a crash mid-write cannot leave one, an edit can) is recomputed, not trusted
    monkeypatch.setattr(trained_alone, "RETRAINED_CACHE", {})
    trained.clear()
    files[0].write_text('{"key": ')
    again = run(spec(search="random"), data_root=None, cache_dir=tmp_path)
    assert trained == [TINY["ground_truth_steps"]]
    assert again.search.ground_truth.standalone_accuracy == first.search.ground_truth.standalone_accuracy


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
            assert len(record.err2) == 2 and record.search.ground_truth is not None, name


def test_a_validation_hold_out_reaches_every_split_and_the_architectures_a_search_adds_later():
    """Selection and tuning runs evaluate on held-out training data. A search's architectures share one training set
    and one set of weights, so the hold-out is one split for all of them (a per-architecture one would train the
    shared weights on the others' validation samples), it replaces every split the search scores on (the test split
    is never read), and an architecture added later gets it too."""
    sc = scenario()
    n_train = len(sc.data.train[1])
    training_rows = {tuple(x.flatten().tolist()) for x in sc.data.train[0]}
    before = {sc.space.names(a) for a in sc.model.architectures}
    sc.hold_out_validation(0.25, seed=0)
    held = round(0.25 * n_train)
    assert len(sc.data.train[1]) == n_train - held
    assert all(len(split[1]) == held for split in (sc.data.evaluation, sc.data.valid, sc.data.test))
    seen, scored = ({tuple(x.flatten().tolist()) for x in split[0]} for split in (sc.data.train, sc.data.test))
    assert scored <= training_rows and not seen & scored  # from the training split, and trained on no more
    later = next(a for a in sc.truth if sc.space.names(a) not in before)
    for task in (sc.tasks[0], sc.task_of(later)):
        assert torch.equal(task.train_y, sc.data.train[1]) and torch.equal(task.test_y, sc.data.evaluation[1])
    # the same seed, the same split (every strategy of a tuning study sees it)
    again = scenario()
    again.hold_out_validation(0.25, seed=0)
    assert torch.equal(again.data.valid[0], sc.data.valid[0])
