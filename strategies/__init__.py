"""Continual-learning strategies, one file each, registered by name.

Importing this package registers the built-in strategies; ``STRATEGIES`` also loads those that
other distributions declare in the ``forgetbench.strategies`` entry-point group.
"""

if __name__ == "strategies":  # the pre-layers import name, from a checkout: point it at forgetbench.strategies
    from forgetbench.benchmark.legacy import alias_old_name

    alias_old_name(__name__)

from forgetbench.strategies.base import STRATEGIES, StrategyContext, StrategyParams, register_strategy, shared_params
from forgetbench.strategies import ewc, naive, si, wpl  # noqa: F401,E402  (register built-ins)
from forgetbench.strategies import spg, mas, lwf, l2, replay, joint, standalone  # noqa: F401,E402
from forgetbench.strategies import exssnet, pic, merge, supsup  # noqa: F401,E402  (parameter isolation)
from forgetbench.strategies import olora, inflora, osf  # noqa: F401,E402  (LoRA per task on a pretrained backbone)
from forgetbench.strategies import avalanche_zoo  # noqa: F401,E402  (Avalanche's own methods by name)

__all__ = ["STRATEGIES", "StrategyContext", "StrategyParams", "register_strategy", "shared_params"]
