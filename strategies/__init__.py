"""Continual-learning strategies, one file each, registered by name.

Importing this package imports every module in this folder, so a strategy file dropped here is registered with
nothing else to edit (its ``@register_strategy`` runs); ``STRATEGIES`` also loads those that other distributions
declare in the ``forgetbench.strategies`` entry-point group. ``avalanche_zoo`` is the exception: it reads Avalanche
to register Avalanche's own methods (``avalanche.<Name>``), so ``STRATEGIES`` imports it only when such a name, or
every name, is asked for.
"""

import importlib as _importlib
import pkgutil as _pkgutil

if __name__ == "strategies":  # this checkout's folder imported by its own name (the repository root on sys.path)
    raise ImportError(
        "`strategies` is a folder of forgetbench's checkout, not an import name: use "
        "`import forgetbench` (the public API) or `forgetbench.strategies`"
    )

from forgetbench.strategies.base import STRATEGIES, StrategyContext, StrategyParams, register_strategy, shared_params

# imported on demand (see the module doc)
ON_DEMAND = frozenset({"avalanche_zoo"})

for _module in sorted(m.name for m in _pkgutil.iter_modules(__path__)):
    if _module not in ON_DEMAND and not _module.startswith("_"):
        _importlib.import_module(f"{__name__}.{_module}")

__all__ = ["STRATEGIES", "StrategyContext", "StrategyParams", "register_strategy", "shared_params"]
