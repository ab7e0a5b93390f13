"""``forgetbench perf``'s one registry of measurements. One module per measurement, named as the measurement, with
its params model at the top (``--set`` values are YAML, validated by it: a wrong key or value exits 2 naming the
field), a ``run(opts, params, data)`` that returns a JSON-ready value and a ``lines(value)`` that writes it for the
terminal; it registers itself with :func:`register`. ``default=True``: it runs when ``--only`` is not given (the
sections of :mod:`forgetbench.benchmark.perf`); the others (the probes behind single figures of docs/studies/) run
when ``--only`` names them.

The modules are found by name in this folder and imported only when asked for: listing the names imports none.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from forgetbench.benchmark.core.config import ConfigError

# the checkout, or the installed package: configs/ lies beside the package folders in both (package data in a wheel)
REPO = Path(__file__).resolve().parents[3]


class NoParams(BaseModel):
    """A measurement that takes no ``--set`` params."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Measurement:
    """A registered measurement: what it measures (one line), its params model, its run and its rendering.

    ``run(opts, params, data)`` returns the value stored under the measurement's name in ``perf --json``'s object
    and ``lines(value)`` the terminal's lines for it; ``also``: further top-level keys it measures in the same run
    (``run`` then returns ``{name: value, key: value, ...}`` and ``lines`` takes that mapping). ``needs_data``:
    perf loads its ``--dataset`` first and passes it as ``data``. ``default``: it runs when ``--only`` is not
    given, in the order of ``rank`` (and prints in that order). ``deterministic``: it runs on deterministic kernels (its validity is
    equal weights), recorded under the conditions."""

    name: str
    summary: str
    params: type[BaseModel]
    run: Callable[[Any, Any, Any], Any]
    lines: Callable[[Any], list[str]]
    needs_data: bool = False
    default: bool = False
    rank: int = 100
    deterministic: bool = False
    titled: bool = False  # its lines begin with their own title (a section's title carries its sizes)
    also: tuple[str, ...] = field(default=())

    @property
    def keys(self) -> tuple[str, ...]:
        """The top-level keys of ``perf --json``'s object this measurement writes."""
        return (self.name, *self.also)


MEASUREMENTS: dict[str, Measurement] = {}


def register(measurement: Measurement) -> Measurement:
    MEASUREMENTS[measurement.name] = measurement
    return measurement


def section(module: str, summary: str, run: Callable[..., Any], lines: Callable[[Any], list[str]],
            *, params: type[BaseModel] = NoParams, **options: Any) -> Measurement:  # fmt: skip
    """Register a section of perf's default table: the measurement named as its ``module`` (``__name__``), run when
    ``--only`` is not given, its lines under their own title; ``run(opts, params, data)``, or ``run(opts)`` for a
    measurement of perf's options alone; ``options``: :class:`Measurement`'s others (``rank``, ``needs_data``,
    ``deterministic``, ``also``)."""
    name = module.rsplit(".", 1)[-1]
    # a measurement of perf's options alone is run(opts)
    measure = _of_options(run) if len(inspect.signature(run).parameters) == 1 else run
    return register(Measurement(name, summary, params, measure, lines, default=True, titled=True, **options))


def _of_options(measure: Callable[[Any], Any]) -> Callable[[Any, Any, Any], Any]:
    """``run(opts, params, data)`` of a measurement of ``opts`` alone (its module and name kept)."""

    def run(opts: Any, params: Any, data: Any) -> Any:
        return measure(opts)

    run.__module__, run.__qualname__ = measure.__module__, measure.__qualname__
    return run


def measurement_names() -> list[str]:
    """The measurements this folder holds (by module name, none imported)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def load(name: str) -> Measurement:
    importlib.import_module(f"{__name__}.{name}")
    return MEASUREMENTS[name]


def default_names() -> list[str]:
    """The measurements ``forgetbench perf`` runs when ``--only`` is not given, in their order."""
    defaults = [m for m in map(load, measurement_names()) if m.default]
    return [m.name for m in sorted(defaults, key=lambda m: (m.rank, m.name))]


def measurement_params(names: list[str], settings: list[str]) -> dict[str, BaseModel]:
    """Each named probe's params from ``KEY=VALUE`` settings (YAML values), validated by its model; a setting no
    named probe takes, or a value its model refuses, is a :class:`ConfigError` naming the key and what is allowed."""
    given: dict[str, Any] = {}
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {setting!r}: expected KEY=VALUE (e.g. --set strategies=[naive,ewc])")
        given[key.strip()] = yaml.safe_load(value)
    measurements = [load(n) for n in names]
    fields = {f: p.name for p in measurements for f in p.params.model_fields}
    unknown = [k for k in given if k not in fields]
    if unknown:
        allowed = ", ".join(f"{f} ({p})" for f, p in fields.items()) or (
            f"none: {', '.join(names)} {'takes' if len(names) == 1 else 'take'} no params"
            if names
            else "none: name a measurement with --only"
        )
        raise ConfigError(f"--set: unknown key(s) {', '.join(unknown)}; allowed: {allowed}")
    params = {}
    for measurement in measurements:
        mine = {k: v for k, v in given.items() if k in measurement.params.model_fields}
        try:
            params[measurement.name] = measurement.params.model_validate(mine)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"--set ({measurement.name}): {problems}") from None
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


def row(label: str, value: str, wanted: str = "") -> str:
    """One line of perf's table: a label, its value, and what it should be."""
    return f"  {label:<34} {value:>28}  {wanted}"


def ratio_and_weights(r: dict[str, Any]) -> str:
    """A comparison's ratio and whether both sides ended with equal weights (else the ratio is void)."""
    return f"ratio {r['ratio']:.3f}, weights {'equal' if r['weights_equal'] else 'DIFFER'}"


def goal(text: str) -> str:
    return f"target {text}" if text else ""
