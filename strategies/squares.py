"""A layer's per-sample squared gradients, summed over the samples, from its inputs and output gradients: the rules
of :func:`~forgetbench.strategies.importance.exact_fisher_diagonal`'s fast path (its module doc derives them), one
function a layer kind, and :func:`accumulate_squares`, which picks the rule. The linear rule
(:func:`squared_outer`) is also what a batch of seeds' stacked linear layer computes for each seed
(:mod:`forgetbench.benchmark.run.batching.stack`)."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

# Convolutions with at least this many output positions per sample get their per-sample gradients
# from the grouped weight-gradient kernel; below it unfold + bmm is faster (measured on CPU, 1 thread:
# 28x28 and 14x14 maps 2-3x faster grouped, 7x7 even, 4x4 1.6x slower).
_GROUPED_MIN_POSITIONS = 64
_PER_SAMPLE_CHUNK_FLOATS = 2**21  # per-sample gradients formed at most ~8 MB (fp32) at a time
_ROW_BY_ROW_MAX_ROWS = 32  # per-sample squares added one sample at a time up to this many samples a chunk
NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_WeightLayer = nn.Linear | nn.Conv1d | nn.Conv2d  # the fast layers with a weight matrix (convolutions: groups=1)
_Conv = nn.Conv1d | nn.Conv2d  # ... and numeric (not "same") padding, which importance._split_parameters checks


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
    if isinstance(module, NORM_LAYERS):
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
