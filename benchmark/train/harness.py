"""The harness's own plugins and its evaluation, shared by every strategy of a run.

* :class:`LossWatch` flags a non-finite loss (checked once per epoch: no host sync per step);
* :class:`StepBudget` stops a turn after its iteration budget, counts the steps taken, and is
  where a stop request (:mod:`forgetbench.benchmark.core.stop`) ends a run between two steps;
* :class:`CurveRecorder` records forgetting curves every ``eval_every`` iterations;
* :func:`evaluate` is the one top-1 accuracy every number in a record comes from;
* :func:`collapse_message` says when a run ended at chance on every task (status ``collapsed``), by :func:`at_chance`,
  the one rule that also flags a kept run's tasks at chance.

They hold no state a checkpoint must carry (the curves live in the record), so they sit outside
the plugin protocol of :mod:`forgetbench.strategies.plugin`. A strategy with phases inside one turn (ExSSNeT's
mask then weight phase) gives each phase the budget through :meth:`StepBudget.new_phase`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch

from forgetbench.benchmark.train.hooks import SupervisedHooks
from forgetbench.benchmark.core import stop
from forgetbench.benchmark.data.scenarios.base import Task

if TYPE_CHECKING:
    from avalanche.models import MultiTaskModule


class DivergedError(RuntimeError):
    """Training produced a non-finite loss or non-finite weights."""


@torch.no_grad()
def evaluate(model: MultiTaskModule, task: Task, batch_size: int, device: torch.device) -> float:
    """The score of ``task``'s model on its test data (the model's train/eval mode is restored).

    Class labels ``(n,)``: top-1 accuracy. Token sequences ``(n, length)`` (a language model, whose logits
    are ``(n, vocabulary, length)``): exp(-mean token negative log-likelihood) = 1 / perplexity, the
    geometric mean of the probability given to each next token, so higher is better in both cases."""
    was_training = model.training
    model.eval()
    sequences = task.test_y.dim() == 2
    total = torch.zeros((), dtype=torch.float64 if sequences else torch.long, device=device)  # one sync per call
    for start in range(0, len(task.test_y), batch_size):
        x = task.test_x[start : start + batch_size].to(device, non_blocking=True)
        y = task.test_y[start : start + batch_size].to(device, non_blocking=True)
        out = model.forward_single_task(x, task.model_key)
        if sequences:
            total -= torch.nn.functional.cross_entropy(out.float(), y, reduction="sum").double()
        else:
            total += (out.argmax(1) == y).sum()
    model.train(was_training)
    if sequences:
        return math.exp(float(total) / max(task.test_y.numel(), 1))
    return int(total) / max(len(task.test_y), 1)


class Scores:
    """:func:`evaluate` of ``strategy.model``'s current weights, each (model, task's model, test data) once until
    :meth:`weights_changed`: a search scores at each round's end the architectures that the round's accuracy-matrix
    row has just scored, and its derivation scores them again (40 of the 109 evaluations of an MNIST supernet run).
    Evaluation on the CPU is deterministic (eval mode, no gradient), so a score read again is the score computed
    again; on a GPU whose kernels are not deterministic, a repeat could differ in its last bits, and the run now
    reports one value for the one model state instead of two."""

    def __init__(self, strategy: Any, batch_size: int, device: torch.device):
        self.strategy, self.batch_size, self.device = strategy, batch_size, device
        # the test tensors are held with their score: an id() names one tensor only while that tensor lives
        self._scored: dict[tuple[int, int, int, int], tuple[float, Any]] = {}

    def __call__(self, task: Task) -> float:
        key = self._key(task)
        if key not in self._scored:
            self.remember(task, evaluate(self.strategy.model, task, self.batch_size, self.device))
        return self._scored[key][0]

    def remember(self, task: Task, score: float) -> None:
        """``score`` as ``task``'s at the current weights (computed elsewhere: a batch of seeds scores its seeds at
        once), until :meth:`weights_changed`."""
        self._scored[self._key(task)] = (score, (self.strategy.model, task.test_x, task.test_y))

    def _key(self, task: Task) -> tuple[int, int, int, int]:
        return (id(self.strategy.model), task.model_key, id(task.test_x), id(task.test_y))

    def weights_changed(self) -> None:
        self._scored.clear()


def check_finite_weights(model: torch.nn.Module) -> None:
    """Raise :class:`DivergedError` if any parameter holds a NaN or inf (one host sync)."""
    finite = torch.stack([torch.isfinite(p).all() for p in model.parameters()]).all()
    if not bool(finite):
        raise DivergedError("non-finite weights after training")


def majority_rate(labels: torch.Tensor) -> float:
    """The best score a constant prediction gets: for class labels, the accuracy of always predicting the
    most frequent one; for token sequences, 1 / perplexity of the tokens' own frequencies (a unigram model)."""
    if labels.numel() == 0:
        return 0.0
    counts = torch.bincount(labels.reshape(-1).long())
    if labels.dim() == 2:
        p = counts[counts > 0].double() / labels.numel()
        return float(torch.exp((p * p.log()).sum()))
    return float(counts.max()) / len(labels)


