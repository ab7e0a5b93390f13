"""Exact diagonal Fisher information, computed in one batched backward pass.

For a model p(y | x, theta) and samples (x_n, y_n), n = 1..N, the diagonal *empirical* Fisher is

    F_i = (1/N) * sum_n (d/dtheta_i log p(y_n | x_n, theta))^2

i.e. the mean of squared **per-sample** gradients. The *true* Fisher takes the expectation over
y ~ p(y | x_n, theta) instead of the observed label; here it is estimated with one sampled label per
input. The *predicted* estimator uses the model's most likely label y^_n = argmax_y p(y | x_n, theta)
(deterministic; the estimator of van de Ven & Tolias's EWC code, "Three scenarios for continual
learning", 2019). Avalanche's EWC instead squares mini-batch *mean* gradients, which underestimates F by about a
factor of the batch size and mixes samples: :func:`forgetbench.strategies.passes.squared_gradient_importance` is
that estimate (what ``ewc`` and ``wpl``'s ``fisher: minibatch`` use), beside the passes' sample budget and timing.

Per-sample gradients without a per-sample loop: with ``loss = sum_n l_n`` one backward pass gives,
at every layer, the output gradient delta_n = dl_n/d out_n of each sample, and a forward hook gives
the layer's input a_n. Then

* Linear on (N, in) inputs: g_n(W) = delta_n a_n^T, so sum_n g_n(W)^2 = (delta^2)^T (a^2) and
  sum_n g_n(b)^2 = sum_n delta_n^2, a single matrix product.
* Linear on inputs with extra positions: g_n(W) = sum_s delta_{n,s} a_{n,s}^T is formed per sample
  with one batched einsum, then squared.
* Conv1d/Conv2d: the same per-sample sums are the weight gradient of one convolution with the batch
  folded into groups (input (1, N C, ...), output gradient (1, N O, ...), groups N), i.e. the
  backend's own weight-gradient kernel, without unfolding patches.
* BatchNorm in eval mode (running statistics) is a per-channel affine map of the normalised input
  x^ = (a - mean) / sqrt(var + eps): g_n(gamma_c) = sum_s delta_{n,c,s} x^_{n,c,s} and
  g_n(beta_c) = sum_s delta_{n,c,s}, two reductions.
* LayerNorm normalises each position over its last dimensions with that position's own statistics,
  so the same two reductions hold with x^ = layer_norm(a) (no affine part): every transformer
  block's norms take this path.
* Embedding: sample n's gradient on row v is the sum of its output gradients at the positions holding token v;
  (sample, token) pairs are summed with one ``index_add``, squared, and added into their rows (none for
  ``padding_idx``), so a trainable token table never materialises N copies of itself.
* A hooked layer called once on a row the batch shares (Hugging Face's position embeddings look up one row of
  positions, shape (1, S), which the batch then shares by broadcasting) would see only the batch's summed output
  gradient, so its output is handed on expanded to the batch (a view, the same values under broadcasting): autograd
  then delivers each sample's gradient, and the layer's own rule applies with its input expanded likewise. A model
  that cannot take the expanded view (an in-place write into it) gets the chunk passed again without it. A layer
  called on anything else off the batch has no per-sample output gradient: its parameters take the fallback below
  for that pass.
* GRU and LSTM layers run unrolled into the Linear maps they are made of (:mod:`forgetbench.strategies.recurrent`):
  their input-to-hidden map is a Linear over every step, their hidden-to-hidden map one Linear call per step,
  and both take the Linear rule above.
* Any other layer type with parameters falls back to ``torch.func`` (vmap of grad) for exactly
  those parameters; where vmap cannot trace the model (Python control flow on tensor values, as in
  Hugging Face ``transformers``' attention masks), to one backward pass per sample for them.

Frozen parameters (``requires_grad`` False) have no importance: they are skipped, whatever layer
holds them.

When every parameter is on a fast path, the backward pass asks autograd for the hooked outputs'
gradients only, so it computes no parameter gradients (the per-sample sums replace them); the
tensor hooks still see every layer's output gradient (also when a later in-place op, e.g.
``ReLU(inplace=True)``, rewrote that output).

The model is put in eval mode for the pass (batch norm statistics would couple samples), and its
previous mode and gradients are restored afterwards; global RNG state is untouched.
"""

from __future__ import annotations

import contextlib
import warnings
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import nn

