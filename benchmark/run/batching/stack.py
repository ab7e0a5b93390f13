"""The stacked model: every seed's parameters as one ``(K, *shape)`` tensor (:class:`SeedStack`), the stacked linear
layer whose products keep each seed's own orientation, and the forward pass over the seeds' minibatches."""

from __future__ import annotations

import contextlib
import copy
import threading
import types
from typing import Any, Iterator, Sequence

import torch
from torch import Tensor, nn

from forgetbench.benchmark.data.models import TaskRoutedModule
from forgetbench.strategies.squares import squared_outer

from forgetbench.benchmark.run.batching.refusals import Unbatchable


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
        grad_w: Tensor | None
        grad_b: Tensor | None
        if ctx.squares:  # the per-sample squared gradients, summed: the exact Fisher's rule, each seed's
            grad_w, grad_b = squared_outer(grad, x, _products)
        else:
            grad_w = _products(grad.transpose(1, 2), x) if need_weight else None
            grad_b = grad.sum(1) if ctx.has_bias and need_bias else None
        return grad_x, grad_w if need_weight else None, grad_b if ctx.has_bias and need_bias else None


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
def summing_squares() -> Iterator[dict[int, int]]:
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
        self._shared_route_routed: dict[int, bool] = {}  # model key -> whether forward_seeds serves a shared route
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
        ``routes``: what each seed's model ``key`` chooses (a supernet's architecture): through the stacked copy's
        ``forward_seeds`` where it has one (each op once for the seeds that chose it, all of them where they share
        the route, as the demo's supernet's seeds do), which must give the seeds' own outputs on the first batch."""
        if routes is not None and len(set(routes)) > 1:
            return self._routed(x, key, routes)
        if routes is not None and self._shared_route_routed.get(key, True):
            try:  # the seeds share model key's route: each of its ops once on every row, where the model says how
                return self._routed(x, key, routes)
            except Unbatchable:
                self._shared_route_routed[key] = False  # the stacked copy's own forward or the vmap path serves
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


def step_except(optimizer: torch.optim.Optimizer, resting: Sequence[int]) -> None:
    """``optimizer``'s step on the stacked tensors, the rows ``resting`` (seeds whose epoch has ended: their own runs
    take no step) and their state left exactly as they were. Only an optimiser whose state is per entry (SGD's
    momentum) can leave a row out: a count of steps held once for a tensor (Adam's bias correction) would count the
    resting seeds' steps too."""
    params = [param for group in optimizer.param_groups for param in group["params"]]
    index = torch.tensor(list(resting), device=params[0].device)
    with torch.no_grad():
        held = list(params)
        for param in params:
            for name, value in optimizer.state.get(param, {}).items():
                if not isinstance(value, Tensor) or value.shape[:1] != param.shape[:1]:
                    raise Unbatchable(
                        f"{type(optimizer).__name__} keeps {name!r} once for all the seeds' rows, and the seeds' epochs "
                        "end at different steps (their datasets differ in size)"
                    )
                held.append(value)
        fresh = [param for param in params if not optimizer.state.get(param)]
        kept = [tensor.index_select(0, index) for tensor in held]
    optimizer.step()
    with torch.no_grad():
        if any(optimizer.state.get(param) for param in fresh):
            raise Unbatchable(
                f"{type(optimizer).__name__} began its state at a step some seeds sit out (their epoch had ended)"
            )
        for tensor, rows in zip(held, kept):
            tensor.index_copy_(0, index, rows)


def routes_of(strategies: Sequence[Any], key: int) -> list[Any] | None:
    """What each seed's model ``key`` chooses (its ``seed_route``: a supernet's architecture), where models say."""
    route = [getattr(strategy.model, "seed_route", None) for strategy in strategies]
    return [r(key) for r in route] if all(callable(r) for r in route) else None  # type: ignore[misc]


def seed_losses(outputs: Tensor, targets: Tensor, reduction: str = "mean") -> Tensor:
    """Each seed's cross-entropy (its mean, or sum), ``(K,)``: its gradient is the per-seed criterion's, entry by
    entry."""
    flat = torch.nn.functional.cross_entropy(outputs.flatten(0, 1), targets.flatten(), reduction="none")
    per_seed = flat.view(targets.shape)
    return per_seed.mean(1) if reduction == "mean" else per_seed.sum(1)


def plugins_by_type(plugins: Sequence[Any]) -> dict[tuple[type, int], Any]:
    """``(type, n) -> plugin``: the n-th plugin of each type, how one seed's plugin is paired with the others'."""
    counts: dict[type, int] = {}
    paired = {}
    for plugin in plugins:
        n = counts[type(plugin)] = counts.get(type(plugin), -1) + 1
        paired[(type(plugin), n)] = plugin
    return paired


def steps_nothing_at_zero(optimizer: torch.optim.Optimizer, fresh: bool) -> bool:
    """Whether a step with a zero gradient leaves a parameter and its later steps exactly as no step does: SGD
    without weight decay, on a fresh optimiser or without momentum (a fresh momentum buffer starts at the first
    gradient either way; one carried over from an earlier turn would move the parameter by its momentum). A turn's
    unused parameters have a zero stacked gradient where their own run leaves ``.grad`` unset (no step at all)."""
    return isinstance(optimizer, torch.optim.SGD) and all(
        not group.get("weight_decay") and (fresh or not group.get("momentum")) for group in optimizer.param_groups
    )


# ------------------------------------------------------------------------------------------- the lockstep
