"""The lockstep loop: each seed's scenario, strategy and plugins built as its own run builds them (:class:`_Seat`), and
every turn, step, evaluation and importance pass of the seeds taken together on the stack (:class:`_Lockstep`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, cast

import torch
from torch import Tensor, nn

from forgetbench.benchmark.data.loaders import (
    TensorBatchLoader,
    dataset_tensors,
    lockstep_batches,
    ragged_lockstep_batches,
)
from forgetbench.benchmark.run.assemble import build_run_strategy
from forgetbench.benchmark.run.runner import harness_of, record_turn, scenario_of
from forgetbench.benchmark.run.schedule import TurnDone, scheduled_experiences, set_turn_budget
from forgetbench.benchmark.run.spec import RunSpec, new_record
from forgetbench.benchmark.train.harness import Harness, Scores, check_finite_weights, evaluate
from forgetbench.benchmark.train.hooks import SupervisedHooks
from forgetbench.strategies.importance import fisher_chunk
from forgetbench.strategies.passes import ExactFisherPass, StackedPass
from forgetbench.benchmark.train.template import (
    ITERATION_EVENTS,
    active_callbacks,
)

from forgetbench.benchmark.run.batching.refusals import (
    Unbatchable,
    model_refusal,
    idle_params_refusal,
    strategy_refusal,
)
from forgetbench.benchmark.run.batching.steps import (
    backward_all,
    exact_fisher_step,
    masked_pass,
    next_batches,
    seed_rows,
    stacked_batch,
)
from forgetbench.benchmark.run.batching.stack import (
    SeedStack,
    routes_of,
    seed_losses,
    plugins_by_type,
    steps_nothing_at_zero,
    step_except,
)


ProgressCallback = Callable[[str], None]


class _Seat:
    """One seed of the batch: its spec, record, scenario, harness, strategy and turns (as the runner builds them)."""

    def __init__(self, spec: RunSpec, data_root: Path, device: torch.device, progress: ProgressCallback | None):
        self.spec = spec
        self.record = new_record(spec, device)
        self.scenario = scenario_of(spec, data_root, self.record)
        model = self.scenario.model.to(device)
        refusal = model_refusal(model) or idle_params_refusal(model, self.scenario, device)
        if refusal is not None:
            raise Unbatchable(refusal)
        self.model, self.device, self.progress = model, device, progress

    def shape(self) -> list[tuple[int, tuple[int, ...]]]:
        """Per task: its model and its samples' shape (what the seeds of a batch must share; their numbers may
        differ)."""
        return [(task.model_key, tuple(task.train_x.shape[1:])) for task in self.scenario.tasks]

    def sizes(self) -> list[int]:
        """Per task: its training samples."""
        return [len(task.train_y) for task in self.scenario.tasks]

    def build_strategy(self) -> None:
        """The strategy on the seat's model (as the runner builds it), and the untrained model's scores."""
        spec, device = self.spec, self.device
        self.harness: Harness = harness_of(spec, self.scenario, self.record, device, None, self.progress)
        self.strategy = build_run_strategy(spec, self.scenario, self.model, device, self.harness)
        refusal = strategy_refusal(self.strategy)
        if refusal is not None:
            raise Unbatchable(refusal)
        batch = spec.training.eval_batch_size
        t0 = time.perf_counter()
        self.record.init_accuracy = [evaluate(self.strategy.model, task, batch, device) for task in self.scenario.tasks]
        self.record.timing.eval_seconds += time.perf_counter() - t0
        self.record.turn_accuracy = []
        if self.harness.recorder is not None:
            self.record.curves = []
        self.turns = scheduled_experiences(self.scenario)
        self.scores = Scores(self.strategy, batch, device)
        self.trained: list[int] = []


def _eval_forward(model: nn.Module, x: Tensor, key: int) -> Tensor:
    """``model``'s logits of model ``key`` on ``x`` in eval mode (its mode restored)."""
    was_training = model.training
    model.eval()
    try:
        return model.forward_single_task(x, key)  # type: ignore[operator]
    finally:
        model.train(was_training)


