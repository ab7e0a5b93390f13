"""``lwf``: Learning without Forgetting (Li & Hoiem, TPAMI 2017), Avalanche's LwFPlugin.

A copy f^{prev} of the model is kept after each experience. While training experience t, for every
earlier task k the current model's head-k outputs on the *current* inputs are distilled towards the
copy's, with temperature T:

    L(theta) = L_t(theta) + alpha * sum_{k<t} KD_T(f_k(x; theta), f^{prev}_k(x)),
    KD_T(z, z') = KL(softmax(z'/T) || softmax(z/T))   (Avalanche's distillation loss)

Only heads of earlier tasks (and the classes they saw) are distilled; multi-head models are run once
per known head (Avalanche's ``forward_all_tasks``). Hyperparameters:

* ``alpha`` (>= 0): the distillation weight, or a list with one weight per experience (experience t uses ``alpha[t]``,
Avalanche's form).
* ``temperature`` (> 0): the distillation temperature T.
* ``units``: ``previous`` (Avalanche's: for each earlier task
label, the student's softmax over that task's classes only) or ``seen`` (van de Ven & Tolias's class-IL
LwF, for one head shared by every task: a single term on the batch's output, the student's softmax over
every class seen so far, the current experience's too, against the copy's distribution over all the
earlier classes together, padded with zeros, so the distillation competes with the new classes:

    KD_T = - sum_{c in earlier} q_c log softmax_{c' in earlier + current}(z_{c'} / T)_c,
    q = softmax_{c in earlier}(z^{prev}_c / T)

``seen`` needs every experience to train the same parameters (one shared head; with per-task heads use
``previous``).

van de Ven & Tolias's code ("Three scenarios", 2019) weighs the task-IL losses as
(1/t) L_t + (1 - 1/t) mean_{k<t} T^2 CE_T(...); times t (a constant per experience, which Adam's
update ignores) that is L_t + T^2 sum_{k<t} KD_T: ``alpha = T^2`` here (4 at T = 2).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from typing import TYPE_CHECKING, Any, Literal, Sequence

from pydantic import NonNegativeFloat, PositiveFloat

from forgetbench.strategies.base import StrategyContext, StrategyParams, register_strategy, strength
from forgetbench.strategies.plugin import Plugin, on_avalanche_base

if TYPE_CHECKING:  # Avalanche is imported when training starts, never to read this strategy's params
    from avalanche.training.templates import SupervisedTemplate
    from avalanche.training.plugins import LwFPlugin as _LwFPluginBase
    from avalanche.training.regularization import LearningWithoutForgetting as _LwFRegularizerBase
else:  # at run time the methods sit on a plain class, put on Avalanche's when first built
    _LwFPluginBase = object
    _LwFRegularizerBase = object


class LwFParams(StrategyParams):
    alpha: NonNegativeFloat | list[NonNegativeFloat] = strength(1.0)
    temperature: PositiveFloat = 2.0
    units: Literal["previous", "seen"] = "previous"


class _SeenUnits(_LwFRegularizerBase):
    """Avalanche's LwF regulariser as one distillation over every earlier class on the batch's own output
    (``units: seen``): the student's softmax spans the earlier classes *and* the current experience's;
    the copy's distribution is over the earlier classes, zero elsewhere (the methods of
    ``SeenUnitsDistillation``, on Avalanche's ``LearningWithoutForgetting``)."""

    def __init__(self, alpha: float | Sequence[float], temperature: float) -> None:
        super().__init__(alpha, temperature)
        self.previous_units: list[int] = []  # every earlier class
        self.student_units: list[int] = []  # the earlier classes, then the current experience's new ones
        self.task_labels: torch.Tensor | None = None  # the batch's, set before each penalty

    def start_experience(self, current_classes) -> None:
        """Fix the units of this experience's penalty (the earlier classes cannot change within it)."""
        self.previous_units = sorted(set().union(*self.prev_classes_by_task.values()))
        new = sorted({int(c) for c in current_classes} - set(self.previous_units))
        self.student_units = self.previous_units + new

    def _lwf_penalty(self, out, x, curr_model):
        if self.prev_model is None:
            return 0
        from avalanche.models.utils import avalanche_forward

        with torch.no_grad():
            prev_out = avalanche_forward(self.prev_model, x, self.task_labels)
        log_p = torch.log_softmax(out[:, self.student_units] / self.temperature, dim=1)[:, : len(self.previous_units)]
        q = torch.softmax(prev_out[:, self.previous_units] / self.temperature, dim=1)
        return F.kl_div(log_p, q, reduction="batchmean")


