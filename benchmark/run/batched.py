"""Seeds at the price of one: K runs that differ only in their seed, trained as one stacked model.

Each seed is still its own run: its scenario, model initialisation, strategy and plugins are built exactly as the
per-seed runner builds them (:func:`~forgetbench.benchmark.run.runner.run`), its data order comes from its own
loader, and every plugin callback (a penalty's gradient, SI's path integral, an importance pass, the step budget,
curves) is called on that seed's own strategy. Only the arithmetic the K seeds share is done once:

* **the weights** (:class:`SeedStack`): every parameter is one ``(K, *shape)`` tensor, and each seed's own
  parameter is a view of its row (``param.data``), its ``.grad`` a view of the stacked gradient's row, so a seed's
  plugins read and write the stacked tensors in place;
* **the forward and backward pass**: one call of a stacked copy of the model (:func:`_stacked_copy`: its parameters
  the stacked tensors, its linear layers :class:`_StackedLinear`) on the seeds' ``(K, batch, ...)`` minibatches, or
  one :func:`torch.func.vmap` of the model's own forward where the copy does not reproduce it; a model whose seeds
  take other routes (a supernet, each seed on its own drawn architectures) runs through its ``forward_seeds``, each
  op once for the seeds that chose it; then one backward of the sum of the seeds' losses (the seeds share no weight,
  so each row's gradient is its own seed's);
* **the optimiser step**: one optimiser of the same class and hyper-parameters over the stacked tensors. SGD,
  Adam, AdamW, RMSprop and Adagrad update each entry from its own gradient and state alone, so a row's step is the
  step its seed's optimiser takes.

The per-seed path is the reference, and the records are bit for bit its records (``tests/run/test_batched.py``):
the stacked linear layer computes each product in the orientation PyTorch's own per-model backward does, and a routed
forward must give every seed's own model's output exactly on its first batch, or the batch is refused. What cannot be
stacked faithfully is refused before anything trains (:func:`~forgetbench.benchmark.run.seed_batches.batch_refusal`,
:func:`model_refusal`, :func:`strategy_refusal`): a random draw inside the forward pass (dropout), buffers a forward
pass updates (BatchNorm), an optimiser or criterion whose step couples entries (gradient clipping by a global norm), a
plugin that hooks the forward pass, a strategy with its own training loop, seeds whose splits differ in size, a
checkpointed, pruned or attributed run; and, on the CPU, a model whose turns leave many parameters unused
(:func:`idle_params_refusal`: the stack's step updates them all). Those run one seed after another, and each of their
records says why (``batch.alone``; the suite prints it once). A batch whose training raises or diverges runs again
seed by seed, so a seed that fails or diverges gets the record its own run gives.

Each record is an ordinary record of its run (same schema, fingerprint and run id) whose ``batch`` lists the seeds
it trained with (or, for a refused batch, why it ran alone), and whose ``timing.train_seconds`` is its share (1/K)
of the batch's training.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import time
import types
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from forgetbench.benchmark.core.record import RunRecord, SeedBatch
from forgetbench.benchmark.data.loaders import TensorBatchLoader, dataset_tensors, lockstep_batches
from forgetbench.benchmark.data.models import TaskRoutedModule
from forgetbench.benchmark.run.assemble import build_run_strategy
from forgetbench.benchmark.run.runner import after_the_turns, harness_of, record_turn, run, scenario_of
from forgetbench.benchmark.run.schedule import TurnDone, scheduled_experiences, set_turn_budget
from forgetbench.benchmark.run.seed_batches import batch_refusal, same_but_seed
from forgetbench.benchmark.run.spec import RunSpec, new_record, now, resolve_device
from forgetbench.benchmark.train.harness import DivergedError, Harness, Scores, check_finite_weights, evaluate
from forgetbench.strategies.importance import fisher_chunk
from forgetbench.benchmark.train.template import (
    ITERATION_EVENTS,
    FastSupervisedTemplate,
    LeanLoopMixin,
    active_callbacks,
)

__all__ = ["run_seeds", "SeedStack", "Unbatchable", "STACKED_OPTIMIZERS"]

ProgressCallback = Callable[[str], None]

# optimisers whose update of an entry reads only that entry's gradient and state: a stacked step is K steps
STACKED_OPTIMIZERS = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop, torch.optim.Adagrad)


class Unbatchable(Exception):
    """These seeds cannot be trained as one stacked model; the message says why (one line in each record)."""


def model_refusal(model: nn.Module) -> str | None:
    """Why ``model`` cannot be stacked faithfully (None: it can): random draws or buffers updated in its forward, or
    parameters outside ``nn.Linear`` (a convolution, a norm, an embedding: stacked, their products and sums would
    round otherwise than in the seed's own run, and a long run turns that into other numbers)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            return f"the model draws at random in its forward pass ({name or 'the model'}: {type(module).__name__})"
        if type(module) is nn.Linear and module.in_features == 1:
            return f"{name} takes one input feature: its run multiplies its gradient by a vector kernel of its own"
        if type(module) is not nn.Linear and list(module.parameters(recurse=False)):
            return (
                f"{name or 'the model'} ({type(module).__name__}) holds parameters of its own, and only nn.Linear "
                "layers are stacked so that every seed keeps its own numbers exactly"
            )
    buffers = [name for name, _ in model.named_buffers()]
    if buffers:
        return f"the model holds buffers its forward pass may update ({', '.join(buffers[:3])})"
    if not isinstance(model, TaskRoutedModule):
        return f"{type(model).__name__} is not a TaskRoutedModule (its forward needs the batch's task labels)"
    return None


# On the CPU, the most parameters a seed's turns leave unused, on average, that a stack may hold: its step updates
# every parameter of every seed (an unused one by 0), where a seed's own step updates only the ones its turn trains.
# configs/nas_supernet.yaml's MNIST supernet leaves 168,596 a seed unused a turn (4 ops a layer, 784 inputs): its
# naive seeds trained in 8.9 s stacked against 6.3 s one after another at 4 seeds, 27.7 s against 23.4 s at 16
# (`python scripts/batched_vs_alone.py configs/nas_supernet.yaml --seeds 16 --strategies naive --allow-idle`).
# decide_demo's supernet leaves 9,323 and its two-model 9,546, and their stacks run 2-2.5x faster at 20 seeds
# (`forgetbench perf --only seed_batching`). An accelerator, whose passes over the parameters cost little beside its
# launches, stacks any size.
IDLE_PARAMS_ON_CPU = 100_000


def idle_params_refusal(model: nn.Module, scenario: Any, device: torch.device) -> str | None:
    """Why a stack of ``model`` would train slower than its seeds one after another (None: it would not): on the CPU,
    the parameters its turns leave unused (on average over ``scenario.turn_used_params``) are over
    :data:`IDLE_PARAMS_ON_CPU`."""
    used_by_turn = getattr(scenario, "turn_used_params", None)
    if device.type != "cpu" or not used_by_turn:
        return None
    sizes = {name: p.numel() for name, p in model.named_parameters() if p.requires_grad}
    used = sum(sum(sizes.get(name, 0) for name in names) for names in used_by_turn) / len(used_by_turn)
    idle = sum(sizes.values()) - used
    if idle <= IDLE_PARAMS_ON_CPU:
        return None
    return (
        f"on the CPU its stacked step would update {round(idle):,} parameters a seed that its turns leave unused (over "
        f"{IDLE_PARAMS_ON_CPU:,}): slower than the seeds one after another"
    )


def strategy_refusal(strategy: Any) -> str | None:
    """Why ``strategy`` cannot train in lockstep with its other seeds (None: it can): a training step of its own, a
    criterion other than the cross-entropy, a plugin on the forward pass, an optimiser that couples entries."""
    kind = type(strategy)
    for method in ("training_epoch", "forward", "optimizer_step"):
        if getattr(kind, method) is not getattr(LeanLoopMixin, method):
            return f"{kind.__name__} has a {method} of its own"
    if kind.backward is not FastSupervisedTemplate.backward or kind.criterion is not FastSupervisedTemplate.criterion:
        return f"{kind.__name__} has its own loss or backward pass"
    criterion = strategy._criterion
    if type(criterion) is not nn.CrossEntropyLoss or not _plain_cross_entropy(criterion):
        return f"its criterion {type(criterion).__name__} is not the plain cross-entropy"
    for event in ("before_forward", "after_forward"):
        hooked = active_callbacks(strategy.plugins, event)
        if hooked:
            return f"{type(getattr(hooked[0], '__self__', hooked[0])).__name__} hooks {event}"
    if type(strategy.optimizer) not in STACKED_OPTIMIZERS:
        return f"its optimiser {type(strategy.optimizer).__name__} is not one whose step is entry by entry"
    return None


def _plain_cross_entropy(criterion: nn.CrossEntropyLoss) -> bool:
    return (
        criterion.weight is None
        and criterion.reduction == "mean"
        and criterion.label_smoothing == 0.0
        and criterion.ignore_index == -100
    )


# ------------------------------------------------------------------------------------------------ the stack
class _SingleTask(nn.Module):
    """``model.forward_single_task(x, key)`` as a module's forward (what :func:`functional_call` calls)."""

    def __init__(self, model: TaskRoutedModule) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, key: int) -> Tensor:
        return self.model.forward_single_task(x, key)


