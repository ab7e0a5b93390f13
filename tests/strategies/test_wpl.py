"""WPL: the penalty, its gradient, what it touches, its options, and alpha = 0 == naive."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from forgetbench.benchmark.core.config import TrainingConfig
from helpers import two_model, two_model_spec
from forgetbench.benchmark.run.runner import run
from forgetbench.benchmark.data.scenarios import SCENARIOS, ScenarioInputs
from forgetbench.strategies.importance import exact_fisher_diagonal
from forgetbench.strategies.wpl import WPLParams, WPLPlugin, accumulate as _accumulate
from forgetbench.strategies.wpl_online import WPLOnlineParams
from forgetbench.strategies.wpl_enas import WPLENASParams


def split3(seed=0):
    entry = SCENARIOS.get("split")
    params = {"dataset": "digits", "tasks": 3, "classes_per_task": 2, "widths": [8]}
    return entry.factory(entry.parse_params(params), ScenarioInputs(seed, None))


def fake_strategy(model, experience):
    return SimpleNamespace(model=model, experience=experience, loss=torch.zeros(()))


def plugin_after_a(scenario, **params):
    """A WPL plugin that has 'trained' model A (experience 0) with the model's current weights."""
    plugin = WPLPlugin(WPLParams(**params), scenario.turn_used_params)
    exps = scenario.avalanche_benchmark().train_stream
    plugin.before_training_exp(fake_strategy(scenario.model, exps[0]))
    plugin.after_training_exp(fake_strategy(scenario.model, exps[0]))
    return plugin, exps


def test_importance_and_anchor_cover_only_model_a():
    scenario = two_model()
    plugin, _ = plugin_after_a(scenario)
    assert set(plugin.importance) == scenario.tasks[0].used_params
    assert plugin.shared_names(1) == {"shared.0.0.weight", "shared.0.0.bias"}


def test_penalty_and_gradient_match_hand_formula():
    torch.manual_seed(0)
    scenario = two_model()
    model = scenario.model
    plugin, exps = plugin_after_a(scenario, alpha=3.0)
    with torch.no_grad():  # move every weight away from the anchor
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    plugin.before_training_exp(fake_strategy(model, exps[1]))
    penalty = plugin.penalty()
    named = dict(model.named_parameters())
    shared = ["shared.0.0.weight", "shared.0.0.bias"]
    expected = (
        0.5 * 3.0 * sum((plugin.importance[n] * (named[n].detach() - plugin.anchor[n]) ** 2).sum() for n in shared)
    )
    torch.testing.assert_close(penalty.detach(), expected)
    penalty.backward()
    for name, param in named.items():
        if name in shared:
            torch.testing.assert_close(
                param.grad, 3.0 * plugin.importance[name] * (param.detach() - plugin.anchor[name])
            )
            assert param.grad.abs().sum() > 0
        else:
            assert param.grad is None, f"{name} is not shared and must get no penalty gradient"


def test_changing_unshared_parameters_leaves_penalty_unchanged():
    torch.manual_seed(1)
    scenario = two_model()
    model = scenario.model
    plugin, exps = plugin_after_a(scenario, alpha=5.0)
    with torch.no_grad():
        model.shared[0][0].weight.add_(0.05)
    plugin.before_training_exp(fake_strategy(model, exps[1]))
    before = float(plugin.penalty().detach())
    assert before > 0
    with torch.no_grad():
        for module in (model.private_a, model.private_b, model.head_a, model.head_b):
            for p in module.parameters():
                p.add_(torch.randn_like(p))
    assert float(plugin.penalty().detach()) == before
    with torch.no_grad():
        model.shared[0][0].bias.add_(0.5)
    assert float(plugin.penalty().detach()) != before


