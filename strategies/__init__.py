"""Continual-learning strategies, one file each, registered by name.

Importing this package registers the built-in strategies; ``STRATEGIES`` also loads those that
other distributions declare in the ``forgetbench.strategies`` entry-point group.
"""

if __name__ == "strategies":  # this checkout's folder imported by its own name (the repository root on sys.path)
    raise ImportError(
        "`strategies` is a folder of forgetbench's checkout, not an import name: use "
        "`import forgetbench` (the public API) or `forgetbench.strategies`"
    )

from forgetbench.strategies.base import STRATEGIES, StrategyContext, StrategyParams, register_strategy, shared_params
from forgetbench.strategies import ewc, naive, si, wpl, wpl_online, wpl_enas  # noqa: F401,E402  (register built-ins)
from forgetbench.strategies import spg, mas, lwf, l2, replay, joint, standalone  # noqa: F401,E402
from forgetbench.strategies import exssnet, pic, merge, supsup  # noqa: F401,E402  (parameter isolation)
from forgetbench.strategies import olora, inflora, osf  # noqa: F401,E402  (LoRA per task on a pretrained backbone)
# Avalanche's own methods (`avalanche.<Name>`) register from forgetbench.strategies.avalanche_zoo, which reads
# Avalanche: STRATEGIES imports it when such a name, or every name, is asked for

__all__ = ["STRATEGIES", "StrategyContext", "StrategyParams", "register_strategy", "shared_params"]
