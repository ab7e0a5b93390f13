"""Seeds trained as one stacked model (benchmark/run/batching/): the per-seed runner is the reference. Each batched
record equals its run's own record (accuracy matrices within 1e-4; on this path they are bit for bit the same),
for every strategy the path supports on the two-model, split and permuted scenarios; what cannot be stacked
faithfully runs seed by seed with one line saying why; a suite gives the same records with --batch-seeds on and off,
and a batched round killed mid-way resumes to them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from conftest import tiny_suite
from helpers import REPO, TINY_TWO_MODEL, VOLATILE

from forgetbench.benchmark.core.config import ComponentSpec, TrainingConfig
from forgetbench.benchmark.run.batching import model_refusal, run_seeds
from forgetbench.benchmark.run.runner import run
from forgetbench.benchmark.run.batching.groups import same_but_seed, seed_batches
from forgetbench.benchmark.run.spec import RunSpec

HOW_IT_RAN = VOLATILE  # how a record ran (its batch among them), never what it computed
TRAINING = TrainingConfig(lr=0.05, momentum=0.9, batch_size=32, eval_batch_size=512)
SCENARIOS = {
    "two_model": TINY_TWO_MODEL | {"data_b": "permuted"},
    "split": {"dataset": "digits", "tasks": 3, "classes_per_task": 2, "widths": [16], "max_train_per_task": 120},
    "permuted": {"dataset": "digits", "tasks": 3, "widths": [16], "max_train_per_task": 120},
    # each seed on its own drawn architectures, its private heads named by them: a search, batched op by op
    "supernet": {"dataset": "digits", "layers": 3, "ops": 3, "width": 16, "architectures": 3, "head": "private",
                 "schedule": "sequential", "steps_per_turn": 25, "max_test": 200},
}  # fmt: skip
STRATEGIES = {  # the regularizer core's strategies, at strengths where their penalty acts on these tiny runs
    "naive": {},
    "ewc": {"ewc_lambda": 1000.0},
    "si": {"si_lambda": 3.0},
    "mas": {"lambda_reg": 1.0},
    "l2": {"l2_lambda": 0.1},
    "wpl": {"alpha": 1000.0},
    "wpl_online": {},
    "lwf": {},  # not the core's: its teachers and students stacked (lockstep_step), each distillation the seed's own
}


def _specs(scenario: str, strategy: str, seeds=(0, 1, 2), training: TrainingConfig = TRAINING) -> list[RunSpec]:
    return [
        RunSpec(
            "batched",
            ComponentSpec(name=scenario, params=SCENARIOS[scenario]),
            ComponentSpec(name=strategy, params=STRATEGIES.get(strategy, {})),
            seed,
            training,
            "cpu",
        )
        for seed in seeds
    ]


def _what_it_computed(record) -> dict:
    data = record.to_dict()
    for key in HOW_IT_RAN:
        data.pop(key, None)
    return data


def _assert_same_runs(batched, alone) -> None:
    for b, a in zip(batched, alone):
        assert b.status == a.status and a.status in ("ok", "collapsed"), (b.error, a.error)
        matrix_b, matrix_a = torch.tensor(b.accuracy_matrix), torch.tensor(a.accuracy_matrix)
        assert matrix_b.shape == matrix_a.shape
        assert torch.allclose(matrix_b, matrix_a, atol=1e-4, rtol=0)
        assert _what_it_computed(b) == _what_it_computed(a)  # and every other number of the record


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_a_batch_of_seeds_gives_each_seed_its_own_runs_record(strategy, tmp_path):
    specs = _specs("two_model", strategy)
    batched = run_seeds(specs, tmp_path)
    assert [r.batch.seeds for r in batched] == [[0, 1, 2]] * 3, [r.batch for r in batched]
    assert [r.run_id for r in batched] == [s.run_id for s in specs]
    assert [r.fingerprint for r in batched] == [run(s, tmp_path).fingerprint for s in specs]
    _assert_same_runs(batched, [run(spec, tmp_path) for spec in specs])


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_supernet_seeds_on_their_own_architectures_batch_to_their_own_records(strategy, tmp_path):
    specs = _specs("supernet", strategy)
    batched = run_seeds(specs, tmp_path)
    assert [r.batch.seeds for r in batched] == [[0, 1, 2]] * 3, [r.batch for r in batched]
    assert len({tuple(map(str, r.architectures)) for r in batched}) == 3  # the seeds trained other architectures
    _assert_same_runs(batched, [run(spec, tmp_path) for spec in specs])


@pytest.mark.parametrize("scenario", ["split", "permuted"])
@pytest.mark.parametrize("strategy", ["naive", "ewc", "si"])
def test_split_and_permuted_seeds_batch_to_their_own_records(scenario, strategy, tmp_path):
    specs = _specs(scenario, strategy, seeds=(3, 5))
    batched = run_seeds(specs, tmp_path)
    assert all(r.batch.seeds == [3, 5] for r in batched), [r.batch for r in batched]
    _assert_same_runs(batched, [run(spec, tmp_path) for spec in specs])


@pytest.mark.parametrize(
    "scenario, strategy, estimator",
    [("two_model", "ewc", "FisherEstimate"), ("two_model", "wpl", "FisherEstimate"),
     ("two_model", "mas", "OutputSensitivity"), ("supernet", "wpl", "FisherEstimate"),
     ("supernet", "mas", "OutputSensitivity")],
)  # fmt: skip
def test_a_batchs_importance_passes_run_once_for_its_seeds(scenario, strategy, estimator, tmp_path, monkeypatch):
    """EWC's squared mini-batch gradients, WPL's exact Fisher and MAS's output sensitivity run on the stack for every
    seed at once: one seed's own pass runs an experience (the check that the stack's is bit for bit its own), a
    different seed's each experience in turn, so K seeds cost one own pass an experience where K runs alone cost K."""
    from forgetbench.strategies import parts

    own_passes = []
    kind = getattr(parts, estimator)
    original = kind.__call__
    monkeypatch.setattr(
        kind, "__call__", lambda self, strategy, *a: own_passes.append(strategy) or original(self, strategy, *a)
    )
    specs = _specs(scenario, strategy)
    batched = run_seeds(specs, tmp_path)
    assert all(r.batch.seeds == [0, 1, 2] for r in batched)
    in_batch = len(own_passes)
    assert len({id(s) for s in own_passes}) == min(in_batch, 3)  # each experience checks the next seed
    alone = [run(spec, tmp_path) for spec in specs]
    # alone, each seed its own pass, every time; a search's seeds pass where their own architectures share weights
    passes_alone = len(own_passes) - in_batch
    assert in_batch > 0 and (passes_alone == 3 * in_batch if scenario == "two_model" else passes_alone >= 2 * in_batch)

    _assert_same_runs(batched, alone)


