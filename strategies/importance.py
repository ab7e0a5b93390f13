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
from typing import TYPE_CHECKING, Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from forgetbench.strategies import recurrent

if TYPE_CHECKING:
    from avalanche.models import MultiTaskModule

Estimator = Literal["empirical", "true", "predicted"]
_FAST_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Embedding)
# Convolutions with at least this many output positions per sample get their per-sample gradients
# from the grouped weight-gradient kernel; below it unfold + bmm is faster (measured on CPU, 1 thread:
# 28x28 and 14x14 maps 2-3x faster grouped, 7x7 even, 4x4 1.6x slower).
_GROUPED_MIN_POSITIONS = 64
_PER_SAMPLE_CHUNK_FLOATS = 2**21  # per-sample gradients formed at most ~8 MB (fp32) at a time
_ROW_BY_ROW_MAX_ROWS = 32  # per-sample squares added one sample at a time up to this many samples a chunk
# At most this many input floats per forward pass: a transformer's activations are ~30x its input (128 tokens x 385
# channels per document: 42 documents a pass), and keeping them cache-sized made MiniLM's pass 13% faster than
# 1024 documents at once (CPU, 1 thread); image and vector inputs still go 1024 at a time.
_FORWARD_CHUNK_FLOATS = 2**21
_NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_WeightLayer = nn.Linear | nn.Conv1d | nn.Conv2d  # the fast layers with a weight matrix (convolutions: groups=1)
_Conv = nn.Conv1d | nn.Conv2d  # ... and numeric (not "same") padding, which _split_parameters checks


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


def _patches(module: _WeightLayer, a: torch.Tensor) -> torch.Tensor:
    """Layer input as (N, positions, fan_in) so that out[n, s] = W a[n, s] (+ b)."""
    if isinstance(module, nn.Linear):
        return a.reshape(a.shape[0], -1, a.shape[-1])
    kernel: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: tuple[int, ...]
    stride: tuple[int, ...]
    if isinstance(module, nn.Conv1d):
        a = a.unsqueeze(2)  # treat as a 1 x L image
        kernel, dilation = (1, module.kernel_size[0]), (1, module.dilation[0])
        padding, stride = (0, _numeric_padding(module)[0]), (1, module.stride[0])
    else:
        kernel, dilation, padding, stride = module.kernel_size, module.dilation, _numeric_padding(module), module.stride
    cols = F.unfold(a, kernel, dilation=dilation, padding=padding, stride=stride)  # (N, C*k, L)
    return cols.transpose(1, 2)


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


def _numeric_padding(module: _Conv) -> tuple[int, ...]:
    if isinstance(module.padding, str):  # _split_parameters leaves "same" / "valid" padding to the general path
        raise TypeError(f"{type(module).__name__} with padding {module.padding!r} has no fast per-sample gradients")
    return module.padding


def squared_outer(
    delta: torch.Tensor, a: torch.Tensor, product: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = torch.matmul
) -> tuple[torch.Tensor, torch.Tensor]:
    """A linear layer's per-sample squared gradients summed over its samples, from its inputs ``a`` ``(..., N, in)``
    and output gradients ``delta`` ``(..., N, out)``: the weight's (delta^2)^T (a^2) and the bias's sum_n delta_n^2
    (leading dimensions kept: a batch of seeds' stacked layer gives each seed's; ``product`` multiplies them)."""
    squares = delta * delta
    return product(squares.transpose(-2, -1), a * a), squares.sum(-2)