def test_importance_is_the_exact_fisher_of_model_a():
    scenario = two_model()
    plugin, _ = plugin_after_a(scenario)
    task = scenario.tasks[0]
    reference = exact_fisher_diagonal(scenario.model, task.train_x, task.train_y, task_label=0)
    for name, value in plugin.importance.items():
        torch.testing.assert_close(value, reference[name])


def _train_three(anchor: str, accumulate: str = "sum"):
    """Drive the plugin through 3 split tasks, setting known weights before each importance pass."""
    torch.manual_seed(2)
    scenario = split3()
    model = scenario.model
    plugin = WPLPlugin(WPLParams(anchor=anchor, accumulate=accumulate), scenario.turn_used_params)
    exps = scenario.avalanche_benchmark().train_stream
    snapshots, fishers = [], []
    for i in range(2):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        plugin.before_training_exp(fake_strategy(model, exps[i]))
        task = scenario.tasks[i]
        fishers.append(exact_fisher_diagonal(model, task.train_x, task.train_y, task_label=i))
        snapshots.append({n: p.detach().clone() for n, p in model.named_parameters()})
        plugin.after_training_exp(fake_strategy(model, exps[i]))
    plugin.before_training_exp(fake_strategy(model, exps[2]))
    return scenario, plugin, snapshots, fishers


def test_latest_anchor_is_the_weights_after_the_latest_model_and_importance_sums():
    scenario, plugin, snaps, fishers = _train_three("latest")
    trunk = {n for n in plugin.importance if n.startswith("trunk.")}
    for name in trunk:
        torch.testing.assert_close(plugin.anchor[name], snaps[1][name])
        torch.testing.assert_close(plugin.importance[name], fishers[0][name] + fishers[1][name])
    # head 0 was only used by model 0: its anchor stays at model 0's weights
    torch.testing.assert_close(plugin.anchor["heads.0.weight"], snaps[0]["heads.0.weight"])
    # model 2 shares only the trunk: the penalty covers exactly the trunk
    assert set(plugin.penalised_names) == trunk


def test_per_model_anchor_keeps_one_term_per_earlier_model():
    scenario, plugin, snaps, fishers = _train_three("per_model")
    assert len(plugin.per_model) == 2
    for k in range(2):
        fisher, anchor = plugin.per_model[k]
        for name in fisher:
            torch.testing.assert_close(anchor[name], snaps[k][name])
            torch.testing.assert_close(fisher[name], fishers[k][name])
    trunk = {n for n, _ in scenario.model.named_parameters() if n.startswith("trunk.")}
    assert set(plugin.penalised_names) == trunk
    # the penalty is the sum over both earlier models, each with its own Fisher and anchor
    named = dict(scenario.model.named_parameters())
    expected = (
        0.5
        * plugin._alpha
        * sum(
            (fisher[n] * (named[n].detach() - anchor[n]) ** 2).sum()
            for fisher, anchor in plugin.per_model
            for n in trunk
        )
    )
    torch.testing.assert_close(plugin.penalty().detach(), expected.double().float(), rtol=1e-5, atol=1e-6)
    assert plugin.state_bytes() > 0


def test_accumulate_rules():
    old = {"w": torch.tensor([1.0, 4.0])}
    new = {"w": torch.tensor([3.0, 2.0]), "v": torch.tensor([2.0])}
    assert _accumulate(old, new, "sum", 0.9)["w"].tolist() == [4.0, 6.0]
    assert _accumulate(old, new, "max", 0.9)["w"].tolist() == [3.0, 4.0]
    torch.testing.assert_close(_accumulate(old, new, "momentum", 0.9)["w"], torch.tensor([2.8, 2.2]))
    torch.testing.assert_close(_accumulate(old, new, "momentum", 0.9)["v"], torch.tensor([1.8]))
    assert _accumulate({}, new, "sum", 0.9)["v"].tolist() == [2.0]


def _online_strategy(model, experience):
    return SimpleNamespace(
        model=model, experience=experience, loss=torch.zeros(()), train_mb_size=16, device=torch.device("cpu")
    )


