"""The regularizers' per-step path, ``QuadraticAnchor.add_gradient``: the gradient it leaves in ``.grad`` at the end of
a backward pass is the one ``(loss + scale * Q).backward()`` gives (the autograd form, checked against a hand-written
quadratic in tests/strategies/test_regularizers.py), whatever the signs of A, the subset, the cap, the upstream gradient or a
parameter the data loss does not reach; and each plugin's ``before_backward`` on a real step equals the data loss
plus its own ``penalty`` differentiated by autograd."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from forgetbench.strategies.penalty import QuadraticAnchor


def _anchor(params, signed: bool, seed: int = 0) -> QuadraticAnchor:
    generator = torch.Generator().manual_seed(seed)
    q = QuadraticAnchor(scale=3.0)
    for _ in range(2):  # two terms: completes the square, so the constant is non-zero too
        weights = {
            str(i): torch.rand(p.shape, generator=generator) - (0.5 if signed else 0.0) for i, p in enumerate(params)
        }
        anchors = {str(i): p.detach() + torch.randn(p.shape, generator=generator) for i, p in enumerate(params)}
        q.add(weights, anchors)
    return q


def _data_loss(params):
    # the last tensor takes no part in the data loss: autograd leaves its .grad None
    return (params[0] @ torch.arange(4.0)).pow(2).sum() + params[1].sin().sum()


def _grads_both_ways(q, params, scale, subset=None, upstream=1.0):
    chosen = params if subset is None else [params[i] for i in subset]
    for p in params:
        p.grad = None
    (upstream * (_data_loss(params) + q.penalty(chosen, scale, subset))).backward()
    expected = [None if p.grad is None else p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    loss = _data_loss(params)
    total = q.add_gradient(loss, chosen, scale, subset)
    assert total is loss  # the value is left as it is
    (upstream * total).backward()
    return expected, [None if p.grad is None else p.grad.clone() for p in params]


def _tensors(seed: int | None = None) -> list[torch.Tensor]:
    """Three parameter tensors of three shapes (a matrix, two vectors), drawn after ``manual_seed(seed)`` if given."""
    if seed is not None:
        torch.manual_seed(seed)
    return [torch.randn(shape, requires_grad=True) for shape in ((3, 4), (5,), (2,))]


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("upstream", [1.0, 2.5])
def test_add_gradient_leaves_the_gradient_of_loss_plus_penalty(signed, upstream):
    params = _tensors(seed=0)
    q = _anchor(params, signed)
    expected, got = _grads_both_ways(q, params, scale=0.7, upstream=upstream)
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=1e-6, atol=1e-6)
    assert got[2] is not None and got[2].abs().sum() > 0  # the penalty's alone where no data gradient arrived


def test_add_gradient_on_a_subset_touches_only_its_tensors():
    params = _tensors(seed=1)
    q = _anchor(params, signed=False)
    expected, got = _grads_both_ways(q, params, scale=2.0, subset=[1, 2])
    for e, g in zip(expected, got):  # tensor 0 outside the subset: the data's gradient alone on both sides
        torch.testing.assert_close(g, e, rtol=1e-6, atol=1e-6)
    for p in params:
        p.grad = None
    _data_loss(params).backward()
    torch.testing.assert_close(got[0], params[0].grad)


def test_a_reused_hook_follows_a_changed_anchor_and_a_new_scale():
    """The prepared hook is reused while the same list comes back; a cap (or add/replace) changes A, and the next step
    uses the new A; a new scale prepares a new hook."""
    params = _tensors(seed=2)
    q = _anchor(params, signed=False)
    chosen = list(params)

    def step(scale):
        for p in params:
            p.grad = None
        q.add_gradient(_data_loss(params), chosen, scale).backward()
        return [p.grad.clone() for p in params]

    step(1.0)
    hook = q._hook
    q.penalize_at_most(0.05)
    assert q.capped > 0
    got = step(1.0)
    assert q._hook is hook  # reused, re-prepared from the new version
    for p in params:
        p.grad = None
    (_data_loss(params) + q.penalty(chosen, 1.0)).backward()
    for g, p in zip(got, params):
        torch.testing.assert_close(g, p.grad, rtol=1e-6, atol=1e-6)
    got = step(4.0)
    assert q._hook is not hook
    for p in params:
        p.grad = None
    (_data_loss(params) + q.penalty(chosen, 4.0)).backward()
    for g, p in zip(got, params):
        torch.testing.assert_close(g, p.grad, rtol=1e-6, atol=1e-6)


def test_add_gradient_on_a_loss_without_gradient_adds_the_value():
    params = [torch.randn(3, requires_grad=True)]
    q = _anchor(params, signed=False)
    total = q.add_gradient(torch.zeros(()), params, 2.0)
    torch.testing.assert_close(total.detach(), q.penalty(params, 2.0).detach())


def test_each_backward_pass_adds_it_once_as_autograd_would():
    """retain_graph and a second backward: the penalty's gradient is added per pass, like a term of the loss."""
    params = _tensors()
    q = _anchor(params, signed=True)
    loss = q.add_gradient(_data_loss(params), params, 1.5)
    loss.backward(retain_graph=True)
    loss.backward()
    twice = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    reference = _data_loss(params) + q.penalty(params, 1.5)
    reference.backward(retain_graph=True)
    reference.backward()
    for g, p in zip(twice, params):
        torch.testing.assert_close(g, p.grad, rtol=1e-6, atol=1e-6)