class _LwFState(_LwFPluginBase):
    """Avalanche's LwF plugin with the state protocol: its frozen copy of the previous model (the methods of
    ``LwFStatePlugin``, on Avalanche's ``LwFPlugin``)."""

    def __init__(self, model: torch.nn.Module, alpha: float | list[float], temperature: float, units: str = "previous"):
        super().__init__(alpha=alpha, temperature=temperature)
        if units == "seen":
            self.lwf = seen_units_distillation()(alpha, temperature)
        self.model = model  # the strategy's model: a resumed copy is loaded into a deepcopy of it

    def before_training_exp(self, strategy, **kwargs) -> None:
        if isinstance(self.lwf, _SeenUnits):
            self.lwf.start_experience(strategy.experience.classes_in_this_experience)

    def before_backward(self, strategy, **kwargs) -> None:
        if isinstance(self.lwf, _SeenUnits):
            self.lwf.task_labels = strategy.mb_task_id
        super().before_backward(strategy, **kwargs)

    @classmethod
    def lockstep_step(cls, plugins: Sequence["_LwFState"], step: Any) -> dict[str, Any] | None:
        """In a batch of K seeds (:mod:`forgetbench.benchmark.run.batching`): the seeds' copies and models give each
        earlier task's logits once for all seeds (``step.frozen_forward`` of the copies, ``step.forward`` of the
        models), and each seed's distillation is then Avalanche's own on its rows: entry by entry the arithmetic of
        its own ``before_backward``. Each seed's own callback runs at a step where not every batch is full, and for
        models whose ``forward_all_tasks`` is their own (one trunk pass for every head) or ``units: seen``."""
        if any(isinstance(plugin.lwf, _SeenUnits) for plugin in plugins):
            return None

        def before_backward(losses: torch.Tensor) -> None:
            strategies, copies = step.strategies, [plugin.lwf.prev_model for plugin in plugins]
            earlier = _earlier_tasks(plugins, strategies) if step.full else None
            if earlier is None:
                for k in step.stepping:
                    plugins[k].before_backward(strategies[k])
                return
            teacher = {task: step.frozen_forward(copies, task) for task in earlier}
            student = {task: step.forward(task) for task in earlier}
            for k, (plugin, strategy) in enumerate(zip(plugins, strategies)):
                lwf = plugin.lwf
                distillation: Any = 0  # Avalanche's _lwf_penalty, term by term in its order
                for task in earlier:
                    units = lwf.prev_classes_by_task[task]
                    distillation += lwf._distillation_loss(student[task][k], teacher[task][k], units)
                alpha = lwf.alpha[lwf.expcount] if isinstance(lwf.alpha, (list, tuple)) else lwf.alpha
                strategy.loss += alpha * distillation

        return {"before_backward": before_backward}

    def state_dict(self) -> dict:
        lwf = self.lwf
        return {
            "prev_model": None if lwf.prev_model is None else lwf.prev_model.state_dict(),
            "expcount": lwf.expcount,
            "prev_classes_by_task": {str(k): sorted(int(c) for c in v) for k, v in lwf.prev_classes_by_task.items()},
        }

    def load_state_dict(self, state) -> None:
        lwf = self.lwf
        lwf.prev_model = None
        if state["prev_model"] is not None:
            lwf.prev_model = copy.deepcopy(self.model)
            lwf.prev_model.load_state_dict(state["prev_model"])
        lwf.expcount = int(state["expcount"])
        lwf.prev_classes_by_task.clear()
        lwf.prev_classes_by_task.update({int(k): set(v) for k, v in state["prev_classes_by_task"].items()})

    def state_bytes(self) -> int:
        previous = self.lwf.prev_model
        if previous is None:
            return 0
        return sum(t.numel() * t.element_size() for t in previous.state_dict().values())


def _earlier_tasks(plugins: Sequence[_LwFState], strategies: Sequence[Any]) -> list[int] | None:
    """The tasks every seed distils at this step, in the order Avalanche's penalty sums them (its copy's known
    tasks that an earlier experience trained); None where the seeds' differ, a seed has no copy yet, or a model's
    ``forward_all_tasks`` is not the per-task one (stacked per task, its logits would be computed otherwise)."""
    from avalanche.models import MultiTaskModule

    copies = [plugin.lwf.prev_model for plugin in plugins]
    if any(copy is None for copy in copies):
        return None
    for model in [*copies, *(strategy.model for strategy in strategies)]:
        if (
            not isinstance(model, MultiTaskModule)
            or type(model).forward_all_tasks is not MultiTaskModule.forward_all_tasks
        ):
            return None
    tasks = [
        [task for task in copy.known_train_tasks_labels if task in plugin.lwf.prev_classes_by_task]
        for copy, plugin in zip(copies, plugins)
    ]
    return tasks[0] if all(mine == tasks[0] for mine in tasks) else None


@register_strategy("lwf", params=LwFParams)
def build_lwf(ctx: StrategyContext, params: LwFParams) -> SupervisedTemplate:
    """Learning without Forgetting: distil earlier heads' outputs on current data (Li & Hoiem 2017)."""
    if isinstance(params.alpha, list) and len(params.alpha) < len(ctx.used_params):
        raise ValueError(
            f"lwf alpha: a list needs one weight per experience ({len(ctx.used_params)}), got {len(params.alpha)}"
        )
    if params.units == "seen" and len({frozenset(used) for used in ctx.used_params}) > 1:
        raise ValueError(
            "lwf units 'seen' distils one head shared by every experience (class-IL); this "
            "scenario's experiences train different parameters (per-task heads): use units 'previous'"
        )
    return ctx.build(
        plugins=[lwf_state_plugin()(ctx.model, alpha=params.alpha, temperature=params.temperature, units=params.units)]
    )


def seen_units_distillation() -> type:
    def base() -> type:
        from avalanche.training.regularization import LearningWithoutForgetting

        return LearningWithoutForgetting

    return on_avalanche_base("SeenUnitsDistillation", _SeenUnits, base)


def lwf_state_plugin() -> type:
    def base() -> type:
        from avalanche.training.plugins import LwFPlugin

        return LwFPlugin

    return on_avalanche_base("LwFStatePlugin", _LwFState, base, Plugin)


def __getattr__(name: str) -> Any:  # `from ...lwf import LwFStatePlugin` builds it then (and imports Avalanche)
    built = {"SeenUnitsDistillation": seen_units_distillation, "LwFStatePlugin": lwf_state_plugin}.get(name)
    if built is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return built()
