"""Scenario registry; importing this package registers the built-in scenarios."""

from benchmark.scenarios.base import (
    SCENARIOS,
    LabelledTensors,
    Retraining,
    Scenario,
    ScenarioInputs,
    ScenarioParams,
    Task,
    Turn,
)
from benchmark.scenarios import split as _split  # noqa: F401  (registers "split")
from benchmark.scenarios import two_model as _two_model  # noqa: F401
from benchmark.scenarios import supernet as _supernet  # noqa: F401
from benchmark.scenarios import search as _search  # noqa: F401
from benchmark.scenarios import text as _text  # noqa: F401
from benchmark.scenarios import permuted as _permuted  # noqa: F401
from benchmark.scenarios import custom as _custom  # noqa: F401
from benchmark.scenarios import enas_rnn as _enas_rnn  # noqa: F401
from benchmark.scenarios import enas_cnn as _enas_cnn  # noqa: F401

__all__ = ["SCENARIOS", "LabelledTensors", "Retraining", "Scenario", "ScenarioInputs", "ScenarioParams", "Task", "Turn"]