class _StackedLinear(torch.autograd.Function):
    """K linear layers at once: ``x`` ``(K, batch, in)``, ``weight`` ``(K, out, in)``, ``bias`` ``(K, out)``; the
    backward written the way PyTorch's own per-model backward computes each seed's (``grad_w = g^T x``,
    ``grad_x = g w``, ``grad_b = sum_0 g``), batched. Autograd's backward of a vmapped ``linear`` computes the
    weight's gradient as ``(x^T g)^T``: the same sums in another order, which float rounding makes another number,
    and a long SGD run another trajectory. Here each seed's gradient is the one its own run computes, bit for bit."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        ctx.squares = getattr(_SQUARES, "calls", None) is not None
        return _products(x, weight.transpose(1, 2), bias)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        need_x, need_weight, need_bias = ctx.needs_input_grad
        grad_x = _products(grad, weight) if need_x else None
        if ctx.squares:  # the per-sample squared gradients, summed: accumulate_squares's arithmetic
            grad, x = grad * grad, x * x
        return (
            grad_x,
            _products(grad.transpose(1, 2), x) if need_weight else None,
            grad.sum(1) if ctx.has_bias and need_bias else None,
        )


# PyTorch's bmm on the CPU computes a product of fewer multiply-adds than this with a loop of its own, whose sums
# round otherwise than the matrix multiply of one seed's run (which bmm calls above it); so does a seed's own run
# multiplying by a vector (one row, column or inner dimension: a matrix-vector kernel)
_BMM_LOOPS_BELOW = 400


def _products(a: Tensor, b: Tensor, bias: Tensor | None = None) -> Tensor:
    """Each seed's ``bias + a[k] @ b[k]``, computed as its own run computes it: one batched call where PyTorch's bmm
    runs each seed's product as the matrix multiply of a seed's own run, else that multiply seed by seed."""
    rows, inner, columns = a.shape[1], a.shape[2], b.shape[2]
    if a.device.type == "cpu" and (rows * inner * columns < _BMM_LOOPS_BELOW or min(rows, inner, columns) == 1):
        if bias is None:
            return torch.stack([torch.mm(a[k], b[k]) for k in range(a.shape[0])])
        return torch.stack([torch.addmm(bias[k], a[k], b[k]) for k in range(a.shape[0])])
    return torch.bmm(a, b) if bias is None else torch.baddbmm(bias.unsqueeze(1), a, b)


class _SeedLinear(torch.autograd.Function):
    """``linear`` on one seed's 2-D input inside :func:`torch.func.vmap`: its vmap rule is :class:`_StackedLinear`
    on the K seeds at once (one batched call, and each seed's gradient exactly its own run's)."""

    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:  # type: ignore[override]
        return torch.nn.functional.linear(x, weight, bias)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Any:  # type: ignore[override]
        raise RuntimeError("_SeedLinear differentiates only through its vmap rule")

    @staticmethod
    def vmap(info: Any, in_dims: tuple, x: Tensor, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, int]:
        def rows(tensor: Tensor | None, dim: int | None) -> Tensor | None:
            if tensor is None:
                return None
            if dim is None:
                return tensor.unsqueeze(0).expand(info.batch_size, *tensor.shape)
            return tensor.movedim(dim, 0)

        return _StackedLinear.apply(rows(x, in_dims[0]), rows(weight, in_dims[1]), rows(bias, in_dims[2])), 0


def _seed_linear_forward(self: nn.Linear, x: Tensor) -> Tensor:
    if x.dim() != 2:
        return torch.nn.functional.linear(x, self.weight, self.bias)
    return _SeedLinear.apply(x, self.weight, self.bias)


# modules that act entry by entry (any leading dimensions): the stacked call runs them as they are
_ENTRYWISE = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.ELU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Softplus, nn.Identity)
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


# while a stacked exact-Fisher pass runs (its thread): the calls of each linear layer, whose weight "gradients" are then
# the per-sample squared gradients summed over the samples (one call a layer: a layer called twice would need the
# per-sample gradients summed before squaring)
_SQUARES = threading.local()


@contextlib.contextmanager
def _squares() -> Iterator[dict[int, int]]:
    calls: dict[int, int] = {}
    _SQUARES.calls = calls
    try:
        yield calls
    finally:
        _SQUARES.calls = None


def _stacked_linear_forward(self: nn.Linear, x: Tensor) -> Tensor:
    if x.dim() != 3:
        raise Unbatchable("a linear layer met an input of more than one sample dimension")
    calls = getattr(_SQUARES, "calls", None)
    if calls is not None:
        calls[id(self)] = calls.get(id(self), 0) + 1
    return _StackedLinear.apply(x, self.weight, self.bias)


def _stacked_flatten_forward(self: nn.Flatten, x: Tensor) -> Tensor:
    end = self.end_dim if self.end_dim < 0 else self.end_dim + 1
    return x.flatten(self.start_dim + 1, end)


def _stacked_copy(model: nn.Module, stacked: dict[str, Tensor]) -> nn.Module | None:
    """A copy of ``model`` that runs the K seeds at once without :func:`torch.func.vmap` (whose per-call work is most of
    a small model's step): its parameters are the stacked tensors, its linear layers :class:`_StackedLinear`, its
    ``Flatten`` one dimension later, so its forward takes ``(K, batch, ...)``. None where a module is not one of
    those, an entry-wise activation or a container; the model's own forward code must keep the leading seed
    dimension too, which :meth:`SeedStack.forward` checks against the vmap path on the first batch of each model."""
    for module in model.modules():
        if module is model or isinstance(module, (nn.Linear, nn.Flatten, *_ENTRYWISE, *_CONTAINERS)):
            continue
        if type(module).__module__.startswith("torch.") or list(module.parameters(recurse=False)):
            return None  # a torch layer this copy does not stack, or a module holding its own parameters
    copied = copy.deepcopy(model).to("meta")
    for prefix, module in copied.named_modules():
        module._stacked = tuple(module._parameters)  # type: ignore[assignment]
        for name in module._stacked:  # type: ignore[attr-defined]
            del module._parameters[name]
            module.__dict__[name] = stacked[f"{prefix}.{name}" if prefix else name]
        if type(module) is nn.Linear:
            module.forward = types.MethodType(_stacked_linear_forward, module)  # type: ignore[method-assign]
        elif type(module) is nn.Flatten:
            module.forward = types.MethodType(_stacked_flatten_forward, module)  # type: ignore[method-assign]
    return copied


def _aligned(models: Sequence[nn.Module]) -> list[dict[str, nn.Parameter]]:
    """Each model's parameters under the first model's names: by name, or by position where the models say their
    parameters correspond by position (``seeds_align_by_position``: a supernet's private heads are named by each
    seed's own architectures)."""
    named = [list(model.named_parameters()) for model in models]
    names = [name for name, _ in named[0]]
    by_position = all(getattr(model, "seeds_align_by_position", False) for model in models)
    tables = []
    for k, params in enumerate(named):
        if [name for name, _ in params] != names and not (by_position and len(params) == len(names)):
            raise Unbatchable(f"seed {k}'s model has other parameters than the first seed's")
        tables.append(dict(zip(names, (param for _, param in params))))
    return tables


def _stacked_members(module: nn.Module) -> list[tuple[nn.Module, str]]:
    """Each (submodule, name) of ``module`` (of a stacked copy: :func:`_stacked_copy`) holding a stacked parameter."""
    return [(m, name) for m in module.modules() for name in getattr(m, "_stacked", ())]


@contextlib.contextmanager
def _on_rows(members: list[tuple[nn.Module, str]], index: Tensor) -> Iterator[None]:
    """The stacked parameters ``members`` (:func:`_stacked_members`) with only their rows ``index``."""
    held = [(m, name, m.__dict__[name]) for m, name in members]
    try:
        for m, name, full in held:
            m.__dict__[name] = full.index_select(0, index)
        yield
    finally:
        for m, name, full in held:
            m.__dict__[name] = full


class SeedStack:
    """K models of one structure as stacked tensors: ``stacked[name]`` is ``(K, *shape)``, and model k's parameter
    ``name`` is a view of row k (its ``.data`` and, where it trains, its ``.grad``). Built before the first turn, and
    again only where a turn changed the models' parameters (:meth:`holds`); :meth:`point_grads` after each turn's
    start, since an importance pass leaves ``.grad`` unset."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        named = _aligned(models)
        self.names = list(named[0])
        for k, table in enumerate(named[1:], start=1):
            if any(table[n].shape != named[0][n].shape or table[n].dtype != named[0][n].dtype for n in self.names):
                raise Unbatchable(f"seed {k}'s model differs in its parameters from the first seed's")
        self.models, self.seeds = list(models), len(models)
        # seed k's own name of each (first-seed) name: by position where the names differ (a supernet's heads)
        self.own_names = [dict(zip(self.names, (n for n, _ in model.named_parameters()))) for model in models]
        self.params_of = named
        self.stacked: dict[str, Tensor] = {}
        with torch.no_grad():
            for name in self.names:
                rows = [table[name] for table in named]
                stacked = torch.stack([row.detach() for row in rows])
                stacked.requires_grad_(rows[0].requires_grad)
                for k, row in enumerate(rows):
                    row.data = stacked.data[k]
                self.stacked[name] = stacked
        self.trainable = [name for name in self.names if self.stacked[name].requires_grad]
        self._grads: list[Tensor] = []
        for name in self.trainable:
            self._grads.append(torch.zeros_like(self.stacked[name]))
            self.stacked[name].grad = self._grads[-1]
        self.point_grads()
        template = copy.deepcopy(models[0]).to("meta")
        for module in template.modules():
            if type(module) is nn.Linear:
                module.forward = types.MethodType(_seed_linear_forward, module)  # type: ignore[method-assign]
        self._call = _SingleTask(template)  # type: ignore[arg-type]
        self._prefixed = {f"model.{name}": self.stacked[name] for name in self.names}
        self._direct = _stacked_copy(models[0], self.stacked)
        self._direct_for: dict[int, bool] = {}  # model key -> whether the stacked copy gives the vmap path's output
        self._groupings: dict[tuple[Any, ...], tuple[list[tuple[Any, Tensor]], Tensor]] = {}
        self._name_of_stacked = {id(tensor): name for name, tensor in self.stacked.items()}
        self.rows_taken: dict[str, set[int]] | None = None  # while recording: the seeds' rows a routed op ran on
        self._members: dict[int, list[tuple[nn.Module, str]]] = {}  # id(op) -> its stacked parameters (a step's walk)

    def holds(self, models: Sequence[nn.Module]) -> bool:
        """Whether every model's parameters are still the rows of this stack (a turn may add or replace some)."""
        try:
            current = _aligned(models)
        except Unbatchable:
            return False
        for table, aligned in zip(self.params_of, current):
            if list(aligned) != self.names or any(aligned[n] is not table[n] for n in self.names):
                return False
        return all(
            table[name].data_ptr() == self.stacked[name][k].data_ptr()
            for k, table in enumerate(self.params_of)
            for name in self.names
        )

    def point_grads(self) -> None:
        """Each model's ``.grad`` a view of its row of the stacked gradient (an importance pass unsets them)."""
        for name, stacked in zip(self.trainable, self._grads):
            for k, table in enumerate(self.params_of):
                table[name].grad = stacked[k]

    def stacked_of(self, params: list[Tensor]) -> list[Tensor]:
        """The stacked tensors whose rows are ``params`` (parameters of any one seed)."""
        name_of = {id(param): name for table in self.params_of for name, param in table.items()}
        return [self.stacked[name_of[id(param)]] for param in params]

    def zero_grad(self) -> None:
        torch._foreach_zero_(self._grads)

    def forward(self, x: Tensor, key: int, routes: Sequence[Any] | None = None) -> Tensor:
        """The K models on their own inputs: ``x`` is ``(K, batch, ...)``, the result ``(K, batch, ...)``. Through the
        stacked copy where, on this model's first batch, it gave exactly the vmap path's output; else vmapped.
        ``routes``: what each seed's model ``key`` chooses (a supernet's architecture), where they differ."""
        if routes is not None and len(set(routes)) > 1:
            return self._routed(x, key, routes)
        direct = self._direct_for.get(key)
        if direct is None:
            reference = self._vmapped(x, key)
            direct = False
            if self._direct is not None:
                try:
                    with torch.no_grad():
                        output = self._direct.forward_single_task(x, key)  # type: ignore[operator]
                    direct = output.shape == reference.shape and bool(torch.equal(output, reference))
                except Exception:  # noqa: BLE001 - any failure of the stacked copy: the vmap path serves
                    direct = False
            self._direct_for[key] = direct
            return reference
        if direct:
            return self._direct.forward_single_task(x, key)  # type: ignore[union-attr,operator]
        return self._vmapped(x, key)

    def _routed(self, x: Tensor, key: int, routes: Sequence[Any]) -> Tensor:
        """Seeds whose model ``key`` takes other routes (a supernet's seeds, each on its own architecture): the
        stacked copy's ``forward_seeds``, each op once for the seeds that chose it (:meth:`_choose`). On the first
        batch of each model it must give every seed's own model's output exactly, or the batch is refused."""
        forward_seeds = getattr(self._direct, "forward_seeds", None)
        if forward_seeds is None:
            raise Unbatchable(f"the seeds' models {key} take different routes, and {type(self.models[0]).__name__} "
                              "has no forward_seeds")  # fmt: skip
        try:
            output = forward_seeds(x, key, routes, self._choose)
        except NotImplementedError as exc:
            raise Unbatchable(str(exc)) from None
        if key not in self._direct_for:
            with torch.no_grad():
                own = [model.forward_single_task(x[k], key) for k, model in enumerate(self.models)]  # type: ignore[operator]
            if not all(torch.equal(output[k].detach(), mine) for k, mine in enumerate(own)):
                raise Unbatchable(f"the stacked forward of model {key} differs from the seeds' own")
            self._direct_for[key] = True
        return output

    def _choose(self, modules: Any, choices: Sequence[Any], h: Tensor) -> Tensor:
        """Seed k's ``modules[choices[k]]`` on its row of ``h``: each module once on the rows of the seeds that chose
        it, with those rows of its stacked parameters (rows gathered and scattered back exactly: one value each)."""
        if len(set(choices)) == 1:
            return modules[choices[0]](h)
        groups, inverse = self._grouping(tuple(choices), h.device)
        parts = []
        for choice, index in groups:
            op = modules[choice]
            members = self._members.get(id(op))
            if members is None:
                members = self._members[id(op)] = _stacked_members(op)
            if self.rows_taken is not None:
                for module, name in members:
                    taken = self.rows_taken.setdefault(self._name_of_stacked[id(module.__dict__[name])], set())
                    taken.update(index.tolist())
            with _on_rows(members, index):
                parts.append(op(h.index_select(0, index)))
        return torch.cat(parts).index_select(0, inverse)

    def _grouping(self, choices: tuple[Any, ...], device: torch.device) -> tuple[list[tuple[Any, Tensor]], Tensor]:
        """For the seeds' ``choices``: each choice with the rows that chose it, and the index putting the groups'
        rows back in seed order (kept per choices: a search meets the same ones every step of a turn)."""
        key = (choices, device)
        if key not in self._groupings:
            groups, order = [], []
            for choice in dict.fromkeys(choices):
                rows = [k for k, c in enumerate(choices) if c == choice]
                groups.append((choice, torch.tensor(rows, device=device)))
                order.extend(rows)
            inverse = torch.empty(len(order), dtype=torch.long, device=device)
            inverse[torch.tensor(order, device=device)] = torch.arange(len(order), device=device)
            self._groupings[key] = (groups, inverse)
        return self._groupings[key]

    def _vmapped(self, x: Tensor, key: int) -> Tensor:
        call = self._call

        def one(params: dict[str, Tensor], inputs: Tensor) -> Tensor:
            return torch.func.functional_call(call, params, (inputs, key))

        return torch.func.vmap(one)(self._prefixed, x)

    def optimizer_like(self, optimizer: torch.optim.Optimizer, model: nn.Module) -> torch.optim.Optimizer:
        """An optimiser of ``optimizer``'s class and groups (seed 0's, over ``model``'s parameters) on the stacked
        tensors (SGD's multi-tensor implementation: the same arithmetic)."""
        name_of = {id(param): name for name, param in model.named_parameters()}
        groups = []
        for group in optimizer.param_groups:
            missing = [param for param in group["params"] if id(param) not in name_of]
            if missing:
                raise Unbatchable("the optimiser holds tensors that are not the model's parameters")
            options = {key: value for key, value in group.items() if key != "params"}
            if type(optimizer) is torch.optim.SGD:
                # its multi-tensor step does the single-tensor step's arithmetic, entry by entry, in a few calls (its
                # fused CPU step does not: its scalar remainder rounds otherwise, now and then)
                options["foreach"] = True
            groups.append({**options, "params": [self.stacked[name_of[id(param)]] for param in group["params"]]})
        return type(optimizer)(groups, **optimizer.defaults)

    def carry_state(self, old: torch.optim.Optimizer, old_stack: "SeedStack", new: torch.optim.Optimizer) -> None:
        """``old``'s per-tensor state (momentum, moments) moved to ``new`` by parameter name (no optimiser reset)."""
        by_name = {name: old.state[tensor] for name, tensor in old_stack.stacked.items() if tensor in old.state}
        for name, state in by_name.items():
            if name in self.stacked:
                new.state[self.stacked[name]] = state


def _routes(strategies: Sequence[Any], key: int) -> list[Any] | None:
    """What each seed's model ``key`` chooses (its ``seed_route``: a supernet's architecture), where models say."""
    route = [getattr(strategy.model, "seed_route", None) for strategy in strategies]
    return [r(key) for r in route] if all(callable(r) for r in route) else None  # type: ignore[misc]


def _seed_losses(outputs: Tensor, targets: Tensor, reduction: str = "mean") -> Tensor:
    """Each seed's cross-entropy (its mean, or sum), ``(K,)``: its gradient is the per-seed criterion's, entry by
    entry."""
    flat = torch.nn.functional.cross_entropy(outputs.flatten(0, 1), targets.flatten(), reduction="none")
    per_seed = flat.view(targets.shape)
    return per_seed.mean(1) if reduction == "mean" else per_seed.sum(1)


def _by_type(plugins: Sequence[Any]) -> dict[tuple[type, int], Any]:
    """``(type, n) -> plugin``: the n-th plugin of each type, how one seed's plugin is paired with the others'."""
    counts: dict[type, int] = {}
    paired = {}
    for plugin in plugins:
        n = counts[type(plugin)] = counts.get(type(plugin), -1) + 1
        paired[(type(plugin), n)] = plugin
    return paired


def _steps_nothing_at_zero(optimizer: torch.optim.Optimizer, fresh: bool) -> bool:
    """Whether a step with a zero gradient leaves a parameter and its later steps exactly as no step does: SGD
    without weight decay, on a fresh optimiser or without momentum (a fresh momentum buffer starts at the first
    gradient either way; one carried over from an earlier turn would move the parameter by its momentum). A turn's
    unused parameters have a zero stacked gradient where their own run leaves ``.grad`` unset (no step at all)."""
    return isinstance(optimizer, torch.optim.SGD) and all(
        not group.get("weight_decay") and (fresh or not group.get("momentum")) for group in optimizer.param_groups
    )


# ------------------------------------------------------------------------------------------- the lockstep
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

    def shape(self) -> list[tuple[int, int, tuple[int, ...]]]:
        """Per task: its model, its training samples and their shape (what the seeds of a batch must share)."""
        return [(task.model_key, len(task.train_y), tuple(task.train_x.shape[1:])) for task in self.scenario.tasks]

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


class _Lockstep:
    """Trains the seats' turns together (Avalanche's ``train`` of one experience, event by event for every seat,
    with the stacked pass and step in the middle)."""

    def __init__(self, seats: list[_Seat], reset_optimizer: bool) -> None:
        self.seats, self.reset_optimizer = seats, reset_optimizer
        self.strategies = [seat.strategy for seat in seats]
        # before any plugin sees the weights: what a plugin keeps of them (an alias, a copy) is of the stacked rows
        self.stack: SeedStack | None = SeedStack([strategy.model for strategy in self.strategies])
        self.optimizer: torch.optim.Optimizer | None = None
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
        routes, device = _routes(self.strategies, key), self.strategies[0].device
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
        """Before the seeds end the experience: plugins with a ``lockstep_importance(plugins, strategies,
        stacked_pass)`` classmethod (the regularizer core) may have every seed's importance pass computed at once."""
        by_type = [_by_type(strategy.plugins) for strategy in self.strategies]
        for kind, occurrence in by_type[0]:
            hook = getattr(kind, "lockstep_importance", None)
            instances = [plugins.get((kind, occurrence)) for plugins in by_type]
            if hook is not None and all(p is not None for p in instances):
                hook(instances, self.strategies, self._stacked_pass)

    def _stacked_pass(self, kind: str, options: dict[str, Any]) -> list[dict[str, Tensor]] | None:
        """Every seed's importance pass over its experience's samples in order, at once (None: not here), entry by
        entry the arithmetic of its own:

        * ``squared_minibatch``: F_i = (1/B) sum_b (d L_b / d theta_i)^2 over the B training-size mini-batches
          (:func:`~forgetbench.strategies.passes.squared_gradient_importance`), every parameter;
        * ``output_sensitivity``: MAS's (1/B) sum_b |d mean ||f(x)||^2 / d theta_i|
          (:class:`~forgetbench.strategies.parts.OutputSensitivity`), every parameter;
        * ``exact_fisher``: (1/N) sum_n (d L_n / d theta_i)^2, per-sample gradients of the observed labels' loss in
          chunks of ``batch_size`` (:func:`~forgetbench.strategies.importance.exact_fisher_diagonal`'s linear-layer
          path: each stacked linear layer's backward gives (delta^2)^T (a^2)), the trainable parameters that
          received a gradient."""
        strategies, stack = self.strategies, self.stack
        assert stack is not None
        tensors = [dataset_tensors(s.experience.dataset) for s in strategies]
        size = int(strategies[0].train_mb_size)
        if kind == "exact_fisher":
            size = fisher_chunk(int(options["batch_size"]), tensors[0][0][0])
        loaders = [TensorBatchLoader(t, size, shuffle=False) for t in tensors]
        keys = {loader.single_task for loader in loaders}
        if len(keys) != 1 or None in keys or len({len(t[0]) for t in tensors}) != 1:
            return None
        key = int(next(iter(keys)))  # type: ignore[arg-type]
        routes = _routes(strategies, key)
        routed = routes is not None and len(set(routes)) > 1
        if kind == "exact_fisher" and not routed and not stack._direct_for.get(key):
            return None  # the squares come from the stacked copy's own linear layers
        device = strategies[0].device
        sums = {name: torch.zeros_like(stack.stacked[name]) for name in stack.names}
        trainable = [sums[name] for name in stack.trainable]
        params = [stack.stacked[name] for name in stack.trainable]
        grads = [param.grad for param in params]
        reached: set[str] = set()
        stack.rows_taken = {} if kind == "exact_fisher" else None
        gathered = lockstep_batches(loaders)  # each step's rows gathered at once, not sliced seed by seed
        steps = gathered if gathered is not None else ([torch.stack(t) for t in zip(*b)] for b in zip(*loaders))
        try:
            for batch in steps:
                inputs, targets = batch[0].to(device), batch[1].to(device)
                if kind == "exact_fisher":
                    with _squares() as calls:
                        loss = _seed_losses(stack.forward(inputs, key, routes), targets, "sum").sum()
                        found = torch.autograd.grad(loss, params, allow_unused=True)
                    if any(count > 1 for count in calls.values()):
                        return None
                    for name, total, squares in zip(stack.trainable, trainable, found):
                        if squares is not None:
                            total += squares
                            reached.add(name)
                    continue
                stack.zero_grad()
                outputs = stack.forward(inputs, key, routes)
                if kind == "output_sensitivity":
                    outputs.norm(p="fro", dim=2).pow(2).mean(1).sum().backward()
                    torch._foreach_add_(trainable, torch._foreach_abs(grads))  # type: ignore[arg-type]
                else:
                    _seed_losses(outputs, targets).sum().backward()
                    torch._foreach_addcmul_(trainable, grads, grads)  # type: ignore[arg-type]
        finally:
            taken, stack.rows_taken = stack.rows_taken, None
            stack.zero_grad()
        if kind != "exact_fisher":
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
        if not _steps_nothing_at_zero(first.optimizer, self.reset_optimizer or old_optimizer is None):
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
        """This turn's plugins that act once for all seeds: a plugin class with a ``lockstep(plugins, stacked_of)``
        classmethod (the regularizer core's penalty, the loss watch) gives, for the K seeds' instances, callbacks
        ``event -> f(losses)`` that replace theirs at that event (``backward_end``: when the backward pass ends,
        ``epoch_end``: before the epoch's last events). Its other events stay per seed."""
        assert self.stack is not None
        together: dict[str, list[Callable[[Tensor], None]]] = {}
        self._replaced: dict[str, set[int]] = {}
        by_type = [_by_type(strategy.plugins) for strategy in self.strategies]  # a seed's own progress hook aside
        for kind, occurrence in by_type[0]:
            lockstep = getattr(kind, "lockstep", None)
            instances = [plugins.get((kind, occurrence)) for plugins in by_type]
            if lockstep is None or any(p is None for p in instances):
                continue
            callbacks = lockstep(instances, self.stack.stacked_of)
            for event, callback in (callbacks or {}).items():
                together.setdefault(event, []).append(callback)
                self._replaced.setdefault(event, set()).update(id(p) for p in instances)
        return together

    def _epoch(self, kwargs: dict[str, Any]) -> None:
        """One epoch of every seat, step by step: Avalanche's iteration events on each seat, the pass and the step
        once for all (:class:`~forgetbench.benchmark.train.template.LeanLoopMixin`'s loop, stacked)."""
        strategies, stack, optimizer = self.strategies, self.stack, self.optimizer
        assert stack is not None and optimizer is not None
        together = self.together
        hooks = [
            {
                event: [
                    callback
                    for callback in active_callbacks(s.plugins, event)
                    if id(getattr(callback, "__self__", None)) not in self._replaced.get(event, ())
                ]
                for event in ITERATION_EVENTS
            }
            for s in strategies
        ]
        loaders = [s.dataloader for s in strategies]
        keys = {getattr(loader, "single_task", None) for loader in loaders}
        if len(keys) != 1 or None in keys:
            raise Unbatchable("a training batch holds several tasks' samples")
        key = int(next(iter(keys)))  # type: ignore[arg-type]
        routes = _routes(strategies, key)
        lockstep = lockstep_batches(loaders)
        iterators: list[Iterator[Any]] = [iter(loader) for loader in loaders] if lockstep is None else []
        autocast = strategies[0].autocast()
        losses = torch.zeros(len(strategies))
        editable = any(callbacks["before_backward"] for callbacks in hooks)

        def each(event: str) -> None:
            for strategy, callbacks in zip(strategies, hooks):
                for callback in callbacks[event]:
                    callback(strategy, **kwargs)
            for callback in together.get(event, ()):
                callback(losses)

        while True:
            stacked, batches = _next_batches(lockstep, iterators)
            if batches is None:
                break
            for strategy, batch in zip(strategies, batches):
                strategy.mbatch = batch  # also when stopping: Avalanche's loop draws the batch first
            stopping = {strategy._stop_training for strategy in strategies}
            if stopping == {True}:
                break
            if len(stopping) > 1:
                raise Unbatchable("the seeds stopped their turn at different steps")
            for strategy in strategies:
                strategy._unpack_minibatch()
            each("before_training_iteration")
            stack.zero_grad()
            inputs, targets = _stacked_batch(strategies, stacked, batches)
            with autocast:
                outputs = stack.forward(inputs, key, routes)
                losses = _seed_losses(outputs, targets)
            own_losses, version = _rows(losses, editable), losses._version
            for strategy, output, loss in zip(strategies, _rows(outputs, editable), own_losses):
                strategy.mb_output, strategy.loss = output, loss
            each("before_backward")
            _backward(strategies, losses, own_losses, version)
            for callback in together.get("backward_end", ()):
                callback(losses)
            each("after_backward")
            each("before_update")
            optimizer.step()
            each("after_update")
            each("after_training_iteration")
        for callback in together.get("epoch_end", ()):
            callback(losses)


def _rows(stacked: Tensor, editable: bool) -> list[Tensor]:
    """Each seed's row of a stacked tensor: one unbind for all of them, so a step dispatches as many operations at
    K = 64 seeds as at 2; one select each where a seed's own callback may edit its loss in place before the backward
    pass (a row of a multi-output unbind refuses in-place edits)."""
    return [stacked[k] for k in range(len(stacked))] if editable else list(stacked.unbind(0))


def _next_batches(
    lockstep: Iterator[list[Tensor]] | None, iterators: list[Iterator[Any]]
) -> tuple[list[Tensor] | None, list[Any] | None]:
    """The next step's batch of each seat (None at the epoch's end), and their stack where the loaders gathered it
    at once (:func:`~forgetbench.benchmark.data.loaders.lockstep_batches`)."""
    if lockstep is not None:
        stacked = next(lockstep, None)
        if stacked is None:
            return None, None
        return stacked, [list(rows) for rows in zip(*(t.unbind(0) for t in stacked))]
    batches = [next(iterator, None) for iterator in iterators]
    if all(b is None for b in batches):
        return None, None
    if any(b is None for b in batches):
        raise Unbatchable("the seeds' epochs have different numbers of batches")
    return None, batches


def _stacked_batch(
    strategies: Sequence[Any], stacked: list[Tensor] | None, batches: list[Any]
) -> tuple[Tensor, Tensor]:
    """The seats' inputs and targets, ``(K, batch, ...)``: the gathered stack where no seat's unpacking or callback
    replaced its batch, else their batches stacked."""
    if stacked is not None and all(
        s.mbatch[0] is batch[0] and s.mbatch[1] is batch[1] for s, batch in zip(strategies, batches)
    ):
        inputs, targets = stacked[0], stacked[1]
    else:
        inputs = torch.stack([s.mbatch[0] for s in strategies])
        targets = torch.stack([s.mbatch[1] for s in strategies])
    if targets.dim() != 2:
        raise Unbatchable("the targets are not one class label per sample")
    return inputs, targets


def _backward(strategies: Sequence[Any], losses: Tensor, own_losses: list[Tensor], version: int) -> None:
    """The backward pass of every seat's loss: of ``losses.sum()`` where no seat's callback replaced, changed (in
    place: ``losses``' ``version`` moved) or hooked its loss, the same gradients through fewer nodes; else of the
    seats' own losses, summed."""
    if losses._version == version and all(
        s.loss is loss and not loss._backward_hooks for s, loss in zip(strategies, own_losses)
    ):
        losses.sum().backward()
    else:
        torch.stack([s.loss for s in strategies]).sum().backward()


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


def run_seeds(
    specs: Sequence[RunSpec],
    data_root: Path,
    progress: ProgressCallback | None = None,
    cache_dir: Path | None = None,
    run_alone: Callable[[RunSpec], RunRecord] | None = None,
) -> list[RunRecord]:
    """The records of ``specs`` (one run's seeds), trained as one stacked model where that is faithful; else (and
    after a batch that failed or diverged) one seed after another with ``run_alone`` (the per-seed runner), each
    record saying why in one line. A batch that runs out of device memory trains as two batches of half its seeds
    (each halved again while it does): K sized to the device by trial."""
    alone = run_alone or (lambda spec: run(spec, data_root, progress, None, cache_dir))
    reason = None if len(specs) > 1 and same_but_seed(specs) else "not one run's seeds"
    reason = reason or batch_refusal(specs[0])
    if reason is None:
        out_of_memory = False
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a run's own thread count (batch_refusal): its products' rounding, batched
        try:
            return _train_batch(specs, data_root, progress, cache_dir)
        except Unbatchable as exc:
            reason = str(exc)
        except DivergedError:
            reason = "a seed diverged in the batch: each seed ran alone for its own record"
        except torch.OutOfMemoryError:
            out_of_memory = True  # the batch's tensors are freed with the exception, as this block ends
        except Exception as exc:  # noqa: BLE001 - the per-seed runs record any failure faithfully
            reason = f"the batch failed ({type(exc).__name__}: {exc}): each seed ran alone for its own record"
        finally:
            torch.set_num_threads(threads)
        if out_of_memory:
            return _in_halves(specs, data_root, progress, cache_dir, run_alone)
    records = []
    for spec in specs:
        record = alone(spec)
        if len(specs) > 1:
            record.batch = SeedBatch(alone=reason)
        records.append(record)
    return records


def _train_batch(
    specs: Sequence[RunSpec], data_root: Path, progress: ProgressCallback | None, cache_dir: Path | None
) -> list[RunRecord]:
    """The records of ``specs`` trained as one stacked model (raises where that cannot be done faithfully)."""
    device = resolve_device(specs[0].device)
    seats = [_Seat(spec, data_root, device, progress if k == 0 else None) for k, spec in enumerate(specs)]
    if any(seat.shape() != seats[0].shape() for seat in seats):
        raise Unbatchable(
            "the seeds' tasks differ in their models or sizes (each seed draws its own split, or its search its own "
            "architectures)"
        )
    for seat in seats:
        seat.build_strategy()
    _train_together(seats)
    records = []
    for seat in seats:
        after_the_turns(seat.spec, data_root, device, seat.scenario, seat.strategy, seat.harness, seat.record,
                        seat.turns, cache_dir)  # fmt: skip
        whole = seat.record.timing.train_seconds * len(seats)  # each seed's share is the batch's 1/K
        seat.record.batch = SeedBatch(seeds=[spec.seed for spec in specs], train_seconds=whole)
        seat.record.finished_at = now()
        records.append(seat.record)
    return records


def _in_halves(
    specs: Sequence[RunSpec],
    data_root: Path,
    progress: ProgressCallback | None,
    cache_dir: Path | None,
    run_alone: Callable[[RunSpec], RunRecord] | None,
) -> list[RunRecord]:
    """The records of a batch that ran out of device memory, trained as two batches of half its seeds."""
    torch.cuda.empty_cache()  # the failed batch's blocks, back to the device for the halves (no-op without CUDA)
    half = -(-len(specs) // 2)
    records = [
        record
        for part in (specs[:half], specs[half:])
        for record in run_seeds(part, data_root, progress, cache_dir, run_alone)
    ]
    note = f"a batch of {len(specs)} seeds ran out of device memory: it trained as batches of at most {half}"
    for record in records:
        record.warnings = [note, *(record.warnings or [])]
    return records
