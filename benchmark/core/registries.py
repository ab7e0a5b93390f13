"""The three component registries, in a leaf module: who needs a name looks it up here.

Each registry imports its built-in components on first use (``builtin_modules``) and then the
other distributions' entry points, so validating a config needs no import of the strategies or
scenarios themselves (the one-way flow: config -> scenario -> strategy -> runner).
"""

from __future__ import annotations

from typing import Any, Callable

from forgetbench.benchmark.core.registry import Registry

DATASETS: Registry[Callable[..., Any]] = Registry(
    "dataset", entry_point_group="forgetbench.datasets", builtin_modules=("forgetbench.benchmark.data.datasets",)
)
SCENARIOS: Registry[Callable[..., Any]] = Registry(
    "scenario", entry_point_group="forgetbench.scenarios", builtin_modules=("forgetbench.benchmark.data.scenarios",)
)
STRATEGIES: Registry[Callable[..., Any]] = Registry(
    "strategy", entry_point_group="forgetbench.strategies", builtin_modules=("forgetbench.strategies",)
)

# The decorators a plug-in uses (``forgetbench.register_scenario("name", params=...)``): each registry's own.
register_dataset = DATASETS.register
register_scenario = SCENARIOS.register
