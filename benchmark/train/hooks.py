"""Avalanche's plugin protocol by duck typing, so that a plugin class is declared without importing Avalanche.

An Avalanche template calls each plugin's callbacks by name (``trigger_plugins``: ``getattr(plugin, event)``) and
checks that a plugin implements no callback it does not know (``BaseTemplate._check_plugin_compatibility``, over
the names starting with ``before`` / ``after``). :class:`SupervisedHooks` has the 26 callbacks of Avalanche's
``SupervisedPlugin`` (``tests/train/test_template.py`` holds the two lists equal) as no-ops, and its
``supports_distributed`` flag: every forgetbench plugin derives from it, so a strategy module (and a config that
names it) is read without importing Avalanche; the template that calls them imports it when training starts. The
lean loop skips these no-ops as it skips Avalanche's (``template.active_callbacks``).

It also declares what a plugin does when K seeds of one run train as one stacked model
(:mod:`forgetbench.benchmark.run.batching`): :meth:`SupervisedHooks.lockstep`,
:meth:`SupervisedHooks.lockstep_step` and :meth:`SupervisedHooks.lockstep_importance`, classmethods the batch calls
with the K seeds' instances of the class. Their defaults keep every seed's own callbacks and passes, which is always
faithful; a plugin overrides them to act once for all the seeds.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

SUPERVISED_CALLBACKS = tuple(
    f"{when}_{what}"
    for what in (
        "training",
        "training_exp",
        "train_dataset_adaptation",
        "training_epoch",
        "training_iteration",
        "forward",
        "backward",
        "update",
        "eval",
        "eval_dataset_adaptation",
        "eval_exp",
        "eval_iteration",
        "eval_forward",
    )
    for when in ("before", "after")
)


class SupervisedHooks:
    """Every callback of Avalanche's ``SupervisedPlugin`` as a no-op (see :data:`SUPERVISED_CALLBACKS`), and its
    ``supports_distributed`` flag: what a template asks of a plugin."""

    supports_distributed: bool = False

    def __init__(self) -> None:
        super().__init__()

    @classmethod
    def lockstep(cls, plugins: Sequence[Any], stacked_of: Callable[[list[Any]], list[Any]]) -> dict[str, Any] | None:
        """The K seeds' instances of this class in a batch (``stacked_of`` maps a seed's parameters to the stacked
        tensors whose rows they are): callbacks ``event -> f(losses)`` that replace the instances' own at that event
        (``losses``: the seeds' losses, ``(K,)``; ``backward_end`` and ``epoch_end`` are the batch's own events), each
        entry by entry the arithmetic of the seed's own callback. None (the default): each seed's callbacks run."""
        return None

    @classmethod
    def lockstep_step(cls, plugins: Sequence[Any], step: Any) -> dict[str, Any] | None:
        """As :meth:`lockstep`, for a plugin that needs the step's inputs and the seeds' models on them (a
        distillation's teacher and student). ``step`` is the batch's current step: ``strategies`` (the seats'),
        ``stepping`` (the seats that step now), ``full`` (every seat steps on a full batch), ``forward(key)`` (the
        seats' models ``key`` on the step's inputs, ``(K, batch, ...)``, with autograd) and
        ``frozen_forward(models, key)`` (K frozen models of the seats' structure on them, without autograd), each
        row bit for bit its seat's own model's output. None (the default): each seed's callbacks run."""
        return None

    @classmethod
    def lockstep_importance(
        cls, plugins: Sequence[Any], strategies: Sequence[Any], stacked_pass: Callable[[Any], Any]
    ) -> None:
        """Before the K seeds end an experience: an importance pass each instance would make may be taken from
        ``stacked_pass(kind)`` (every seed's at once, or None; ``kind`` an estimator's pass of
        :mod:`forgetbench.strategies.passes`). The default: each seed makes its own."""
        return None


def _no_op(self: Any, strategy: Any, *args: Any, **kwargs: Any) -> Any:
    return None


for _name in SUPERVISED_CALLBACKS:
    setattr(SupervisedHooks, _name, _no_op)
