"""``forgetbench perf``'s probes: measurements behind a figure of docs/studies/ that run only when named,
``forgetbench perf --only NAME [--set KEY=VALUE ...]``. One module per probe, named as the probe, with its params
model at the top (``--set`` values are YAML, validated by it: a wrong key or value exits 2 naming the field), a
``run(opts, params, data)`` that returns a JSON-ready dict and a ``lines(result)`` that writes it for the terminal.

The modules are found by name in this folder and imported only when asked for: listing the probes imports none.
"""

from __future__ import annotations

import importlib
import pkgutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml
from pydantic import BaseModel, ValidationError

from forgetbench.benchmark.core.config import ConfigError

REPO = Path(__file__).resolve().parents[4]  # configs/ lives beside the package folders


@dataclass(frozen=True)
class Probe:
    """A registered probe: what it measures (one line), its params model, its measurement and its rendering;
    ``needs_data``: perf loads its ``--dataset`` first and passes it as ``data``."""

    name: str
    summary: str
    params: type[BaseModel]
    run: Callable[[Any, Any, Any], dict[str, Any]]
    lines: Callable[[dict[str, Any]], list[str]]
    needs_data: bool = False


PROBES: dict[str, Probe] = {}


def register_probe(probe: Probe) -> Probe:
    PROBES[probe.name] = probe
    return probe


def probe_names() -> list[str]:
    """The probes this folder holds (by module name, none imported)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def load_probe(name: str) -> Probe:
    importlib.import_module(f"{__name__}.{name}")
    return PROBES[name]


def probe_params(names: list[str], settings: list[str]) -> dict[str, BaseModel]:
    """Each named probe's params from ``KEY=VALUE`` settings (YAML values), validated by its model; a setting no
    named probe takes, or a value its model refuses, is a :class:`ConfigError` naming the key and what is allowed."""
    given: dict[str, Any] = {}
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {setting!r}: expected KEY=VALUE (e.g. --set strategies=[naive,ewc])")
        given[key.strip()] = yaml.safe_load(value)
    probes = [load_probe(n) for n in names]
    fields = {f: p.name for p in probes for f in p.params.model_fields}
    unknown = [k for k in given if k not in fields]
    if unknown:
        allowed = ", ".join(f"{f} ({p})" for f, p in fields.items()) or "none: name a probe with --only"
        raise ConfigError(f"--set: unknown key(s) {', '.join(unknown)}; allowed: {allowed}")
    params = {}
    for probe in probes:
        mine = {k: v for k, v in given.items() if k in probe.params.model_fields}
        try:
            params[probe.name] = probe.params.model_validate(mine)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"--set ({probe.name}): {problems}") from None
    return params


def best_seconds(work: Callable[[], object], repeats: int = 5) -> float:
    """The fastest of ``repeats`` timed calls of ``work`` after one untimed call (what a kernel costs, without the
    machine's other load)."""
    work()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)