def test_wpl_online_clips_each_tensor_of_the_running_importance():
    scenario = split3()
    plugin = WPLPlugin(WPLOnlineParams(clip_norm=1e-4, accumulate="sum"), scenario.turn_used_params)
    exps = scenario.avalanche_benchmark().train_stream
    for i in range(2):
        plugin.before_training_exp(_online_strategy(scenario.model, exps[i]))
        plugin.after_training_exp(_online_strategy(scenario.model, exps[i]))
    assert plugin.importance
    for value in plugin.importance.values():
        assert float(torch.linalg.vector_norm(value)) <= 1e-4 * (1 + 1e-5)


def test_wpl_online_decays_alpha_per_model_and_resets_the_importance():
    """alpha_decay 0.5: model 2 trains under alpha x 0.5; reset_every 1: the importance after model 1 is model 1's
    own estimate (a twin plugin with the same seed draws the same mini-batches: its estimate of model 1 is F^1)."""
    scenario = split3()
    params = WPLOnlineParams(alpha=10.0, alpha_decay=0.5, reset_every=1, accumulate="sum")
    decayed = WPLPlugin(params, scenario.turn_used_params, seed=4, adaptive=True)
    twin = WPLPlugin(params, scenario.turn_used_params, seed=4, adaptive=True)
    exps = scenario.avalanche_benchmark().train_stream
    estimates = []
    for i in range(2):
        decayed.before_training_exp(_online_strategy(scenario.model, exps[i]))
        decayed.after_training_exp(_online_strategy(scenario.model, exps[i]))
        estimates.append(twin.model_fisher(_online_strategy(scenario.model, exps[i]), scenario.turn_used_params[i]))
    decayed.before_training_exp(_online_strategy(scenario.model, exps[2]))
    assert decayed._alpha == pytest.approx(10.0 * 0.5)  # model index 2 -> alpha * decay^(2-1)
    assert set(decayed.importance) == set(estimates[1])
    for name, value in estimates[1].items():
        torch.testing.assert_close(decayed.importance[name], value)
    assert any(not torch.equal(estimates[0][n], estimates[1][n]) for n in estimates[1] if n in estimates[0])


_spec = two_model_spec


def test_alpha_zero_equals_naive_bit_for_bit():
    naive = run(_spec("naive", {}), data_root=None)
    wpl = run(_spec("wpl", {"alpha": 0.0}), data_root=None)
    assert naive.status == wpl.status == "ok"
    assert naive.accuracy_matrix == wpl.accuracy_matrix
    assert naive.curves == wpl.curves  # every 5 steps, all the way
    strong = run(_spec("wpl", {"alpha": 1e4}), data_root=None)
    assert strong.curves != naive.curves  # and the penalty does act when alpha > 0


def test_ewc_exact_importance_is_the_same_fisher_as_wpl():
    """With importance=exact, EWC's F is WPL's F on the shared parameters (and covers the rest too)."""
    from forgetbench.strategies.ewc import EWCParams, EWCPlugin

    scenario = two_model()
    wpl, exps = plugin_after_a(scenario)
    ewc = EWCPlugin(EWCParams(ewc_lambda=1.0, importance="exact"), used_params=scenario.turn_used_params)
    strategy = fake_strategy(scenario.model, exps[0])
    strategy.device = torch.device("cpu")
    ewc.after_training_exp(strategy)
    fisher = dict(zip(ewc.quadratic.names, ewc.quadratic.weights))
    for name, value in wpl.importance.items():
        torch.testing.assert_close(fisher[name], value)
    assert float(fisher["head_b.weight"].abs().sum()) == 0.0  # model A does not use B's head


