"""The two-model scenario of the WPL paper, and forgetting curves."""

from __future__ import annotations

import pytest
import torch

from forgetbench.benchmark.core.config import ConfigError, resolve_config
from forgetbench.benchmark.run.runner import run
from conftest import tiny_suite
from helpers import two_model
from helpers import two_model_spec as _spec


def test_shared_layers_are_the_same_modules():
    scenario = two_model(depth_a=3, depth_b=4, shared=2)
    model = scenario.model
    a, b = scenario.tasks[0].used_params, scenario.tasks[1].used_params
    assert a & b == {f"shared.{i}.0.{k}" for i in range(2) for k in ("weight", "bias")}
    assert all(n.startswith(("shared.", "private_a.", "head_a.")) for n in a)
    assert all(n.startswith(("shared.", "private_b.", "head_b.")) for n in b)
    assert len(model.private_a) == 1 and len(model.private_b) == 2
    # B really runs through the shared module: changing it changes both outputs
    x = scenario.tasks[0].test_x[:3]
    out_a, out_b = model(x, 0), model(x, 1)
    with torch.no_grad():
        model.shared[0][0].bias.add_(1.0)
    assert not torch.equal(out_a, model(x, 0)) and not torch.equal(out_b, model(x, 1))


def test_used_params_are_exactly_what_gets_gradients():
    scenario = two_model(shared=1)
    model = scenario.model
    for task in scenario.tasks:
        model.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(task.train_x[:8], task.model_key), task.train_y[:8]).backward()
        assert {n for n, p in model.named_parameters() if p.grad is not None} == task.used_params


def test_permuted_b_uses_one_seeded_permutation_for_train_and_test():
    scenario = two_model(data_b="permuted")
    a, b = scenario.tasks
    perm = torch.tensor(scenario.meta["permutation"])
    assert sorted(perm.tolist()) == list(range(a.train_x.shape[1])) and not torch.equal(perm, torch.arange(len(perm)))
    torch.testing.assert_close(b.train_x, a.train_x[:, perm])
    torch.testing.assert_close(b.test_x, a.test_x[:, perm])
    assert torch.equal(a.train_y, b.train_y)
    assert two_model(data_b="permuted").meta["permutation"] == perm.tolist()
    assert two_model(seed=1, data_b="permuted").meta["permutation"] != perm.tolist()


def test_same_and_class_subset():
    same = two_model(data_b="same")
    assert torch.equal(same.tasks[0].train_x, same.tasks[1].train_x)
    subset = two_model(data_b=[3, 7, 9])
    b = subset.tasks[1]
    assert set(b.train_y.unique().tolist()) == {0, 1, 2} and b.num_classes == 3
    assert subset.model.head_b.out_features == 3


def test_steps_budget_becomes_the_schedule():
    scenario = two_model(a_steps=11, b_steps=7)
    assert [t.max_steps for t in scenario.schedule] == [11, 7]


def test_shared_out_of_range_is_a_config_error():
    raw = tiny_suite(scenarios=[{"name": "two_model", "params": {"dataset": "digits", "depth_a": 2, "shared": 3}}])
    with pytest.raises(
        ConfigError, match=r"scenarios\[0\]\.params: .*shared must be in 1\.\.min\(depth_a, depth_b\) = 1\.\.2, got 3"
    ):
        resolve_config(raw)


def test_curves_structure_and_consistency_with_the_matrix():
    record = run(_spec("naive", {}), data_root=None)
    assert record.status == "ok" and record.timing.steps == 70
    curves = record.curves
    during_a = [c for c in curves if c.train_exp == 0]
    during_b = [c for c in curves if c.train_exp == 1]
    assert [c.iteration for c in during_a] == [0, 5, 10, 15, 20, 25, 30]
    assert {c.eval_exp for c in during_a} == {0}
    assert {c.eval_exp for c in during_b} == {0, 1}  # the earlier model A, and B itself
    iters_b = sorted({c.iteration for c in during_b})
    assert iters_b == [0, 5, 10, 15, 20, 25, 30, 35, 40]
    R = record.accuracy_matrix
    a_at = {c.iteration: c.accuracy for c in during_b if c.eval_exp == 0}
    assert a_at[0] == R[0][0]  # A's accuracy before B trains == the matrix row after A
    assert a_at[40] == R[1][0]  # ... and at B's last step == the row after B
