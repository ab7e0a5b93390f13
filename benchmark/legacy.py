"""The pre-layers import names (``benchmark.api``, ``strategies``, ``reports.metrics``), kept working from a checkout.

Until the layer folders, forgetbench's modules were imported as top-level ``benchmark``, ``strategies``
and ``reports``. From a checkout (the repository root on ``sys.path``) those folders still import under
the old names; their ``__init__`` then calls :func:`alias_old_name`, which makes every old module name
an alias of the new module (one module object, one registry), with a FutureWarning naming the new import.
The old package itself is a thin module that forwards to the new package's attributes and submodules.
Installed elsewhere, the old names are simply absent: PyPI's unrelated ``benchmark`` and ``reports``
packages are not ours to shadow.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType

OLD_PACKAGES = ("benchmark", "strategies", "reports")
_LAYERS = ("core", "data", "train", "run", "front")
_REPORTS_IN_CORE = ("metrics", "stats", "units")


def new_module_name(old: str) -> str | None:
    """``benchmark.api`` -> ``forgetbench.benchmark.front.api``; None when ``old`` names no module of ours."""
    top, _, rest = old.partition(".")
    if top not in OLD_PACKAGES:
        return None
    if not rest:
        return f"forgetbench.{top}"
    first = rest.split(".")[0]
    candidates = [f"forgetbench.{top}.{rest}"]
    if top == "benchmark":
        candidates = [f"forgetbench.benchmark.{layer}.{rest}" for layer in _LAYERS] + candidates
    elif top == "reports" and first in _REPORTS_IN_CORE:
        candidates = [f"forgetbench.benchmark.core.{rest}"]
    for name in candidates:
        try:
            if importlib.util.find_spec(name) is not None:
                return name
        except ModuleNotFoundError:
            continue
    return None


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):  # the new module itself: one object under both names
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        pass


class _OldNameFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] not in OLD_PACKAGES or "." not in fullname:
            return None
        new = new_module_name(fullname)
        if new is None:
            return None
        _warn(fullname, new)
        return importlib.util.spec_from_loader(fullname, _AliasLoader(new))


def _warn(old: str, new: str) -> None:
    warnings.warn(f"`{old}` is forgetbench's old import name: use `import forgetbench` (the public API) "
                  f"or `{new}`", FutureWarning, stacklevel=3)


class _OldPackage(ModuleType):
    """``benchmark`` / ``strategies`` / ``reports`` under their old names: the new package's attributes, and
    ``from benchmark import suite`` finds the submodule wherever its layer put it."""

    def __init__(self, old: str, new: ModuleType):
        super().__init__(old, new.__doc__)
        self.__path__: list[str] = []  # a package: submodules come through _OldNameFinder
        self._forgetbench_package = new

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return getattr(self._forgetbench_package, name)
        except AttributeError:
            pass
        if new_module_name(f"{self.__name__}.{name}") is None:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        return importlib.import_module(f"{self.__name__}.{name}")


def alias_old_name(old: str) -> None:
    """Called by a layer folder's ``__init__`` run under its old name: alias it and its submodules."""
    new = new_module_name(old)
    if not any(isinstance(f, _OldNameFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _OldNameFinder())
    _warn(old, new)
    sys.modules[old] = _OldPackage(old, importlib.import_module(new))