def test_gradient_is_in_place_before_after_backward_plugins_run():
    """An after_backward plugin (a mask, a projection, clipping) must see the penalty's gradient: the template's
    backward returns with it in .grad."""
    from forgetbench.strategies.ewc import EWCParams, EWCPlugin

    torch.manual_seed(3)
    model = torch.nn.Linear(4, 3)
    plugin = EWCPlugin(EWCParams(ewc_lambda=5.0))
    names = [n for n, _ in model.named_parameters()]
    plugin.quadratic.add(
        {n: torch.rand_like(p) for n, p in model.named_parameters()},
        {n: p.detach() + 0.3 for n, p in model.named_parameters()},
    )
    plugin._params, plugin._subset = [dict(model.named_parameters())[n] for n in names], None
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    strategy = SimpleNamespace(loss=torch.nn.functional.cross_entropy(model(x), y))
    plugin.before_backward(strategy)
    strategy.loss.backward()
    seen = [p.grad.clone() for p in model.parameters()]  # what after_backward would see
    model.zero_grad()
    (torch.nn.functional.cross_entropy(model(x), y) + plugin.quadratic.penalty(plugin._params, 5.0)).backward()
    for s, p in zip(seen, model.parameters()):
        torch.testing.assert_close(s, p.grad, rtol=1e-6, atol=1e-7)


def test_wpl_step_equals_data_loss_plus_its_penalty():
    """WPL after model A, on a batch of model B: before_backward's gradient is B's data loss plus (alpha/2) sum F
    (theta - theta_A)^2 over the shared weights, differentiated by autograd; B's own layers get the data's alone."""
    from forgetbench.benchmark.data.loaders import dataset_tensors
    from helpers import two_model
    from test_wpl import fake_strategy, plugin_after_a

    torch.manual_seed(4)
    scenario = two_model()
    model = scenario.model
    plugin, exps = plugin_after_a(scenario, alpha=3.0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    strategy = fake_strategy(model, exps[1])
    plugin.before_training_exp(strategy)
    x, y = dataset_tensors(exps[1].dataset)[:2]
    task = exps[1].task_labels[0]

    def data_loss():
        return torch.nn.functional.cross_entropy(model(x[:16], task), y[:16])

    model.zero_grad()
    strategy.loss = data_loss()
    plugin.before_backward(strategy)
    strategy.loss.backward()
    got = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    (data_loss() + plugin.penalty()).backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert set(got) == set(expected) and set(plugin.penalised_names) < set(got)
    for n in expected:
        torch.testing.assert_close(got[n], expected[n], rtol=1e-6, atol=1e-7)
