"""What a plugin and an estimator declare to act once for a batch of seeds (benchmark/run/batching): the plugin
base's ``lockstep`` / ``lockstep_importance`` (per seed by default), the estimator protocols of the regularizer core,
and an estimator that makes a pass without a stacked form saying so when its regularizer is built."""

from __future__ import annotations

import warnings

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
