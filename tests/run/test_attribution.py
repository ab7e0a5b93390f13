"""Forgetting attribution (``training.attribution``): the quadratic prediction, the first-order term, the per-layer
split, and that measuring it changes no number of the run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import tiny_suite
import torch
import torch.nn as nn

import forgetbench
from forgetbench.benchmark.data.scenarios.base import Task
from forgetbench.benchmark.run.attribution import Attribution, layer_of, layer_terms


@pytest.mark.effect
def test_linear_gaussian_loss_increase_equals_the_prediction_with_the_true_fisher():
    """One linear layer, squared loss 1/2 (w.x + b - y)^2 (a unit-variance Gaussian likelihood), inputs with
    orthogonal columns: the loss is exactly quadratic with a diagonal Hessian E[x_i^2], which is the true
    Fisher, and at the least-squares solution the gradient is zero, so the observed increase after any move is
    exactly (1/2) sum F_i delta_i^2."""
    torch.manual_seed(0)
    n = 64
    signs = torch.tensor([[1.0 if (r >> c) & 1 else -1.0 for c in range(6)] for r in range(n)], dtype=torch.float64)
    x = signs * torch.tensor([0.5, 1.0, 1.5, 2.0, 3.0, 0.25], dtype=torch.float64)  # orthogonal, zero-mean columns
    y = x @ torch.randn(6, 3, dtype=torch.float64) + 0.3 * torch.randn(n, 3, dtype=torch.float64)
    net = nn.Sequential(nn.Linear(6, 3)).double()
    layer = net[0]
    design = torch.cat([x, torch.ones(n, 1, dtype=torch.float64)], 1)
    solution = torch.linalg.lstsq(design, y).solution
    with torch.no_grad():
        layer.weight.copy_(solution[:6].T)
        layer.bias.copy_(solution[6])

    def loss() -> torch.Tensor:
        return 0.5 * ((layer(x) - y) ** 2).sum(1).mean()

    anchor = {n_: p.detach().clone() for n_, p in net.named_parameters()}
    before = loss()
    grad = dict(zip(anchor, torch.autograd.grad(before, list(layer.parameters()))))
    true_fisher = {"0.weight": (x**2).mean(0).expand(3, 6).clone(), "0.bias": torch.ones(3, dtype=torch.float64)}
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.7 * torch.randn_like(p))
    observed = float(loss().detach() - before.detach())
    theta = {n_: p.detach() for n_, p in net.named_parameters()}
    (row,) = layer_terms(theta, anchor, true_fisher, grad, ["0.weight", "0.bias"])
    assert row.layer == "0"
    assert abs(row.first_order) < 1e-10  # the least-squares solution is an exact minimum
    assert observed > 0.1
    assert abs(row.predicted - observed) < 1e-5
    assert row.drift == pytest.approx(float(sum(((theta[k] - anchor[k]) ** 2).sum() for k in anchor)) ** 0.5)


def test_layer_terms_group_by_module_and_sum_by_hand():
    anchor = {"a.0.weight": torch.tensor([1.0, 2.0]), "a.0.bias": torch.tensor([0.0]), "b.weight": torch.tensor([3.0])}
    theta = {"a.0.weight": torch.tensor([2.0, 2.0]), "a.0.bias": torch.tensor([1.0]), "b.weight": torch.tensor([3.0])}
    fisher = {"a.0.weight": torch.tensor([4.0, 9.0]), "a.0.bias": torch.tensor([2.0]), "b.weight": torch.tensor([5.0])}
    grad = {"a.0.weight": torch.tensor([0.5, 7.0]), "a.0.bias": torch.tensor([-1.0]), "b.weight": torch.tensor([1.0])}
    rows = layer_terms(theta, anchor, fisher, grad, sorted(anchor))
    assert [r.layer for r in rows] == ["a.0", "b"]
    a, b = rows
    assert a.predicted == pytest.approx(0.5 * (4 * 1 + 9 * 0 + 2 * 1))  # deltas (1, 0) and (1)
    assert a.first_order == pytest.approx(0.5 * 1 + 7 * 0 - 1 * 1)
    assert a.drift == pytest.approx(2**0.5) and a.relative_drift == pytest.approx((2 / 5) ** 0.5)
    assert (b.predicted, b.first_order, b.drift) == (0.0, 0.0, 0.0)
    assert layer_of("trunk.0.weight") == "trunk.0" and layer_of("scale") == "scale"


class TwoHeads(nn.Module):
    """A shared trunk and one head per task, as the harness's models are called."""

    def __init__(self):
        super().__init__()
        self.trunk = nn.Linear(2, 2)
        self.heads = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])

    def forward_single_task(self, x: torch.Tensor, task: int) -> torch.Tensor:
        return self.heads[task](self.trunk(x))


def _task(key: int, x: torch.Tensor, y: torch.Tensor, used: set[str]) -> Task:
    return Task(
        name=f"t{key}",
        model_key=key,
        train_x=x,
        train_y=y,
        test_x=x,
        test_y=y,
        used_params=frozenset(used),
        num_classes=2,
    )


