"""The plugin protocol every forgetbench plugin declares.

A strategy is an Avalanche template plus plugins (``SupervisedPlugin`` hooks). Besides the hooks,
the harness asks each plugin four things:

* ``state_dict()`` -> what the plugin must keep from one experience to the next (importances,
  anchors, masks, stored samples, RNG states) as tensors, numbers, strings, lists and dicts
  only, so a checkpoint loads with ``torch.load(..., weights_only=True)`` and never runs code;
* ``load_state_dict(state)`` -> put that state back *in place*, into the objects the strategy and
  its model already hold (a resumed run must be indistinguishable from an uninterrupted one);
* ``state_bytes()`` -> bytes of the tensors in that state: the memory the regularizer keeps
  (``memory.regularizer_bytes`` in the record; scratch buffers rebuilt each experience do not count);
* ``extra_results()`` -> extra keys for the run's record (e.g. masks' ``isolation`` statistics).

:class:`Plugin` gives the defaults (no state, no extra results) to subclass;
:class:`PluginProtocol` is the structural type the runner checks, so a plugin from another
package may implement the four methods without inheriting from anything here.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Protocol, runtime_checkable

import torch

from forgetbench.benchmark.train.hooks import SUPERVISED_CALLBACKS, SupervisedHooks  # noqa: F401 (the plugin base)


@runtime_checkable
class PluginProtocol(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...

    def state_bytes(self) -> int: ...

    def extra_results(self) -> dict[str, Any]: ...


class Plugin(SupervisedHooks):
    """An Avalanche plugin (``SupervisedPlugin``'s callbacks, by duck typing) with the protocol's defaults:
    stateless, no extra results."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} keeps no state, got keys {sorted(state)}")

    def state_bytes(self) -> int:
        return tensor_bytes(self.state_dict())

    def extra_results(self) -> dict[str, Any]:
        return {}


def tensor_bytes(state: Any) -> int:
    """Bytes of every tensor inside nested dicts / lists / tuples."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, Mapping):
        return sum(tensor_bytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(tensor_bytes(v) for v in state)
    return 0


def held_tensor_bytes(root: Any, skip: tuple[Any, ...] = (), max_depth: int = 8) -> int:
    """Bytes of the tensors reachable from ``root``'s attributes, for objects outside the protocol (an Avalanche
    plugin's memories, a strategy class's buffers): tensors (each storage once), modules' parameters and buffers
    (a frozen copy of the model counts), dicts, lists, objects' attributes. An Avalanche dataset counts its samples
    (``len x`` one sample's bytes), not the data it indexes into. Objects in ``skip`` (the model being trained, the
    optimizer, the current experience) are not entered."""
    from avalanche.benchmarks.utils import AvalancheDataset
    from torch import nn

    skipped = {id(obj) for obj in skip}
    visited: set[int] = set()
    storages: set[tuple[int, str]] = set()
    total = 0
    stack: list[tuple[Any, int]] = [(root, 0)]
    while stack:
        obj, depth = stack.pop()
        if id(obj) in visited or id(obj) in skipped or depth > max_depth:
            continue
        visited.add(id(obj))
        if isinstance(obj, torch.Tensor):
            storage = obj.untyped_storage()
            key = (storage.data_ptr(), str(obj.device))
            if key not in storages:
                storages.add(key)
                total += storage.nbytes()
        elif isinstance(obj, nn.Module):
            stack.extend((t, depth + 1) for t in obj.state_dict(keep_vars=True).values())
        elif isinstance(obj, AvalancheDataset):
            if len(obj):
                total += len(obj) * tensor_bytes([torch.as_tensor(v) for v in obj[0]])
        elif isinstance(obj, Mapping):
            stack.extend((v, depth + 1) for v in obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend((v, depth + 1) for v in obj)
        elif hasattr(obj, "__dict__") and not isinstance(obj, type) and not callable(obj):
            stack.extend((v, depth + 1) for v in vars(obj).values())
    return total


def detached(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A name -> tensor dict of detached clones (what a ``state_dict`` hands out)."""
    return {name: t.detach().clone() for name, t in tensors.items()}


def on_device(tensors: Mapping[str, torch.Tensor], like: torch.Tensor | torch.device | None) -> dict[str, torch.Tensor]:
    """``tensors`` moved to ``like``'s device (a checkpoint may load on the CPU)."""
    device = like.device if isinstance(like, torch.Tensor) else like
    return {name: t.to(device) if device is not None else t for name, t in tensors.items()}


def generator_state(generator: torch.Generator) -> torch.Tensor:
    return generator.get_state()


def set_generator_state(generator: torch.Generator, state: torch.Tensor) -> None:
    generator.set_state(state.to(torch.uint8).cpu())


def on_avalanche_base(name: str, methods: type, avalanche_base: Callable[[], type], *more: type) -> type:
    """The class ``name`` whose methods are ``methods`` on top of one of Avalanche's classes, built (and Avalanche
    imported) on first use: a strategy module that extends Avalanche's MAS, LwF or replay plugin, or its template,
    declares the extension as a plain class and its params model at the top, and reading its params never imports
    Avalanche. Bases, in method order: ``methods``, ``avalanche_base()``, then ``more`` (``Plugin``: its no-op
    callbacks come after Avalanche's own). Cached: every call gives the same class."""
    key = (name, methods, *more)
    if key not in _BUILT:
        _BUILT[key] = type(name, (methods, avalanche_base(), *more), {"__module__": methods.__module__})
    return _BUILT[key]


_BUILT: dict[tuple[Any, ...], type] = {}