@pytest.mark.parametrize("scenario", ["two_model", "supernet"])
def test_a_batchs_path_integral_steps_once_for_its_seeds(scenario, tmp_path, monkeypatch):
    """SI's per-step hooks (the weights before the step, w -= g * step) run once a step on the stacked buffers, not
    once a seed, and each seed's w is its own run's (the records equal): also where each seed moves its own tensors
    (a supernet's seeds, each on its own architectures: the union, each seed reading back its own rows)."""
    from forgetbench.strategies.parts import PathIntegral

    calls = []
    original = PathIntegral.after_step
    monkeypatch.setattr(PathIntegral, "after_step", lambda self, plugin: calls.append(1) or original(self, plugin))
    specs = _specs(scenario, "si")
    batched = run_seeds(specs, tmp_path)
    assert all(r.batch.seeds == [0, 1, 2] for r in batched) and calls == []
    _assert_same_runs(batched, [run(spec, tmp_path) for spec in specs])
    assert calls  # alone, each seed steps its own


@pytest.mark.parametrize("scenario", ["two_model", "supernet"])
def test_a_batch_scores_its_seeds_turns_at_once(scenario, tmp_path, monkeypatch):
    """After each turn the K seeds' models are scored on their own test data as one stacked model (their logits
    checked against each seed's own model in eval mode on the first batch of each model): no seed evaluates alone
    but a search's derived architecture (one a seed, scored after its turns by the search itself)."""
    from forgetbench.benchmark.run.batching import lockstep as batched_path
    from forgetbench.benchmark.train import harness

    alone_evaluations = []
    original = harness.evaluate
    monkeypatch.setattr(harness, "evaluate", lambda *a: alone_evaluations.append(a) or original(*a))
    # where the stack scores faster (timed on each model's first eval batch; these tiny models' stack is)
    monkeypatch.setattr(batched_path._Lockstep, "_stack_scores_faster", lambda self, together, alone: True)
    specs = _specs(scenario, "ewc")
    batched = run_seeds(specs, tmp_path)
    assert all(r.batch.seeds == [0, 1, 2] for r in batched)
    in_batch = len(alone_evaluations)
    assert in_batch == (0 if scenario == "two_model" else len(specs)), in_batch
    alone = [run(spec, tmp_path) for spec in specs]
    _assert_same_runs(batched, alone)
    assert len(alone_evaluations) - in_batch > 3 * len(specs)  # alone, every turn's scores are the seed's own
    # where it would not: after each model's first eval batch (the stack's logits, checked against each seed's own
    # there), each seed scores its own models, to the same records
    monkeypatch.setattr(batched_path._Lockstep, "_stack_scores_faster", lambda self, together, alone: False)
    before = len(alone_evaluations)
    _assert_same_runs(run_seeds(specs, tmp_path), alone)
    assert len(alone_evaluations) - before >= 2 * len(specs)