def test_ewc_predicted_estimator_and_its_config_rules():
    """estimator=predicted stores the Fisher at the model's own labels; it needs importance=exact."""
    from forgetbench.benchmark.data.loaders import dataset_tensors
    from forgetbench.strategies.ewc import EWCParams, EWCPlugin

    scenario = two_model()
    _, exps = plugin_after_a(scenario)
    strategy = fake_strategy(scenario.model, exps[0])
    strategy.device = torch.device("cpu")
    ewc = EWCPlugin(EWCParams(ewc_lambda=1.0, importance="exact", estimator="predicted"))
    ewc.after_training_exp(strategy)
    stored = dict(zip(ewc.quadratic.names, ewc.quadratic.weights))
    x, y = dataset_tensors(exps[0].dataset)[:2]
    expected = exact_fisher_diagonal(scenario.model, x, y, exps[0].task_labels[0], estimator="predicted")
    for name, value in expected.items():
        torch.testing.assert_close(stored[name], value)
    with pytest.raises(ValueError, match="estimator applies only to importance 'exact'"):
        EWCParams(estimator="predicted")
    assert EWCParams(importance="exact", estimator="predicted").estimator == "predicted"


def test_max_curvature_caps_only_entries_above_it_and_keeps_anchors():
    """With a cap c, the gradient on shared weight i is min(alpha F_i, c) (theta_i - theta_hat_i):
    entries below c/alpha exactly as the paper's penalty, the others at curvature c."""
    torch.manual_seed(0)
    scenario = two_model()
    model = scenario.model
    plugin, exps = plugin_after_a(scenario, alpha=3.0)
    shared = ["shared.0.0.weight", "shared.0.0.bias"]
    fisher = {n: plugin.importance[n].clone() for n in shared}
    cap = 3.0 * float(torch.cat([fisher[n].flatten() for n in shared]).median())  # half the entries above it
    plugin.max_curvature = cap
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    plugin.before_training_exp(fake_strategy(model, exps[1]))
    model.zero_grad()
    plugin.penalty().backward()
    named = dict(model.named_parameters())
    for n in shared:
        curvature = torch.clamp(3.0 * fisher[n], max=cap)
        torch.testing.assert_close(named[n].grad, curvature * (named[n].detach() - plugin.anchor[n]))
    assert plugin.capped_entries > 0
    assert plugin.extra_results()["wpl_capped_entries"] == plugin.capped_entries
    torch.testing.assert_close(
        plugin.importance["shared.0.0.weight"], fisher["shared.0.0.weight"]
    )  # running F untouched


def test_stable_curvature_auto_is_an_eighth_of_the_sgd_bound_and_none_for_adam():
    from forgetbench.strategies.penalty import stable_curvature

    sgd = TrainingConfig(optimizer="sgd", lr=0.05, momentum=0.9)
    assert stable_curvature("auto", sgd) == pytest.approx(2 * 1.9 / 0.05 / 8)
    assert stable_curvature(7.0, sgd) == 7.0 and stable_curvature(None, sgd) is None
    assert stable_curvature("auto", TrainingConfig(optimizer="adam", lr=1e-3)) is None


def test_mas_cap_clamps_the_penalty_not_the_running_importance():
    from forgetbench.strategies.mas import fast_mas_plugin

    FastMASPlugin = fast_mas_plugin()
    model = torch.nn.Linear(3, 2)
    plugin = FastMASPlugin(lambda_reg=2.0, alpha=0.5, max_curvature=1.0)  # cap on Omega: 1 / (2 * 2) = 0.25
    anchor = {n: p.detach().clone() for n, p in model.named_parameters()}
    omega = {n: torch.linspace(0, 1, p.numel()).reshape(p.shape) for n, p in model.named_parameters()}
    plugin.importance = {n: SimpleNamespace(expand=lambda shape, t=t: t.expand(shape)) for n, t in omega.items()}
    plugin.params = {n: SimpleNamespace(expand=lambda shape, t=t: t.expand(shape)) for n, t in anchor.items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5)
    strategy = SimpleNamespace(model=model, loss=torch.ones(()), clock=SimpleNamespace(train_exp_counter=1))
    plugin.before_training_exp(strategy)
    plugin.before_backward(strategy)
    expected = 1 + 2.0 * sum((omega[n].clamp(max=0.25) * 0.25).sum() for n in omega)
    torch.testing.assert_close(strategy.loss.detach(), torch.as_tensor(expected, dtype=torch.float32))
    assert float(omega["weight"].max()) == 1.0  # the stored importance is not clamped