from forgetbench.strategies import recurrent
from forgetbench.strategies.squares import NORM_LAYERS, accumulate_squares, squared_outer  # noqa: F401 (importance's API)

if TYPE_CHECKING:
    from avalanche.models import MultiTaskModule

Estimator = Literal["empirical", "true", "predicted"]
_FAST_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Embedding)
# At most this many input floats per forward pass: a transformer's activations are ~30x its input (128 tokens x 385
# channels per document: 42 documents a pass), and keeping them cache-sized made MiniLM's pass 13% faster than
# 1024 documents at once (CPU, 1 thread); image and vector inputs still go 1024 at a time.
_FORWARD_CHUNK_FLOATS = 2**21


def fisher_chunk(batch_size: int, sample: torch.Tensor) -> int:
    """Samples a pass of :func:`exact_fisher_diagonal` at most: ``batch_size``, fewer for large inputs (see
    ``_FORWARD_CHUNK_FLOATS``)."""
    return min(batch_size, max(1, _FORWARD_CHUNK_FLOATS // max(sample.numel(), 1)))


def _forward(model: MultiTaskModule, x: torch.Tensor, task_label: int) -> torch.Tensor:
    if hasattr(model, "forward_single_task"):
        return model.forward_single_task(x, task_label)
    return model(x)


def _targets(logits: torch.Tensor, y: torch.Tensor, estimator: Estimator, generator) -> torch.Tensor:
    if estimator == "empirical":
        return y
    if estimator == "predicted":
        return logits.detach().argmax(dim=1)
    probs = torch.softmax(logits.detach().float(), dim=1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


class _Capture:
    """Forward/tensor hooks that record (input, output-gradient) pairs of fast layers.

    ``expand_shared``: a layer called once on a row the whole batch shares (input and output of leading size 1, as
    Hugging Face's (1, S) position lookup) hands the rest of the model its output expanded to the batch, a view with
    the same values wherever the model broadcasts it, so that autograd keeps each sample's output gradient apart;
    its input is recorded expanded likewise, and the layer's per-sample rule applies. Without it (or for any other
    call off the batch) the layer is marked ``broadcast`` and its parameters take the fallback."""

    def __init__(self, modules: dict[str, nn.Module], batch: int, expand_shared: bool = True):
        self.batch = batch
        self.expand_shared = expand_shared
        self.records: dict[str, list[list[torch.Tensor]]] = defaultdict(list)
        self.outputs: list[torch.Tensor] = []  # every hooked output that requires a gradient
        self.broadcast: set[str] = set()  # modules called on something other than the batch's samples
        self.expanded = False  # some shared call's output was expanded (see above)
        self.handles = []
        for name, module in modules.items():
            self.handles.append(module.register_forward_hook(self._hook(name)))

    def _is_batch(self, tensor) -> bool:
        return isinstance(tensor, torch.Tensor) and tensor.dim() > 0 and tensor.shape[0] == self.batch

    def _hook(self, name: str):
        def hook(module, inputs, output):
            if not output.requires_grad:
                return None
            first = inputs[0] if inputs else None
            shared = (
                self.expand_shared
                and self.batch > 1
                and isinstance(first, torch.Tensor)
                and first.dim() > 0
                and first.shape[0] == 1
                and output.dim() > 0
                and output.shape[0] == 1
            )
            if shared:
                output = output.expand(self.batch, *output.shape[1:])
                first = first.expand(self.batch, *first.shape[1:])
                self.expanded = True
            elif not (self._is_batch(output) and self._is_batch(first)):
                self.broadcast.add(name)
                return None
            entry = [first.detach(), None]
            self.records[name].append(entry)
            self.outputs.append(output)

            def grad_hook(grad):
                entry[1] = grad.detach()

            output.register_hook(grad_hook)
            return output if shared else None

        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _split_parameters(model: nn.Module, trainable: set[str]):
    """Fast modules (every parameter of which the hooks cover) and the names left to the fallback;
    only parameters in ``trainable`` count (a module whose parameters are all frozen is neither).

    A parameter held by two modules (tied weights: a language model's decoder sharing its embedding table) gets a
    per-sample gradient from both, which no one module's hooks see: its modules take the fallback."""
    holders = Counter(id(p) for module in model.modules() for p in module.parameters(recurse=False))
    fast, fallback = {}, []
    for mod_name, module in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        every = [n for n, _ in module.named_parameters(recurse=False)]
        own = [n for n in every if prefix + n in trainable]
        if not own:
            continue
        tied = any(holders[id(p)] > 1 for p in module.parameters(recurse=False))
        supported = isinstance(module, _FAST_LAYERS) and set(own) <= {"weight", "bias"} and own == every and not tied
        if isinstance(module, NORM_LAYERS):  # the pass runs in eval mode: running statistics only
            supported = set(own) == {"weight", "bias"} and module.running_mean is not None and not tied
        elif isinstance(module, nn.LayerNorm):
            supported = own == every and module.elementwise_affine and not tied
        elif isinstance(module, nn.Embedding):  # a renormalising or sparse table keeps the general path
            supported = own == ["weight"] and module.max_norm is None and not module.sparse and not tied
        elif recurrent.supported(module):  # unrolled into Linear shells (every one of its parameters trained)
            supported = own == every and not tied
        elif supported and not isinstance(module, nn.Linear):
            supported = module.groups == 1 and not isinstance(module.padding, str) and module.padding_mode == "zeros"
        if supported:
            fast[prefix] = module
        else:
            fallback += [prefix + n for n in own]
    return fast, fallback


def exact_fisher_diagonal(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    task_label: int = 0,
    batch_size: int = 1024,
    estimator: Estimator = "empirical",
    generator: torch.Generator | None = None,
    fallback_taken: set[str] | None = None,
) -> dict[str, torch.Tensor]:
    """Diagonal Fisher of the model selected by ``task_label`` on ``(x, y)``, ``batch_size`` samples a pass at most
    (fewer for large inputs, see ``_FORWARD_CHUNK_FLOATS``: the result is the same up to float rounding).
    ``fallback_taken``, when given, receives the names of the parameters whose squares took the general per-sample
    path (torch.func or the loop) instead of the hooks.

    Returns ``{parameter name: F}`` for every parameter that receives a gradient (those the
    selected model uses); parameters it does not use are absent.
    """
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if not params:
        return {}
    fast, fallback = _split_parameters(model, set(params))
    unrolled = recurrent.Unrolled({prefix: m for prefix, m in fast.items() if recurrent.supported(m)})
    hooked = {k: m for k, m in fast.items() if k not in unrolled.layers}
    hooked |= {key: shell.module for key, shell in unrolled.shells.items()}
    sums = {n: torch.zeros_like(p) for n, p in params.items()}
    touched: set[str] = set()
    saved_grads = {n: p.grad for n, p in params.items()}
    was_training = model.training
    model.eval()
    device = next(iter(params.values())).device

    def names_of(key: str) -> list[str]:  # the model's parameter names a hooked module holds
        if key in unrolled.shells:
            shell = unrolled.shells[key]
            return [shell.weight] + ([shell.bias] if shell.bias else [])
        return [key + n for n, _ in hooked[key].named_parameters(recurse=False) if key + n in params]

    try:
        batch_size = fisher_chunk(batch_size, x[0])
        for start in range(0, len(y), batch_size):
            xb = x[start : start + batch_size].to(device)
            yb = y[start : start + batch_size].to(device)
            capture, targets = _captured_backward(
                model, hooked, params, xb, yb, task_label, estimator, generator, fallback, unrolled
            )
            declined = [k for k in unrolled.shells if any(k.startswith(prefix) for prefix in unrolled.declined)]
            skip = capture.broadcast | set(declined)
            broadcast = [name for key in skip for name in names_of(key)]
            for key, module in hooked.items():
                calls = capture.records.get(key)
                if key in skip or not calls:
                    continue
                if key in unrolled.shells:
                    shell = unrolled.shells[key]
                    target = {"weight": sums[shell.weight]} | ({"bias": sums[shell.bias]} if shell.bias else {})
                    accumulate_squares(module, recurrent.merged_calls(calls), target, "")
                else:
                    accumulate_squares(module, calls, sums, key)
                if any(delta is not None for _, delta in calls):
                    touched |= set(names_of(key))
            touched |= {n for n, p in params.items() if p.grad is not None}
            live_fallback = [n for n in fallback + broadcast if params[n].grad is not None]
            if live_fallback:
                if fallback_taken is not None:
                    fallback_taken.update(live_fallback)
                for name, sq in _vmap_squared_grads(model, xb, targets, task_label, live_fallback).items():
                    sums[name] += sq
    finally:
        for n, p in params.items():
            p.grad = saved_grads[n]
        model.train(was_training)
    count = max(len(y), 1)
    return {name: sums[name] / count for name in params if name in touched}


def _captured_backward(model, fast, params, xb, yb, task_label, estimator, generator, fallback, unrolled=None):
    """One forward and backward pass over a chunk with the fast layers hooked; returns the capture and the targets.

    A model that cannot take a shared call's output expanded to the batch (it writes into it in place, or needs its
    leading size 1) raises during that pass: the chunk is passed again without expanding, those layers then taking
    the fallback."""
    for expand_shared in (True, False):
        capture = _Capture(fast, len(yb), expand_shared)
        try:
            for p in params.values():
                p.grad = None
            with unrolled.active() if unrolled is not None else contextlib.nullcontext():
                logits = _forward(model, xb, task_label)
            targets = _targets(logits, yb, estimator, generator)
            loss = F.cross_entropy(logits, targets, reduction="sum")
            if fallback or capture.broadcast or not capture.outputs or (unrolled is not None and unrolled.declined):
                loss.backward()  # the fallback needs to know which parameters the model uses
            else:  # gradients of the hooked outputs only: autograd computes no parameter gradient
                torch.autograd.grad(loss, capture.outputs, allow_unused=True)
            return capture, targets
        except RuntimeError:  # the write into the expanded view fails in the forward, before any label is drawn
            if not capture.expanded:
                raise
        finally:
            capture.remove()
    raise AssertionError("unreachable: the pass without expanding either returns or raises")


def _vmap_squared_grads(model, x, targets, task_label, names) -> dict[str, torch.Tensor]:
    """sum_n (per-sample grad)^2 for ``names`` via torch.func (fallback for other layer types)."""
    from torch.func import functional_call, grad, vmap

    params = dict(model.named_parameters())
    chosen = {n: params[n].detach() for n in names}

    def sample_loss(p, xi, yi):
        out = _functional_forward(model, p, xi.unsqueeze(0), task_label, functional_call)
        return F.cross_entropy(out, yi.unsqueeze(0), reduction="sum")

    try:
        with warnings.catch_warnings():
            # an op without a batching rule (attention on CPU) runs sample by sample: exact, only slower
            warnings.filterwarnings("ignore", message="There is a performance drop because we have not yet implemented")
            per_sample = vmap(grad(sample_loss), in_dims=(None, 0, 0))(chosen, x, targets)
    except Exception:  # noqa: BLE001 - vmap cannot trace this forward (e.g. `.item()` on a mask): go sample by sample
        return _looped_squared_grads(model, x, targets, task_label, names)
    return {n: (g.detach() ** 2).sum(0) for n, g in per_sample.items()}


def _looped_squared_grads(model, x, targets, task_label, names) -> dict[str, torch.Tensor]:
    """sum_n (per-sample grad)^2 for ``names``, one forward and backward per sample."""
    params = dict(model.named_parameters())
    chosen = [params[n] for n in names]
    sums = [torch.zeros_like(p) for p in chosen]
    for i in range(len(targets)):
        loss = F.cross_entropy(_forward(model, x[i : i + 1], task_label), targets[i : i + 1], reduction="sum")
        for total, g in zip(sums, torch.autograd.grad(loss, chosen, allow_unused=True)):
            if g is not None:
                total.add_(g.detach().square())
    return dict(zip(names, sums))


def _functional_forward(model, p, x, task_label, functional_call):
    # TaskRoutedModule.forward sends an int task label straight to that task's model.
    args = (x, task_label) if hasattr(model, "forward_single_task") else (x,)
    return functional_call(model, p, args)


def per_sample_fisher_loop(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    task_label: int = 0,
    estimator: Estimator = "empirical",
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Reference implementation: one forward/backward per sample (slow; for tests and benchmarks)."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    sums = {n: torch.zeros_like(p) for n, p in params.items()}
    touched: set[str] = set()
    was_training = model.training
    model.eval()
    saved_grads = {n: p.grad for n, p in params.items()}
    try:
        for i in range(len(y)):
            for p in params.values():
                p.grad = None
            logits = _forward(model, x[i : i + 1], task_label)
            target = _targets(logits, y[i : i + 1], estimator, generator)
            F.cross_entropy(logits, target, reduction="sum").backward()
            for n, p in params.items():
                if p.grad is not None:
                    sums[n] += p.grad**2
                    touched.add(n)
    finally:
        for n, p in params.items():
            p.grad = saved_grads[n]
        model.train(was_training)
    return {n: sums[n] / max(len(y), 1) for n in params if n in touched}
