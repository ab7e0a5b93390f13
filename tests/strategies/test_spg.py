"""SPG: importance against a hand computation, gradient masking, frozen old heads."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from avalanche.core import SupervisedPlugin
from torch import nn

from forgetbench.benchmark.core.config import TrainingConfig
from forgetbench.benchmark.data.models import MultiHeadNet
from forgetbench.benchmark.data.scenarios import SCENARIOS, ScenarioInputs
from forgetbench.strategies import STRATEGIES, StrategyContext
from forgetbench.strategies.spg import SPGPlugin, standardized_importance


def tiny_net() -> MultiHeadNet:
    torch.manual_seed(0)
    net = MultiHeadNet(nn.Sequential(nn.Linear(2, 3)), 3, [2, 2]).double()
    return net


def hand_gamma(g: np.ndarray) -> np.ndarray:
    if np.all(g == g.flat[0]):
        return np.zeros_like(g)
    return np.abs(np.tanh((g - g.mean()) / g.std(ddof=1)))


def test_standardized_importance_edge_cases():
    assert torch.equal(standardized_importance(torch.zeros(3, 2)), torch.zeros(3, 2))
    assert torch.equal(standardized_importance(torch.full((4,), 2.5)), torch.zeros(4))
    assert torch.equal(standardized_importance(torch.tensor([7.0])), torch.zeros(1))
    g = torch.tensor([1.0, 2.0, 6.0])
    expected = np.abs(np.tanh((np.array([1, 2, 6.0]) - 3.0) / np.std([1, 2, 6.0], ddof=1)))
    np.testing.assert_allclose(standardized_importance(g).numpy(), expected, rtol=1e-6)


def test_importance_equals_hand_computation():
    """Linear trunk h = W x + b, heads z_k = V_k h + c_k; task 1 just trained after task 0."""
    net = tiny_net()
    x = torch.tensor([[1.0, -2.0], [0.5, 0.3], [-1.5, 2.0], [2.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0])
    W, b = net.trunk[0].weight.detach().numpy(), net.trunk[0].bias.detach().numpy()
    V = [net.heads[k].weight.detach().numpy() for k in range(2)]
    X, Y = x.numpy(), np.eye(2)[y.numpy()]
    h = X @ W.T + b
    # head 1 (current task): cross-entropy summed over samples
    z1 = h @ V[1].T + net.heads[1].bias.detach().numpy()
    P = np.exp(z1 - z1.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    D1 = P - Y
    ce = {"W": (D1 @ V[1]).T @ X, "b": (D1 @ V[1]).sum(0), "V1": D1.T @ h, "c1": D1.sum(0)}
    # head 0 (earlier task): sum of its logits on task 1's data
    D0 = np.ones((4, 2))
    sm = {"W": (D0 @ V[0]).T @ X, "b": (D0 @ V[0]).sum(0), "V0": D0.T @ h, "c0": D0.sum(0)}

    plugin = SPGPlugin([net.used_parameter_names(0), net.used_parameter_names(1)], importance_batch_size=3)
    plugin.trained_heads = [0, 1]
    previous = torch.full((3, 2), 0.2, dtype=torch.float64)
    previous[0, 0] = 0.999  # A keeps its old value where that is larger
    plugin.importance["trunk.0.weight"] = previous.clone()
    net.trunk[0].weight.grad = torch.ones(3, 2, dtype=torch.float64)  # must survive the pass

    gamma = plugin.update_importance(net, x, y, current=1)

    expect_w = np.maximum(hand_gamma(ce["W"]), hand_gamma(sm["W"]))
    np.testing.assert_allclose(gamma["trunk.0.weight"].numpy(), expect_w, rtol=1e-9)
    np.testing.assert_allclose(gamma["trunk.0.bias"].numpy(), np.maximum(hand_gamma(ce["b"]), hand_gamma(sm["b"])))
    np.testing.assert_allclose(gamma["heads.1.weight"].numpy(), hand_gamma(ce["V1"]))
    np.testing.assert_allclose(gamma["heads.0.weight"].numpy(), hand_gamma(sm["V0"]))
    assert torch.equal(gamma["heads.0.bias"], torch.zeros(2, dtype=torch.float64))  # constant gradient N
    np.testing.assert_allclose(
        plugin.importance["trunk.0.weight"].numpy(), np.maximum(previous.numpy(), expect_w), rtol=1e-9
    )
    assert plugin.importance["trunk.0.weight"][0, 0] == pytest.approx(0.999)
    assert all(((a >= 0) & (a < 1)).all() for a in gamma.values())
    assert torch.equal(net.trunk[0].weight.grad, torch.ones(3, 2, dtype=torch.float64))
    assert plugin.state_bytes() == sum(t.numel() * 8 for t in plugin.importance.values())


def test_masking_scales_shared_and_head_gradients_and_drops_old_heads():
    net = tiny_net()
    used = [net.used_parameter_names(0), net.used_parameter_names(1)]
    plugin = SPGPlugin(used)
    A_w = torch.ones(3, 2, dtype=torch.float64)  # importance 1: the weight must not move at all
    A_b = torch.tensor([0.0, 0.5, 0.25], dtype=torch.float64)
    plugin.importance = {"trunk.0.weight": A_w, "trunk.0.bias": A_b}
    strategy = SimpleNamespace(model=net, experience=SimpleNamespace(current_experience=1, task_labels=[1]))
    plugin.before_training_exp(strategy)
    grads = {n: torch.randn_like(p) for n, p in net.named_parameters()}
    for n, p in net.named_parameters():
        p.grad = grads[n].clone()
    plugin.before_update(strategy)

    assert torch.equal(net.trunk[0].weight.grad, torch.zeros(3, 2, dtype=torch.float64))
    torch.testing.assert_close(net.trunk[0].bias.grad, (1 - A_b) * grads["trunk.0.bias"])
    head_scale = 1 - torch.cat([A_w.flatten(), A_b]).mean()  # mean over all masked elements: 6.75 / 9
    assert float(head_scale) == pytest.approx(1 - 6.75 / 9)
    torch.testing.assert_close(net.heads[1].weight.grad, head_scale * grads["heads.1.weight"])
    torch.testing.assert_close(net.heads[1].bias.grad, head_scale * grads["heads.1.bias"])
    assert net.heads[0].weight.grad is None and net.heads[0].bias.grad is None


class _GradEverywhere(SupervisedPlugin):
    """Gives every parameter (old heads included) a gradient, as a careless extra loss term would."""

    def before_backward(self, strategy, **kwargs):
        strategy.loss = strategy.loss + 1e-3 * sum(p.sum() for p in strategy.model.parameters())


def _train_split(strategy_name: str, importance: dict | None = None):
    entry = SCENARIOS.get("split")
    params = {"dataset": "digits", "tasks": 3, "classes_per_task": 2, "widths": [16]}
    torch.manual_seed(0)
    scenario = entry.factory(entry.parse_params(params), ScenarioInputs(0, None))
    training = TrainingConfig(lr=0.05, momentum=0.9, weight_decay=0.01, batch_size=32, epochs=1)
    ctx = StrategyContext(
        scenario.model, training, torch.device("cpu"), scenario.turn_used_params, 0, harness_plugins=[_GradEverywhere()]
    )
    s_entry = STRATEGIES.get(strategy_name)
    strategy = s_entry.factory(ctx, s_entry.parse_params({}))
    snapshots = []
    for k, experience in enumerate(scenario.avalanche_benchmark().train_stream):
        if importance is not None and k == 1:
            spg = next(p for p in strategy.plugins if isinstance(p, SPGPlugin))
            spg.importance.update(importance)
        strategy.train(experience, eval_streams=[], reset_optimizer_state=True)
        snapshots.append({n: p.detach().clone() for n, p in scenario.model.named_parameters()})
    return scenario, snapshots


def test_old_heads_never_change_over_a_multi_task_run():
    _, snaps = _train_split("spg")
    for k in range(2):
        for later in snaps[k + 1 :]:
            for name in (f"heads.{k}.weight", f"heads.{k}.bias"):
                assert torch.equal(snaps[k][name], later[name]), f"old head {name} moved"
    assert not torch.equal(snaps[0]["trunk.1.weight"], snaps[2]["trunk.1.weight"])  # the trunk still learns
    # Without SPG's freezing the same run does move old heads (momentum + weight decay + stray gradients).
    _, naive = _train_split("naive")
    assert not torch.equal(naive[0]["heads.0.weight"], naive[2]["heads.0.weight"])


def test_importance_one_freezes_a_shared_parameter_in_real_training():
    scenario, snaps = _train_split("spg", importance={"trunk.1.weight": torch.ones(16, 64)})
    assert torch.equal(snaps[0]["trunk.1.weight"], snaps[1]["trunk.1.weight"])
    assert not torch.equal(snaps[0]["trunk.1.bias"], snaps[1]["trunk.1.bias"])