def accumulate_squares(
    module: nn.Module, calls: list[list[torch.Tensor]], sums: dict[str, torch.Tensor], prefix: str
) -> None:
    """Add to ``sums[prefix + name]`` the per-sample squared gradients of ``module``'s own parameters, summed over
    the samples, from its calls' ``[input, output gradient]`` pairs (what the hooks capture): the fast path's work
    for one layer, without the autograd graph (``perf --only fisher_layer_costs`` times it against the batch
    gradient)."""
    calls = [c for c in calls if c[1] is not None]
    if not calls:
        return
    if isinstance(module, _NORM_LAYERS):
        _accumulate_norm(module, calls, sums, prefix)
        return
    if isinstance(module, nn.LayerNorm):
        _accumulate_layer_norm(module, calls, sums, prefix)
        return
    if isinstance(module, nn.Embedding):
        _accumulate_embedding(module, calls, sums, prefix)
        return
    has_bias = module.bias is not None
    if isinstance(module, nn.Linear) and len(calls) == 1 and calls[0][0].dim() == 2:
        a, delta = calls[0]
        weight_squares, bias_squares = squared_outer(delta, a)
        sums[prefix + "weight"] += weight_squares
        if has_bias:
            sums[prefix + "bias"] += bias_squares
        return
    if not isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
        raise TypeError(f"{type(module).__name__} is not one of the fast layers")
    if len(calls) == 1 and _few_positions(module, calls[0][1]):
        a, delta = calls[0]
        _accumulate_sample_by_sample(module, a, delta, sums, prefix, has_bias)
        return
    # General case: per-sample gradients summed over positions (and over repeated calls), then squared,
    # a chunk of samples at a time so the (chunk, *weight) tensor stays in cache (N x weights floats
    # at once would be memory-bound: ~0.5 GB per 128 samples for a ResNet-18 with nf = 20).
    n = calls[0][0].shape[0]
    chunk = max(1, _PER_SAMPLE_CHUNK_FLOATS // module.weight.numel())
    weight_sums = sums[prefix + "weight"].view(-1)
    for start in range(0, n, chunk):
        grad_w = grad_b = None
        for a, delta in calls:
            a, delta = a[start : start + chunk], delta[start : start + chunk]
            g, g_b = _per_sample_grads(module, a, delta, has_bias)
            grad_w = g if grad_w is None else grad_w.add_(g)
            if has_bias:
                grad_b = g_b if grad_b is None else grad_b.add_(g_b)
        assert grad_w is not None  # calls is not empty
        _add_squares(weight_sums, grad_w.reshape(grad_w.shape[0], -1))
        if grad_b is not None:
            sums[prefix + "bias"] += grad_b.square_().sum(0)


def _add_squares(total: torch.Tensor, rows: torch.Tensor) -> None:
    """total += sum over rows of row**2. Few long rows: one multiply-add per row into the cache-resident total
    (half the time of square + sum(0), which writes and reads the squares once more, at 9 x 230k floats); many short
    rows: square + sum(0) (one kernel call instead of hundreds)."""
    if rows.shape[0] <= _ROW_BY_ROW_MAX_ROWS:
        for row in rows:
            total.addcmul_(row, row)
    else:
        total.add_(rows.square_().sum(0))


def _few_positions(module: nn.Module, delta: torch.Tensor) -> bool:
    """A convolution with fewer than _GROUPED_MIN_POSITIONS output positions per sample, or a Linear applied at
    several positions (a sequence): the layers whose per-sample gradients are a small matrix product each."""
    if isinstance(module, nn.Linear):
        return delta.dim() > 2
    return delta[0, 0].numel() < _GROUPED_MIN_POSITIONS


def _accumulate_sample_by_sample(
    module: _WeightLayer,
    a: torch.Tensor,
    delta: torch.Tensor,
    sums: dict[str, torch.Tensor],
    prefix: str,
    has_bias: bool,
) -> None:
    """sum_n (delta_n^T patches_n)^2 one sample at a time: each product lands in one reused, cache-sized buffer and is
    squared into the sums from there (ResNet-18's 7x7 and 4x4 layers: 20-25% faster than a batched product
    written out for a chunk of samples and squared afterwards)."""
    n = a.shape[0]
    if isinstance(module, nn.Linear):
        d = delta.reshape(n, -1, delta.shape[-1]).transpose(1, 2)  # (N, out, S)
        patches = a.reshape(n, -1, a.shape[-1])  # (N, S, in)
    else:
        d = delta.reshape(n, delta.shape[1], -1)  # (N, out, S)
        patches = _patches(module, a)  # (N, S, in * k)
    weight_sums = sums[prefix + "weight"].view(module.weight.shape[0], -1)
    product = torch.empty_like(weight_sums)
    for d_n, patches_n in zip(d, patches):
        torch.mm(d_n, patches_n, out=product)
        weight_sums.addcmul_(product, product)
    if has_bias:
        sums[prefix + "bias"] += d.sum(2).square_().sum(0)


def _per_sample_grads(module: _WeightLayer, a: torch.Tensor, delta: torch.Tensor, has_bias: bool):
    """Per-sample (weight, bias) gradients of a Linear or convolution from its inputs and output gradients."""
    if isinstance(module, nn.Linear):
        d = delta.reshape(delta.shape[0], -1, delta.shape[-1])  # (N, S, out)
        return torch.einsum("nso,nsi->noi", d, _patches(module, a)), d.sum(1) if has_bias else None
    d = delta.reshape(delta.shape[0], delta.shape[1], -1)  # (N, out, S)
    g_b = d.sum(2) if has_bias else None
    if d.shape[2] >= _GROUPED_MIN_POSITIONS:
        return _conv_per_sample_weight_grads(module, a, delta), g_b
    # few output positions (deep layers): unfolded patches and one batched product are faster
    return torch.bmm(d, _patches(module, a)).reshape(-1, *module.weight.shape), g_b


def _conv_per_sample_weight_grads(module: _Conv, a: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """(N, out, in, *kernel) per-sample weight gradients of a groups=1 convolution: the weight
    gradient of the same convolution over the batch folded into N groups."""
    n = a.shape[0]
    folded_input = a.reshape(1, n * a.shape[1], *a.shape[2:])
    folded_grad = delta.reshape(1, n * delta.shape[1], *delta.shape[2:])
    weight = a.new_empty((n * module.out_channels, module.in_channels, *module.kernel_size))  # shape only
    dims = len(module.kernel_size)
    grad = torch.ops.aten.convolution_backward(
        folded_grad,
        folded_input,
        weight,
        None,
        list(module.stride),
        list(_numeric_padding(module)),
        list(module.dilation),
        False,
        [0] * dims,
        n,
        [False, True, False],
    )[1]
    return grad.reshape(n, module.out_channels, *grad.shape[1:])


def _accumulate_norm(
    module: nn.BatchNorm1d | nn.BatchNorm2d | nn.BatchNorm3d,
    calls: list[list[torch.Tensor]],
    sums: dict[str, torch.Tensor],
    prefix: str,
) -> None:
    """Per-sample gradients of an eval-mode BatchNorm's scale and shift, squared and summed."""
    assert module.running_var is not None and module.running_mean is not None  # _split_parameters checks
    grad_w: torch.Tensor | int = 0
    grad_b: torch.Tensor | int = 0
    scale = torch.rsqrt(module.running_var + module.eps)
    for a, delta in calls:
        n, c = a.shape[0], a.shape[1]
        d = delta.reshape(n, c, -1)
        # scale is per channel: applied to the per-sample sums rather than to every activation (one pass fewer)
        grad_w = grad_w + (d * (a.reshape(n, c, -1) - module.running_mean[:, None])).sum(2) * scale
        grad_b = grad_b + d.sum(2)
    assert isinstance(grad_w, torch.Tensor) and isinstance(grad_b, torch.Tensor)  # calls is not empty
    sums[prefix + "weight"] += (grad_w**2).sum(0)
    sums[prefix + "bias"] += (grad_b**2).sum(0)


def _accumulate_layer_norm(
    module: nn.LayerNorm, calls: list[list[torch.Tensor]], sums: dict[str, torch.Tensor], prefix: str
) -> None:
    """Per-sample gradients of a LayerNorm's scale and shift (summed over positions), squared and summed."""
    grad_w: torch.Tensor | int = 0
    grad_b: torch.Tensor | int = 0
    for a, delta in calls:
        normalised = F.layer_norm(a, module.normalized_shape, None, None, module.eps)
        n, k = a.shape[0], len(module.normalized_shape)
        d = delta.reshape(n, -1, *delta.shape[delta.dim() - k :])
        grad_w = grad_w + (d * normalised.reshape(d.shape)).sum(1)
        grad_b = grad_b + d.sum(1)
    assert isinstance(grad_w, torch.Tensor) and isinstance(grad_b, torch.Tensor)  # calls is not empty
    sums[prefix + "weight"] += (grad_w**2).sum(0)
    if module.bias is not None:
        sums[prefix + "bias"] += (grad_b**2).sum(0)


def _accumulate_embedding(
    module: nn.Embedding, calls: list[list[torch.Tensor]], sums: dict[str, torch.Tensor], prefix: str
) -> None:
    """Per-sample gradients of an embedding table, squared and summed: sample n's gradient on row v is the sum of
    its output gradients at the positions holding token v, so (sample, token) pairs are summed first (an
    ``index_add`` over the distinct pairs), then squared and added into their rows; the padding row gets none."""
    keys, grads = [], []
    for indices, delta in calls:
        n = indices.shape[0]
        sample = torch.arange(n, device=indices.device).repeat_interleave(indices[0].numel())
        keys.append(sample * module.num_embeddings + indices.reshape(-1))
        grads.append(delta.reshape(-1, module.embedding_dim))
    key, delta = torch.cat(keys), torch.cat(grads)
    if module.padding_idx is not None:
        keep = key % module.num_embeddings != module.padding_idx
        key, delta = key[keep], delta[keep]
    distinct, inverse = torch.unique(key, return_inverse=True)
    per_pair = delta.new_zeros(len(distinct), module.embedding_dim).index_add_(0, inverse, delta)
    sums[prefix + "weight"].index_add_(0, distinct % module.num_embeddings, per_pair.square_())


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
        if isinstance(module, _NORM_LAYERS):  # the pass runs in eval mode: running statistics only
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