def at_chance(accuracy: float, labels: torch.Tensor) -> bool:
    """True when ``accuracy`` on ``labels`` is no better than predicting the majority label.

    The margin is two binomial standard deviations of that rate on ``len(labels)`` samples, so a
    model guessing on a small test set is not taken for one that learned.
    """
    rate = majority_rate(labels)
    margin = 2.0 * math.sqrt(rate * (1.0 - rate) / max(len(labels), 1))
    return accuracy <= rate + margin + 1e-12


def _disjoint_labels(tasks: list[Task]) -> bool:
    """True when no label occurs in two of ``tasks`` (class-IL: one output space, each class one task's)."""
    seen: set[int] = set()
    for task in tasks:
        labels = set(torch.unique(task.test_y).tolist())
        if labels & seen:
            return False
        seen |= labels
    return True


def collapse_message(final: list[float], tasks: list[Task], seen: list[int]) -> str | None:
    """Why the run counts as collapsed, or None: at the end every task seen is at chance (:func:`at_chance`, the one
    rule for a run at chance: the same test flags a task at chance in a run that is kept), with a finite loss. A run
    that ends above chance on some task is kept (its forgetting is what the metrics measure; its tasks at chance are
    flagged apart, :func:`tasks_at_chance`). When the tasks seen have disjoint labels (class-IL: one head, each class
    in one task), a constant prediction scores on one task at most, so the end is judged on their pooled test sets.
    """
    if not seen:
        return None
    if len(seen) > 1 and _disjoint_labels([tasks[j] for j in seen]):
        labels = torch.cat([tasks[j].test_y for j in seen])
        pooled = sum(final[j] * len(tasks[j].test_y) for j in seen) / max(len(labels), 1)
        if not at_chance(pooled, labels):
            return None
        return (
            f"collapsed: at chance over the tasks seen (one output space), with a finite loss: pooled accuracy "
            f"{pooled:.3f} (majority {majority_rate(labels):.3f} on {len(labels)} test samples)"
        )
    if not all(at_chance(final[j], tasks[j].test_y) for j in seen):
        return None
    detail = ", ".join(
        f"{tasks[j].name} {final[j]:.3f} (majority {majority_rate(tasks[j].test_y):.3f} on {len(tasks[j].test_y)})"
        for j in seen
    )
    return f"collapsed: at chance on every task seen, with a finite loss: {detail}"


def accuracy_after_training(matrix: list[list[float]], seen: list[int]) -> dict[int, float]:
    """Task -> its accuracy right after its own training, where the matrix has a row per task seen (a sequence of
    experiences); empty otherwise (a search's rounds)."""
    if len(matrix) != len(seen):
        return {}
    return {j: matrix[i][j] for i, j in enumerate(seen)}


