"""The estimate's arithmetic, on made-up measurements: a step never fits at nothing, a busy machine leaves the workers
fewer cores, a pair the budget left unmeasured costs its scenario's mean, rounds give a range."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from forgetbench.benchmark.run import estimate as E


def _record(steps: int, train: float, importance: float | None = None) -> SimpleNamespace:
    return SimpleNamespace(timing=SimpleNamespace(steps=steps, train_seconds=train, importance_seconds=importance))


def test_a_step_costs_at_least_what_the_runs_own_clock_says(monkeypatch):
    """The load moved the walls (the longer probe ran faster): the fit reads a step at nothing, and used to put every
    second in the fixed part ('500 steps at 0.0 ms'); the runs' own training clock is the floor."""
    walls = iter([(3.0, _record(20, 0.4, 0.1)), (2.5, _record(40, 0.8, 0.1))])
    monkeypatch.setattr(E, "_timed", lambda spec, root, steps: next(walls))
    monkeypatch.setattr(E, "_steps", lambda spec, root: 1000)
    monkeypatch.setattr(E, "probe_steps", lambda spec: (20, 40))
    cost = E.measure(SimpleNamespace(), None)
    assert cost.step_seconds == pytest.approx((0.8 - 0.1) / 40)
    assert cost.fixed_seconds == pytest.approx(3.0 - 20 * (0.7 / 40))
    assert cost.run_seconds == pytest.approx(cost.fixed_seconds + 1000 * 0.7 / 40)


def test_workers_beside_busy_cores_get_their_fair_share(monkeypatch):
    monkeypatch.setattr(E, "available_cores", lambda: 2)
    assert E._capacity(2, 0.0) == 2.0  # a quiet machine: every worker a core
    assert E._capacity(1, 1.0) == 1.0  # one run beside one busy core: a core of its own
    assert E._capacity(2, 1.0) == pytest.approx(4 / 3)  # three busy processes on two cores
    estimate = E.Estimate(workers=2, capacity=4 / 3, seconds={"runs": 40.0}, costs={("a", "b"): E.Cost(0, 1.0, 0)})
    assert estimate.wall_seconds == pytest.approx(30.0)  # 40 s of runs on 4/3 cores


def test_an_unmeasured_pair_costs_its_scenarios_run_times_the_strategys_ratio_and_rounds_give_a_range():
    measured = {("s", "naive"): E.Cost(0.001, 1.0, 1000), ("s", "ewc"): E.Cost(0.001, 3.0, 1000)}
    assert E._assumed(("s", "wpl"), measured)[0].run_seconds == pytest.approx(3.0)  # wpl timed nowhere: (2 + 4) / 2
    assert E._assumed(("t", "wpl"), measured)[0].run_seconds == pytest.approx(3.0)  # no pair of t: all of them
    # ewc costs 4 / 2 = 2x naive in s; t's naive took 5 s: t's ewc is priced at 10 s, and says so
    measured[("t", "naive")] = E.Cost(0.0, 5.0, 0, batched_seconds=2.0)
    cost, how = E._assumed(("t", "ewc"), measured)
    assert (cost.run_seconds, cost.batched_seconds) == (pytest.approx(10.0), pytest.approx(4.0))
    assert how == "its scenario's naive x 2.00, ewc's ratio to naive in s"


def test_the_estimate_times_every_scenario_then_every_strategy_before_the_rest():
    planned = {("a", "naive"): 9, ("a", "ewc"): 9, ("a", "si"): 9, ("b", "naive"): 3, ("b", "ewc"): 3, ("b", "si"): 3}
    distinct = dict.fromkeys(planned)
    measured: dict = {}
    order = []
    for key in E._measuring_order(distinct, planned, measured):  # type: ignore[arg-type]
        order.append(key)
        measured[key] = E.Cost(0.0, 1.0 if key[0] == "b" else 5.0, 0)  # b's runs are the cheap ones
    assert order[:2] == [("a", "naive"), ("b", "naive")]  # each scenario first
    assert order[2:4] == [("b", "ewc"), ("b", "si")]  # each strategy next, where a run was cheapest
    assert sorted(order) == sorted(planned)
    estimate = E.Estimate(
        counts={"runs": 10, "rounds": 30},
        seconds={"runs": 10.0, "rounds": 30.0},
        costs={("s", "naive"): E.Cost(0, 1.0, 0)},
        assumed=[("s", "naive")],
    )
    assert estimate.first_round_seconds == pytest.approx(10.0) and estimate.wall_seconds == pytest.approx(40.0)
    lines = estimate.lines()
    assert "10 s (first round) to 40 s (every round up to max)" in lines[1]
    assert "s / naive: 1.0 s a run (not measured: its scenario's measured mean)" in lines[2]


