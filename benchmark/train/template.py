"""The training template every strategy runs on: Avalanche's SupervisedTemplate, made lean.

:class:`FastLoadersMixin` replaces Avalanche's sample-by-sample data loaders with
:class:`~forgetbench.benchmark.data.loaders.TensorBatchLoader`; :class:`LeanLoopMixin` keeps Avalanche's training
iteration (same plugin events, same order, same forward/loss/backward/step) but takes the
bookkeeping off the per-iteration path. Both can be mixed into any Avalanche template class.

Where the time went in Avalanche 0.6.0's loop on a small MLP (cProfile, Split MNIST): the
plugin dispatch (``trigger_plugins`` calls every plugin for each of eight events per iteration,
mostly inherited no-ops, and the :class:`EvaluationPlugin` answers every event through a
``__getattribute__`` fallback that swaps ``strategy.experience`` for a logging view even when it
has no metrics and no loggers), the ``torch.zeros(1)`` empty loss it adds the criterion to, and the
multi-task forward that inspects the batch's task labels on every step.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, Callable

import torch
from avalanche.core import BasePlugin, BaseSGDPlugin, SupervisedPlugin
from avalanche.training.plugins import EvaluationPlugin
from avalanche.training.templates import SupervisedTemplate
from avalanche.training.templates.base_sgd import PeriodicEval

from forgetbench.benchmark.train.hooks import SupervisedHooks
from forgetbench.benchmark.data.loaders import TensorBatchLoader, dataset_tensors, to_device
from forgetbench.benchmark.data.models import TaskRoutedModule

# The mixins below are mixed into SupervisedTemplate and use its attributes; a type checker reads them as its
# subclasses (Avalanche has no type information, so that base is Any to it), Python as plain classes.
_Template: Any = SupervisedTemplate if TYPE_CHECKING else object

_NO_OP_OWNERS = (BasePlugin, BaseSGDPlugin, SupervisedPlugin, SupervisedHooks)  # callbacks that do nothing
ITERATION_EVENTS = (
    "before_training_iteration",
    "before_forward",
    "after_forward",
    "before_backward",
    "after_backward",
    "before_update",
    "after_update",
    "after_training_iteration",
)


def active_callbacks(plugins: list[Any], event: str) -> list[Callable[..., Any]]:
    """The bound ``event`` callbacks of ``plugins`` that can do something, in plugin order.

    Skipped (provably no effect): callbacks a plugin inherits from Avalanche's no-op bases, an
    :class:`EvaluationPlugin` with no metrics and no loggers (it would only publish nothing), and
    :class:`PeriodicEval` unless it evaluates every ``eval_every > 0`` iterations.
    """
    callbacks = []
    for plugin in plugins:
        if isinstance(plugin, EvaluationPlugin):
            if not plugin.metrics and not plugin.loggers:
                continue
        elif isinstance(plugin, PeriodicEval):
            if not (plugin.peval_mode == "iteration" and plugin.eval_every > 0):
                continue
        owner = next((c for c in type(plugin).__mro__ if event in c.__dict__), None)
        if owner is None and not isinstance(plugin, EvaluationPlugin):
            continue
        if owner in _NO_OP_OWNERS:
            continue
        callbacks.append(getattr(plugin, event))
    return callbacks


class FastLoadersMixin(_Template):
    """Serve training and evaluation batches by slicing tensors.

    ``data_seed`` seeds the shuffling generator, so the order of training batches depends on the
    seed alone (and is reproduced by a plain PyTorch loop using the same generator).
    """

    mbatch: list[torch.Tensor]  # the current minibatch (inputs, targets, task labels), set by the template's loop

    def __init__(self, *, data_seed: int = 0, channels_last: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.data_generator = torch.Generator().manual_seed(data_seed)
        self.channels_last = channels_last

    def make_train_dataloader(self, shuffle: bool = True, drop_last: bool = False, **kwargs) -> None:
        # once per experience: the experience's tensors move to the accelerator (pinned host
        # memory when they do not fit), so a training step copies nothing from the host
        self.dataloader = TensorBatchLoader(
            to_device(dataset_tensors(self.adapted_dataset), self.device),
            self.train_mb_size,
            shuffle=shuffle,
            generator=self.data_generator,
            drop_last=drop_last,
        )

    def make_eval_dataloader(self, **kwargs) -> None:
        self.dataloader = TensorBatchLoader(dataset_tensors(self.adapted_dataset), self.eval_mb_size, shuffle=False)

    def _unpack_minibatch(self) -> None:
        if self.device.type != "cpu":
            self.mbatch = [t.to(self.device, non_blocking=True) for t in self.mbatch]
        if self.channels_last and self.mbatch[0].dim() == 4:
            self.mbatch[0] = self.mbatch[0].contiguous(memory_format=torch.channels_last)


class LeanLoopMixin(_Template):
    """Avalanche's SGD training epoch with the per-iteration overhead removed.

    Same events in the same order as ``SGDUpdate.training_epoch``; only callbacks that can act
    are called (:func:`active_callbacks`, resolved once per epoch so plugins added between
    epochs are seen). The loss starts as the criterion's output instead of ``zeros(1) +
    criterion`` unless a plugin hooks ``before_forward``/``after_forward`` (where it could add
    to the empty loss). A :class:`~forgetbench.benchmark.data.models.TaskRoutedModule` without hooks on its top
    module is called through ``forward_single_task`` when the loader's data is one task.
    """

    def __init__(self, *, precision: str = "fp32", grad_clip_norm: float | None = None, **kwargs):
        super().__init__(**kwargs)
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        self.precision = precision
        self.grad_clip_norm = grad_clip_norm

    def optimizer_step(self) -> None:
        """Clip the global gradient norm (``grad_clip_norm``), then step: after every plugin's gradient
        work (penalties, masks), so the step that is taken is the clipped one."""
        if self.grad_clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip_norm, foreach=True)
        super().optimizer_step()

    def autocast(self):
        """The context the forward pass and the data loss run in: bf16 autocast, or nothing."""
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def training_epoch(self, **kwargs) -> None:
        autocast = self.autocast()  # re-entered every step (the penalties added later stay fp32)
        hooks = {event: active_callbacks(self.plugins, event) for event in ITERATION_EVENTS}
        before_it, before_fw, after_fw, before_bw, after_bw, before_up, after_up, after_it = (
            hooks[event] for event in ITERATION_EVENTS
        )
        loss_may_be_touched = bool(before_fw or after_fw)
        for self.mbatch in self.dataloader:  # noqa: B020 - Avalanche's loop: the batch lives on the strategy
            if self._stop_training:
                break
            self._unpack_minibatch()
            for callback in before_it:
                callback(self, **kwargs)

            self.optimizer.zero_grad()
            if loss_may_be_touched:
                self.loss = self._make_empty_loss()
                for callback in before_fw:
                    callback(self, **kwargs)
                with autocast:
                    self.mb_output = self.forward()
                for callback in after_fw:
                    callback(self, **kwargs)
                with autocast:
                    self.loss = self.loss + self.criterion()
            else:
                with autocast:
                    self.mb_output = self.forward()
                    self.loss = self.criterion()

            for callback in before_bw:
                callback(self, **kwargs)
            self.backward()
            for callback in after_bw:
                callback(self, **kwargs)

            for callback in before_up:
                callback(self, **kwargs)
            self.optimizer_step()
            for callback in after_up:
                callback(self, **kwargs)

            for callback in after_it:
                callback(self, **kwargs)

    def forward(self):
        task = getattr(self.dataloader, "single_task", None)
        model = self.model
        if (
            task is not None
            and isinstance(model, TaskRoutedModule)
            and not model._forward_hooks
            and not model._forward_pre_hooks
        ):
            return model.forward_single_task(self.mbatch[0], task)
        return super().forward()


class FastSupervisedTemplate(LeanLoopMixin, FastLoadersMixin, SupervisedTemplate):
    """Avalanche's SupervisedTemplate (naive fine-tuning plus plugins), tensor-sliced and lean."""