def test_an_eval_batch_the_stack_refuses_after_the_first_is_scored_by_each_seed(tmp_path, monkeypatch):
    """A stack that scored a model's first eval batch exactly may still refuse a later one (a routed forward that
    raises): that evaluation falls to each seed's own models, to the same records."""
    from forgetbench.benchmark.run.batching import lockstep as batched_path

    original, refused = batched_path.SeedStack.forward, []

    def refuses_later_eval_batches(self, x, key, routes=None):
        if not torch.is_grad_enabled() and x.shape[1] < 100:  # an eval batch after the first (of 100 samples)
            refused.append(key)
            raise batched_path.Unbatchable("refused for the test")
        return original(self, x, key, routes)

    monkeypatch.setattr(batched_path.SeedStack, "forward", refuses_later_eval_batches)
    monkeypatch.setattr(batched_path._Lockstep, "_stack_scores_faster", lambda self, together, alone: True)
    training = TRAINING.model_copy(update={"eval_batch_size": 100})
    specs = _specs("two_model", "naive", training=training)
    batched = run_seeds(specs, tmp_path)
    assert all(r.batch.seeds == [0, 1, 2] for r in batched) and refused
    _assert_same_runs(batched, [run(spec, tmp_path) for spec in specs])


def _custom_supernet_specs(strategy: str, search: str) -> list[RunSpec]:
    from byo_fixtures import tiny_supernet_params

    params = tiny_supernet_params(
        model="byo_fixtures:stackable_supernet", choices=[["lin", "tanh", "skip"], ["lin", "skip"]], search=search,
        epochs=2, turns_per_epoch=3, steps_per_turn=5, derive_samples=4,
    )  # fmt: skip
    return [
        RunSpec("batched", ComponentSpec(name="custom_supernet", params=params),
                ComponentSpec(name=strategy, params=STRATEGIES[strategy]), seed, TRAINING, "cpu")
        for seed in (0, 1, 2)
    ]  # fmt: skip


@pytest.mark.parametrize("strategy", ["naive", "ewc", "wpl"])
def test_a_custom_supernet_on_a_fixed_search_batches_to_each_seeds_own_record(strategy, tmp_path):
    """The how-to's contract (docs/howto/own-supernet.md, "Seeds as one batch") on a net of the user's own: with
    ``search: fixed`` every seed trains the same turns, the stack trains them at once, each record the seed's own."""
    specs = _custom_supernet_specs(strategy, "fixed")
    batched = run_seeds(specs, tmp_path)
    assert [r.batch.seeds for r in batched] == [[0, 1, 2]] * 3, [r.batch.alone for r in batched]
    for record, own in zip(batched, [run(spec, tmp_path) for spec in specs]):
        assert _what_it_computed(record) == _what_it_computed(own)


