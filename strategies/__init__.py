"""Continual-learning strategies, one file each, registered by name.

Importing this package registers the built-in strategies; ``STRATEGIES`` also loads those that
other distributions declare in the ``forgetbench.strategies`` entry-point group.
"""

from strategies.base import STRATEGIES, StrategyContext, StrategyParams, register_strategy, shared_params
from strategies import ewc, naive, si, wpl  # noqa: F401,E402  (register built-ins)
from strategies import spg, mas, lwf, l2, replay, joint, standalone  # noqa: F401,E402
from strategies import exssnet, pic, supsup  # noqa: F401,E402  (parameter isolation)

__all__ = ["STRATEGIES", "StrategyContext", "StrategyParams", "register_strategy", "shared_params"]
