"""forgetbench's EWC and SI plugins against Avalanche's, on a small model and tiny data.

Both plugins are driven by the same template, initial weights and data order; they must agree on
importances / omegas, anchors, penalty values and gradients, and the final weights.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from avalanche.training.plugins import EWCPlugin as AvalancheEWC
from avalanche.training.plugins import SynapticIntelligencePlugin as AvalancheSI

from helpers import TRAINING, small_split
from forgetbench.benchmark.run.runner import regularizer_bytes
from forgetbench.strategies import StrategyContext
from forgetbench.strategies.ewc import EWCParams, EWCPlugin
from forgetbench.strategies.passes import squared_gradient_importance
from forgetbench.strategies.penalty import QuadraticAnchor, named_params
from forgetbench.strategies.si import SIPlugin

_scenario = small_split


def _train(plugin, scenario, init_state, snapshots=None, training=TRAINING):
    model = copy.deepcopy(scenario.model)
    model.load_state_dict(init_state)
    ctx = StrategyContext(
        model=model, training=training, device=torch.device("cpu"), used_params=scenario.turn_used_params, seed=0
    )
    strategy = ctx.build(plugins=[plugin])
    for experience in scenario.avalanche_benchmark().train_stream:
        strategy.train(experience, eval_streams=[], reset_optimizer_state=True)
        if snapshots is not None:
            snapshots.append(copy.deepcopy(plugin))
    return strategy


def _penalty_and_grad(fn, model):
    model.zero_grad()
    value = fn()
    value.backward()
    return float(value), {n: p.grad.clone() for n, p in model.named_parameters()}


def _avalanche_ewc_penalty(plugin, strategy):
    strategy.loss = torch.zeros(())
    plugin.before_backward(strategy)
    return strategy.loss


@pytest.mark.parametrize("mode,decay", [("separate", None), ("online", 0.5)])
def test_ewc_matches_avalanche(mode, decay):
    scenario = _scenario()
    init = copy.deepcopy(scenario.model.state_dict())
    ours = _train(EWCPlugin(EWCParams(ewc_lambda=10.0, mode=mode, decay_factor=decay)), scenario, init)
    theirs = _train(AvalancheEWC(10.0, mode=mode, decay_factor=decay), scenario, init)
    for (n, p), q in zip(ours.model.named_parameters(), theirs.model.parameters()):
        assert torch.allclose(p, q, atol=1e-5, rtol=1e-4), n
    ours_plugin, theirs_plugin = ours.plugins[0], theirs.plugins[0]
    if mode == "online":  # one running importance, anchored at the last weights
        last = max(theirs_plugin.importances)
        for n, w in zip(ours_plugin.quadratic.names, ours_plugin.quadratic.weights):
            assert torch.allclose(w, theirs_plugin.importances[last][n].data, rtol=1e-4, atol=1e-9), n
    # same penalty value and gradient at perturbed weights, Avalanche's clock on the next experience
    model = theirs.model
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    theirs.clock.train_exp_counter = 3
    v_theirs, g_theirs = _penalty_and_grad(lambda: _avalanche_ewc_penalty(theirs_plugin, theirs), model)
    ours_plugin.before_training_exp(theirs)  # bind to this model's parameters
    v_ours, g_ours = _penalty_and_grad(
        lambda: ours_plugin.quadratic.penalty(ours_plugin._params, ours_plugin.ewc_lambda), model
    )
    assert v_theirs > 0
    assert v_ours == pytest.approx(v_theirs, rel=1e-4)
    for n in g_theirs:
        assert torch.allclose(g_ours[n], g_theirs[n], rtol=1e-3, atol=1e-7), n


def test_ewc_importance_matches_avalanche():
    scenario = _scenario(tasks=1)
    model = scenario.model
    experience = scenario.avalanche_benchmark().train_stream[0]
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    theirs = AvalancheEWC(1.0).compute_importances(
        model, criterion, optimizer, experience.dataset, torch.device("cpu"), 16
    )
    from forgetbench.benchmark.data.loaders import dataset_tensors

    ours = squared_gradient_importance(model, criterion, dataset_tensors(experience.dataset), 16, torch.device("cpu"))
    assert ours.keys() == theirs.keys()
    assert any(float(v.sum()) > 0 for v in ours.values())
    for n in ours:
        assert torch.allclose(ours[n], theirs[n].data, rtol=1e-5, atol=1e-10), n


def test_quadratic_anchor_completes_the_square():
    """sum_k F^k (x - t^k)^2 == A (x - m)^2 + c, hand-checked on scalars."""
    q = QuadraticAnchor(scale=2.0)
    q.add({"w": torch.tensor([1.0])}, {"w": torch.tensor([0.0])})
    q.add({"w": torch.tensor([3.0])}, {"w": torch.tensor([2.0])})
    # 1*(x-0)^2 + 3*(x-2)^2 = 4 (x - 1.5)^2 + 3 ;  A=4, m=1.5, c = 1*1.5^2 + 3*0.5^2 = 3
    assert float(q.weights[0]) == pytest.approx(4.0)
    assert float(q.anchors[0]) == pytest.approx(1.5)
    assert q.constant == pytest.approx(3.0)
    x = torch.tensor([0.7], requires_grad=True)
    value = q.penalty([x], scale=2.0)
    value.backward()
    assert float(value) == pytest.approx(2.0 * (0.7**2 + 3 * 1.3**2))
    assert float(x.grad) == pytest.approx(2.0 * (2 * 0.7 + 6 * (0.7 - 2)))
    assert q.state_bytes() == 2 * 4  # what defines Q: A and m, one float32 each (2 lambda A is a cache)


def _copying_extract_weights(model, target, excluded_parameters):
    """Avalanche's ``extract_weights`` with a copy: on CPU its ``param.detach().cpu().flatten()``
    is a *view* of the live weights (``.cpu()`` is a no-op there), so every snapshot follows the
    weights and omega stays 0. On CUDA ``.cpu()`` copies; this is the maths it intends."""
    for name, param in AvalancheSI.allowed_parameters(model, excluded_parameters):
        target[name].data = param.detach().cpu().flatten().clone()


def test_avalanche_si_is_a_no_op_on_cpu():
    """Why forgetbench does not use Avalanche 0.6.0's SI plugin: on CPU its omegas stay zero."""
    scenario = _scenario()
    init = copy.deepcopy(scenario.model.state_dict())
    theirs = _train(AvalancheSI(si_lambda=50.0), scenario, init)
    omega = torch.cat([d.data for d in theirs.plugins[0].ewc_data[1].values()])
    assert float(omega.abs().max()) == 0.0
    ours = _train(SIPlugin(si_lambda=50.0), scenario, init)
    assert float(torch.cat([w.flatten() for w in ours.plugins[0].quadratic.weights]).abs().max()) > 0