class _Step:
    """The batch's current training step as a plugin's ``lockstep_step`` callbacks see it (the protocol of
    :class:`~forgetbench.benchmark.train.hooks.SupervisedHooks`): the seats' strategies, which of them step, whether
    every batch is full, and the seats' models (or frozen copies of them) on the step's stacked inputs."""

    def __init__(self, lockstep: "_Lockstep") -> None:
        self._lockstep = lockstep
        self.inputs: Tensor | None = None
        self.stepping: list[int] = []
        self.full = False
        self._frozen: tuple[list[int], SeedStack] | None = None  # the last frozen models' ids and their stack

    @property
    def strategies(self) -> list[Any]:
        return self._lockstep.strategies

    def forward(self, key: int) -> Tensor:
        """The seats' models ``key`` on the step's inputs, ``(K, batch, ...)``, through the training stack."""
        stack = self._lockstep.stack
        assert stack is not None and self.inputs is not None
        return stack.forward(self.inputs, key, routes_of(self.strategies, key))

    def frozen_forward(self, models: Sequence[nn.Module], key: int) -> Tensor:
        """K frozen models (one per seat, of its model's structure: a distillation's teachers) ``key`` on the step's
        inputs, without autograd: through a stack of their own, built once for these models."""
        assert self.inputs is not None
        ids = [id(model) for model in models]
        if self._frozen is None or self._frozen[0] != ids:  # the stack holds the models: no id is reused meanwhile
            self._frozen = (ids, SeedStack(models))
        route = [getattr(model, "seed_route", None) for model in models]
        routes = [r(key) for r in route] if all(callable(r) for r in route) else None  # type: ignore[misc]
        with torch.no_grad():
            return self._frozen[1].forward(self.inputs, key, routes)


