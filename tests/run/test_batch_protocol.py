"""What a plugin and an estimator declare to act once for a batch of seeds (benchmark/run/batching): the plugin
base's ``lockstep`` / ``lockstep_step`` / ``lockstep_importance`` (per seed by default), LwF's distillation taken once
for all seeds through ``lockstep_step``, the estimator protocols of the regularizer core, and an estimator that makes
a pass without a stacked form saying so when its regularizer is built."""

from __future__ import annotations

import warnings

import pytest
import torch

from forgetbench.benchmark.train.harness import LossWatch
from forgetbench.benchmark.train.hooks import SupervisedHooks
from forgetbench.strategies.parts import FisherEstimate, OutputSensitivity, PathIntegral, RunningMerge
from forgetbench.strategies.passes import OUTPUT_SENSITIVITY, SQUARED_GRADIENTS, ExactFisherPass
from forgetbench.strategies.quadratic import QuadraticRegularizer, StackedEstimator, SteppedEstimator


class _OwnPassOnly:
    """An estimator a user might write: a pass of its own, no stacked form."""

    passes = "every"

    def __call__(self, strategy, used, generator):
        return {}


def test_a_plugin_acts_per_seed_unless_its_class_declares_otherwise():
    class Mine(SupervisedHooks):
        pass

    assert Mine.lockstep([Mine(), Mine()], lambda params: params) is None
    assert Mine.lockstep_step([Mine(), Mine()], object()) is None
    assert Mine.lockstep_importance([Mine(), Mine()], [None, None], lambda kind: None) is None
    watches = [LossWatch(), LossWatch()]
    callbacks = LossWatch.lockstep(watches, lambda params: params)
    callbacks["after_backward"](torch.tensor([1.0, float("nan")]))
    callbacks["epoch_end"](torch.zeros(2))
    assert torch.isfinite(watches[0]._loss_sum) and not torch.isfinite(watches[1]._loss_sum)


def test_the_estimators_declare_their_stacked_pass_the_one_their_own_runs():
    class Strategy:
        train_mb_size = 16

    assert (
        isinstance(FisherEstimate(), StackedEstimator) and FisherEstimate().stacked_pass(Strategy) is SQUARED_GRADIENTS
    )
    assert FisherEstimate("exact").stacked_pass(Strategy) == ExactFisherPass(16)
    assert FisherEstimate("exact", labels="true").stacked_pass(Strategy) is None  # drawn labels: each seed's own
    assert OutputSensitivity().stacked_pass(Strategy) is OUTPUT_SENSITIVITY
    assert OutputSensitivity(samples=10).stacked_pass(Strategy) is None
    assert isinstance(PathIntegral(eps=1e-3, clip=None), SteppedEstimator) and not isinstance(
        _OwnPassOnly(), StackedEstimator
    )


def test_an_estimator_without_a_stacked_form_says_so_once_when_its_regularizer_is_built():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        QuadraticRegularizer("mine", 1.0, _OwnPassOnly(), RunningMerge(0.5))
        QuadraticRegularizer("mine", 1.0, _OwnPassOnly(), RunningMerge(0.5))
        QuadraticRegularizer("mas", 1.0, OutputSensitivity(), RunningMerge(0.5))
    said = [str(w.message) for w in caught if "stacked_pass" in str(w.message)]
    assert said == [
        "_OwnPassOnly defines no stacked_pass and finish: in a batch of seeds each seed makes its own importance "
        "pass (docs/development.md, 'A regularizer under a batch of seeds')"
    ]


def _specs(scenario: str, params: dict, strategy: str) -> list:
    from forgetbench.benchmark.core.config import ComponentSpec, TrainingConfig
    from forgetbench.benchmark.run.spec import RunSpec

    training = TrainingConfig(lr=0.05, momentum=0.9, batch_size=32, eval_batch_size=512)
    return [
        RunSpec("protocol", ComponentSpec(name=scenario, params=params), ComponentSpec(name=strategy), seed,
                training, "cpu")
        for seed in (0, 1, 2)
    ]  # fmt: skip


def _records_and_calls(monkeypatch, tmp_path, specs, owner, method: str) -> tuple[list, list, int]:
    """The batch's records, each seed's own run's, and how often the batch called ``owner.method``."""
    from forgetbench.benchmark.run.batching import run_seeds
    from forgetbench.benchmark.run.runner import run

    calls = []
    original = getattr(owner, method)

    def counted(self, *args, **kwargs):
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(owner, method, counted)
    batched = run_seeds(specs, tmp_path)
    monkeypatch.setattr(owner, method, original)
    return batched, [run(spec, tmp_path) for spec in specs], len(calls)


def _same(batched, alone) -> None:
    from helpers import VOLATILE

    assert [r.batch.seeds for r in batched] == [[0, 1, 2]] * 3, [r.batch for r in batched]
    for b, a in zip(batched, alone):
        mine, own = b.to_dict(), a.to_dict()
        for key in VOLATILE:
            mine.pop(key, None), own.pop(key, None)
        assert mine == own


def test_lwf_distils_every_seed_at_once_to_each_seeds_own_record(monkeypatch, tmp_path):
    """LwF's copies and models give their logits once for the batch (``lockstep_step``), and each record is the seed's
    own run's, bit for bit."""
    from forgetbench.benchmark.run.batching.lockstep import _Step
    from helpers import TINY_TWO_MODEL

    specs = _specs("two_model", TINY_TWO_MODEL | {"data_b": "permuted"}, "lwf")
    batched, alone, teacher_passes = _records_and_calls(monkeypatch, tmp_path, specs, _Step, "frozen_forward")
    assert teacher_passes > 0  # the stacked distillation ran, not each seed's own callback
    _same(batched, alone)


@pytest.mark.parametrize("strategy", ["naive", "ewc", "lwf"])
def test_supernet_seeds_on_shared_architectures_train_through_forward_seeds_to_their_own_records(
    strategy, monkeypatch, tmp_path
):
    """The demo's supernet: every seed trains the same architectures (``architecture_seed``). The stack runs each op
    once on every seed's rows (the supernet's ``forward_seeds``), not through vmap, and each record is its own run's."""
    from forgetbench.benchmark.run.batching.stack import SeedStack

    params = {"dataset": "digits", "layers": 3, "ops": 3, "width": 16, "architectures": 3, "architecture_seed": 0,
              "head": "private", "schedule": "sequential", "steps_per_turn": 25, "max_test": 200}  # fmt: skip
    specs = _specs("supernet", params, strategy)
    batched, alone, vmapped = _records_and_calls(monkeypatch, tmp_path, specs, SeedStack, "_vmapped")
    assert vmapped == 0
    assert len({tuple(map(str, r.architectures)) for r in batched}) == 1  # one route for every seed
    _same(batched, alone)