def test_si_matches_avalanche(monkeypatch):
    monkeypatch.setattr(AvalancheSI, "extract_weights", staticmethod(_copying_extract_weights))
    scenario = _scenario()
    init = copy.deepcopy(scenario.model.state_dict())
    ours_snaps, theirs_snaps = [], []
    ours = _train(SIPlugin(si_lambda=50.0, eps=1e-7), scenario, init, ours_snaps)
    theirs = _train(AvalancheSI(si_lambda=50.0, eps=1e-7), scenario, init, theirs_snaps)
    for (n, p), q in zip(ours.model.named_parameters(), theirs.model.parameters()):
        assert torch.allclose(p, q, atol=1e-5, rtol=1e-4), n
    for o, t in zip(ours_snaps, theirs_snaps):  # omegas and anchors after every experience
        for n, omega, anchor in zip(o.quadratic.names, o.quadratic.weights, o.quadratic.anchors):
            assert torch.allclose(omega.flatten(), t.ewc_data[1][n].data, rtol=1e-3, atol=1e-8), n
            assert torch.allclose(anchor.flatten(), t.ewc_data[0][n].data, atol=1e-6), n
    omega = torch.cat([w.flatten() for w in ours_snaps[-1].quadratic.weights])
    assert float(omega.max()) <= 0.001 + 1e-9 and float(omega.abs().sum()) > 0
    # penalty value and gradient at perturbed weights
    model = theirs.model
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    v_theirs, g_theirs = _penalty_and_grad(
        lambda: AvalancheSI.compute_ewc_loss(model, theirs.plugins[0].ewc_data, set(), "cpu", lambd=50.0), model
    )
    si = ours.plugins[0]
    params = dict(model.named_parameters())
    v_ours, g_ours = _penalty_and_grad(lambda: si.quadratic.penalty([params[n] for n in si.names], 25.0), model)
    assert v_ours == pytest.approx(v_theirs, rel=1e-4)
    for n in g_theirs:
        assert torch.allclose(g_ours[n], g_theirs[n], rtol=1e-3, atol=1e-9), n


