"""``exssnet``: Exclusive Supermask Subnetwork Training with KNN knowledge transfer
(Yadav and Bansal, ACL Findings 2023).

The network is SupSup's (:mod:`forgetbench.strategies.supsup`): signed-constant weights W, per-task scores S_t,
mask M_t = top-k(|S_t|) per layer. Each experience t runs

1. **KKT** (optional, ``kkt``): take ``kkt_fraction`` (20%) of the task's training samples, embed
   them with every earlier mask i (penultimate features = the input of the last masked layer),
   split 2/3 : 1/3, and classify the third with a k-nearest-neighbour vote (Euclidean distance,
   k = min(``knn_k``, #reference points), majority vote, ties to the smallest label). Let acc_i be
   the vote's accuracy and chance = 1 / #classes of the task. Then S_t is initialised from

   * ``off``: nothing (fresh kaiming-uniform scores);
   * ``best``: S_b, b = argmax_i acc_i, if acc_b > chance;
   * ``always``: S_b even if acc_b <= chance;
   * ``all``: sum_i w_i S_i over the earlier masks beating chance, w_i = acc_i / sum acc (our
     reading of a multi-source transfer; the paper uses the best one).

2. **Mask phase** (``mask_epochs``, default the turn's budget): train S_t as in SupSup, W fixed.
3. **Weight phase** (``weight_epochs``, default the turn's budget; 0 skips it): freeze M_t and
   train W only where the new mask is *exclusive*,

       E_t = M_t and not (M_0 or ... or M_{t-1}),

   by multiplying W's gradient by E_t (weight decay, when the suite sets it, is applied inside
   E_t only, by the same hook, so the optimizer never touches W outside E_t).

For j < t, W * M_j reads only weights in M_j, which are disjoint from E_t, so every earlier
sub-network computes exactly the same function: no forgetting, while the task's own weights adapt
(higher learning accuracy than SupSup at the same sparsity). Each phase gets the turn's budget,
so ExSSNeT trains twice the iterations of the other strategies (``timing.steps`` counts both).

The result record gets ``isolation`` (as SupSup, plus ``exclusive_fraction`` = |E_t| / N per task)
and ``kkt``: per experience the KNN accuracy of each earlier mask and the source chosen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import Field, NonNegativeInt, PositiveInt

from forgetbench.benchmark.data.loaders import dataset_tensors
from forgetbench.benchmark.train.harness import StepBudget
from forgetbench.strategies.base import StrategyContext, StrategyParams, register_strategy
from forgetbench.strategies.masking import MaskedNet
from forgetbench.strategies.plugin import generator_state, on_avalanche_base, set_generator_state, tensor_bytes
from forgetbench.strategies.supsup import MaskSlotPlugin, masked_context

if TYPE_CHECKING:  # Avalanche is imported when training starts, never to read this strategy's params
    from avalanche.training.templates import SupervisedTemplate
    from forgetbench.benchmark.train.template import FastSupervisedTemplate as _TemplateBase
else:  # at run time the methods sit on a plain class, put on Avalanche's when first built
    _TemplateBase = object


class ExSSNeTParams(StrategyParams):
    sparsity: float = Field(0.1, gt=0.0, le=1.0, description="fraction of each layer's weights a mask keeps")
    mask_epochs: PositiveInt | None = None  # epochs of the mask phase (null: the turn's budget)
    weight_epochs: NonNegativeInt | None = None  # epochs of the weight phase (null: the turn's budget; 0 skips it)
    kkt: Literal["off", "best", "always", "all"] = "off"  # KNN transfer of earlier masks' scores (see above)
    knn_k: PositiveInt = 200  # k of the KNN vote
    kkt_fraction: float = Field(0.2, gt=0.0, le=1.0)  # share of the task's training samples the KNN reads


def knn_accuracy(features: torch.Tensor, labels: torch.Tensor, k: int, generator: torch.Generator) -> float:
    """Accuracy of a k-NN majority vote: a random 2/3 of the points vote for the other 1/3.

    Euclidean distance; k = min(k, #reference points); ties go to the smallest label.
    """
    n = len(labels)
    if n < 3:
        return 0.0
    order = torch.randperm(n, generator=generator)
    split = (2 * n) // 3
    ref, query = order[:split], order[split:]
    k = min(k, split)
    distances = torch.cdist(features[query].double(), features[ref].double())
    neighbours = distances.topk(k, dim=1, largest=False).indices
    votes = labels[ref][neighbours]
    classes = int(labels.max()) + 1
    counts = torch.zeros(len(query), classes, dtype=torch.int64).scatter_add_(1, votes, torch.ones_like(votes))
    return float((counts.argmax(1) == labels[query]).double().mean())


def kkt_sources(accuracies: dict[int, float], chance: float, mode: str) -> dict[int, float]:
    """Earlier slots S_t starts from, with their weights (empty = fresh init). See the module doc."""
    if mode == "off" or not accuracies:
        return {}
    best = max(accuracies, key=lambda i: (accuracies[i], -i))
    if mode == "always":
        return {best: 1.0}
    if mode == "best":
        return {best: 1.0} if accuracies[best] > chance else {}
    above = {i: a for i, a in accuracies.items() if a > chance}
    total = sum(above.values())
    return {i: a / total for i, a in above.items()}


class ExSSNeTPlugin(MaskSlotPlugin):
    """Slot bookkeeping (as SupSup) plus KKT initialisation and the exclusive weight phase."""

    def __init__(self, model: MaskedNet, params: ExSSNeTParams, seed: int):
        super().__init__(model)
        self.params = params
        self.generator = torch.Generator().manual_seed(seed)
        self.kkt_log: list[dict] = []
        self.exclusive: list[float] = []
        self._hooks: list = []
        for _, layer in model.masked_layers():
            layer.register_buffer("union", torch.zeros_like(layer.weight, dtype=torch.bool), persistent=False)

    def before_training_exp(self, strategy, **kwargs) -> None:
        super().before_training_exp(strategy, **kwargs)
        if self.params.kkt != "off":
            self.transfer(strategy)

    @torch.no_grad()
    def transfer(self, strategy) -> None:
        slot = strategy.experience.current_experience
        earlier = [s for s in sorted({s for v in self.model.key_slots.values() for s in v}) if s < slot]
        if not earlier:
            return
        x, y, _ = dataset_tensors(strategy.experience.dataset)
        n = max(3, int(round(self.params.kkt_fraction * len(y))))
        pick = torch.randperm(len(y), generator=self.generator)[:n]
        x, y = x[pick].to(strategy.device), y[pick]
        key = int(strategy.experience.task_labels[0])
        was_training = self.model.training
        self.model.eval()
        accuracies = {}
        for i in earlier:
            features = self.model.features(x, key, i).cpu()
            accuracies[i] = knn_accuracy(features, y, self.params.knn_k, self.generator)
        self.model.train(was_training)
        self.model.state.slot = slot
        chance = 1.0 / len(torch.unique(y))
        sources = kkt_sources(accuracies, chance, self.params.kkt)
        for _, layer in self.model.masked_layers():
            if sources:
                layer.scores[slot].copy_(sum(w * layer.scores[i] for i, w in sources.items()))
        self.kkt_log.append({"experience": slot, "knn_accuracy": accuracies, "chance": chance, "sources": sources})

    # ------------------------------------------------------------ weight phase
    def start_weight_phase(self, strategy) -> torch.optim.Optimizer:
        """Freeze M_t, open W to training with gradients masked by E_t; returns its optimizer."""
        slot = self.model.training_slot
        if slot is None:
            raise RuntimeError("the weight phase needs a training slot (begin_slot first)")
        for p in self.model.parameters():
            p.requires_grad_(False)
        weights, exclusive, total = [], 0, 0
        decay = strategy.optimizer.defaults.get("weight_decay", 0.0)
        for _, layer in self.model.masked_layers():
            layer.freeze(slot)
            allowed = layer.frozen[slot] & ~layer.union
            exclusive += int(allowed.sum())
            total += layer.weight.numel()
            allowed = allowed.to(layer.weight.dtype)
            layer.weight.requires_grad_(True)
            weight = layer.weight
            # grad <- (grad + decay * W) * E_t: the optimizer (weight decay 0) never moves W outside E_t
            self._hooks.append(
                weight.register_hook(lambda g, w=weight, e=allowed: (g + decay * w.detach()) * e if decay else g * e)
            )
            weights.append(weight)
        self.exclusive.append(exclusive / total)
        optimizer = type(strategy.optimizer)(weights, **{**strategy.optimizer.defaults, "weight_decay": 0.0})
        return optimizer

    def end_weight_phase(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        for p in self.model.parameters():
            p.requires_grad_(False)

    def after_training_exp(self, strategy, **kwargs) -> None:
        slot = self.model.training_slot
        super().after_training_exp(strategy, **kwargs)
        if slot is None:
            return
        for _, layer in self.model.masked_layers():
            layer.union |= layer.frozen[slot]

    def state_dict(self) -> dict:
        """SupSup's masks plus each layer's union of trained masks, the KKT log, exclusive
        fractions and the sampling RNG."""
        return {
            **super().state_dict(),
            "union": {name: layer.union.clone() for name, layer in self.model.masked_layers()},
            "kkt_log": [
                {
                    "experience": e["experience"],
                    "chance": e["chance"],
                    "knn_accuracy": [[int(i), float(a)] for i, a in e["knn_accuracy"].items()],
                    "sources": [[int(i), float(w)] for i, w in e["sources"].items()],
                }
                for e in self.kkt_log
            ],
            "exclusive": list(self.exclusive),
            "generator": generator_state(self.generator),
        }

    @torch.no_grad()
    def load_state_dict(self, state) -> None:
        super().load_state_dict({"masks": state["masks"]})
        for name, layer in self.model.masked_layers():
            layer.union.copy_(state["union"][name])
        self.kkt_log = [
            {
                "experience": e["experience"],
                "chance": e["chance"],
                "knn_accuracy": {int(i): a for i, a in e["knn_accuracy"]},
                "sources": {int(i): w for i, w in e["sources"]},
            }
            for e in state["kkt_log"]
        ]
        self.exclusive = [float(x) for x in state["exclusive"]]
        set_generator_state(self.generator, state["generator"])

    def state_bytes(self) -> int:
        unions = [layer.union for _, layer in self.model.masked_layers()]
        return super().state_bytes() + tensor_bytes(unions)

    def extra_results(self) -> dict:
        isolation = self.model.ownership()
        isolation["exclusive_fraction"] = list(self.exclusive)
        kkt = [
            {
                "experience": e["experience"],
                "chance": e["chance"],
                "knn_accuracy": {str(i): a for i, a in e["knn_accuracy"].items()},
                "sources": {str(i): w for i, w in e["sources"].items()},
            }
            for e in self.kkt_log
        ]
        return {"isolation": isolation, "kkt": kkt}


class _ExSSNeTPhases(_TemplateBase):
    """Runs each experience as a mask phase then an exclusive weight phase (one Avalanche experience): the methods
    of ``ExSSNeTTemplate``, on the harness's ``FastSupervisedTemplate``.

    Each phase gets the turn's budget: ``mask_epochs`` / ``weight_epochs`` or the turn's epochs, and
    the turn's step budget (:meth:`~forgetbench.benchmark.train.harness.StepBudget.new_phase`; the steps of both phases count).
    """

    exssnet: ExSSNeTPlugin

    def _train_exp(self, experience, eval_streams=None, **kwargs):
        params, epochs = self.exssnet.params, self.train_epochs
        budgets = [p for p in self.plugins if isinstance(p, StepBudget)]
        self.train_epochs = params.mask_epochs or epochs
        super()._train_exp(experience, eval_streams, **kwargs)
        weight_epochs = epochs if params.weight_epochs is None else params.weight_epochs
        if weight_epochs > 0:
            for budget in budgets:
                budget.new_phase()
            self._stop_training = False
            mask_optimizer = self.optimizer
            self.optimizer = self.exssnet.start_weight_phase(self)
            self.train_epochs = weight_epochs
            try:
                super()._train_exp(experience, eval_streams, **kwargs)
            finally:
                self.exssnet.end_weight_phase()
                self.optimizer = mask_optimizer
        self.train_epochs = epochs


@register_strategy("exssnet", params=ExSSNeTParams)
def build_exssnet(ctx: StrategyContext, params: ExSSNeTParams) -> SupervisedTemplate:
    """ExSSNeT: SupSup masks plus training of each task's exclusive weights, optional KNN transfer (Yadav & Bansal 2023)."""
    ctx, model = masked_context(ctx, params.sparsity)
    plugin = ExSSNeTPlugin(model, params, ctx.seed)
    strategy = ctx.build(plugins=[plugin], template=exssnet_template())
    strategy.exssnet = plugin
    return strategy


def exssnet_template() -> type:
    def base() -> type:
        from forgetbench.benchmark.train.template import FastSupervisedTemplate

        return FastSupervisedTemplate

    return on_avalanche_base("ExSSNeTTemplate", _ExSSNeTPhases, base)


def __getattr__(name: str) -> Any:  # `from ...exssnet import ExSSNeTTemplate` builds it then (and imports Avalanche)
    if name == "ExSSNeTTemplate":
        return exssnet_template()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
