"""forgetbench: a continual-learning benchmark harness for networks that share parameters.

The one import a user needs::

    import forgetbench

    results = forgetbench.run_suite("configs/demo.yaml", out="results/demo")
    forgetbench.load_results("results/demo").summary()
    forgetbench.check_strategy("my_method")                 # the contract a new strategy must pass

    @forgetbench.register_strategy("my_method", params=MyParams)   # register_scenario, _dataset, _text_corpus, ...
    def build(ctx: forgetbench.StrategyContext, params: MyParams): ...

The project's folders are installed under this name (``forgetbench.benchmark``, ``forgetbench.strategies``,
``forgetbench.reports``), so a user's own ``benchmark.py`` cannot shadow them. The names below load on
first use: ``import forgetbench`` itself imports neither torch nor Avalanche.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_PUBLIC = {
    "run_suite": "forgetbench.benchmark.front.api",
    "load_results": "forgetbench.benchmark.front.api",
    "Results": "forgetbench.benchmark.front.api",
    "check_strategy": "forgetbench.benchmark.front.testing",
    "check_scenario": "forgetbench.benchmark.front.testing",
    "ConfigError": "forgetbench.benchmark.core.config",
    "load_config": "forgetbench.benchmark.core.config",
    "RunRecord": "forgetbench.benchmark.core.record",
    "DATASETS": "forgetbench.benchmark.core.components",
    "SCENARIOS": "forgetbench.benchmark.core.components",
    "STRATEGIES": "forgetbench.benchmark.core.components",
    "register_dataset": "forgetbench.benchmark.core.components",
    "register_scenario": "forgetbench.benchmark.core.components",
    "TEXT_CORPORA": "forgetbench.benchmark.core.components",
    "LANGUAGE_CORPORA": "forgetbench.benchmark.core.components",
    "register_text_corpus": "forgetbench.benchmark.core.components",
    "register_language_corpus": "forgetbench.benchmark.core.components",
    "register_strategy": "forgetbench.strategies.base",
    "StrategyContext": "forgetbench.strategies.base",
    "StrategyParams": "forgetbench.strategies.base",
    "shared_params": "forgetbench.strategies.base",
    "strength": "forgetbench.benchmark.core.registry",
    "calibrate_suite": "forgetbench.benchmark.front.api",
    "Plugin": "forgetbench.strategies.plugin",
    "METRICS": "forgetbench.benchmark.core.metric_registry",
    "Metric": "forgetbench.benchmark.core.metric_registry",
    "register_metric": "forgetbench.benchmark.core.metric_registry",
    "decide": "forgetbench.reports.table_decisions",
}
__all__ = ["__version__", *_PUBLIC]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ loads each on first use
    from forgetbench.benchmark.core.config import ConfigError, load_config
    from forgetbench.benchmark.core.metric_registry import METRICS, Metric, register_metric
    from forgetbench.benchmark.core.record import RunRecord
    from forgetbench.reports.table_decisions import decide
    from forgetbench.benchmark.core.components import (
        DATASETS,
        LANGUAGE_CORPORA,
        SCENARIOS,
        STRATEGIES,
        TEXT_CORPORA,
        register_dataset,
        register_language_corpus,
        register_scenario,
        register_text_corpus,
    )
    from forgetbench.benchmark.front.api import Results, calibrate_suite, load_results, run_suite
    from forgetbench.benchmark.front.testing import check_scenario, check_strategy
    from forgetbench.benchmark.core.registry import strength
    from forgetbench.strategies.base import StrategyContext, StrategyParams, register_strategy, shared_params
    from forgetbench.strategies.plugin import Plugin


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'forgetbench' has no attribute {name!r}")
    import importlib  # lazy: the API pulls in torch, Avalanche and pandas

    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