# ------------------------------------------------------------------ wpl_enas: the authors' per-update code
def _authors_update_fisher(fisher, grad, args, epoch):
    """A transcription, in NumPy, of ``_update_fisher`` in models/wpl_module.py of kcyu2014/multi-model-forgetting
    (their stored value per tensor after one update; ``epoch`` is the update's index here)."""
    import numpy as np

    if grad is None:
        return np.zeros_like(fisher)
    alpha = args.alpha_fisher
    if epoch >= args.alpha_decay_after:
        degree = max(epoch - args.alpha_decay_after + 1, 0)
        alpha = max(args.alpha_fisher - degree * args.alpha_decay, 0)
    if args.momentum:
        fisher = fisher * (1 - args.lambda_fisher)
    fisher = fisher + args.lambda_fisher * grad**2
    if args.fisher_clip_by_norm > 0 and np.linalg.norm(fisher) > args.fisher_clip_by_norm:
        fisher = fisher / np.linalg.norm(fisher) * args.fisher_clip_by_norm
    return fisher * alpha


@pytest.mark.parametrize("momentum", [True, False])
def test_per_update_mode_equals_the_authors_update_step_by_step(momentum):
    """Three models of a shared trunk: after each, the plugin's stored importance equals the transcription of the
    authors' update fed the same mini-batch gradient (multiply by alpha, clip, momentum, linear alpha decay)."""
    import numpy as np

    scenario = split3()
    args = SimpleNamespace(
        alpha_fisher=3.0,
        lambda_fisher=0.7,
        momentum=momentum,
        fisher_clip_by_norm=0.05,
        alpha_decay=1.0,
        alpha_decay_after=1,
    )
    params = WPLENASParams(
        alpha=3.0,
        fisher_batches=1,
        momentum=0.7,
        accumulate="momentum" if momentum else "sum",
        clip_norm=0.05,
        alpha_linear_decay=1.0,
        alpha_decay_after=1,
        max_curvature=None,
    )
    # adaptive: as in a search, every model's update runs (none is skipped as the last of a known schedule)
    plugin = WPLPlugin(params, scenario.turn_used_params, seed=5, adaptive=True)
    twin = torch.Generator().manual_seed(5)  # the plugin's draws of the mini-batch, replayed
    exps = scenario.avalanche_benchmark().train_stream
    reference: dict[str, np.ndarray] = {}
    model = scenario.model
    for t in range(3):
        with torch.no_grad():  # every model moves the weights a little, as training would
            for p in model.parameters():
                p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(t)))
        strategy = SimpleNamespace(
            model=model, experience=exps[t], loss=torch.zeros(()), train_mb_size=16, device=torch.device("cpu")
        )
        plugin.before_training_exp(strategy)
        plugin.after_training_exp(strategy)
        task = scenario.tasks[t]
        rows = torch.randint(len(task.train_y), (16,), generator=twin)
        names = sorted(scenario.tasks[t].used_params)
        named = dict(model.named_parameters())
        loss = torch.nn.functional.cross_entropy(model.forward_single_task(task.train_x[rows], t), task.train_y[rows])
        grads = torch.autograd.grad(loss, [named[n] for n in names])
        for name, g in zip(names, grads):
            before = reference.get(name, np.zeros(tuple(g.shape), dtype=np.float64))
            reference[name] = _authors_update_fisher(before, g.double().numpy(), args, t)
        assert set(plugin.importance) == set(reference)
        for name, value in reference.items():
            np.testing.assert_allclose(plugin.importance[name].double().numpy(), value, rtol=1e-5, atol=1e-12)
    # model 2: alpha = 3 - (2 - 1 + 1) x 1 = 1; the stored norm of a clipped tensor is alpha x clip
    assert float(torch.linalg.vector_norm(plugin.importance["trunk.1.weight"])) <= 1.0 * 0.05 * (1 + 1e-5)