def test_first_order_term_is_zero_at_an_exact_minimum_and_only_shared_layers_are_attributed():
    """Task 0's inputs are the same for both classes (balanced), so with the head's weights at zero and its bias
    at zero the cross-entropy is at its exact minimum (every gradient is zero, whatever the trunk)."""
    model = TwoHeads()
    with torch.no_grad():
        model.heads[0].weight.zero_()
        model.heads[0].bias.zero_()
    x = torch.tensor([[1.0, -1.0], [1.0, -1.0], [-2.0, 0.5], [-2.0, 0.5]])
    y = torch.tensor([0, 1, 0, 1])
    trunk = {"trunk.weight", "trunk.bias"}
    tasks = [
        _task(0, x, y, trunk | {"heads.0.weight", "heads.0.bias"}),
        _task(1, x, 1 - y, trunk | {"heads.1.weight", "heads.1.bias"}),
    ]
    attribution = Attribution(samples=4, seed=0)
    assert attribution.after_turn(model, 0, 0, tasks, torch.device("cpu")) == []
    snapshot = attribution.snapshots[0]
    assert max(float(g.abs().max()) for g in snapshot.grad.values()) < 1e-7
    with torch.no_grad():  # "train" task 1: move the trunk and task 1's head
        model.trunk.weight.add_(0.5)
        model.heads[1].bias.add_(1.0)
        model.heads[0].bias.add_(0.3)  # an unshared parameter of model 0: not attributed to the sharing
    (entry,) = attribution.after_turn(model, 1, 1, tasks, torch.device("cpu"))
    assert entry.model == 0 and [layer.layer for layer in entry.layers] == ["trunk"]
    assert abs(entry.first_order) < 1e-6
    assert entry.predicted == pytest.approx(sum(layer.predicted for layer in entry.layers))


TWO_MODEL = tiny_suite(
    name="attr",
    scenarios=[
        {
            "name": "two_model",
            "label": "two-model",
            "params": {
                "dataset": "digits",
                "depth_a": 2,
                "depth_b": 3,
                "width": 64,
                "shared": 2,
                "a_steps": 150,
                "b_steps": 150,
            },
        }
    ],
    strategies=[{"name": "naive"}, {"name": "wpl"}],
)
TWO_MODEL["training"] = {**TWO_MODEL["training"], "eval_batch_size": 1000}


def _records(tmp_path: Path, name: str, suite: dict) -> dict[str, dict]:
    forgetbench.run_suite(suite, out=tmp_path / name, progress=False)
    return {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / name).glob("runs/*/result.json")}


@pytest.mark.parametrize("eval_every", [None, 50])
def test_attribution_changes_no_number_of_the_run(eval_every, tmp_path):
    """With curves on, the earlier model is also attributed at every curve point inside the later turn."""
    training = {**TWO_MODEL["training"], "eval_every": eval_every}
    on = _records(tmp_path, "on", {**TWO_MODEL, "training": {**training, "attribution": 128}})
    off = _records(tmp_path, "off", {**TWO_MODEL, "training": training})
    for run_id, record in on.items():
        assert record["accuracy_matrix"] == off[run_id]["accuracy_matrix"]
        assert record["init_accuracy"] == off[run_id]["init_accuracy"]
        assert record.get("curves") == off[run_id].get("curves")
        assert off[run_id].get("attribution") is None and record["timing"]["attribution_seconds"] > 0
        points = [(e["turn"], e["iteration"], e["model"]) for e in record["attribution"]]
        inside = [(1, i, 0) for i in (50, 100)] if eval_every else []  # B's 150 steps: 50, 100 (150 = its end)
        assert points == inside + [(1, None, 0)]


@pytest.mark.slow
def test_two_model_mnist_layers_sum_to_the_total_and_only_the_shared_layers_carry_it(tmp_path):
    if not (Path(os.environ.get("FORGETBENCH_DATA", "")) / "mnist").exists():
        if os.environ.get("CI"):
            pytest.fail("MNIST is missing under $FORGETBENCH_DATA (CI must run this test)")
        pytest.skip("MNIST is not under $FORGETBENCH_DATA")
    suite = {
        **TWO_MODEL,
        "training": {**TWO_MODEL["training"], "attribution": 512},
        "scenarios": [
            {
                "name": "two_model",
                "label": "two-model",
                "params": {
                    "dataset": "mnist",
                    "depth_a": 3,
                    "depth_b": 4,
                    "width": 128,
                    "shared": 2,
                    "a_steps": 300,
                    "b_steps": 300,
                    "max_train": 10000,
                },
            }
        ],
    }
    records = _records(tmp_path, "mnist", suite)
    for record in records.values():
        (entry,) = record["attribution"]  # model A, after B's turn
        assert entry["turn"] == 1 and entry["model"] == 0
        assert [layer["layer"] for layer in entry["layers"]] == ["shared.0.0", "shared.1.0"]
        assert entry["predicted"] == pytest.approx(sum(layer["predicted"] for layer in entry["layers"]), rel=1e-9)
        assert entry["first_order"] == pytest.approx(
            sum(layer["first_order"] for layer in entry["layers"]), rel=1e-9, abs=1e-12
        )
        assert all(layer["drift"] > 0 and layer["predicted"] >= 0 for layer in entry["layers"])
    naive, wpl = records["two-model__naive__seed0"], records["two-model__wpl__seed0"]
    # WPL holds the shared layers near A's weights: less drift, a smaller observed and predicted increase
    assert wpl["attribution"][0]["observed"] < naive["attribution"][0]["observed"]
    assert wpl["attribution"][0]["predicted"] < naive["attribution"][0]["predicted"]
