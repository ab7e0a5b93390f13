"""Checkpoints: a run's state after an experience, written atomically, loaded without running code.

A checkpoint holds plain data only (tensors, numbers, strings, lists, dicts): the model's and the
optimizer's ``state_dict()``, Avalanche's clock counters, each plugin's ``state_dict()`` (the
protocol of :mod:`forgetbench.strategies.plugin`), the RNG states, and the record so far. It is loaded with
``torch.load(..., weights_only=True)``, so a crafted file cannot execute anything; a file that
does not load, or belongs to another configuration, is discarded with a warning and the run
starts over.

A strategy can be checkpointed when every plugin besides the harness's own and Avalanche's
clock / evaluator / periodic-eval implements the protocol; otherwise the run goes on without
checkpoints and its record says why (``warnings``).
"""

from __future__ import annotations

import io
import logging
import random
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from avalanche.training.plugins import EvaluationPlugin
from avalanche.training.plugins.clock import Clock
from avalanche.training.templates.base_sgd import PeriodicEval

from forgetbench.benchmark.train.harness import Harness
from forgetbench.benchmark.core.record import RunRecord
from forgetbench.benchmark.core.store import atomic_write_bytes
from forgetbench.strategies.plugin import PluginProtocol

log = logging.getLogger(__name__)