@pytest.mark.parametrize("clip", [0.001, None])
def test_si_omega_is_the_clipped_or_unclipped_path_integral(clip):
    """omega = min(-cum, clip) (Avalanche's cap) or -cum unclipped (Zenke et al.), per weight."""
    scenario = _scenario()
    init = copy.deepcopy(scenario.model.state_dict())
    plugin = _train(SIPlugin(si_lambda=1.0, clip=clip), scenario, init).plugins[0]
    cum = torch.cat([c.flatten() for c in plugin.cumulative])
    omega = torch.cat([w.flatten() for w in plugin.quadratic.weights])
    expected = -cum if clip is None else torch.clamp(-cum, max=clip)
    assert torch.equal(omega, expected)
    assert (float(omega.max()) > 0.0011) == (clip is None)  # the cap binds on this data


def test_state_bytes_and_runner_memory():
    scenario = _scenario()
    init = copy.deepcopy(scenario.model.state_dict())
    n_params = sum(p.numel() for p in scenario.model.parameters())
    ewc = _train(EWCPlugin(EWCParams(ewc_lambda=1.0)), scenario, init)
    # importance A and anchor m: two float32 copies, whatever the number of tasks (caches not counted)
    assert regularizer_bytes(ewc) == ewc.plugins[0].state_bytes() == 2 * 4 * n_params
    si = _train(SIPlugin(1.0), scenario, init)
    # omega, anchor and the cumulative path integral; the per-experience trajectory is scratch
    assert regularizer_bytes(si) == 3 * 4 * n_params


@pytest.mark.parametrize("mode,decay", [("separate", None), ("online", 1.0)])
def test_ewc_skipping_unmovable_heads_changes_nothing(mode, decay):
    """Without weight decay, heads the experience does not use stay at their anchor: leaving them
    out of the penalty gives Avalanche's weights while touching fewer tensors per step."""
    scenario = _scenario(tasks=4)
    init = copy.deepcopy(scenario.model.state_dict())
    no_decay = TRAINING.model_copy(update={"weight_decay": 0.0})
    plugin = EWCPlugin(EWCParams(ewc_lambda=10.0, mode=mode, decay_factor=decay), used_params=scenario.turn_used_params)
    ours = _train(plugin, scenario, init, training=no_decay)
    theirs = _train(AvalancheEWC(10.0, mode=mode, decay_factor=decay), scenario, init, training=no_decay)
    for (n, p), q in zip(ours.model.named_parameters(), theirs.model.parameters()):
        assert torch.allclose(p, q, atol=1e-6, rtol=1e-5), n
    # during the last experience (task 3): trunk + head 3 (+ any head not at its anchor)
    assert plugin.skipped == [3]  # no importance pass after the last experience: nothing trains again
    names = plugin.quadratic.names
    ours.experience = SimpleNamespace(current_experience=3)  # as if experience 3 were starting
    plugin.before_training_exp(ours)
    kept = {names[i] for i in plugin._subset}
    assert {"trunk.1.weight", "trunk.1.bias", "heads.3.weight", "heads.3.bias"} <= kept
    assert "heads.0.weight" not in kept and len(kept) < len(names)


def test_ewc_keeps_every_tensor_with_weight_decay():
    scenario = _scenario(tasks=2)
    init = copy.deepcopy(scenario.model.state_dict())
    plugin = EWCPlugin(EWCParams(ewc_lambda=10.0), used_params=scenario.turn_used_params)
    strategy = _train(plugin, scenario, init)  # TRAINING has weight_decay > 0: Avalanche's semantics
    strategy.experience = SimpleNamespace(current_experience=1)
    plugin.before_training_exp(strategy)
    assert plugin._subset is None


