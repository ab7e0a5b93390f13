"""Scenario registry; importing this package registers the built-in scenarios.

Every module in this folder is imported here, so a new scenario is one file in it: its
``@SCENARIOS.register`` runs on import (``base`` and ``cell_search`` register nothing; that is fine).
"""

import importlib
import pkgutil

from forgetbench.benchmark.data.loaders import LabelledTensors
from forgetbench.benchmark.data.scenarios.base import (
    SCENARIOS,
    Retraining,
    Scenario,
    ScenarioInputs,
    ScenarioParams,
    Task,
    Turn,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"forgetbench.benchmark.data.scenarios.{_module.name}")

__all__ = ["SCENARIOS", "LabelledTensors", "Retraining", "Scenario", "ScenarioInputs", "ScenarioParams", "Task", "Turn"]
