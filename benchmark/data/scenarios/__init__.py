"""Scenario registry; importing this package registers the built-in scenarios."""

from forgetbench.benchmark.data.scenarios.base import SCENARIOS, LabelledTensors, Retraining, Scenario, ScenarioInputs, ScenarioParams, Task, Turn
from forgetbench.benchmark.data.scenarios import split as _split  # noqa: F401  (registers "split")
from forgetbench.benchmark.data.scenarios import two_model as _two_model  # noqa: F401
from forgetbench.benchmark.data.scenarios import supernet as _supernet  # noqa: F401
from forgetbench.benchmark.data.scenarios import search as _search  # noqa: F401
from forgetbench.benchmark.data.scenarios import text as _text  # noqa: F401
from forgetbench.benchmark.data.scenarios import permuted as _permuted  # noqa: F401
from forgetbench.benchmark.data.scenarios import custom as _custom  # noqa: F401
from forgetbench.benchmark.data.scenarios import enas_rnn as _enas_rnn  # noqa: F401
from forgetbench.benchmark.data.scenarios import enas_cnn as _enas_cnn  # noqa: F401

__all__ = ["SCENARIOS", "LabelledTensors", "Retraining", "Scenario", "ScenarioInputs", "ScenarioParams", "Task", "Turn"]
