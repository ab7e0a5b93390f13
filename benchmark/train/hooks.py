"""Avalanche's plugin protocol by duck typing, so that a plugin class is declared without importing Avalanche.

An Avalanche template calls each plugin's callbacks by name (``trigger_plugins``: ``getattr(plugin, event)``) and
checks that a plugin implements no callback it does not know (``BaseTemplate._check_plugin_compatibility``, over
the names starting with ``before`` / ``after``). :class:`SupervisedHooks` has the 26 callbacks of Avalanche's
``SupervisedPlugin`` (``tests/train/test_template.py`` holds the two lists equal) as no-ops, and its
``supports_distributed`` flag: every forgetbench plugin derives from it, so a strategy module (and a config that
names it) is read without importing Avalanche; the template that calls them imports it when training starts. The
lean loop skips these no-ops as it skips Avalanche's (``template.active_callbacks``).
"""

from __future__ import annotations

from typing import Any

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


def _no_op(self: Any, strategy: Any, *args: Any, **kwargs: Any) -> Any:
    return None


for _name in SUPERVISED_CALLBACKS:
    setattr(SupervisedHooks, _name, _no_op)
