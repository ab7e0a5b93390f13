"""Model families: trunks and multi-model networks that share parameters.

Every network here is an Avalanche :class:`~avalanche.models.MultiTaskModule`: the task label fed
with a batch selects which *model* of the family runs (a head of a multi-head net, model A or B of
the two-model setup, an architecture of a supernet). Parameters used by several models are the same
``nn.Parameter`` objects, so sharing is real, not copied.

Avalanche is imported when the first network is built, never to read a config: :class:`TaskRoutedModule` is
declared on ``nn.Module`` and becomes a ``MultiTaskModule`` subclass (its base set to Avalanche's class, every
subclass with it) in its constructor, through :func:`on_avalanche`. Nothing can hold one before it is built.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from typing import TYPE_CHECKING, Any, Iterator, Literal, Sequence

import torch
from torch import nn

if TYPE_CHECKING:  # what a type checker sees: what every network is once built
    from avalanche.models import MultiTaskModule as _NetworkBase
else:
    _NetworkBase = nn.Module


def mlp_trunk(input_shape: Sequence[int], widths: Sequence[int]) -> tuple[nn.Sequential, int]:
    """Flatten, then ``Linear -> ReLU`` for each width. Returns the trunk and its output size."""
    layers: list[nn.Module] = [nn.Flatten()]
    fan_in = int(math.prod(input_shape))
    for width in widths:
        layers += [nn.Linear(fan_in, width), nn.ReLU()]
        fan_in = width
    return nn.Sequential(*layers), fan_in


def cnn_trunk(input_shape: Sequence[int], widths: Sequence[int]) -> tuple[nn.Sequential, int]:
    """``Conv3x3 -> ReLU -> MaxPool2`` per width (channels), then flatten.

    1-D inputs (C, L) use Conv1d; images (C, H, W) Conv2d. Pooling stops once the
    spatial size reaches 1.
    """
    spatial = list(input_shape[1:])
    conv, pool = (nn.Conv1d, nn.MaxPool1d) if len(spatial) == 1 else (nn.Conv2d, nn.MaxPool2d)
    layers: list[nn.Module] = []
    channels = input_shape[0]
    for width in widths:
        layers += [conv(channels, width, kernel_size=3, padding=1), nn.ReLU()]
        if min(spatial) >= 2:
            layers.append(pool(2))
            spatial = [s // 2 for s in spatial]
        channels = width
    layers.append(nn.Flatten())
    out = channels * int(math.prod(spatial))
    return nn.Sequential(*layers), out


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 conv + batch-norm layers and a (projected when the shape changes) skip."""

    def __init__(self, channels_in: int, channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or channels_in != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(channels_in, channels, 1, stride=stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def resnet18_trunk(input_shape: Sequence[int], widths: Sequence[int]) -> tuple[nn.Sequential, int]:
    """The reduced ResNet-18 of continual-learning papers (GEM, Lopez-Paz & Ranzato 2017; Mammoth's
    ``resnet18`` with ``nf = 20``): a 3x3 stem of ``nf`` channels, four stages of two basic blocks with
    nf, 2nf, 4nf, 8nf channels (strides 1, 2, 2, 2), global average pooling. ``widths = [nf]``.
    About 1.1M weights at nf = 20 (11M at nf = 64, torchvision's width)."""
    if len(input_shape) != 3:
        raise ValueError(f"trunk 'resnet18' needs image inputs (C, H, W), got shape {tuple(input_shape)}")
    (nf,) = widths
    layers: list[nn.Module] = [nn.Conv2d(input_shape[0], nf, 3, padding=1, bias=False), nn.BatchNorm2d(nf), nn.ReLU()]
    channels = nf
    for stage, stride in enumerate((1, 2, 2, 2)):
        width = nf * 2**stage
        layers += [BasicBlock(channels, width, stride), BasicBlock(width, width, 1)]
        channels = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers), channels


TRUNKS = {"mlp": mlp_trunk, "cnn": cnn_trunk, "resnet18": resnet18_trunk}


TrunkKind = Literal["mlp", "cnn", "resnet18"]


def make_trunk(kind: TrunkKind, input_shape: Sequence[int], widths: Sequence[int]) -> tuple[nn.Sequential, int]:
    """Build a trunk of the given kind; returns ``(module, output_features)``."""
    return TRUNKS[kind](input_shape, widths)


class TaskRoutedModule(_NetworkBase):
    """Multi-task module whose batches usually hold one task: skip Avalanche's per-task split.

    Avalanche's ``MultiTaskModule.forward`` calls ``torch.unique`` and scatters outputs for every
    batch. Batches of one task label (the common case here) go straight to ``forward_single_task``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # a network built to be counted (on the meta device) or checked (a preflight) never meets Avalanche
        if not _CHECKING.get() and not torch.empty(0).is_meta:
            on_avalanche()  # the first network built makes this class (and every subclass) a MultiTaskModule
        super().__init__(*args, **kwargs)

    # what this module's parameter names put before the names of the module it wraps, if it wraps one
    # (the `custom` scenario's `net.`); strategies map names with StrategyContext.own_name / harness_name
    parameter_prefix: str = ""

    def forward(self, x: torch.Tensor, task_labels: torch.Tensor | int | None) -> torch.Tensor:
        if isinstance(task_labels, torch.Tensor) and task_labels.numel() > 0:
            first = task_labels[0]
            if bool((task_labels == first).all()):
                return self.forward_single_task(x, int(first))
        return super().forward(x, task_labels)

    def used_parameter_names(self, task_label: int) -> frozenset[str]:
        """Names (as in ``named_parameters``) of the parameters model ``task_label`` uses."""
        raise NotImplementedError


# `model(x)`, told apart from `model(x, None)` (see MultiHeadNet.forward); Ellipsis, not object(): torch.fx can trace it
# (Avalanche's RAR traces the model to read a layer's features)
_NOT_GIVEN: Any = ...


class MultiHeadNet(TaskRoutedModule):
    """A shared trunk with one linear head per task: model t = (trunk, heads[t]); with
    ``shared_head`` one head (``head_sizes`` of length 1) that every task uses and the task label
    is never read (domain- and class-incremental settings).

    ``seen_classes_only`` (class-incremental): the one head covers the classes seen in training so far.
    The units of classes no training experience has shown yet output a constant ``UNSEEN_LOGIT`` (so
    they take no part in the softmax and receive no gradient), at training and at test time; which
    classes have been seen is a buffer, updated by Avalanche's model adaptation before each training
    experience and saved with the model. This is van de Ven & Tolias's "active classes" (2019) and
    Avalanche's ``IncrementalClassifier(masking=True)``, without growing the layer.
    """

    UNSEEN_LOGIT = -1000.0  # Avalanche's mask value: exp(-1000) underflows to 0 in any float type
    # Keep the trunk's output of the last forward pass as `self.features` (Avalanche's convention, which its
    # FeatureDistillationPlugin reads). Off by default: a kept activation would stop `copy.deepcopy(model)`.
    keep_features: bool = False

    def __init__(
        self,
        trunk: nn.Module,
        trunk_features: int,
        head_sizes: Sequence[int],
        shared_head: bool = False,
        seen_classes_only: bool = False,
    ):
        super().__init__()
        if shared_head and len(head_sizes) != 1:
            raise ValueError(f"a shared head has one size, got {list(head_sizes)}")
        if seen_classes_only and not shared_head:
            raise ValueError("seen_classes_only needs the one shared head (class-incremental)")
        self.trunk = trunk
        self.heads = nn.ModuleList(nn.Linear(trunk_features, n) for n in head_sizes)
        self.shared_head = shared_head
        self.max_class_label = max(head_sizes)
        self.seen_classes_only = seen_classes_only
        if seen_classes_only:
            self.register_buffer("seen_classes", torch.zeros(head_sizes[0], dtype=torch.bool))

    def adaptation(self, experience) -> None:
        super().adaptation(experience)
        if self.seen_classes_only and self.training:
            classes = torch.as_tensor(
                [int(c) for c in experience.classes_in_this_experience],
                dtype=torch.long,
                device=self.seen_classes.device,
            )
            self.seen_classes[classes] = True

    def head_index(self, task_label: int) -> int:
        return 0 if self.shared_head else task_label

    def forward(self, x: torch.Tensor, task_labels: Any = _NOT_GIVEN) -> Any:
        """Logits for ``task_labels``. Two Avalanche conventions meet here: ``model(x)`` (a plain module, as DER, GSS,
        MIR and RAR call it) gives the one head's logits, and a network with a head per task refuses it;
        ``model(x, None)`` (a MultiTaskModule, as Avalanche's LwF calls it) gives every known task's output as a
        dict (``forward_all_tasks``)."""
        one_head = self.shared_head or len(self.heads) == 1
        if task_labels is _NOT_GIVEN:
            if not one_head:
                raise ValueError(
                    f"{type(self).__name__} was called without task labels, but its tasks have heads of "
                    "their own; a method that calls model(x) needs a scenario with one head for every task"
                )
            return self.forward_single_task(x, 0)
        if one_head and task_labels is not None:  # the task label is never read: one pass, whatever tasks it mixes
            return self.forward_single_task(x, 0)
        return super().forward(x, task_labels)

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        return self._head_logits(self._features(x), task_label)

    def forward_all_tasks(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """Every task seen in training so far -> its logits on ``x`` (what ``model(x, None)`` returns, LwF's call),
        from one trunk pass: Avalanche's default runs the whole model once per task, so LwF's per-step cost grew
        with the number of tasks (T trunk passes for the copy and T more, backpropagated, for the model). The same
        logits; a trunk with dropout draws one mask for every head, and batch norm updates its running statistics
        once per call, as in Li & Hoiem's LwF, where the heads read one shared feature vector."""
        features = self._features(x)
        by_head: dict[int, torch.Tensor] = {}  # a shared head's logits are computed once for every task label
        logits = {}
        for task in self.known_train_tasks_labels:
            head = self.head_index(task)
            if head not in by_head:
                by_head[head] = self._head_logits(features, task)
            logits[task] = by_head[head]
        return logits

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        features = self.trunk(x)
        if self.keep_features:  # Avalanche's feature distillation reads `model.features` after a forward pass
            self.features = features
        return features

    def _head_logits(self, features: torch.Tensor, task_label: int) -> torch.Tensor:
        out = self.heads[self.head_index(task_label)](features)
        if self.seen_classes_only:
            # before any training every unit is live (nothing is seen yet); no host sync on the check
            unseen = ~self.seen_classes & self.seen_classes.any()
            out = out.masked_fill(unseen, self.UNSEEN_LOGIT)
        return out

    def get_features(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk's output (Avalanche's ``BaseModel`` interface, which its LFL strategy reads)."""
        return self.trunk(x)

    def used_parameter_names(self, task_label: int) -> frozenset[str]:
        head = self.head_index(task_label)
        return frozenset(
            [f"trunk.{n}" for n, _ in self.trunk.named_parameters()]
            + [f"heads.{head}.{n}" for n, _ in self.heads[head].named_parameters()]
        )


_CHECKING: contextvars.ContextVar[bool] = contextvars.ContextVar("checking_only", default=False)


@contextlib.contextmanager
def checking_only() -> Iterator[None]:
    """Networks built inside are only inspected (a preflight's probe batch, a parameter count), never trained or
    handed to Avalanche: building them does not import it."""
    token = _CHECKING.set(True)
    try:
        yield
    finally:
        _CHECKING.reset(token)


def on_avalanche() -> None:
    """Make :class:`TaskRoutedModule` (so every network of every scenario) an Avalanche ``MultiTaskModule``: its
    base becomes Avalanche's class, which CPython allows between these layouts and which every subclass's method
    order follows. Once, when the first network is built (the import of Avalanche, seconds, is paid there)."""
    from avalanche.models import MultiTaskModule
    from avalanche.models.base_model import BaseModel

    if TaskRoutedModule.__bases__ == (MultiTaskModule,):
        return
    TaskRoutedModule.__bases__ = (MultiTaskModule,)
    # Avalanche's LFL checks isinstance(model, avalanche.models.BaseModel), an ABC whose one method is
    # get_features(x); MultiHeadNet has it, so it says so (a virtual subclass: no new base, no metaclass clash)
    BaseModel.register(MultiHeadNet)