class _Lockstep:
    """Trains the seats' turns together (Avalanche's ``train`` of one experience, event by event for every seat,
    with the stacked pass and step in the middle)."""

    def __init__(self, seats: list[_Seat], reset_optimizer: bool) -> None:
        self.seats, self.reset_optimizer = seats, reset_optimizer
        self.strategies = [seat.strategy for seat in seats]
        # before any plugin sees the weights: what a plugin keeps of them (an alias, a copy) is of the stacked rows
        self.stack: SeedStack | None = SeedStack([strategy.model for strategy in self.strategies])
        self.optimizer: torch.optim.Optimizer | None = None
        self.step = _Step(self)
        # model key -> whether the stack scores it: its logits the seats' own, and no slower than theirs one by one
        self._evaluates_as_own: dict[int, bool] = {}

    def _each(self, method: str, **kwargs: Any) -> None:
        for strategy in self.strategies:
            getattr(strategy, method)(**kwargs)

    def train_turn(self, index: int) -> None:
        """Turn ``index`` of every seat, as ``strategy.train(experience)`` trains it."""
        self.index = index
        kwargs = {"reset_optimizer_state": self.reset_optimizer}
        for seat, strategy in zip(self.seats, self.strategies):
            turn, experience = seat.turns[index]
            strategy.is_training, strategy._stop_training = True, False
            strategy.model.train()
            strategy.model.to(strategy.device)
            strategy._eval_streams = []
            strategy._before_training(**kwargs)
            strategy.experience = experience
            strategy._before_training_exp(**kwargs)
        self._stack_turn()
        self.together = self._together()
        for _ in range(self.strategies[0].train_epochs):
            self._each("_before_training_epoch", **kwargs)
            stopping = {strategy._stop_training for strategy in self.strategies}
            if len(stopping) > 1:
                raise Unbatchable("the seeds stopped their turn at different epochs")
            if stopping == {True}:
                for strategy in self.strategies:
                    strategy._stop_training = False
                break
            self._epoch(kwargs)
            self._each("_after_training_epoch", **kwargs)
        self._importance_together()
        self._each("_after_training_exp", **kwargs)
        self._each("_after_training", **kwargs)
        self._each("_train_cleanup")

    def scores_after_turn(self, index: int) -> list[dict[int, float]]:
        """Each seat's scores of the tasks its record reads after turn ``index`` (every task on a recorded turn, else
        the one trained), computed for all seats at once where the stack evaluates as the seats' own models do
        (:meth:`_evaluate_together`): ``id(task) -> score`` per seat, a task left out where it does not."""
        seats = self.seats
        turn = seats[0].turns[index][0]
        given: list[dict[int, float]] = [{} for _ in seats]
        for t in range(len(seats[0].scenario.tasks)) if turn.record else [turn.task]:
            tasks = [seat.scenario.tasks[t] for seat in seats]
            scores = self._evaluate_together(tasks)
            for mine, task, score in zip(given, tasks, scores or []):
                mine[id(task)] = score
        return given

    def _evaluate_together(self, tasks: Sequence[Any]) -> list[float] | None:
        """Each seat's top-1 accuracy on its own ``tasks[k]`` (:func:`~forgetbench.benchmark.train.harness.evaluate`,
        eval batch by eval batch), the K models at once; None where the tasks differ in their model or size, score
        sequences, or the stack's logits are not each seat's own model's in eval mode, or the stack scores slower
        than the seats one by one (both checked on the first batch of each model: :meth:`_first_look`)."""
        first, stack = tasks[0], self.stack
        assert stack is not None
        if first.test_y.dim() != 1 or any(
            t.model_key != first.model_key
            or t.test_x.shape != first.test_x.shape
            or t.test_y.shape != first.test_y.shape
            for t in tasks
        ):
            return None
        key, size = first.model_key, self.seats[0].spec.training.eval_batch_size
        if self._evaluates_as_own.get(key) is False:
            return None
        routes, device = routes_of(self.strategies, key), self.strategies[0].device
        correct = torch.zeros(len(tasks), dtype=torch.long, device=device)
        with torch.no_grad():
            for start in range(0, len(first.test_y), size):
                x = torch.stack([t.test_x[start : start + size] for t in tasks]).to(device)
                y = torch.stack([t.test_y[start : start + size] for t in tasks]).to(device)
                began = time.perf_counter()
                try:
                    out = stack.forward(x, key, routes)
                except Unbatchable:
                    out = None
                if key not in self._evaluates_as_own:
                    exact = out is not None and self._first_look(out, x, key, time.perf_counter() - began)
                    if not exact:
                        self._evaluates_as_own[key] = False
                        return None
                if out is None:  # a later batch the stack refused: the seats score their own
                    return None
                correct += (out.argmax(2) == y).sum(1)
        return [count / max(len(first.test_y), 1) for count in correct.tolist()]

    def _first_look(self, out: Tensor, x: Tensor, key: int, together_seconds: float) -> bool:
        """On model ``key``'s first eval batch: whether ``out`` is, row by row, each seat's own model's output on its
        ``x`` in eval mode (else False); and, recorded for the later evaluations, whether the stack scores no slower
        than the seats' own models (:meth:`_stack_scores_faster`: each timed once, on this batch; a pre-empted timing
        costs speed, never a number)."""
        began = time.perf_counter()
        own = [_eval_forward(s.model, x[k], key) for k, s in enumerate(self.strategies)]
        alone_seconds = time.perf_counter() - began
        if not all(torch.equal(mine, out[k]) for k, mine in enumerate(own)):
            return False
        self._evaluates_as_own[key] = self._stack_scores_faster(together_seconds, alone_seconds)
        return True

    def _stack_scores_faster(self, together_seconds: float, alone_seconds: float) -> bool:
        """Whether scoring a model together pays. On the CPU a large model's eval batch is already a few large matrix
        products, to which gathering the seats' batches into one and routing their rows only add copies: the faster
        of the two timings decides. On an accelerator one launch replaces K: together."""
        return self.strategies[0].device.type != "cpu" or together_seconds <= alone_seconds

    def _importance_together(self) -> None:
        """Before the seeds end the experience: each plugin class's ``lockstep_importance`` (the protocol of
        :class:`~forgetbench.benchmark.train.hooks.SupervisedHooks`; the regularizer core's takes its estimator's pass
        from :meth:`_stacked_pass`) may have every seed's importance pass computed at once."""
        by_type = [plugins_by_type(strategy.plugins) for strategy in self.strategies]
        for kind, occurrence in by_type[0]:
            instances = [plugins.get((kind, occurrence)) for plugins in by_type]
            if issubclass(kind, SupervisedHooks) and all(p is not None for p in instances):
                kind.lockstep_importance(instances, self.strategies, self._stacked_pass)

    def _stacked_pass(self, kind: StackedPass) -> list[dict[str, Tensor]] | None:
        """Every seed's importance pass ``kind`` (its estimator's: :mod:`forgetbench.strategies.passes`) over its
        experience's samples in order, at once (None: not here), entry by entry the arithmetic of its own:

        * a :class:`~forgetbench.strategies.passes.MinibatchPass` (Avalanche's squared gradients, MAS's output
          sensitivity): its objective on the stack's outputs (each seed's criterion its own cross-entropy), its
          accumulation on the stacked gradients, over the training-size mini-batches, every parameter;
        * the :class:`~forgetbench.strategies.passes.ExactFisherPass`: per-sample gradients of the observed labels'
          loss in chunks of its batch size, each stacked linear layer's backward giving its rule
          (:func:`~forgetbench.strategies.importance.squared_outer`), the trainable parameters that received a
          gradient."""
        strategies, stack = self.strategies, self.stack
        assert stack is not None
        exact = isinstance(kind, ExactFisherPass)
        tensors = [dataset_tensors(s.experience.dataset) for s in strategies]
        size = int(strategies[0].train_mb_size)
        if isinstance(kind, ExactFisherPass):
            size = fisher_chunk(kind.batch_size, tensors[0][0][0])
        loaders = [TensorBatchLoader(t, size, shuffle=False) for t in tensors]
        keys = {loader.single_task for loader in loaders}
        if len(keys) != 1 or None in keys or len({len(t[0]) for t in tensors}) != 1:
            return None
        key = int(next(iter(keys)))  # type: ignore[arg-type]
        routes = routes_of(strategies, key)
        routed = routes is not None and len(set(routes)) > 1
        if exact and not routed and not stack._direct_for.get(key):
            return None  # the squares come from the stacked copy's own linear layers
        sums = {name: torch.zeros_like(stack.stacked[name]) for name in stack.names}
        trainable = [sums[name] for name in stack.trainable]
        params = [stack.stacked[name] for name in stack.trainable]
        reached: set[str] = set()
        stack.rows_taken = {} if exact else None
        gathered = lockstep_batches(loaders)  # each step's rows gathered at once, not sliced seed by seed
        steps = gathered if gathered is not None else ([torch.stack(t) for t in zip(*b)] for b in zip(*loaders))
        device = strategies[0].device
        try:
            for batch in steps:
                inputs, targets = batch[0].to(device), batch[1].to(device)
                if exact:
                    if not exact_fisher_step(stack, inputs, targets, key, routes, params, trainable, reached):
                        return None
                    continue
                stack.zero_grad()
                outputs = stack.forward(inputs, key, routes)
                kind.objective(outputs, targets, seed_losses).sum().backward()  # type: ignore[union-attr]
                kind.accumulate(trainable, [cast(Tensor, p.grad) for p in params])  # type: ignore[union-attr]
        finally:
            taken, stack.rows_taken = stack.rows_taken, None
            stack.zero_grad()
        if not exact:
            torch._foreach_div_(list(sums.values()), float(max(len(loaders[0]), 1)))
            return [{own[name]: sums[name][k].clone() for name in stack.names} for k, own in enumerate(stack.own_names)]
        count = float(max(len(tensors[0][1]), 1))
        assert taken is not None
        return [
            {
                own[name]: sums[name][k] / count
                for name in stack.trainable
                if name in reached and (name not in taken or k in taken[name])
            }
            for k, own in enumerate(stack.own_names)
        ]

    def _stack_turn(self) -> None:
        """The stack of this turn's weights (the one built before training, unless the turn changed the models'
        parameters) and the stacked optimiser (fresh, or with the last turn's state)."""
        old_stack, old_optimizer = self.stack, self.optimizer
        models = [strategy.model for strategy in self.strategies]
        if old_stack is None or not old_stack.holds(models):
            self.stack = SeedStack(models)
        else:
            old_stack.point_grads()
        assert self.stack is not None
        first = self.strategies[0]
        if not steps_nothing_at_zero(first.optimizer, self.reset_optimizer or old_optimizer is None):
            used = self.seats[0].scenario.turn_used_params[self.index]
            unused = sorted(set(self.stack.trainable) - set(used))
            if unused:
                raise Unbatchable(
                    f"{type(first.optimizer).__name__} with these settings moves a parameter whose gradient is 0 "
                    f"(its stacked gradient), which a turn that does not use it ({unused[0]}) leaves unset alone"
                )
        self.optimizer = self.stack.optimizer_like(first.optimizer, first.model)
        if not self.reset_optimizer and old_stack is not None and old_optimizer is not None:  # no reset
            self.stack.carry_state(old_optimizer, old_stack, self.optimizer)

    def _together(self) -> dict[str, list[Callable[[Tensor], None]]]:
        """This turn's plugins that act once for all seeds: a plugin class's ``lockstep`` (the protocol of
        :class:`~forgetbench.benchmark.train.hooks.SupervisedHooks`: the regularizer core's penalty, the loss watch)
        gives, for the K seeds' instances, callbacks ``event -> f(losses)`` that replace theirs at that event
        (``backward_end``: when the backward pass ends, ``epoch_end``: before the epoch's last events). Its other
        events stay per seed."""
        assert self.stack is not None
        together: dict[str, list[Callable[[Tensor], None]]] = {}
        self._replaced: dict[str, set[int]] = {}
        self._edits_losses = False  # a lockstep_step callback may edit a seat's loss in place, as its own callback did
        by_type = [
            plugins_by_type(strategy.plugins) for strategy in self.strategies
        ]  # a seed's own progress hook aside
        for kind, occurrence in by_type[0]:
            instances = [plugins.get((kind, occurrence)) for plugins in by_type]
            if not issubclass(kind, SupervisedHooks) or any(p is None for p in instances):
                continue  # an Avalanche plugin of its own: its callbacks run per seed
            on_step = kind.lockstep_step(instances, self.step) or {}
            self._edits_losses = self._edits_losses or "before_backward" in on_step  # as the seats' own callbacks
            callbacks = (kind.lockstep(instances, self.stack.stacked_of) or {}) | on_step
            for event, callback in callbacks.items():
                together.setdefault(event, []).append(callback)
                self._replaced.setdefault(event, set()).update(id(p) for p in instances)
        return together

    def _epoch(self, kwargs: dict[str, Any]) -> None:
        """One epoch of every seat, step by step: Avalanche's iteration events on each seat, the pass and the step
        once for all (:class:`~forgetbench.benchmark.train.template.LeanLoopMixin`'s loop, stacked). Seeds whose
        datasets differ in size (each its own split) step together while each has batches: at a step where a seed's
        batch is shorter than the others' (its last) it makes its own pass, and once its epoch has ended it sits
        the steps out (:meth:`_masked_step`)."""
        strategies, stack, optimizer, step = self.strategies, self.stack, self.optimizer, self.step
        assert stack is not None and optimizer is not None
        together, hooks = self.together, self._own_hooks()
        loaders = [s.dataloader for s in strategies]
        keys = {getattr(loader, "single_task", None) for loader in loaders}
        if len(keys) != 1 or None in keys:
            raise Unbatchable("a training batch holds several tasks' samples")
        key = int(next(iter(keys)))  # type: ignore[arg-type]
        routes = routes_of(strategies, key)
        gathered = ragged_lockstep_batches(loaders)
        iterators: list[Iterator[Any]] = [iter(loader) for loader in loaders] if gathered is None else []
        autocast = strategies[0].autocast()
        losses = torch.zeros(len(strategies))
        editable = self._edits_losses or any(callbacks["before_backward"] for callbacks in hooks)
        everyone = list(range(len(strategies)))

        def each(event: str, seats: list[int]) -> None:
            for k in seats:
                for callback in hooks[k][event]:
                    callback(strategies[k], **kwargs)
            for callback in together.get(event, ()):
                callback(losses)

        while True:
            stacked, batches = next_batches(gathered, iterators)
            if batches is None:
                break
            stepping = [k for k, batch in enumerate(batches) if batch is not None]
            for k in stepping:
                strategies[k].mbatch = batches[k]  # also when stopping: Avalanche's loop draws the batch first
            stopping = {strategies[k]._stop_training for k in stepping}
            if stopping == {True}:
                break
            if len(stopping) > 1:
                raise Unbatchable("the seeds stopped their turn at different steps")
            for k in stepping:
                strategies[k]._unpack_minibatch()
            each("before_training_iteration", stepping)
            stack.zero_grad()
            inputs, targets, full = stacked_batch(strategies, stacked, batches)
            step.inputs, step.stepping, step.full = inputs, stepping, len(full) == len(strategies)
            with autocast:
                outputs = stack.forward(inputs, key, routes)
                losses = seed_losses(outputs, targets)
            if len(full) == len(strategies):
                own_losses, version = seed_rows(losses, editable), losses._version
                for strategy, output, loss in zip(strategies, seed_rows(outputs, editable), own_losses):
                    strategy.mb_output, strategy.loss = output, loss
                each("before_backward", everyone)
                backward_all(strategies, losses, own_losses, version)
            else:
                losses = masked_pass(strategies, outputs, losses, full, stepping, autocast)
                each("before_backward", stepping)
                torch.stack([strategies[k].loss for k in stepping]).sum().backward()
            for callback in together.get("backward_end", ()):
                callback(losses)
            each("after_backward", stepping)
            each("before_update", stepping)
            if len(stepping) == len(strategies):
                optimizer.step()
            else:
                step_except(optimizer, sorted(set(everyone) - set(stepping)))
            each("after_update", stepping)
            each("after_training_iteration", stepping)
        for callback in together.get("epoch_end", ()):
            callback(losses)

    def _own_hooks(self) -> list[dict[str, list[Callable[..., Any]]]]:
        """Each seat's callbacks per iteration event, less those its plugins' ``lockstep`` replaced (:meth:`_together`)."""
        return [
            {
                event: [
                    callback
                    for callback in active_callbacks(s.plugins, event)
                    if id(getattr(callback, "__self__", None)) not in self._replaced.get(event, ())
                ]
                for event in ITERATION_EVENTS
            }
            for s in self.strategies
        ]


