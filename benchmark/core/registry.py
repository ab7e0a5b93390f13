"""Name -> component registries (datasets, scenarios, strategies).

A component registers itself with a decorator, in the style of timm's ``@register_model``::

    @STRATEGIES.register("ewc", params=EWCParams, description="Elastic weight consolidation")
    def build_ewc(ctx, params): ...

Registries may also name an entry-point group; distributions that declare entries in that group
are imported the first time the registry is consulted, so a strategy living in another package
is found without editing this one. The built-in components are found the same way: each registry
names the modules that register them (``builtin_modules``) and imports them on first use, so a
module that only needs to *look up* a name (config validation) never imports the components.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, TypeVar

from pydantic import BaseModel, ConfigDict

log = logging.getLogger(__name__)

T = TypeVar("T", bound=Callable[..., Any])


class NoParams(BaseModel):
    """Parameter model for components that take no parameters."""

    model_config = ConfigDict(extra="forbid")


def did_you_mean(word: str, allowed: list[str]) -> str:
    """``did you mean 'x'? `` for the allowed word closest to ``word`` (difflib's ratio >= 0.6, case ignored: ``WPL``
    finds ``wpl``), else ''."""
    import difflib

    by_lower = {a.lower(): a for a in reversed(allowed)}  # the first spelling of a name that differs only in case
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1)
    return f"did you mean {by_lower[close[0]]!r}? " if close else ""


STRENGTH = "forgetbench_strength"  # the json_schema_extra key that marks a params field as a strength


def strength(default: Any, **constraints: Any) -> Any:
    """A params field that sets how hard a strategy holds on to what earlier models learnt (EWC's lambda, WPL's
    alpha, LwF's distillation weight): ``forgetbench calibrate`` probes it over decades and tuning searches it on a
    log scale by default. One line in a params model::

        ewc_lambda: NonNegativeFloat = strength(100.0)

    ``constraints`` are pydantic's ``Field`` keywords (``ge``, ``description``, ...).
    """
    from pydantic import Field

    return Field(default, json_schema_extra={STRENGTH: True}, **constraints)


def strength_params(params: type[BaseModel]) -> list[str]:
    """The params fields declared with :func:`strength`, in declaration order (empty for a method without one)."""
    return [
        name
        for name, field in params.model_fields.items()
        if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get(STRENGTH)
    ]


class UnknownNameError(KeyError):
    """Raised when a name is not registered; the message lists the allowed names."""

    def __init__(self, kind: str, name: str, allowed: list[str]):
        self.kind, self.name, self.allowed = kind, name, allowed
        super().__init__(f"unknown {kind} {name!r}; {did_you_mean(str(name), allowed)}allowed: {', '.join(allowed)}")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered component."""

    name: str
    factory: T
    params: type[BaseModel]
    description: str
    extra: dict[str, Any] = field(default_factory=dict)

    def parse_params(self, raw: dict[str, Any] | None) -> BaseModel:
        """Validate raw params into the component's pydantic model (raises ValidationError).

        Strictly: a string where a number belongs is an error, as everywhere in a config.
        """
        return self.params.model_validate(raw or {}, strict=True)


class Registry(Generic[T]):
    """A name -> :class:`Entry` mapping with a registering decorator."""

    def __init__(
        self,
        kind: str,
        entry_point_group: str | None = None,
        builtin_modules: tuple[str, ...] = (),
        index: Any = None,
        prefixed_modules: dict[str, str] | None = None,
    ):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self.builtin_modules = builtin_modules
        # name prefix -> a built-in module registering those names, imported only when such a name is asked for (or
        # every name is): Avalanche's own methods, whose registration reads Avalanche, never load to read a config
        self.prefixed_modules = dict(prefixed_modules or {})
        self._prefixed_loaded: set[str] = set()
        # the index of the built-ins (components.ComponentIndex: ``path()`` of a JSON file listing name, description,
        # unavailable, or None; ``write()``): names and listings without importing them (torch and Avalanche take
        # seconds); written by the first listing that had to import them
        self.index = index
        self._index_rows: list[Listing] | None = None
        self._entries: dict[str, Entry[T]] = {}
        self._entry_points_loaded = False

    def register(
        self,
        name: str,
        *,
        params: type[BaseModel] = NoParams,
        description: str | None = None,
        **extra: Any,
    ) -> Callable[[T], T]:
        """Decorator registering ``factory`` under ``name``.

        ``description`` defaults to the first line of the factory's docstring.
        """

        def decorator(factory: T) -> T:
            if name in self._entries and self._entries[name].factory is not factory:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            desc = description if description is not None else _first_line(factory.__doc__)
            self._entries[name] = Entry(name, factory, params, desc, dict(extra))
            return factory

        return decorator

    def _load_entry_points(self) -> None:
        """Import the built-ins and the plug-ins of the entry-point group, once. Marked done only once every import
        returned: a second thread asking meanwhile imports too, and Python's import system makes it wait for a
        module another thread is still importing, so it never reads a half-filled registry (it read "unknown
        scenario 'split'; allowed: " with nothing allowed). No lock of its own: one held across imports can
        deadlock with the import system's."""
        if self._entry_points_loaded:
            return
        for module in self.builtin_modules:
            importlib.import_module(module)  # a broken built-in is a bug: let it raise
        if self.entry_point_group is not None:
            for ep in importlib.metadata.entry_points(group=self.entry_point_group):
                try:
                    ep.load()  # importing the module runs its @register decorators
                except Exception as exc:  # a broken plug-in must not take the harness down
                    log.warning("could not load %s entry point %r: %s", self.kind, ep.name, exc)
        self._entry_points_loaded = True

    def _load_prefixed(self, name: str | None = None) -> None:
        """Import the prefixed modules ``name`` needs (every one when ``name`` is None), marked done once imported."""
        for prefix, module in self.prefixed_modules.items():
            if prefix not in self._prefixed_loaded and (name is None or name.startswith(prefix)):
                importlib.import_module(module)
                self._prefixed_loaded.add(prefix)

    def get(self, name: str) -> Entry[T]:
        self._load_entry_points()
        if name not in self._entries:
            self._load_prefixed(name)
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self.names()) from None

    def names(self) -> list[str]:
        self._load_entry_points()
        self._load_prefixed()
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        if isinstance(name, str) and name not in self._entries:
            self._load_prefixed(name)
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        self._load_entry_points()
        self._load_prefixed()
        return iter(list(self._entries.values()))

    def listing(self) -> list[Listing]:
        """Every component's name, description and why it cannot run (None when it can), in registration order.
        Read from the index while the built-ins are not imported and no other distribution adds to this group
        (a plug-in is only known by importing it); otherwise from the entries themselves."""
        indexed = self._indexed()
        if indexed is None:
            listed = [Listing(e.name, e.description, e.extra.get("unavailable")) for e in self]
            if self.index is not None and self.index.path() is None:
                self.index.write()  # the next process reads it (imports the other built-ins: once)
            return listed
        known = {item.name for item in indexed}
        return indexed + [
            Listing(e.name, e.description, e.extra.get("unavailable"))
            for e in self._entries.values()
            if e.name not in known
        ]  # registered at run time

    def knows(self, name: str) -> bool:
        """Whether ``name`` is registered (from the listing: no import while the index answers)."""
        return name in self._entries or any(item.name == name for item in self.listing())

    def _indexed(self) -> list[Listing] | None:
        path = None if self._entry_points_loaded or self.index is None else self.index.path()
        if path is None:
            return None
        if self.entry_point_group and any(True for _ in importlib.metadata.entry_points(group=self.entry_point_group)):
            return None
        if self._index_rows is None:  # read once: a config's name check asks once per entry
            try:
                rows = json.loads(path.read_text())[self.kind]
                self._index_rows = [Listing(row["name"], row["description"], row.get("unavailable")) for row in rows]
            except (OSError, ValueError, KeyError, TypeError):
                return None  # a damaged index costs time, never a wrong answer
        return list(self._index_rows)


@dataclass(frozen=True)
class Listing:
    """What ``forgetbench list`` and a config's name check need of a component, without importing it."""

    name: str
    description: str
    unavailable: str | None = None  # why it cannot run on forgetbench's scenarios (listed by no one)


def index_rows(registry: Registry[Any], package: str) -> list[dict[str, Any]]:
    """The index's rows for ``registry``'s components defined under ``package`` (imports them): what
    :meth:`Registry.listing` reads."""
    return [
        {"name": e.name, "description": e.description}
        | ({"unavailable": str(e.extra["unavailable"])} if e.extra.get("unavailable") else {})
        for e in registry
        if getattr(e.factory, "__module__", "").startswith(package + ".")
    ]


def _first_line(doc: str | None) -> str:
    lines = (doc or "").strip().splitlines()
    return lines[0].strip() if lines else ""