def tasks_at_chance(final: list[float], tasks: list[Task], seen: list[int]) -> list[int]:
    """The tasks seen whose final accuracy is at chance (:func:`at_chance` on the task's own test set)."""
    return [j for j in seen if at_chance(final[j], tasks[j].test_y)]


def chance_message(matrix: list[list[float]], tasks: list[Task], seen: list[int], at: list[int]) -> str:
    """``3 of 5 tasks at chance at the end: ...``, saying for each whether it was learned first (so forgotten
    entirely) or never learned (the accuracy right after its own training was at chance too)."""
    final = matrix[-1]
    diagonal = accuracy_after_training(matrix, seen)
    parts = []
    for j in at:
        learned = diagonal.get(j)
        how = (
            ""
            if learned is None
            else (
                f", never learned ({learned:.3f} after its training)"
                if at_chance(learned, tasks[j].test_y)
                else f", forgotten entirely ({learned:.3f} after its training)"
            )
        )
        parts.append(f"{tasks[j].name} {final[j]:.3f} (majority {majority_rate(tasks[j].test_y):.3f}{how})")
    return f"{len(at)} of {len(seen)} tasks at chance at the end: " + "; ".join(parts)


class LossWatch(SupervisedHooks):
    """Flags a non-finite loss without a host sync per step (checked once per epoch)."""

    def __init__(self) -> None:
        super().__init__()
        self._loss_sum = torch.zeros(())  # replaced on the run's device at each experience

    def before_training_exp(self, strategy, **kwargs) -> None:
        self._loss_sum = torch.zeros((), device=strategy.device)

    def after_backward(self, strategy, **kwargs) -> None:
        # one in-place add per step: a NaN or inf loss makes the running sum non-finite
        self._loss_sum += strategy.loss.detach().sum()

    @classmethod
    def lockstep(cls, watches: Sequence["LossWatch"], stacked_of: Any) -> dict[str, Callable[[torch.Tensor], None]]:
        """The K seeds' watches of a batch (:mod:`forgetbench.benchmark.run.batching`): one add of the seeds' losses
        per step, each seed's running sum handed back to its watch when the epoch ends."""
        sums = torch.zeros(len(watches), device=watches[0]._loss_sum.device)

        def add(losses: torch.Tensor) -> None:
            sums.add_(losses.detach())

        def hand_back(losses: torch.Tensor) -> None:
            for k, watch in enumerate(watches):
                watch._loss_sum = watch._loss_sum + sums[k]
            sums.zero_()

        return {"after_backward": add, "epoch_end": hand_back}

    def after_training_epoch(self, strategy, **kwargs) -> None:
        if not bool(torch.isfinite(self._loss_sum)):
            raise DivergedError(
                f"non-finite loss in experience {strategy.experience.current_experience}, "
                f"epoch {strategy.clock.train_exp_epochs}"
            )


class StepBudget(SupervisedHooks):
    """Stops an experience after ``budget`` iterations (for turns with ``max_steps``); counts ``steps``."""

    def __init__(self) -> None:
        super().__init__()
        self.budget: int | None = None
        self.steps = 0
        self._earlier_phases = 0

    def before_training_exp(self, strategy, **kwargs) -> None:
        self.steps = 0
        self._earlier_phases = 0

    def after_training_iteration(self, strategy, **kwargs) -> None:
        stop.check()  # a SIGTERM / Ctrl-C stops the run here, between two steps
        self.steps += 1
        if self.budget is not None and self.steps - self._earlier_phases >= self.budget:
            strategy.stop_training()

    def new_phase(self) -> None:
        """The rest of this turn is a new phase with a budget of its own; ``steps`` keeps counting."""
        self._earlier_phases = self.steps