def _train_together(seats: list[_Seat]) -> None:
    """Every turn of the seats' schedules, together; a search (adaptive) then asks each seat for its next turns, which
    must be the same turns (each seat's own architectures), until it has none (the runner's loop, per seat)."""
    lockstep = _Lockstep(seats, seats[0].spec.training.reset_optimizer)
    index = 0
    while True:
        while index < len(seats[0].turns):
            _train_turn_together(seats, lockstep, index)
            index += 1
        if not seats[0].scenario.adaptive:
            return
        more = []
        for seat in seats:
            t0 = time.perf_counter()  # the search's own work, apart from training
            more.append(seat.scenario.next_turns(seat.scores))
            timing = seat.record.timing
            timing.search_seconds = (timing.search_seconds or 0.0) + time.perf_counter() - t0
        if any(turns != more[0] for turns in more):
            raise Unbatchable("the seeds' searches chose different turns")
        if not more[0]:
            return
        for seat, turns in zip(seats, more):
            start = len(seat.turns)
            seat.scenario.schedule.extend(turns)
            seat.turns = seat.turns + scheduled_experiences(seat.scenario, start)


def _train_turn_together(seats: list[_Seat], lockstep: "_Lockstep", index: int) -> None:
    """Turn ``index`` of every seat (its budget, curves, clock), then what each record gains from it."""
    if any(seat.turns[index][0] != seats[0].turns[index][0] for seat in seats):
        raise Unbatchable("the seeds' schedules differ")
    for seat in seats:
        turn = seat.turns[index][0]
        if turn.task not in seat.trained:
            seat.trained.append(turn.task)
        set_turn_budget(seat.strategy, seat.harness, turn, seat.spec.training)
        if seat.harness.recorder is not None:
            seat.harness.recorder.turn, seat.harness.recorder.watch = index, list(seat.trained)
    curves_before = [seat.harness.inside_eval_seconds() for seat in seats]
    t0 = time.perf_counter()
    lockstep.train_turn(index)
    if seats[0].strategy.device.type == "cuda":
        torch.cuda.synchronize(seats[0].strategy.device)
    elapsed = time.perf_counter() - t0
    curves = [seat.harness.inside_eval_seconds() - before for seat, before in zip(seats, curves_before)]
    share = max(elapsed - sum(curves), 0.0) / len(seats)
    for seat in seats:
        check_finite_weights(seat.strategy.model)
    t0 = time.perf_counter()
    given = lockstep.scores_after_turn(index)
    eval_share = (time.perf_counter() - t0) / len(seats)
    for seat, curve_seconds, scores in zip(seats, curves, given):
        done = TurnDone(index, seat.turns[index][0], share, curve_seconds, seat.harness.budget.steps)
        record_turn(seat.scenario, seat.strategy, seat.harness, seat.record, done, _GivenScores(seat.scores, scores))
        seat.record.timing.eval_seconds += eval_share


class _GivenScores(Scores):
    """A seat's :class:`~forgetbench.benchmark.train.harness.Scores` while its turn is recorded: the scores the batch
    computed for every seat at once (:meth:`_Lockstep.scores_after_turn`, keyed by the task), else its own (the
    seat's cache, shared)."""

    def __init__(self, scores: Scores, given: dict[int, float]) -> None:
        super().__init__(scores.strategy, scores.batch_size, scores.device)
        self._scored, self.given = scores._scored, given

    def __call__(self, task: Any) -> float:
        score = self.given.get(id(task))
        if score is not None:
            self.remember(task, score)  # in the seat's cache: a search reads it again after the turn
        return super().__call__(task)
