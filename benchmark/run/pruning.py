"""A tuning trial's run stopped where it falls behind its study (the run's :class:`~forgetbench.benchmark.run.spec.PruneRule`).

Two kinds of check, both on the objective so far (:func:`~forgetbench.benchmark.core.metrics.running_metric` on the
accuracy rows recorded up to experience k):

* after each experience k, on row k as the runner records it (:func:`check_after_experience`);
* with ``rule.points`` > 0, inside each experience k at its steps' c / (points + 1), c = 1 .. points
  (:class:`InsideChecks`): the tasks trained so far, evaluated there on the run's held-out split, stand in for row
  k. A scenario of two tasks has nothing to prune after its experiences (after the first, the strength has not
  acted yet; after the last, the trial is done), so only these checks can stop it early.

Both only where row k is task k's (each task trained once, in order, every turn recorded): a search or a schedule
with rounds has no "objective so far" the bounds were taken on.
"""

from __future__ import annotations

import math
import time

import torch

from forgetbench.benchmark.train.hooks import SupervisedHooks
from forgetbench.benchmark.core.metrics import running_metric
from forgetbench.benchmark.core.record import PrunePoint, RunRecord
from forgetbench.benchmark.data.scenarios import Scenario
from forgetbench.benchmark.run.spec import PruneRule
from forgetbench.benchmark.train.harness import Harness, evaluate


class Pruned(Exception):
    """A tuning trial's run fell behind its study. ``steps``, ``train_seconds`` and ``eval_seconds``: the part of
    the experience it was stopped inside (0 when stopped between experiences), which the record's timing adds."""

    def __init__(self, message: str, steps: int = 0, train_seconds: float = 0.0, eval_seconds: float = 0.0):
        super().__init__(message)
        self.steps, self.train_seconds, self.eval_seconds = steps, train_seconds, eval_seconds


def checks_apply(scenario: Scenario) -> bool:
    """Whether row k of the run's accuracy matrix is task k's, right after task k's only turn."""
    return (
        not scenario.adaptive
        and all(turn.task == k and turn.record for k, turn in enumerate(scenario.schedule))
        and len(scenario.schedule) == len(scenario.tasks)
    )


def check_after_experience(rule: PruneRule | None, scenario: Scenario, record: RunRecord, task: int) -> None:
    """Stop the run (raise :class:`Pruned`) when the rule says so after the row just recorded."""
    k = len(record.accuracy_matrix) - 1
    if rule is None or scenario.adaptive or task != k:
        return
    value = running_metric(record.accuracy_matrix, rule.objective)[k]
    if rule.falls_behind(k, value):
        raise Pruned(
            f"pruned after experience {k} ({scenario.tasks[task].name}): {rule.objective} so far "
            f"{value:.4g}, the completed trials' {rule.name} there {rule.bounds[k]:.4g}"
        )


class InsideChecks(SupervisedHooks):
    """The rule's checks inside each experience (see the module docstring); each point's value goes to
    ``record.prune_points``, bounded or not. Its evaluation time is kept apart (``eval_seconds``), as the curve
    recorder's is."""

    def __init__(
        self, rule: PruneRule, record: RunRecord, scenario: Scenario, harness: Harness, batch: int, device: torch.device
    ) -> None:
        super().__init__()
        self.rule, self.record, self.scenario, self.harness = rule, record, scenario, harness
        self.batch, self.device = batch, device
        self.eval_seconds = 0.0
        self._at: dict[int, int] = {}  # iteration -> point
        self._steps = 0
        self._started = 0.0
        self._eval_before = 0.0
        record.prune_points = record.prune_points if record.prune_points is not None else []

    def before_training_exp(self, strategy, **kwargs) -> None:
        steps = self.harness.budget.budget or strategy.train_epochs * len(strategy.dataloader)
        points = self.rule.points
        self._at = {round(c * steps / (points + 1)): c for c in range(1, points + 1)}
        self._at = {i: c for i, c in self._at.items() if 0 < i < steps}
        self._steps, self._started, self._eval_before = 0, time.perf_counter(), self.eval_seconds

    def after_training_iteration(self, strategy, **kwargs) -> None:
        self._steps += 1
        point = self._at.get(self._steps)
        if point is None:
            return
        t0 = time.perf_counter()
        k = len(self.record.accuracy_matrix)
        row = [
            evaluate(strategy.model, task, self.batch, self.device) if j <= k else math.nan
            for j, task in enumerate(self.scenario.tasks)
        ]
        value = running_metric([*self.record.accuracy_matrix, row], self.rule.objective)[k]
        self.eval_seconds += time.perf_counter() - t0
        assert self.record.prune_points is not None  # set in __init__
        self.record.prune_points.append(
            PrunePoint(experience=k, point=point, iteration=self._steps, value=value if math.isfinite(value) else None)
        )
        if self.rule.falls_behind_inside(k, point, value):
            inside_eval = self.eval_seconds - self._eval_before
            raise Pruned(
                f"pruned inside experience {k} ({self.scenario.tasks[k].name}) at iteration {self._steps}: "
                f"{self.rule.objective} so far {value:.4g}, the completed trials' {self.rule.name} there "
                f"{self.rule.inside_bound(k, point):.4g}",
                steps=self._steps,
                train_seconds=time.perf_counter() - self._started - inside_eval,
                eval_seconds=inside_eval,
            )