FORMAT = 2  # 1: the first wave's pickled plugin attributes (never loaded: they could run code)
# Record fields a checkpoint carries over (everything a run fills while training experiences).
RESUMED_FIELDS = (
    "accuracy_matrix",
    "init_accuracy",
    "timing",
    "curves",
    "turn_accuracy",
    "attribution",
    "prune_points",
)
_AVALANCHE_OWN = (EvaluationPlugin, PeriodicEval, Clock)


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed (the message says why)."""


def strategy_plugins(strategy, harness: Harness) -> list:
    """The plugins whose state a checkpoint carries: all but the harness's and Avalanche's own."""
    own = harness.plugins
    return [p for p in strategy.plugins if not isinstance(p, _AVALANCHE_OWN) and not any(p is h for h in own)]


def unsupported_plugins(strategy, harness: Harness) -> list[str]:
    """Names of plugins that do not declare the state protocol (their state could not be resumed), and of the
    template itself when it keeps state outside it (``undeclared_state``: an Avalanche strategy class's buffers)."""
    names = [type(p).__name__ for p in strategy_plugins(strategy, harness) if not isinstance(p, PluginProtocol)]
    if getattr(strategy, "undeclared_state", False):
        names.append(type(strategy).__name__)
    return names


def template_state(strategy) -> dict[str, Any]:
    """A template that keeps state of its own declares ``state_dict``/``load_state_dict`` too."""
    return strategy.state_dict() if callable(getattr(strategy, "state_dict", None)) else {}


def save(
    path: Path,
    resolved: dict[str, Any],
    completed: int,
    strategy,
    harness: Harness,
    record: RunRecord,
    scenario_state: dict[str, Any] | None = None,
    attribution_state: dict[str, Any] | None = None,
) -> None:
    """Write the state after experience ``completed`` atomically to ``path`` (with an adaptive scenario's
    own state, :meth:`~forgetbench.benchmark.data.scenarios.base.Scenario.state_dict`, when it has one)."""
    clock = strategy.clock
    state = {
        "format": FORMAT,
        "config": resolved,
        "completed": completed,
        "model": strategy.model.state_dict(),
        "model_bookkeeping": model_bookkeeping(strategy.model),
        "optimizer": strategy.optimizer.state_dict(),
        "clock": {k: v for k, v in vars(clock).items() if isinstance(v, int)},
        "template": template_state(strategy),
        "plugins": [
            {"type": type(p).__qualname__, "state": p.state_dict()} for p in strategy_plugins(strategy, harness)
        ],
        "rng": {
            "torch": torch.get_rng_state(),
            "numpy": _numpy_state(),
            "python": _python_state(),
            "data": strategy.data_generator.get_state(),
        },
        "record": {k: v for k, v in record.to_dict().items() if k in RESUMED_FIELDS},
        "scenario": scenario_state,
        "attribution": attribution_state,  # the forgetting attribution's snapshots of earlier models
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load(path: Path, resolved: dict[str, Any], strategy, harness: Harness) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if it exists and matches ``resolved``; None when there is none.

    Raises :class:`CheckpointError` for a file that is not a loadable checkpoint of this run
    (garbage, a crafted pickle, another format, another configuration); the caller discards it.
    Nothing is restored here: see :func:`restore`.
    """
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location=strategy.device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is discarded, never executed
        raise CheckpointError(f"not a loadable checkpoint ({type(exc).__name__}: {_first_line(exc)})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError("not a checkpoint of this version of forgetbench")
    if state.get("config") != resolved:
        raise CheckpointError("a checkpoint of another configuration")
    types = [type(p).__qualname__ for p in strategy_plugins(strategy, harness)]
    if [p.get("type") for p in state.get("plugins", [])] != types:
        raise CheckpointError(
            f"its plugins {[p.get('type') for p in state['plugins']]} are not this strategy's {types}"
        )
    return state


def restore(
    state: dict[str, Any], strategy, harness: Harness, record: RunRecord, scenario=None, attribution=None
) -> int:
    """Put ``state`` back into the scenario (a search's own state), the strategy, its plugins, the RNGs and
    the record; returns the next experience."""
    if scenario is not None and state.get("scenario") is not None:
        scenario.load_state_dict(state["scenario"])
    strategy.model.load_state_dict(state["model"])
    load_model_bookkeeping(strategy.model, state["model_bookkeeping"])
    strategy.optimizer.load_state_dict(state["optimizer"])
    for key, value in state["clock"].items():
        setattr(strategy.clock, key, value)
    if state["template"]:
        strategy.load_state_dict(state["template"])
    for plugin, saved in zip(strategy_plugins(strategy, harness), state["plugins"]):
        plugin.load_state_dict(saved["state"])
    rng = state["rng"]
    torch.set_rng_state(rng["torch"].cpu())
    np.random.set_state(_numpy_tuple(rng["numpy"]))
    random.setstate(_python_tuple(rng["python"]))
    strategy.data_generator.set_state(rng["data"].cpu())
    restored = RunRecord.model_validate({**record.to_dict(), **state["record"]})
    for key in state["record"]:
        setattr(record, key, getattr(restored, key))
    if harness.recorder is not None:
        harness.recorder.curves = [c.model_dump() for c in record.curves or []]
    if attribution is not None and state.get("attribution") is not None:
        attribution.load_state_dict(state["attribution"])
    record.resumed_from_experience = state["completed"] + 1
    return state["completed"] + 1


# Avalanche's dynamic modules keep these outside ``state_dict()`` (they route and size heads).
_BOOKKEEPING = ("known_train_tasks_labels", "max_class_label")


def model_bookkeeping(model: torch.nn.Module) -> dict[str, dict[str, Any]]:
    """Non-tensor attributes of Avalanche's dynamic modules that ``state_dict()`` leaves out."""
    kept = {}
    for name, module in model.named_modules():
        values = {attr: getattr(module, attr) for attr in _BOOKKEEPING if hasattr(module, attr)}
        if values:
            kept[name] = {k: sorted(int(t) for t in v) if isinstance(v, set) else v for k, v in values.items()}
    return kept


def load_model_bookkeeping(model: torch.nn.Module, kept: dict[str, dict[str, Any]]) -> None:
    modules = dict(model.named_modules())
    for name, values in kept.items():
        for attr, value in values.items():
            setattr(modules[name], attr, set(value) if attr == "known_train_tasks_labels" else value)


def discard(path: Path, reason: str) -> str:
    """Remove an unusable checkpoint; returns the warning to record."""
    message = f"checkpoint {path.name} discarded, run started over: {reason}"
    log.warning(message)
    path.unlink(missing_ok=True)
    return message


def _numpy_state() -> list:
    name, keys, pos, has_gauss, cached = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state())
    return [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)]


def _numpy_tuple(state: list) -> tuple:
    name, keys, pos, has_gauss, cached = state
    return name, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, cached


def _python_state() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _python_tuple(state: list) -> tuple:
    version, internal, gauss = state
    return version, tuple(internal), gauss


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""
