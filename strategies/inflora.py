r"""``inflora``: interference-free low-rank adaptation (InfLoRA; Liang & Li, "InfLoRA: Interference-Free
Low-Rank Adaptation for Continual Learning", CVPR 2024).

Each task t gets its own LoRA adapter Delta W_t = s B_t A_t on the frozen pretrained backbone, every earlier
adapter merged in and frozen (:mod:`forgetbench.strategies.lora_stack`). Per adapted layer the method keeps
M, an orthonormal basis (in x k) of the earlier tasks' *input* subspace. Task t's down-projection is drawn and
then projected onto the complement of M and frozen; only B_t trains:

$$
A_t \leftarrow A_t^{0} \, (I - M M^{\top}), \qquad \Delta W_t\, x = s B_t A_t x = 0 \quad \text{for } x \in \mathrm{span}(M)
$$

so the new task cannot change the layer's output on inputs in the span of earlier tasks' inputs (the paper's
interference-free condition; its A_t also lies in the span of the new task's gradient, which this
implementation leaves to the random draw). After the task, M grows by the principal directions of the task's
inputs to the layer that M does not yet explain (GPM's rule, as InfLoRA's DualGPM): with R = sum_n x_n x_n^T
over ``subspace_samples`` training inputs (every token position), directions of the residual
(I - M M^T) R (I - M M^T) are added, largest eigenvalue first, until M captures ``threshold`` of trace(R);
M never takes more than in - rank dimensions, so a later adapter always has room.

Hyperparameters: ``rank``, ``alpha``, ``target_modules`` (as in lora_stack); ``threshold`` (0 < eps < 1: share of
the input energy the kept subspace must explain; the paper uses 0.95-0.99); ``subspace_samples`` (inputs per task
that estimate R, drawn with the run's seed).
"""

from __future__ import annotations

import torch
from pydantic import Field, PositiveInt

from forgetbench.benchmark.data.loaders import TensorBatchLoader, dataset_tensors
from forgetbench.strategies.adapters import adapter_name, lora_weights
from forgetbench.strategies.base import StrategyContext, register_strategy
from forgetbench.strategies.passes import sample_subset
from forgetbench.strategies.lora_stack import (
    PRETRAINED_WHY,
    StackedLoRANet,
    StackedLoRAParams,
    StackedLoRAPlugin,
    build_stacked,
)


class InfLoRAParams(StackedLoRAParams):
    threshold: float = Field(0.95, gt=0.0, lt=1.0)  # share of each task's input energy the kept subspace explains
    subspace_samples: PositiveInt = 256  # training samples per task that estimate its input subspace


def grow_basis(basis: torch.Tensor, gram: torch.Tensor, threshold: float, max_dims: int) -> torch.Tensor:
    """``basis`` (in x k, orthonormal) extended by the residual's top eigenvectors of ``gram`` until the basis
    captures ``threshold`` of trace(gram), at most ``max_dims`` columns in all."""
    gram = gram.double()
    total = float(torch.trace(gram))
    if total <= 0 or basis.shape[1] >= max_dims:
        return basis
    captured = float(torch.trace(basis.T @ gram @ basis)) if basis.numel() else 0.0
    projector = torch.eye(len(gram), dtype=gram.dtype) - basis @ basis.T
    values, vectors = torch.linalg.eigh(projector @ gram @ projector)
    order = torch.argsort(values, descending=True)
    added: list[torch.Tensor] = []
    for i in order.tolist():
        if captured >= threshold * total or basis.shape[1] + len(added) >= max_dims or values[i] <= 0:
            break
        added.append(vectors[:, i])
        captured += float(values[i])
    return torch.cat([basis, torch.stack(added, dim=1)], dim=1) if added else basis


def project_out(a: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Rows of ``a`` (r x in) minus their component in span(``basis``)."""
    return a - (a @ basis) @ basis.T if basis.numel() else a


class InfLoRAPlugin(StackedLoRAPlugin):
    def __init__(self, model: StackedLoRANet, params: InfLoRAParams, used_params, seed: int):
        super().__init__(model, used_params, seed)
        self.params = params
        self.bases: dict[str, torch.Tensor] = {}  # per adapted layer: M (in x k), float64 on the CPU

    def before_training_exp(self, strategy, **kwargs) -> None:
        super().before_training_exp(strategy, **kwargs)
        name = adapter_name(strategy.experience.current_experience)
        with torch.no_grad():
            for layer_name, layer in self.model.lora_layers():
                if name not in layer.lora_A:
                    continue
                a, _ = lora_weights(layer, name)
                basis = self.bases.get(layer_name)
                if basis is not None:
                    a.copy_(project_out(a.double().cpu(), basis).to(a.dtype))
                a.requires_grad_(False)  # InfLoRA trains B only

    def after_training_exp(self, strategy, **kwargs) -> None:
        super().after_training_exp(strategy, **kwargs)  # adapter t joins the model whose inputs are read
        for layer_name, gram in self._input_grams(strategy).items():
            in_features = gram.shape[0]
            basis = self.bases.get(layer_name, torch.zeros(in_features, 0, dtype=torch.float64))
            self.bases[layer_name] = grow_basis(basis, gram, self.params.threshold, in_features - self.params.rank)

    @torch.no_grad()
    def _input_grams(self, strategy) -> dict[str, torch.Tensor]:
        """sum_n x_n x_n^T of each adapted layer's inputs over ``subspace_samples`` of the experience's data."""
        tensors = sample_subset(
            dataset_tensors(strategy.experience.dataset), self.params.subspace_samples, self.generator
        )
        grams: dict[str, torch.Tensor] = {}
        layers = dict(self.model.lora_layers())
        handles = []
        for layer_name, layer in layers.items():

            def hook(module, inputs, name=layer_name):
                x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).double()
                grams[name] = grams.get(name, 0) + (x.T @ x).cpu()

            handles.append(layer.base_layer.register_forward_pre_hook(hook))
        was_training = self.model.training
        self.model.eval()
        task = int(strategy.experience.task_labels[0])
        try:
            for x, *_ in TensorBatchLoader(tensors, strategy.eval_mb_size, shuffle=False):
                self.model.forward_single_task(x.to(strategy.device), task)
        finally:
            for handle in handles:
                handle.remove()
            self.model.train(was_training)
        return grams

    def state_dict(self) -> dict:
        return {**super().state_dict(), "bases": dict(self.bases)}

    def load_state_dict(self, state) -> None:
        super().load_state_dict(state)
        self.bases = dict(state["bases"])

    def state_bytes(self) -> int:
        """The adapters plus the input bases M kept per layer."""
        return super().state_bytes() + sum(b.numel() * b.element_size() for b in self.bases.values())

    def extra_results(self) -> dict:
        """The adapters' diagnostics; the kept input subspace's dimension per layer."""
        return {
            **super().extra_results(),
            "inflora": {"subspace_dims": {name: int(b.shape[1]) for name, b in sorted(self.bases.items())}},
        }


@register_strategy("inflora", params=InfLoRAParams, requires={"pretrained_backbone": PRETRAINED_WHY})
def build_inflora(ctx: StrategyContext, params: InfLoRAParams):
    """InfLoRA: each task's LoRA reads only inputs outside the earlier tasks' input subspace (Liang & Li 2024)."""
    ctx.require_fixed_schedule("inflora", "keeps one adapter per experience")
    model = StackedLoRANet(ctx.model, params, ctx.used_params)
    return build_stacked(ctx, model, InfLoRAPlugin(model, params, ctx.used_params, ctx.seed))