def test_a_runs_seeds_are_one_task_at_the_batchs_rate_and_a_round_batches_its_step():
    from dataclasses import replace

    from conftest import tiny_suite

    from forgetbench.benchmark.core.config import resolve_config
    from forgetbench.benchmark.run.spec import expand_suite

    suite = resolve_config(tiny_suite(seeds={"start": 3, "max": 9, "step": 3}, strategies=[{"name": "ewc"}]))
    first = expand_suite(suite)
    assert [len(b) for b in E._batches("runs", first, suite)] == [3]  # the first seeds: one batch
    more = [replace(first[0], seed=seed) for seed in range(3, 9)]
    assert [len(b) for b in E._batches("rounds", more, suite)] == [3, 3]  # two rounds of step 3
    alone = suite.model_copy(update={"batch_seeds": False})
    assert [len(b) for b in E._batches("runs", first, alone)] == [1, 1, 1]
    cost = E.Cost(0.01, 1.0, 100, batched_seconds=0.5)
    assert cost.seconds(batched=True) == 0.5 and cost.seconds(batched=False) == pytest.approx(2.0)
    # a batch is one task: the longest one bounds the wall, as the longest run does
    estimate = E.Estimate(workers=2, capacity=2.0, seconds={"runs": 1.5}, costs={("a", "b"): cost}, longest_seconds=1.5)
    assert estimate.wall_seconds == pytest.approx(1.5)  # not the 0.75 s two workers would make of 1.5 s of runs
    assert "2.0 s a run" in estimate.lines()[2] and "0.5 s a seed in a batch" in estimate.lines()[2]


def test_a_command_started_for_the_estimate_counts_its_budget_from_its_start(monkeypatch, tmp_path):
    """``forgetbench run --estimate`` is the wait the budget bounds: the command's own start (its imports, which the
    run's command will pay too) is inside the budget and in the start-up it expects, not timed again by a second
    process. A command older than the budget measures only its most planned pair."""
    from conftest import tiny_suite

    from forgetbench.benchmark.core.config import resolve_config

    suite = resolve_config(tiny_suite(strategies=[{"name": "naive"}, {"name": "ewc"}, {"name": "si"}]))
    measured: list[str] = []

    def measure(spec, root, batched=False):
        measured.append(spec.strategy.name)
        return E.Cost(0.001, 1.0, 100)

    monkeypatch.setattr(E, "_import_seconds", lambda: pytest.fail("a second process timed the start"))
    monkeypatch.setattr(E, "probe_steps", lambda spec: (5, 10))
    monkeypatch.setattr(E, "_timed", lambda spec, root, steps: (0.0, None))
    monkeypatch.setattr(E, "measure", measure)
    young = E.estimate(suite, tmp_path, tmp_path, executor="process", new_process=True, command_age=3.0)
    assert sorted(measured) == ["ewc", "naive", "si"] and not young.assumed
    assert young.overhead_seconds >= 2 * 3.0  # the run's command starts, and so does each worker
    assert young.timing_seconds >= 3.0
    measured.clear()
    old = E.estimate(suite, tmp_path, tmp_path, executor="process", new_process=True, command_age=E.BUDGET_SECONDS + 1)
    assert len(measured) == 1 and len(old.assumed) == 2
    assert old.timing_seconds >= E.BUDGET_SECONDS + 1