class ProgressHook(SupervisedHooks):
    """Says where a run is, once an epoch (never per step): ``<run id>: experience 3/5, epoch 2/4``. A turn with a
    step budget says its steps instead of epochs. At most one report every :attr:`every` seconds."""

    every = 0.5

    def __init__(self, report: Callable[[str], None], name: str, turns: int, budget: StepBudget | None = None) -> None:
        super().__init__()
        self.report, self.name, self.turns, self.budget = report, name, turns, budget
        self.turn, self.epoch, self._last = 0, 0, 0.0

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        self.turn, self.epoch = self.turn + 1, 0
        self._say(f"experience {self.turn}/{max(self.turns, self.turn)}", force=True)

    def after_training_epoch(self, strategy: Any, **kwargs: Any) -> None:
        self.epoch += 1
        where = f"experience {self.turn}/{max(self.turns, self.turn)}"
        if self.budget is not None and self.budget.budget is not None:  # epochs are only the budget's upper bound
            self._say(f"{where}, step {min(self.budget.steps, self.budget.budget)}/{self.budget.budget}")
            return
        epochs = getattr(strategy, "train_epochs", None)
        self._say(f"{where}, epoch {self.epoch}/{epochs or '?'}")

    def _say(self, where: str, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= self.every:
            self._last = now
            self.report(f"{self.name}: {where}")


class CurveRecorder(SupervisedHooks):
    """Forgetting curves: every ``every`` iterations, accuracy of the watched tasks' models.

    Records ``{train_exp, iteration, eval_exp, accuracy}`` at iteration 0 (before the turn trains),
    every ``every`` iterations, and at the turn's last iteration. Its evaluation time is kept apart
    so the runner can leave it out of the training time.
    """

    def __init__(
        self,
        every: int,
        evaluate_task: Callable[[torch.nn.Module, int], float],
        on_point: Callable[[torch.nn.Module, int, int], None] | None = None,
    ) -> None:
        super().__init__()
        self.every = every
        self.evaluate_task = evaluate_task
        # also called (model, turn, iteration) at every point inside a turn (the forgetting attribution's)
        self.on_point = on_point
        self.curves: list[dict[str, Any]] = []
        self.turn = 0
        self.watch: list[int] = []
        self.steps = 0
        self.eval_seconds = 0.0

    def _record(self, model: torch.nn.Module, inside: bool = False) -> None:
        t0 = time.perf_counter()
        for task in self.watch:
            self.curves.append(
                {
                    "train_exp": self.turn,
                    "iteration": self.steps,
                    "eval_exp": task,
                    "accuracy": self.evaluate_task(model, task),
                }
            )
        if inside and self.on_point is not None:
            self.on_point(model, self.turn, self.steps)
        self.eval_seconds += time.perf_counter() - t0

    def before_training_exp(self, strategy, **kwargs) -> None:
        self.steps = 0
        self._record(strategy.model)

    def after_training_iteration(self, strategy, **kwargs) -> None:
        self.steps += 1
        if self.steps % self.every == 0:
            self._record(strategy.model, inside=True)

    def after_training_exp(self, strategy, **kwargs) -> None:
        if self.steps % self.every != 0:
            self._record(strategy.model)


@dataclass
class Harness:
    """The harness plugins of one run; ``plugins`` is what the strategy context appends."""

    watch: LossWatch = field(default_factory=LossWatch)
    budget: StepBudget = field(default_factory=StepBudget)
    recorder: CurveRecorder | None = None
    pruner: SupervisedHooks | None = None  # a tuning trial's checks inside experiences (run.pruning.InsideChecks)
    progress: ProgressHook | None = None  # where the run is, once an epoch (the suite's progress line)

    @property
    def plugins(self) -> list[SupervisedHooks]:
        # The recorder first: its iteration-0 point precedes any step of the experience.
        return [p for p in (self.recorder, self.watch, self.budget, self.pruner, self.progress) if p is not None]

    def inside_eval_seconds(self) -> float:
        """Seconds the plugins spent evaluating inside experiences so far (kept out of the training time)."""
        return sum(getattr(p, "eval_seconds", 0.0) for p in (self.recorder, self.pruner) if p is not None)