def test_per_update_penalty_is_half_the_stored_importance_times_the_squared_distance():
    scenario = split3()
    plugin = WPLPlugin(WPLENASParams(alpha=50.0, accumulate="momentum", max_curvature=None), scenario.turn_used_params)
    exps = scenario.avalanche_benchmark().train_stream
    strategy = SimpleNamespace(
        model=scenario.model, experience=exps[0], loss=torch.zeros(()), train_mb_size=16, device=torch.device("cpu")
    )
    plugin.before_training_exp(strategy)
    plugin.after_training_exp(strategy)
    with torch.no_grad():
        scenario.model.trunk[1].weight.add_(0.3)
    plugin.before_training_exp(SimpleNamespace(model=scenario.model, experience=exps[1]))
    named = dict(scenario.model.named_parameters())
    by_hand = sum(
        0.5 * (plugin.importance[n] * (named[n] - plugin.anchor[n]) ** 2).sum() for n in plugin.shared_names(1)
    )
    assert (
        float(plugin.penalty().detach()) == pytest.approx(float(by_hand.detach()), rel=1e-5)
        and float(by_hand.detach()) > 0
    )


def test_wpl_is_the_equation_and_names_its_variants_for_their_options():
    # the authors' per-update scaling and the online estimate moved to strategies of their own; a config that asks
    # wpl for them is told where
    with pytest.raises(ValueError, match="alpha_mode: wpl_enas now"):
        WPLParams(alpha_mode="per_update")
    with pytest.raises(ValueError, match="alpha_linear_decay: wpl_enas now"):
        WPLParams(alpha_linear_decay=0.1)
    with pytest.raises(ValueError, match="fisher: online: wpl_online now"):
        WPLParams(fisher="online")
    with pytest.raises(ValueError, match="clip_norm, start_after: wpl_online now"):
        WPLParams(clip_norm=10.0, start_after=3)
    # records written before hold the retired keys at their defaults: the same params as today
    retired = {"alpha_mode": "equation", "alpha_linear_decay": 0.0, "alpha_decay_after": 0, "alpha_decay": 1.0}
    assert WPLParams(**retired, clip_norm=None, reset_every=None, start_after=0, fisher_batches=1) == WPLParams()
    for model in (WPLParams, WPLOnlineParams, WPLENASParams):
        assert len(model.model_fields) <= 10, model


def test_a_wpl_record_written_with_the_retired_params_at_their_defaults_is_still_complete():
    from forgetbench.benchmark.core.config import resolve_config
    from forgetbench.benchmark.core.store import is_complete
    from forgetbench.benchmark.run.spec import expand_suite
    from conftest import tiny_suite
    from helpers import make_record

    (spec,) = expand_suite(resolve_config(tiny_suite(strategies=[{"name": "wpl"}])))
    resolved, retired = spec.resolved(), spec.retired_params()
    assert retired == WPLParams.retired_defaults
    before = {**resolved, "strategy": {**resolved["strategy"], "params": {**resolved["strategy"]["params"], **retired}}}
    record = make_record({"status": "ok", "accuracy_matrix": [[0.9, 0.1], [0.8, 0.9]], "config": before})
    assert is_complete(record, resolved, retired) and not is_complete(record, resolved)
    changed = {**before, "strategy": {**before["strategy"], "params": {**before["strategy"]["params"], "alpha": 1.0}}}
    assert not is_complete(
        make_record({"status": "ok", "accuracy_matrix": [[0.9]], "config": changed}), resolved, retired
    )
