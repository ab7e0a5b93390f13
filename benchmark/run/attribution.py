r"""Why did it forget? Per-layer forgetting attribution, testing the premise every quadratic regularizer rests on.

EWC, WPL, SI and MAS share one approximation (the WPL paper derives its loss from it, a Laplace
approximation): with model k at a minimum $\theta^*_k$ of its loss $L_k$, later training that moves the
weights to $\theta$ raises k's loss by about

$$
L_k(\theta) - L_k(\theta^*_k) \approx \underbrace{g^k \cdot \Delta}_{\text{first order}}
+ \underbrace{\tfrac{1}{2} \sum_i F^k_i \, \Delta_i^2}_{\text{predicted}},
\qquad \Delta = \theta - \theta^*_k ,
$$

with $g^k$ the gradient of $L_k$ at $\theta^*_k$ (zero at an exact minimum) and $F^k$ the diagonal Fisher,
which the regularizers use for the Hessian. With ``training.attribution: N`` every run records, after each
turn and for every model k trained in an earlier turn, on the first N samples of k's held-out (test) data:

* ``observed``: $L_k(\theta) - L_k(\theta^*_k)$, the mean cross-entropy's increase (nats);
* per layer (the module owning the parameters, the parameters k shares with the models trained since):
  the drift $\lVert\Delta\rVert$, the drift relative to $\lVert\theta^*_k\rVert$, the predicted increase
  and the first-order term; their sums over layers are the model's ``predicted`` and ``first_order``.

$F^k$ is the harness's exact diagonal Fisher (:func:`forgetbench.strategies.importance.exact_fisher_diagonal`)
with labels drawn from model k's own predictive distribution (the *true* Fisher, which for a softmax output
equals the Gauss-Newton part of the Hessian), with a generator of its own: the training's random streams, and
so the run's numbers, are the same with attribution on or off. $\theta^*_k$, $F^k$, $g^k$ and
$L_k(\theta^*_k)$ are taken right after k's turn (its latest, when a task is trained again). Tasks whose
targets are token sequences (language models) are not attributed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import torch
import torch.nn.functional as F

from forgetbench.benchmark.core.record import AttributionEntry, LayerAttribution
from forgetbench.benchmark.data.scenarios.base import Task
from forgetbench.strategies.importance import exact_fisher_diagonal

if TYPE_CHECKING:
    from avalanche.models import MultiTaskModule

Tensors = dict[str, torch.Tensor]


def layer_of(name: str) -> str:
    """The module that owns a parameter: ``trunk.0.weight`` -> ``trunk.0`` (a top-level parameter: itself)."""
    return name.rsplit(".", 1)[0] if "." in name else name


def layer_terms(
    theta: Tensors, anchor: Tensors, fisher: Tensors, grad: Tensors, names: Sequence[str]
) -> list[LayerAttribution]:
    """Per layer, over ``names``: drift, relative drift, (1/2) sum F Delta^2 and g . Delta (sorted by layer)."""
    sums: dict[str, list[float]] = {}
    for name in names:
        delta = theta[name].detach().float() - anchor[name].float()
        row = sums.setdefault(layer_of(name), [0.0, 0.0, 0.0, 0.0])
        row[0] += float((delta * delta).sum())
        row[1] += float((anchor[name].float() ** 2).sum())
        row[2] += 0.5 * float((fisher[name].float() * delta * delta).sum())
        row[3] += float((grad[name].float() * delta).sum())
    return [
        LayerAttribution(
            layer=layer,
            drift=squared**0.5,
            relative_drift=(squared / norm) ** 0.5 if norm > 0 else None,
            predicted=predicted,
            first_order=first,
        )
        for layer, (squared, norm, predicted, first) in sorted(sums.items())
    ]


@dataclass
class Snapshot:
    """Model k right after its turn: its weights, Fisher, loss gradient and loss on its attribution samples."""

    anchor: Tensors
    fisher: Tensors
    grad: Tensors
    loss: float
    shared: set[str] = field(default_factory=set)  # its parameters that a model trained since also uses


class Attribution:
    """Snapshots each model after its turn and attributes the loss increase of every earlier one after each
    later turn (see the module docstring). ``samples``: held-out samples per model."""

    def __init__(self, samples: int, seed: int, batch_size: int = 1024):
        self.samples, self.batch_size, self.seed = samples, batch_size, seed
        self.generator: torch.Generator | None = None  # on the model's device, made at the first turn
        self._generator_state: torch.Tensor | None = None  # a resumed state, put in place at the first turn
        self.snapshots: dict[int, Snapshot] = {}
        self.seconds = 0.0  # time spent measuring and snapshotting

    def _generator_on(self, device: torch.device) -> torch.Generator:
        if self.generator is None:
            self.generator = torch.Generator(device=device).manual_seed(self.seed)
            if self._generator_state is not None:
                self.generator.set_state(self._generator_state)
        return self.generator

    def _data(self, task: Task, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        return task.test_x[: self.samples].to(device), task.test_y[: self.samples].to(device)

    def _loss(self, model: MultiTaskModule, task: Task, device: torch.device, names: Sequence[str] = ()):
        """Mean cross-entropy of ``task``'s model on its samples, and its gradient w.r.t. ``names``."""
        x, y = self._data(task, device)
        params = dict(model.named_parameters())
        with torch.set_grad_enabled(bool(names)):
            total = torch.zeros((), device=device)
            grads = {n: torch.zeros_like(params[n]) for n in names}
            for start in range(0, len(y), self.batch_size):
                out = model.forward_single_task(x[start : start + self.batch_size], task.model_key)
                loss = F.cross_entropy(out.float(), y[start : start + self.batch_size], reduction="sum") / len(y)
                if names:
                    for n, g in zip(names, torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True)):
                        if g is not None:
                            grads[n] += g
                total += loss.detach()
        return float(total), grads

    def measure(
        self,
        model: torch.nn.Module,
        turn: int,
        task_index: int,
        tasks: Sequence[Task],
        device: torch.device,
        iteration: int | None = None,
    ) -> list[AttributionEntry]:
        """Every earlier model's loss increase while (``iteration``) or after turn ``turn`` trains
        ``task_index``, attributed to the layers it shares with the models trained since its snapshot."""
        t0 = time.perf_counter()
        was_training = model.training
        model.eval()
        try:
            trained = set(tasks[task_index].used_params)
            theta = {n: p.detach() for n, p in model.named_parameters()}
            entries = []
            for k, snap in sorted(self.snapshots.items()):
                if k == task_index:
                    continue
                snap.shared |= trained & snap.anchor.keys()
                loss, _ = self._loss(model, tasks[k], device)
                layers = layer_terms(theta, snap.anchor, snap.fisher, snap.grad, sorted(snap.shared))
                entries.append(
                    AttributionEntry(
                        turn=turn,
                        iteration=iteration,
                        model=k,
                        observed=loss - snap.loss,
                        predicted=sum(r.predicted for r in layers),
                        first_order=sum(r.first_order for r in layers),
                        layers=layers,
                    )
                )
            return entries
        finally:
            model.train(was_training)
            self.seconds += time.perf_counter() - t0

    def after_turn(
        self, model: torch.nn.Module, turn: int, task_index: int, tasks: Sequence[Task], device: torch.device
    ) -> list[AttributionEntry]:
        """:meth:`measure` after ``turn``, then snapshot the model it trained."""
        if tasks[task_index].test_y.dim() != 1:
            return []
        entries = self.measure(model, turn, task_index, tasks, device)
        t0 = time.perf_counter()
        was_training = model.training
        model.eval()
        try:
            self.snapshots[task_index] = self._snapshot(model, tasks[task_index], device)
        finally:
            model.train(was_training)
            self.seconds += time.perf_counter() - t0
        return entries

    def _snapshot(self, model: torch.nn.Module, task: Task, device: torch.device) -> Snapshot:
        params = dict(model.named_parameters())
        names = sorted(n for n in task.used_params if n in params and params[n].requires_grad)
        x, y = self._data(task, device)
        fisher = exact_fisher_diagonal(
            model,
            x,
            y,
            task_label=task.model_key,
            batch_size=self.batch_size,
            estimator="true",
            generator=self._generator_on(device),
        )
        loss, grad = self._loss(model, task, device, names)
        return Snapshot(
            anchor={n: params[n].detach().clone() for n in names},
            fisher={n: fisher[n] if n in fisher else torch.zeros_like(params[n]) for n in names},
            grad=grad,
            loss=loss,
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.get_state() if self.generator is not None else self._generator_state,
            "snapshots": {
                k: {"anchor": s.anchor, "fisher": s.fisher, "grad": s.grad, "loss": s.loss, "shared": sorted(s.shared)}
                for k, s in self.snapshots.items()
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state["generator"]
        self.generator, self._generator_state = None, saved.cpu() if saved is not None else None
        self.snapshots = {
            int(k): Snapshot(
                anchor=s["anchor"], fisher=s["fisher"], grad=s["grad"], loss=float(s["loss"]), shared=set(s["shared"])
            )
            for k, s in state["snapshots"].items()
        }
