"""The lean training loop: same plugin events in the same order as Avalanche's, same weights."""

from __future__ import annotations

import copy

import torch
from avalanche.core import SupervisedPlugin
from avalanche.training.templates import SupervisedTemplate

from forgetbench.benchmark.train.template import FastLoadersMixin, FastSupervisedTemplate, active_callbacks
from forgetbench.strategies import StrategyContext
from forgetbench.strategies.base import _silent_evaluator
from helpers import TRAINING
from helpers import small_split as _scenario


class Recorder(SupervisedPlugin):
    """Logs every per-iteration event, and adds to the loss before the forward pass."""

    def __init__(self, touch_loss: bool = False) -> None:
        super().__init__()
        self.events: list[str] = []
        self.touch_loss = touch_loss

    def before_training_iteration(self, strategy, **kw):
        self.events.append("before_training_iteration")

    def before_forward(self, strategy, **kw):
        self.events.append("before_forward")
        if self.touch_loss:
            strategy.loss = strategy.loss + 0.0

    def after_forward(self, strategy, **kw):
        self.events.append("after_forward")

    def before_backward(self, strategy, **kw):
        self.events.append("before_backward")

    def after_backward(self, strategy, **kw):
        self.events.append("after_backward")

    def before_update(self, strategy, **kw):
        self.events.append("before_update")

    def after_update(self, strategy, **kw):
        self.events.append("after_update")

    def after_training_iteration(self, strategy, **kw):
        self.events.append("after_training_iteration")


class AvalancheLoop(FastLoadersMixin, SupervisedTemplate):
    """Avalanche's own training epoch, only the loaders swapped (the foundation's template)."""


def _run(template, plugin):
    scenario = _scenario(tasks=2)
    model = copy.deepcopy(scenario.model)
    ctx = StrategyContext(
        model=model, training=TRAINING, device=torch.device("cpu"), used_params=scenario.turn_used_params, seed=0
    )
    strategy = ctx.build(plugins=[plugin], template=template)
    for experience in scenario.avalanche_benchmark().train_stream:
        strategy.train(experience, eval_streams=[], reset_optimizer_state=True)
    return strategy


def test_lean_loop_same_events_and_weights():
    for touch in (False, True):
        lean_rec, aval_rec = Recorder(touch), Recorder(touch)
        lean = _run(FastSupervisedTemplate, lean_rec)
        aval = _run(AvalancheLoop, aval_rec)
        assert lean_rec.events == aval_rec.events and len(lean_rec.events) > 8
        for p, q in zip(lean.model.parameters(), aval.model.parameters()):
            assert torch.equal(p, q)


def test_active_callbacks_skip_no_ops_and_idle_evaluator():
    recorder, idle = Recorder(), SupervisedPlugin()
    plugins = [recorder, idle, _silent_evaluator()]
    names = [cb.__self__ for cb in active_callbacks(plugins, "before_backward")]
    assert names == [recorder]
    assert active_callbacks([idle], "after_training_iteration") == []