def test_a_custom_supernet_whose_search_draws_per_seed_trains_its_seeds_alone_saying_so(tmp_path):
    records = run_seeds(_custom_supernet_specs("naive", "random"), tmp_path)
    assert all(r.batch.seeds is None and "search draws its own architectures" in r.batch.alone for r in records)


def test_a_run_on_several_threads_trains_its_seeds_alone(tmp_path):
    """A product split over threads sums in another order than the batch's products, one a seed on one thread."""
    specs = _specs("two_model", "naive", seeds=(0, 1), training=TRAINING.model_copy(update={"threads": 2}))
    records = run_seeds(specs, tmp_path)
    assert all(r.batch.seeds is None and "threads" in r.batch.alone for r in records)


def test_the_stacked_linear_layer_computes_each_seeds_products_as_its_own_run():
    """Every product of K linear layers at once, forward and backward, is bit for bit the seed's own F.linear's, at
    any size: small ones (which PyTorch's bmm loops over itself) and matrix-vector ones (one row or output)."""
    from forgetbench.benchmark.run.batching.stack import _StackedLinear

    generator = torch.Generator().manual_seed(0)
    for rows, outputs, inputs in [(n, o, i) for n in (1, 3, 32) for o in (1, 8, 10, 32) for i in (3, 8, 64)]:
        x, w, b = (torch.randn(3, *shape, generator=generator, requires_grad=True)
                   for shape in ((rows, inputs), (outputs, inputs), (outputs,)))  # fmt: skip
        out = _StackedLinear.apply(x, w, b)
        upstream = torch.randn(out.shape, generator=generator)
        out.backward(upstream)
        for k in range(3):
            own = [t[k].detach().clone().requires_grad_() for t in (x, w, b)]
            mine = torch.nn.functional.linear(*own)
            mine.backward(upstream[k])
            assert torch.equal(mine, out[k]), (rows, outputs, inputs)
            assert all(torch.equal(o.grad, t.grad[k]) for o, t in zip(own, (x, w, b))), (rows, outputs, inputs)


def test_a_batch_that_cannot_be_stacked_runs_each_seed_alone_and_says_why(tmp_path):
    specs = _specs("two_model", "ewc", training=TRAINING.model_copy(update={"checkpoint": True}))
    records = run_seeds(specs, tmp_path)
    assert all(r.batch.seeds is None and "checkpoint" in r.batch.alone for r in records)
    _assert_same_runs(records, [run(spec, tmp_path) for spec in specs])
    # what the built model says: a random draw in the forward pass, buffers it updates
    assert "draws at random" in model_refusal(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)))
    assert "buffers" in model_refusal(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2, affine=False)))
    assert "Conv2d" in model_refusal(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten()))
    assert model_refusal(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))) == (
        "1 (BatchNorm1d) holds parameters of its own, and only nn.Linear layers are stacked so that every seed keeps "
        "its own numbers exactly"
    )
    assert "one input feature" in model_refusal(nn.Sequential(nn.Linear(2, 1), nn.Linear(1, 2)))


def test_momentum_carried_over_turns_keeps_a_batch_off_parameters_a_turn_leaves_unused(tmp_path):
    """reset_optimizer: false carries SGD's momentum into the next turn, which moves a parameter whose stacked
    gradient is 0 where its own run leaves it unset and still: the supernet's turns leave other ops unused."""
    specs = _specs("supernet", "naive", training=TRAINING.model_copy(update={"reset_optimizer": False}))
    records = run_seeds(specs, tmp_path)
    assert all(r.batch.seeds is None and "gradient is 0" in r.batch.alone for r in records), [r.batch for r in records]
    _assert_same_runs(records, [run(spec, tmp_path) for spec in specs])


