r"""``olora``: orthogonal subspace learning with LoRA (O-LoRA; Wang et al., "Orthogonal Subspace Learning for
Language Model Continual Learning", Findings of EMNLP 2023).

Each task t trains its own LoRA adapter Delta W_t = s B_t A_t on the frozen pretrained backbone, every earlier
adapter merged in and frozen (:mod:`forgetbench.strategies.lora_stack`). The new adapter's input subspace,
spanned by the rows of A_t (r x in, PEFT's ``lora_A`` weight), is pushed orthogonal to every earlier one:

$$
\mathcal{L} = \mathcal{L}_t(\theta) + \lambda_1 \sum_{\ell} \sum_{i < t} \big\| A^{\ell}_i {A^{\ell}_t}^{\top} \big\|_F^2
$$

(the sum of squared entries of O_{i,t} = A_i^T A_t in the paper's in x r layout; the authors' code sums the
entries' absolute values instead), and optionally lambda_2 ||Delta W_t||-style shrinkage on the new adapter,
lambda_2 * sum_l (||A_t||_F^2 + ||B_t||_F^2). When A_t is orthogonal to A_i, Delta W_t maps every input in
task i's adapter subspace to zero, so the new task cannot rewrite what task i's adapter reads.

Known failure (the authors' issue tracker): the orthogonality term is in the thousands at the start and is
satisfied trivially by shrinking A_t towards zero; ``adapters.per_task`` in the record gives each adapter's norm
and its overlap (largest principal cosine) with the earlier subspaces, which shows both.

Hyperparameters: ``rank``, ``alpha``, ``target_modules`` (the adapters, as in lora_stack), ``lam`` (lambda_1 >= 0;
the paper tunes it over 0-5, 0.5 typical), ``l2`` (lambda_2 >= 0, default 0).
"""

from __future__ import annotations

from typing import Sequence

import torch
from pydantic import NonNegativeFloat

from forgetbench.strategies.base import StrategyContext, register_strategy, strength
from forgetbench.strategies.lora_stack import (
    PRETRAINED_WHY,
    StackedLoRANet,
    StackedLoRAParams,
    StackedLoRAPlugin,
    build_stacked,
)


class OLoRAParams(StackedLoRAParams):
    lam: NonNegativeFloat = strength(0.5)  # lambda_1: weight of the orthogonality loss
    l2: NonNegativeFloat = 0.0  # lambda_2: squared-norm shrinkage of the new adapter


def orthogonality_loss(earlier: Sequence[Sequence[torch.Tensor]], current: Sequence[torch.Tensor]) -> torch.Tensor:
    """sum over layers l and earlier tasks i of ||A_i^l (A_t^l)^T||_F^2; ``earlier[i][l]``, ``current[l]``."""
    total = current[0].new_zeros(())
    for layer, a_new in enumerate(current):
        old = [task[layer] for task in earlier]
        if old:
            total = total + (torch.cat(old) @ a_new.T).square().sum()
    return total


class OLoRAPlugin(StackedLoRAPlugin):
    def __init__(self, model: StackedLoRANet, params: OLoRAParams, used_params, seed: int):
        super().__init__(model, used_params, seed)
        self.params = params
        self.last_orthogonality: list[float] = []  # the loss term at each experience's last step

    def before_training_exp(self, strategy, **kwargs) -> None:
        super().before_training_exp(strategy, **kwargs)
        index = strategy.experience.current_experience
        self._earlier = [[a.detach() for a in self.model.adapter_parameters(i, "lora_A")] for i in self.model.finished]
        self._current_a = self.model.adapter_parameters(index, "lora_A")
        self._current_b = self.model.adapter_parameters(index, "lora_B")
        self._last: torch.Tensor | float = 0.0

    def before_backward(self, strategy, **kwargs) -> None:
        if self._earlier and self.params.lam > 0:
            orthogonality = orthogonality_loss(self._earlier, self._current_a)
            strategy.loss = strategy.loss + self.params.lam * orthogonality
            self._last = orthogonality.detach()
        if self.params.l2 > 0:
            squares = sum(p.square().sum() for p in self._current_a + self._current_b)
            strategy.loss = strategy.loss + self.params.l2 * squares

    def after_training_exp(self, strategy, **kwargs) -> None:
        self.last_orthogonality.append(float(self._last))
        super().after_training_exp(strategy, **kwargs)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "last_orthogonality": list(self.last_orthogonality)}

    def load_state_dict(self, state) -> None:
        super().load_state_dict(state)
        self.last_orthogonality = [float(v) for v in state["last_orthogonality"]]

    def extra_results(self) -> dict:
        """The adapters' diagnostics; the orthogonality loss at each experience's last step (0 with no earlier task)."""
        return {**super().extra_results(), "olora": {"orthogonality_loss": self.last_orthogonality}}


@register_strategy("olora", params=OLoRAParams, requires={"pretrained_backbone": PRETRAINED_WHY})
def build_olora(ctx: StrategyContext, params: OLoRAParams):
    """O-LoRA: a LoRA adapter per task on a frozen backbone, each orthogonal to the earlier ones (Wang et al. 2023)."""
    ctx.require_fixed_schedule("olora", "keeps one adapter per experience")
    model = StackedLoRANet(ctx.model, params, ctx.used_params)
    return build_stacked(ctx, model, OLoRAPlugin(model, params, ctx.used_params, ctx.seed))
