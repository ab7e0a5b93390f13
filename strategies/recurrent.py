"""Per-sample gradients of GRU and LSTM layers: the recurrence unrolled into the Linear maps it is made of.

A recurrent layer's per-step update is two affine maps and elementwise gates. For a GRU (PyTorch's gate order r, z, n)

    gi_t = W_ih x_t + b_ih                    gh_t = W_hh h_{t-1} + b_hh
    r = sigmoid(gi_r + gh_r)    z = sigmoid(gi_z + gh_z)    n = tanh(gi_n + r * gh_n)
    h_t = (1 - z) * n + z * h_{t-1}

and for an LSTM (gates i, f, g, o) ``c_t = f c_{t-1} + i g``, ``h_t = o tanh(c_t)`` from ``gi_t + gh_t``. So sample
n's gradient of ``W_ih`` is ``sum_t delta^i_{n,t} x_{n,t}^T`` and of ``W_hh`` is ``sum_t delta^h_{n,t} h_{n,t-1}^T``
(``delta``: the gradients of ``gi`` and ``gh``): exactly the rule of a Linear applied at several positions, which
:mod:`forgetbench.strategies.importance` already has. Inside :meth:`Unrolled.active` each ``nn.GRU`` / ``nn.LSTM``
runs this unrolled forward, its ``W_ih`` applied to every step at once and its ``W_hh`` once per step through *shell*
``nn.Linear`` modules that hold the layer's own parameters (nothing is copied); the Fisher pass hooks the shells like
any Linear. The result equals one backward pass per sample up to float rounding (tested against that loop).

Covered: any number of layers, bidirectional, ``batch_first`` either way, batched inputs with or without an initial
state. A packed sequence, a projection (``proj_size``) or a plain ``nn.RNN`` is *declined*: the layer runs its own
forward and its parameters take the general fallback for that pass.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

RECURRENT = (nn.GRU, nn.LSTM)


def supported(module: nn.Module) -> bool:
    """A GRU or LSTM whose forward :class:`Unrolled` can replace (no projection)."""
    return isinstance(module, RECURRENT) and getattr(module, "proj_size", 0) == 0


@dataclass(frozen=True)
class Shell:
    """A Linear view of one of a recurrent layer's affine maps: ``weight`` / ``bias`` are the layer's own
    parameters ``weight`` / ``bias`` (full names in the model)."""

    module: nn.Linear
    weight: str
    bias: str | None


def _shell(weight: nn.Parameter, bias: nn.Parameter | None) -> nn.Linear:
    shell = nn.Linear.__new__(nn.Linear)
    nn.Module.__init__(shell)
    shell.in_features, shell.out_features = weight.shape[1], weight.shape[0]
    shell.weight = weight  # the layer's parameter itself: gradients and values are the layer's
    shell.register_parameter("bias", bias)
    return shell


class Unrolled:
    """The shells of every GRU / LSTM in ``layers`` (prefix -> module) and their unrolled forwards."""

    def __init__(self, layers: dict[str, nn.Module]):
        self.layers = layers
        self.shells: dict[str, Shell] = {}  # key (prefix + "ih_l0", ...) -> shell
        self._maps: dict[str, list[tuple[nn.Linear, nn.Linear]]] = {}  # prefix -> (ih, hh) per layer and direction
        self.declined: set[str] = set()  # layers that ran their own forward in the last pass
        for prefix, rnn in layers.items():
            maps = []
            layers_count: int = rnn.num_layers  # type: ignore[assignment]
            for layer in range(layers_count):
                for suffix in ("", "_reverse")[: 2 if rnn.bidirectional else 1]:
                    pair = []
                    for kind in ("ih", "hh"):
                        name = f"{kind}_l{layer}{suffix}"
                        bias = f"bias_{name}" if rnn.bias else None
                        shell = _shell(getattr(rnn, f"weight_{name}"), getattr(rnn, bias) if bias else None)
                        self.shells[prefix + name] = Shell(
                            shell, prefix + f"weight_{name}", prefix + bias if bias else None
                        )
                        pair.append(shell)
                    maps.append((pair[0], pair[1]))
            self._maps[prefix] = maps

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Each layer's forward replaced by its unrolled one (an instance attribute, removed on leaving)."""
        self.declined = set()
        try:
            for prefix, rnn in self.layers.items():
                rnn.forward = self._forward(prefix, rnn)  # type: ignore[method-assign]
            yield
        finally:
            for rnn in self.layers.values():
                rnn.__dict__.pop("forward", None)

    def _forward(self, prefix: str, rnn: nn.Module):
        own = type(rnn).forward
        maps = self._maps[prefix]
        lstm = isinstance(rnn, nn.LSTM)

        def forward(input, hx=None):
            if not isinstance(input, torch.Tensor) or input.dim() != 3:  # packed or unbatched: its own forward
                self.declined.add(prefix)
                return own(rnn, input, hx)
            x = input if rnn.batch_first else input.transpose(0, 1)  # (N, L, in): the batch first for the hooks
            n, length = x.shape[0], x.shape[1]
            directions = 2 if rnn.bidirectional else 1
            zeros = x.new_zeros(rnn.num_layers * directions, n, rnn.hidden_size)
            h0, c0 = (hx if hx is not None else (zeros, zeros)) if lstm else (hx if hx is not None else zeros, None)
            last_h, last_c = [], []
            for layer in range(rnn.num_layers):
                outputs = []
                for d in range(directions):
                    ih, hh = maps[layer * directions + d]
                    k = layer * directions + d
                    steps = range(length - 1, -1, -1) if d else range(length)
                    # every step at once, then one view per step: unbind's backward stacks the steps' gradients once,
                    # where indexing gi[:, t] would add each into a zeroed copy of the whole (N, L, gates) tensor
                    gi = ih(x).unbind(1)
                    h, c = h0[k], (c0[k] if lstm else None)
                    out = [None] * length
                    width = rnn.hidden_size
                    for t in steps:  # as few ops as the maths allows: the pass's backward walks each of them
                        gates_h = hh(h)
                        if lstm:
                            gates = gi[t] + gates_h
                            s = torch.sigmoid(gates)
                            g = torch.tanh(gates[:, 2 * width : 3 * width])
                            c = torch.addcmul(s[:, width : 2 * width] * c, s[:, :width], g)
                            h = s[:, 3 * width :] * torch.tanh(c)
                        else:
                            rz = torch.sigmoid(gi[t][:, : 2 * width] + gates_h[:, : 2 * width])
                            n = torch.tanh(torch.addcmul(gi[t][:, 2 * width :], rz[:, :width], gates_h[:, 2 * width :]))
                            h = torch.lerp(n, h, rz[:, width:])  # (1 - z) n + z h
                        out[t] = h
                    outputs.append(torch.stack(out, dim=1))
                    last_h.append(h)
                    last_c.append(c)
                x = torch.cat(outputs, dim=2) if directions == 2 else outputs[0]
                # dropout between layers is off: the Fisher pass runs in eval mode
            output = x if rnn.batch_first else x.transpose(0, 1)
            h_n = torch.stack(last_h)
            return (output, (h_n, torch.stack(last_c))) if lstm else (output, h_n)

        return forward


def merged_calls(calls: list[list[torch.Tensor]]) -> list[list[torch.Tensor]]:
    """A W_hh shell's per-step calls ((N, H) inputs, (N, gates) output gradients) as one call over the steps
    ((N, L, H), (N, L, gates)): the Linear-at-positions rule then forms each sample's gradient with one product."""
    done = [c for c in calls if c[1] is not None]
    if len(done) < 2 or any(c[0].dim() != 2 for c in done):
        return done
    return [[torch.stack([a for a, _ in done], dim=1), torch.stack([d for _, d in done], dim=1)]]