def _build_loss_added_in_place(ctx, params):
    """A plug-in that adds to the loss in place, as Avalanche's own EWC, LwF and MAS plugins do."""
    from avalanche.training.plugins import SupervisedPlugin

    class AddInPlace(SupervisedPlugin):
        def before_backward(self, strategy, **kwargs):
            strategy.loss += 0.01 * sum(p.pow(2).sum() for p in strategy.model.parameters())

    return ctx.build(plugins=[AddInPlace()])


def test_a_loss_a_plugin_adds_to_in_place_batches_to_each_seeds_own_record(tmp_path):
    """The stack's backward takes the shortcut of one sum only where no seed's callback replaced, changed or hooked
    its loss: a loss grown in place (here) or hooked (the regularizer core's penalty) goes through each seed's own."""
    from forgetbench.benchmark.core.registry import NoParams
    from forgetbench.strategies import STRATEGIES, register_strategy

    if "test_loss_added_in_place" not in STRATEGIES:
        register_strategy("test_loss_added_in_place", params=NoParams)(_build_loss_added_in_place)
    specs = _specs("two_model", "test_loss_added_in_place")
    batched = run_seeds(specs, tmp_path)
    assert all(r.batch.seeds == [0, 1, 2] for r in batched), [r.batch for r in batched]
    alone = [run(spec, tmp_path) for spec in specs]
    _assert_same_runs(batched, alone)
    naive = [run(spec, tmp_path) for spec in _specs("two_model", "naive")]
    assert [a.accuracy_matrix for a in alone] != [n.accuracy_matrix for n in naive]  # the added term acts


def test_a_stack_whose_turns_leave_many_parameters_unused_trains_its_seeds_alone_on_the_cpu(tmp_path):
    """A stack's step updates every parameter of every seed, a seed's own step only its turn's: a supernet of wide ops
    (3 of 4 unused a layer) leaves more unused than batching saves on the CPU; the demo's stays batched."""
    from forgetbench.benchmark.data.scenarios import SCENARIOS as SCENARIO_REGISTRY
    from forgetbench.benchmark.data.scenarios import ScenarioInputs
    from forgetbench.benchmark.run.batching.refusals import IDLE_PARAMS_ON_CPU, idle_params_refusal

    wide = SCENARIOS["supernet"] | {"ops": 4, "width": 128, "steps_per_turn": 5}
    entry = SCENARIO_REGISTRY.get("supernet")
    scenario = entry.factory(entry.parse_params(wide), ScenarioInputs(0, None))
    idle = sum(p.numel() for p in scenario.model.parameters()) - sum(
        sum(dict(scenario.model.named_parameters())[n].numel() for n in used) for used in scenario.turn_used_params
    ) / len(scenario.turn_used_params)
    assert idle > IDLE_PARAMS_ON_CPU
    assert "leave unused" in idle_params_refusal(scenario.model, scenario, torch.device("cpu"))
    assert idle_params_refusal(scenario.model, scenario, torch.device("cuda")) is None
    specs = [replace(spec, scenario=ComponentSpec(name="supernet", params=wide)) for spec in _specs("supernet", "ewc")]
    records = run_seeds(specs, tmp_path)
    assert all(r.batch.seeds is None and "leave unused" in r.batch.alone for r in records), [r.batch for r in records]
    _assert_same_runs(records, [run(spec, tmp_path) for spec in specs])


def test_a_diverging_batch_runs_again_seed_by_seed_for_each_seeds_own_record(tmp_path):
    specs = _specs("two_model", "naive", training=TRAINING.model_copy(update={"lr": 1e6}))
    records = run_seeds(specs, tmp_path)
    alone = [run(spec, tmp_path) for spec in specs]
    assert [r.status for r in records] == [a.status for a in alone] and "diverged" in {a.status for a in alone}
    assert all(r.batch.seeds is None and "diverged" in r.batch.alone for r in records)