def test_si_skipping_unused_heads_changes_nothing(monkeypatch):
    monkeypatch.setattr(AvalancheSI, "extract_weights", staticmethod(_copying_extract_weights))
    scenario = _scenario(tasks=4)
    init = copy.deepcopy(scenario.model.state_dict())
    no_decay = TRAINING.model_copy(update={"weight_decay": 0.0})
    plugin = SIPlugin(50.0, used_params=scenario.turn_used_params)
    ours = _train(plugin, scenario, init, training=no_decay)
    theirs = _train(AvalancheSI(50.0), scenario, init, training=no_decay)
    for (n, p), q in zip(ours.model.named_parameters(), theirs.model.parameters()):
        assert torch.allclose(p, q, atol=1e-6, rtol=1e-5), n
    for n, omega in zip(plugin.quadratic.names, plugin.quadratic.weights):
        assert torch.allclose(omega.flatten(), theirs.plugins[0].ewc_data[1][n].data, rtol=1e-3, atol=1e-8), n
    assert plugin._subset is not None and len(plugin._subset) == 4  # trunk weight, bias; head 3


def test_ewc_max_curvature_caps_the_penalty_not_the_stored_importance():
    """With cap c the gradient on weight i is 2 lambda min(F_i, c / (2 lambda)) (theta_i - theta*_i):
    entries below the cap exactly as uncapped, entries above it at the cap; the stored F (what later
    experiences accumulate and checkpoints save) keeps its exact values."""
    scenario = _scenario()
    init = copy.deepcopy(scenario.model.state_dict())
    lam = 10.0
    plugin = EWCPlugin(EWCParams(ewc_lambda=lam))
    strategy = _train(plugin, scenario, init)
    names, fisher = plugin.quadratic.names, [w.clone() for w in plugin.quadratic.weights]
    anchors = plugin.quadratic.anchors
    entries = torch.cat([f.flatten() for f in fisher])
    cap = 2 * lam * float(entries[entries > 0].median())  # about half the non-zero entries above it
    plugin.max_curvature = cap
    strategy.experience = SimpleNamespace(current_experience=1)
    plugin.before_training_exp(strategy)
    assert plugin.capped_entries == int((entries > cap / (2 * lam)).sum()) > 0
    assert plugin.extra_results()["ewc_capped_entries"] == plugin.capped_entries
    model = strategy.model
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    plugin._params, plugin._subset = named_params(model, names), None
    strategy.loss = torch.zeros(())
    model.zero_grad()
    plugin.before_backward(strategy)
    strategy.loss.backward()
    params = dict(model.named_parameters())
    for name, f, m in zip(names, fisher, anchors):
        expected = 2 * lam * torch.clamp(f, max=cap / (2 * lam)) * (params[name].detach() - m)
        torch.testing.assert_close(params[name].grad, expected, rtol=1e-5, atol=1e-8)
    for stored, original in zip(plugin.quadratic.weights, fisher):
        assert torch.equal(stored, original)  # the cap is the penalty's, not the importance's
    plugin.quadratic.penalize_at_most(None)  # uncapped again: every entry as Avalanche's
    model.zero_grad()
    strategy.loss = torch.zeros(())
    plugin.before_backward(strategy)
    strategy.loss.backward()
    for name, f, m in zip(names, fisher, anchors):
        torch.testing.assert_close(params[name].grad, 2 * lam * f * (params[name].detach() - m), rtol=1e-5, atol=1e-8)


def test_ewc_default_caps_under_sgd_only():
    from forgetbench.benchmark.core.training import TrainingConfig
    from forgetbench.strategies.ewc import EWCParams, build_ewc

    def cap(training):
        model = small_split().model
        ctx = StrategyContext(
            model=model,
            training=training,
            device=torch.device("cpu"),
            used_params=small_split().turn_used_params,
            seed=0,
        )
        return build_ewc(ctx, EWCParams()).plugins[0].max_curvature

    assert cap(TrainingConfig(optimizer="sgd", lr=0.05, momentum=0.9)) == pytest.approx(1.9 / 0.2)
    assert cap(TrainingConfig(optimizer="adam", lr=0.001)) is None
