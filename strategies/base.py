"""Strategy registry and the context a strategy is built from.

A strategy is a function registered by name that receives a :class:`StrategyContext` and its
validated params, and returns an Avalanche template (usually ``ctx.build(plugins=[...])``)::

    class MyParams(StrategyParams):
        my_lambda: NonNegativeFloat = strength(1.0)  # the strength: calibrated and tuned on a log scale

    @register_strategy("mine", params=MyParams)
    def build_mine(ctx: StrategyContext, params: MyParams):
        \"\"\"One-line description shown by `forgetbench list strategies`.\"\"\"
        return ctx.build(plugins=[MyPlugin(params.my_lambda)])

Strategies in other distributions register through the entry-point group
``forgetbench.strategies`` (the entry point names the module to import).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn
from torch.optim.optimizer import ParamsT

from forgetbench.benchmark.core.components import STRATEGIES as _STRATEGIES
from forgetbench.benchmark.core.registry import Registry
from forgetbench.benchmark.core.registry import strength as strength  # re-exported: the strategy API
from forgetbench.benchmark.core.registry import strength_params as strength_params
from forgetbench.benchmark.data.models import TaskRoutedModule
from forgetbench.benchmark.core.training import TrainingConfig

if TYPE_CHECKING:  # Avalanche is imported when a strategy is built (training starts), never to read its params
    from avalanche.core import SupervisedPlugin
    from avalanche.training.plugins import EvaluationPlugin
    from avalanche.training.templates import SupervisedTemplate


class StrategyParams(BaseModel):
    """Base of strategy parameter models: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class StrategyContext:
    """Everything a strategy may use to build itself.

    ``used_params[i]`` is the set of parameter names (as in ``model.named_parameters()``) that the
    model trained in experience ``i`` uses; a parameter in ``used_params[i]`` and in some
    ``used_params[k]``, k < i, is *shared* with an earlier model.
    """

    model: TaskRoutedModule  # the scenario's network: forward_single_task(x, task_label) runs task's model
    training: TrainingConfig
    device: torch.device
    used_params: Sequence[frozenset[str]]
    seed: int
    harness_plugins: list[SupervisedPlugin] = field(default_factory=list)
    # True when the scenario adds turns while training (a search): ``used_params`` then grows, and a
    # strategy that sizes itself by the number of experiences up front must refuse (require_fixed_schedule)
    adaptive: bool = False

    def require_fixed_schedule(self, strategy: str, why: str) -> None:
        """Raise a clear ValueError when the schedule is not known up front (see ``adaptive``)."""
        if self.adaptive:
            raise ValueError(
                f"{strategy} {why}, so it needs the whole schedule up front; this scenario decides "
                "its turns while training (a search)"
            )

    def own_name(self, name: str) -> str:
        """The name the user's own module gives the parameter the harness calls ``name``.

        Strategies see ``model.named_parameters()`` of the harness's model: a ``custom`` scenario wraps the
        user's module, so its names carry the prefix ``net.`` (``net.trunk.1.weight`` is the user's
        ``trunk.1.weight``). ``used_params`` use the harness's names."""
        prefix = self.parameter_prefix
        return name[len(prefix) :] if prefix and name.startswith(prefix) else name

    def harness_name(self, own_name: str) -> str:
        """The harness's name of the user's parameter ``own_name`` (inverse of :meth:`own_name`)."""
        return self.parameter_prefix + own_name

    @property
    def parameter_prefix(self) -> str:
        """What the harness's model puts before the user's parameter names ('' for the built-in scenarios)."""
        return getattr(self.model, "parameter_prefix", "")

    def shared_params(self, index: int) -> frozenset[str]:
        """Parameters the model of experience ``index`` uses that an earlier experience's model used too."""
        return shared_params(self.used_params, index)

    def make_optimizer(self, parameters: ParamsT | None = None) -> torch.optim.Optimizer:
        """The suite's optimizer over ``parameters`` (default: all of the model's)."""
        cfg = self.training
        parameters = self.model.parameters() if parameters is None else parameters
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(parameters, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        return torch.optim.Adam(parameters, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def _accelerator_options(self) -> dict[str, Any]:
        """``precision`` / ``channels_last`` / ``grad_clip_norm`` for the template when set (a template built on
        :class:`~forgetbench.benchmark.train.template.LeanLoopMixin` and ``FastLoadersMixin`` takes them; any other
        template then fails loudly instead of silently training in fp32)."""
        options: dict[str, Any] = {}
        if self.training.precision != "fp32":
            options["precision"] = self.training.precision
        if self.training.channels_last:
            options["channels_last"] = True
        if self.training.grad_clip_norm is not None:
            options["grad_clip_norm"] = self.training.grad_clip_norm
        return options

    def build(
        self,
        plugins: Sequence[SupervisedPlugin] = (),
        template: type[SupervisedTemplate] | None = None,
        **kwargs: Any,
    ) -> SupervisedTemplate:
        """An Avalanche template (default the harness's ``FastSupervisedTemplate``) set up with the suite's training
        config and the harness plugins."""
        if template is None:
            from forgetbench.benchmark.train.template import FastSupervisedTemplate

            template = FastSupervisedTemplate
        return template(
            model=self.model,
            optimizer=kwargs.pop("optimizer", None) or self.make_optimizer(),
            criterion=kwargs.pop("criterion", None) or nn.CrossEntropyLoss(),
            train_mb_size=self.training.batch_size,
            train_epochs=self.training.epochs,
            eval_mb_size=self.training.eval_batch_size,
            device=self.device,
            plugins=[*plugins, *self.harness_plugins],
            evaluator=_silent_evaluator(),
            data_seed=self.seed,
            **self._accelerator_options(),
            **kwargs,
        )


def shared_params(used_params: Sequence[frozenset[str]], index: int) -> frozenset[str]:
    """``used_params[index]`` & (``used_params[0]`` | ... | ``used_params[index - 1]``): the one
    definition of "shared with an earlier model" every strategy uses (wpl, spg, l2, pic...)."""
    earlier = frozenset().union(*used_params[:index])
    return frozenset(used_params[index]) & earlier


def importance_needed(
    used_params: Sequence[frozenset[str]] | None,
    index: int,
    *,
    adaptive: bool = False,
    every_parameter: bool = False,
    optimizer: torch.optim.Optimizer | None = None,
) -> bool:
    """Whether the importance of experience ``index``'s model can change any later training.

    ``True`` whenever the schedule is not known up front (``used_params`` None, or ``adaptive``: a search adds
    turns while training). Otherwise ``False`` after the last experience (nothing is trained again), and:

    * for a penalty on the parameters a later model shares (WPL, ``every_parameter`` False): when no later model
      uses a parameter that model ``index`` uses; a later penalty never reads its entries;
    * for a penalty on every parameter (EWC, MAS, ``every_parameter`` True): when model ``index`` shares no
      parameter with any other model, earlier or later, and no parameter group has weight decay; its parameters
      then sit at their anchor with no data gradient for the rest of the run, and its importance is 0 on every
      other parameter. (A parameter it shares with an *earlier* model is pulled towards the combined anchor
      of the earlier quadratics later on, so its importance matters even when no later model uses it.)

    A plugin that skips its pass then changes no number of the run.
    """
    if used_params is None or adaptive:
        return True
    later = used_params[index + 1 :]
    if not later:
        return False
    own = frozenset(used_params[index])
    if not every_parameter:
        return bool(own & frozenset().union(*later))
    if optimizer is None or any(group.get("weight_decay", 0) for group in optimizer.param_groups):
        return True
    others = frozenset().union(*used_params[:index], *later)
    return bool(own & others)


def _silent_evaluator() -> EvaluationPlugin:
    """No metrics, no loggers: the harness evaluates on its own, off the training path."""
    from avalanche.training.plugins import EvaluationPlugin

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No loggers specified")
        return EvaluationPlugin(loggers=[])


StrategyBuilder = Callable[[StrategyContext, Any], "SupervisedTemplate"]  # Any: each builder takes its own params model
STRATEGIES: Registry[StrategyBuilder] = _STRATEGIES
register_strategy = STRATEGIES.register