def test_a_batch_that_runs_out_of_device_memory_trains_in_halves_to_each_seeds_own_record(tmp_path, monkeypatch):
    """A device that holds 2 stacked seeds: 5 seeds train as [0, 1] (of the half [0, 1, 2], halved again), 2 alone,
    and [3, 4]; every record is its seed's own run's and says why it trained in a smaller batch."""
    from forgetbench.benchmark.run.batching import train as batched

    real, sizes = batched._train_together, []

    def device_of_two(seats):
        sizes.append(len(seats))
        if len(seats) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (a test's device of two seeds)")
        return real(seats)

    monkeypatch.setattr(batched, "_train_together", device_of_two)
    specs = _specs("two_model", "ewc", seeds=range(5))
    records = run_seeds(specs, tmp_path)
    assert sizes == [5, 3, 2, 2]
    assert [r.batch.seeds if r.batch else None for r in records] == [[0, 1], [0, 1], None, [3, 4], [3, 4]]
    said = [[w for w in r.warnings if "ran out of device memory" in w] for r in records]
    assert (
        said[:3]
        == [
            [
                "a batch of 5 seeds ran out of device memory: it trained as batches of at most 3",
                "a batch of 3 seeds ran out of device memory: it trained as batches of at most 2",
            ]
        ]
        * 3
    )
    assert said[3:] == [["a batch of 5 seeds ran out of device memory: it trained as batches of at most 3"]] * 2
    for record, own in zip(records, [run(spec, tmp_path) for spec in specs]):
        computed = _what_it_computed(record)
        computed["warnings"] = [w for w in computed["warnings"] if "ran out of device memory" not in w]
        assert computed == {"warnings": [], **_what_it_computed(own)}  # the accuracy matrix and every other number


def test_only_one_runs_seeds_form_a_batch():
    from forgetbench.benchmark.run.executors import Job

    specs = _specs("two_model", "ewc") + _specs("two_model", "naive", seeds=(0,))
    assert same_but_seed(specs[:3]) and not same_but_seed(specs) and not same_but_seed([specs[0], specs[0]])
    jobs = [Job(s.run_id, s, cache_dir=Path("out")) for s in specs]
    grouped = seed_batches(jobs + [Job("x", replace(specs[0], seed=9), cache_dir=Path("elsewhere"))])
    assert [[m.spec.run_id for m in job.jobs] for job in grouped] == [
        [s.run_id for s in specs[:3]],
        [specs[3].run_id],
        ["two_model__ewc__seed9"],
    ]
    apart = seed_batches(jobs, refused={_key(specs[0]): "why"})
    assert [len(job.jobs) for job in apart] == [1, 1, 1, 1]
    assert [job.alone for job in apart] == ["its run's batch was refused earlier in this invocation: why"] * 3 + [
        "no other seed of its run trains in this invocation"
    ]


def test_every_record_that_trained_alone_says_why(tmp_path):
    """``batch.alone`` on each record whose seed trained alone: batching off, a refusal read off the spec, a run of
    one seed; a batched record names its batch instead."""
    import forgetbench
    from forgetbench.benchmark.run.batching.groups import BATCHING_OFF

    from conftest import tiny_suite

    def batches(name: str, **overrides) -> dict[str, dict]:
        records = forgetbench.run_suite(tiny_suite(**overrides), out=tmp_path / name, progress=False).records
        return {r.run_id: r.batch.model_dump(exclude_none=True) if r.batch else None for r in records}

    assert set(map(str, batches("off", seeds=[0, 1], batch_seeds=False).values())) == {str({"alone": BATCHING_OFF})}
    equal_sizes = [{"name": "split", "params": SCENARIOS["split"]}]  # each seed's split the same size: it batches
    suite = tiny_suite(seeds=[0, 1], scenarios=equal_sizes)
    batched = forgetbench.run_suite(suite, out=tmp_path / "on", progress=False).records
    assert all(r.batch.seeds == [0, 1] and r.batch.alone is None for r in batched)
    # each record's train_seconds is its share of the batch's wall, which it names
    assert all(r.batch.train_seconds == pytest.approx(2 * r.timing.train_seconds) for r in batched)
    one = batches("one", seeds=[0])
    assert list(one.values()) == [{"alone": "no other seed of its run trains in this invocation"}]
    threads = batches("threads", seeds=[0, 1], training=tiny_suite()["training"] | {"threads": 2})
    assert all("training.threads is 2" in batch["alone"] for batch in threads.values())


def test_the_driver_starts_the_jobs_expected_to_take_longest_first():
    from collections import Counter

    from forgetbench.benchmark.run.executors import Job
    from forgetbench.benchmark.run.suite import Eta, _Driver

    naive, ewc = _specs("two_model", "naive", seeds=range(10)), _specs("two_model", "ewc", seeds=range(4))
    jobs = seed_batches([Job(s.run_id, s, cache_dir=Path("out")) for s in naive + ewc])
    jobs.append(Job("lone", replace(naive[0], seed=99)))
    driver = object.__new__(_Driver)
    driver.eta = Eta(Counter(), workers=2)
    driver.eta.seconds = {
        (naive[0].scenario.display_name, "naive"): [1.0],
        (ewc[0].scenario.display_name, "ewc"): [3.0],
    }
    ordered = driver._longest_first(jobs)  # 4 x 3 s, then 10 x 1 s, then 1 x 1 s
    assert [(job.spec.strategy.name, len(job.jobs)) for job in ordered] == [("ewc", 4), ("naive", 10), ("naive", 1)]
    driver.eta = None  # nothing measured yet: the most seeds first
    assert [len(job.jobs) for job in driver._longest_first(jobs)] == [10, 4, 1]


def _key(spec: RunSpec) -> str:
    from forgetbench.benchmark.run.batching.groups import batch_key

    return batch_key(spec)


def _comparable(out: Path) -> dict[str, dict]:
    records = {}
    for path in sorted(out.glob("runs/*/result.json")):
        record = json.loads(path.read_text())
        for key in HOW_IT_RAN:
            record.pop(key, None)
        records[path.parent.name] = record
    return records


def _cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "forgetbench.benchmark.front.cli", *args],
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _rounds_suite() -> dict:
    return tiny_suite(
        name="batched_rounds",
        seeds={"start": 3, "max": 9, "step": 3},
        scenarios=[{"name": "two_model", "params": TINY_TWO_MODEL | {"data_b": "permuted"}}],
        strategies=[{"name": "naive"}, {"name": "ewc"}, {"name": "l2"}],
    )


