"""Test-only strategies that misbehave on purpose (importable by worker processes and Ray tasks).

Executors import the module that registered a run's strategy inside each worker, so these exist
there too. Each fault fires once: it creates its ``marker`` file first, and does nothing if the
marker already exists, so a rerun of the same config succeeds.
"""

from __future__ import annotations

import functools
import os
import signal
import time
from pathlib import Path

from pydantic import NonNegativeFloat

from forgetbench.strategies import STRATEGIES, StrategyContext, StrategyParams, register_strategy
from forgetbench.strategies.ewc import EWCParams, EWCPlugin
from forgetbench.strategies.plugin import Plugin


class FaultParams(StrategyParams):
    marker: str
    at_experience: int = 1


class _FaultOnce(Plugin):
    """Stateless for checkpoints: whether it fired is the marker file on disk."""

    def __init__(self, marker: str, at_experience: int, fault):
        super().__init__()
        self.marker, self.at_experience, self.fault = Path(marker), at_experience, fault

    def before_training_exp(self, strategy, **kwargs):
        if strategy.clock.train_exp_counter == self.at_experience and self._claim_marker():
            self.fault()

    def _claim_marker(self) -> bool:
        # O_EXCL makes check-and-create one step: two workers reaching the fault together
        # (parallel seeds) must not both see "no marker" and both fire.
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        return True


def _sigkill_self():
    os.kill(os.getpid(), signal.SIGKILL)


def _raise():
    raise RuntimeError("injected crash")


if "test_sigkill_once" not in STRATEGIES:

    @register_strategy("test_sigkill_once", params=FaultParams)
    def _build_sigkill(ctx: StrategyContext, params: FaultParams):
        """Test-only: its process kills itself with SIGKILL at an experience, once."""
        return ctx.build(plugins=[_FaultOnce(params.marker, params.at_experience, _sigkill_self)])


class CrashEWCParams(FaultParams):
    ewc_lambda: NonNegativeFloat = 100.0


if "test_ewc_crash_once" not in STRATEGIES:

    @register_strategy("test_ewc_crash_once", params=CrashEWCParams)
    def _build_crash(ctx: StrategyContext, params: CrashEWCParams):
        """Test-only: EWC that raises at an experience, once (checkpoint resume)."""
        plugins = [
            EWCPlugin(EWCParams(ewc_lambda=params.ewc_lambda)),
            _FaultOnce(params.marker, params.at_experience, _raise),
        ]
        return ctx.build(plugins=plugins)


class SlowParams(StrategyParams):
    seconds_per_step: NonNegativeFloat = 0.05


@functools.cache
def _slow_plugin_class() -> type:
    """A user's plain Avalanche plugin (no state protocol, so runs with it are never checkpointed); Avalanche is
    imported when the strategy is built, so loading this module (conftest does, in pytest's controller) stays light."""
    from avalanche.core import SupervisedPlugin

    class _Slow(SupervisedPlugin):
        def __init__(self, seconds: float):
            super().__init__()
            self.seconds = seconds

        def after_training_iteration(self, strategy, **kwargs):
            time.sleep(self.seconds)

    return _Slow


if "test_slow" not in STRATEGIES:

    @register_strategy("test_slow", params=SlowParams)
    def _build_slow(ctx: StrategyContext, params: SlowParams):
        """Test-only: naive fine-tuning that sleeps after every step (to interrupt it mid-run)."""
        return ctx.build(plugins=[_slow_plugin_class()(params.seconds_per_step)])


class KillAfterParams(FaultParams):
    strategy: str
    strategy_params: dict = {}


if "test_kill_after" not in STRATEGIES:

    @register_strategy("test_kill_after", params=KillAfterParams)
    def _build_kill_after(ctx: StrategyContext, params: KillAfterParams):
        """Test-only: the registered ``strategy``, whose process SIGKILLs itself when experience
        ``at_experience`` starts (after the previous experience's checkpoint), once."""
        entry = STRATEGIES.get(params.strategy)
        strategy = entry.factory(ctx, entry.parse_params(params.strategy_params))
        strategy.plugins.insert(0, _FaultOnce(params.marker, params.at_experience, _sigkill_self))
        return strategy
