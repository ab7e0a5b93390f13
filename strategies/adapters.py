"""What the adapter strategies (pic, merge, olora, inflora) report about their per-task LoRA adapters.

For task t's adapter on a layer, Delta W_t = s B_t A_t (s = alpha / rank; A_t is r x in, PEFT's ``lora_A``
weight, B_t is out x r; a convolution's kernels are read as matrices, in = in_channels x kernel size). Per task, summed or maximised over the layers that carry its adapter:

* ``norm``: sqrt(sum over layers of ||Delta W_t||_F^2), how far the adapter moves the backbone (an O-LoRA
  adapter that satisfies its orthogonality loss by shrinking to zero shows here as a norm near 0);
* ``overlap``: the largest principal cosine between the row space of A_t (the input directions the adapter
  reads) and the row spaces of every earlier task's A on the same layer, max over layers: the largest
  singular value of Q_t^T Q_<t with Q orthonormal bases (QR) of those spaces; 0 = orthogonal, 1 = a shared
  direction; None for the first adapter on a layer;
* ``trainable_params``: the entries of A_t and B_t (what the task trains in its adapter);
* ``total_params``: the adapter entries held after the task, every task's adapters together (growth with T).

Pure functions of tensors, so a test checks them by hand.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

# A layer PEFT injected an adapter into (peft.tuners.lora.Linear / Conv2d, an OSF layer): an nn.Module whose
# adapter attributes (lora_A, lora_B, base_layer, osf_svd_params, ...) PEFT adds at run time, so to a type checker Any.
PeftLayer = Any


def principal_overlap(a_new: torch.Tensor, a_old: torch.Tensor) -> float:
    """Largest principal cosine between the row spaces of ``a_new`` (r x in) and ``a_old`` (k x in)."""
    q_new = torch.linalg.qr(a_new.detach().double().T).Q
    q_old = torch.linalg.qr(a_old.detach().double().T).Q
    return float(torch.linalg.svdvals(q_new.T @ q_old).max().clamp(max=1.0))


def adapter_diagnostics(
    adapters: Mapping[str, Sequence[tuple[int, torch.Tensor, torch.Tensor, float]]],
) -> list[dict]:
    """Per task, in task order: ``{"task", "norm", "overlap", "trainable_params", "total_params"}``.

    ``adapters[layer]`` lists that layer's adapters as ``(task, A, B, scale)`` in the order they were trained.
    """
    tasks = sorted({task for entries in adapters.values() for task, *_ in entries})
    rows, total = [], 0
    for task in tasks:
        norm_sq, trainable, overlaps = 0.0, 0, []
        for entries in adapters.values():
            earlier = [a for t, a, _, _ in entries if t < task]
            for t, a, b, scale in entries:
                if t != task:
                    continue
                norm_sq += float((scale * (b.detach().double() @ a.detach().double())).square().sum())
                trainable += a.numel() + b.numel()
                if earlier:
                    overlaps.append(principal_overlap(a, torch.cat(earlier)))
        total += trainable
        rows.append(
            {
                "task": task,
                "norm": norm_sq**0.5,
                "overlap": max(overlaps) if overlaps else None,
                "trainable_params": trainable,
                "total_params": total,
            }
        )
    return rows


def adapter_name(experience: int) -> str:
    """The PEFT adapter name of experience ``experience``'s adapter."""
    return f"task{experience}"


def lora_weights(layer: PeftLayer, adapter: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The weights (A, B) of LoRA adapter ``adapter`` in PEFT layer ``layer`` (``lora_A`` and ``lora_B`` are Linear,
    or convolutions whose kernels ``flatten(1)`` reads as matrices)."""
    a: nn.Module = layer.lora_A[adapter]
    b: nn.Module = layer.lora_B[adapter]
    if not (isinstance(a.weight, torch.Tensor) and isinstance(b.weight, torch.Tensor)):
        raise TypeError(f"adapter {adapter!r}: lora_A / lora_B without a weight tensor")
    return a.weight, b.weight


def lora_adapters(net) -> dict[str, list[tuple[int, torch.Tensor, torch.Tensor, float]]]:
    """``(task, A, B, scale)`` of every finished adapter of a :class:`~forgetbench.strategies.pic.PICNet`, per
    layer (the scale is the adapter's training scale alpha / rank, not the merging lambda)."""
    out: dict[str, list] = {}
    for name, layer in net.lora_layers():
        for task in net.finished:
            key = adapter_name(task)
            if key in layer.lora_A:
                a, b = lora_weights(layer, key)  # conv kernels as matrices: A (r, in * k), B (out, r)
                out.setdefault(name, []).append((task, a.flatten(1), b.flatten(1), net.lora_scale))
    return out