@pytest.mark.slow  # three suites with batched rounds, one SIGKILLed inside a round: about a minute, for the full tier
def test_a_batched_round_killed_and_rerun_gives_the_per_seed_records(tmp_path):
    config = tmp_path / "suite.yaml"
    config.write_text(yaml.safe_dump(_rounds_suite()))
    alone, killed = tmp_path / "alone", tmp_path / "killed"
    done = _cli("run", str(config), "--out", str(alone), "--quiet", "--no-report", "--batch-seeds", "off")
    assert done.wait(timeout=600) == 0, done.stderr.read()
    rounds = json.loads((alone / "rounds.json").read_text())
    assert rounds["rounds"], "the pairs were decided on the first seeds: no round to interrupt"

    proc = _cli("run", str(config), "--out", str(killed), "--quiet", "--no-report")
    first = len(_comparable(alone)) - sum(len(s) for r in rounds["rounds"] for s in r["added"].values())
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:  # the first seeds done: a batched round is training
        if (killed / "rounds.json").exists() and len(list(killed.glob("runs/*/result.json"))) >= first:
            break
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    again = _cli("run", str(config), "--out", str(killed), "--quiet", "--no-report")
    assert again.wait(timeout=600) == 0, again.stderr.read()

    records = [json.loads(p.read_text()) for p in killed.glob("runs/*/result.json")]
    assert any(r.get("round") and (r.get("batch") or {}).get("seeds") for r in records), "no round ran batched"
    assert _comparable(killed) == _comparable(alone)
    assert json.loads((killed / "rounds.json").read_text()) == rounds
