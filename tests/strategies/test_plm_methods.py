"""Continual methods on a pretrained language model's adapters (issue 35): O-LoRA's orthogonality loss,
InfLoRA's projection, continual merging through PEFT's rules, the adapters' diagnostics, the domain-IL text head,
and the Fisher's scale on a confident model (normalisation, whether a penalty acts)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from forgetbench.strategies.adapters import adapter_diagnostics, principal_overlap
from forgetbench.strategies.passes import normalise_importance
from forgetbench.strategies.inflora import grow_basis, project_out
from forgetbench.strategies.merge import combine
from forgetbench.strategies.olora import orthogonality_loss
from forgetbench.strategies.penalty import PenaltyDiagnostics, penalty_gradient_ratio, penalty_strength_results
from text_fixtures import text_scenario


def _train(name: str, params: dict, scenario, stop_before_last: bool = False):
    from forgetbench.benchmark.core.config import TrainingConfig
    from forgetbench.benchmark.run.schedule import build_strategy, scheduled_experiences
    from forgetbench.benchmark.train.harness import Harness

    training = TrainingConfig(optimizer="adam", lr=1e-3, batch_size=8, epochs=1, eval_batch_size=64)
    torch.manual_seed(0)  # dropout and PEFT's initial draws use the global RNG (the runner seeds it per run)
    strategy = build_strategy(name, params, scenario, scenario.model, training, torch.device("cpu"), 0, Harness())
    experiences = [e for _, e in scheduled_experiences(scenario)]
    for experience in experiences[:-1] if stop_before_last else experiences:
        strategy.train(experience)
    return strategy, experiences


def _plugin(strategy, kind):
    return next(p for p in strategy.plugins if isinstance(p, kind))


# ------------------------------------------------------------------ O-LoRA
def test_orthogonality_loss_is_the_sum_of_squared_entries_of_old_a_times_new_a():
    a_old = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # r = 2 rows over in = 3
    a_new = torch.tensor([[1.0, 1.0, 0.0]])  # O = A_old^T A_new in the paper's layout: entries (1, 1) -> 1 + 1
    other_old, other_new = torch.tensor([[2.0, 0.0]]), torch.tensor([[3.0, 1.0], [0.0, 1.0]])  # entries 6, 0 -> 36
    assert float(orthogonality_loss([[a_old, other_old]], [a_new, other_new])) == pytest.approx(2.0 + 36.0)
    second = torch.tensor([[0.0, 0.0, 2.0]])  # a second earlier task: (0*1 + 0*1 + 2*0)^2 = 0 on layer 0
    assert float(orthogonality_loss([[a_old, other_old], [second, other_old]], [a_new, other_new])) == pytest.approx(
        2.0 + 36.0 + 0.0 + 36.0
    )
    assert float(orthogonality_loss([], [a_new])) == 0.0


def test_olora_adds_lambda_times_the_orthogonality_loss_of_its_adapters(tmp_path):
    """On the transformer: task 1's loss term is lam * sum over q/v layers of ||A_0 A_1^T||^2 computed from the
    adapters' own weights; the backbone's weights never move, task 0's adapter is frozen in task 1, and
    evaluation runs with both adapters (no task identity)."""
    from forgetbench.strategies.olora import OLoRAPlugin

    scenario = text_scenario(tmp_path, head="multi")
    strategy, experiences = _train("olora", {"rank": 2, "lam": 0.5}, scenario, stop_before_last=True)
    plugin = _plugin(strategy, OLoRAPlugin)
    model = strategy.model
    backbone = {n: p.detach().clone() for n, p in model.named_parameters() if "base_layer" in n}
    assert backbone and all(not p.requires_grad for n, p in model.named_parameters() if "base_layer" in n)
    first_a = [a.detach().clone() for a in model.adapter_parameters(0, "lora_A")]
    added, original = [], plugin.before_backward

    def check(strategy_, **kwargs):  # the loss term against A_0, A_1 as they are at this step
        before = float(strategy_.loss.detach())
        original(strategy_, **kwargs)
        new_a = model.adapter_parameters(1, "lora_A")
        hand = sum(float(((old @ new.T) ** 2).sum()) for old, new in zip(first_a, new_a))
        added.append((float(strategy_.loss.detach()) - before, 0.5 * hand))

    plugin.before_backward = check
    strategy.train(experiences[1])
    assert len(added) == 5 and len(model.adapter_parameters(1, "lora_A")) == 2  # 40 samples / 8; query and value
    for got, hand in added:  # got is a difference of two float32 losses near 0.7: exact to about 2 ulp of them
        assert hand > 0 and got == pytest.approx(hand, rel=1e-3, abs=2e-7)
    assert plugin.last_orthogonality[0] == 0.0 and plugin.last_orthogonality[1] == pytest.approx(
        2 * added[-1][1], rel=1e-3
    )
    assert all(torch.equal(p, backbone[n]) for n, p in model.named_parameters() if n in backbone)
    assert all(torch.equal(a, b) for a, b in zip(first_a, model.adapter_parameters(0, "lora_A")))
    _, layer = next(model.lora_layers())
    model.eval()
    assert sorted(layer.active_adapters) == ["task0", "task1"]
    results = plugin.extra_results()
    assert [row["task"] for row in results["adapters"]["per_task"]] == [0, 1]
    assert results["adapters"]["needs_task_identity"] is False


# ------------------------------------------------------------------ InfLoRA
def test_grow_basis_adds_the_residual_directions_until_the_threshold():
    e = torch.eye(4, dtype=torch.float64)
    gram = torch.diag(torch.tensor([9.0, 4.0, 1.0, 0.0], dtype=torch.float64))  # energy 9 + 4 + 1 = 14
    basis = grow_basis(torch.zeros(4, 0, dtype=torch.float64), gram, threshold=0.9, max_dims=3)
    # 9/14 = 0.64 < 0.9, (9 + 4)/14 = 0.93 >= 0.9: two directions, e0 and e1 (up to sign)
    assert basis.shape == (4, 2) and torch.allclose(basis.abs(), e[:, :2])
    more = grow_basis(basis, gram, threshold=0.99, max_dims=3)  # the residual's top direction is e2
    assert more.shape == (4, 3) and torch.allclose(more[:, 2].abs(), e[:, 2])
    assert grow_basis(more, gram, threshold=0.999, max_dims=3).shape == (4, 3)  # capped at max_dims
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=torch.float64)
    assert torch.allclose(project_out(a, basis), torch.tensor([[0.0, 0.0, 3.0, 4.0]], dtype=torch.float64))


def test_inflora_new_a_lies_in_the_complement_of_the_earlier_input_subspace(tmp_path):
    """After task 0 every adapted layer keeps a basis M of task 0's inputs; task 1's A rows have no component in
    span(M) (residual < 1e-5), A stays frozen while task 1 trains (only B moves), and M grows after task 1."""
    from forgetbench.strategies.inflora import InfLoRAPlugin

    scenario = text_scenario(tmp_path, head="multi")
    strategy, experiences = _train("inflora", {"rank": 2, "threshold": 0.9}, scenario, stop_before_last=True)
    plugin = _plugin(strategy, InfLoRAPlugin)
    bases = {name: b.clone() for name, b in plugin.bases.items()}
    assert set(bases) == {name for name, _ in strategy.model.lora_layers()} and all(
        b.shape[1] > 0 for b in bases.values()
    )
    for b in bases.values():  # orthonormal columns
        assert torch.allclose(b.T @ b, torch.eye(b.shape[1], dtype=b.dtype), atol=1e-8)
    strategy.train(experiences[1])
    for name, layer in strategy.model.lora_layers():
        a = layer.lora_A["task1"].weight.detach().double()
        assert float((a @ bases[name]).abs().max()) < 1e-5 * float(a.abs().max())
        assert float(layer.lora_B["task1"].weight.abs().sum()) > 0  # B trained from 0
        assert plugin.bases[name].shape[1] >= bases[name].shape[1]
    dims = plugin.extra_results()["inflora"]["subspace_dims"]
    assert all(d == plugin.bases[n].shape[1] for n, d in dims.items())


def test_inflora_trains_b_only(tmp_path):
    from forgetbench.strategies.inflora import InfLoRAPlugin

    scenario = text_scenario(tmp_path, head="multi")
    strategy, experiences = _train("inflora", {"rank": 2}, scenario, stop_before_last=True)
    plugin = _plugin(strategy, InfLoRAPlugin)
    snapshot = {}

    def remember(strategy_, **kwargs):
        snapshot.update({n: l.lora_A["task1"].weight.detach().clone() for n, l in strategy_.model.lora_layers()})

    original = plugin.before_training_epoch
    plugin.before_training_epoch = lambda s, **kw: (remember(s), original(s, **kw))
    strategy.train(experiences[1])
    assert snapshot and all(
        torch.equal(layer.lora_A["task1"].weight, snapshot[name]) for name, layer in strategy.model.lora_layers()
    )


# ------------------------------------------------------------------ merging through PEFT
def test_ties_and_magnitude_prune_give_peft_documented_result_by_hand():
    t1, t2 = torch.tensor([3.0, -1.0, 2.0, 0.5]), torch.tensor([-4.0, 2.0, 1.0, 0.1])
    # density 0.5 keeps each tensor's two largest magnitudes: [3, 0, 2, 0] and [-4, 2, 0, 0]
    assert torch.equal(combine([t1, t2], [1.0, 1.0], "magnitude_prune", 0.5), torch.tensor([-1.0, 2.0, 2.0, 0.0]))
    # TIES: elected signs from the pruned sum [-1, 2, 2, 0] -> (-, +, +, + for 0); entries agreeing are averaged
    assert torch.equal(combine([t1, t2], [1.0, 1.0], "ties", 0.5), torch.tensor([-4.0, 2.0, 2.0, 0.0]))
    # PEFT elects the signs before weighting (from the pruned tensors' plain sum), then weights the agreeing entries
    assert torch.equal(combine([t1, t2], [3.0, 1.0], "ties", 0.5), torch.tensor([-4.0, 2.0, 6.0, 0.0]))
    assert torch.equal(combine([t1, t2], [1.0, 0.5], "linear", 0.5), t1 + 0.5 * t2)  # density ignored


def test_dare_keeps_each_entry_with_probability_density_rescaled_and_is_reproducible():
    t1, t2 = torch.arange(1.0, 2001.0), -torch.arange(1.0, 2001.0) * 0.5
    one = combine([t1, t2], [1.0, 1.0], "dare_linear", 0.3, torch.Generator().manual_seed(0))
    again = combine([t1, t2], [1.0, 1.0], "dare_linear", 0.3, torch.Generator().manual_seed(0))
    assert torch.equal(one, again)
    # every entry is a sum of kept entries rescaled by 1 / 0.3: one of 0, t1/0.3, t2/0.3, (t1 + t2)/0.3
    options = torch.stack([torch.zeros_like(t1), t1 / 0.3, t2 / 0.3, (t1 + t2) / 0.3])
    assert bool(torch.isclose(options, one.expand_as(options), rtol=1e-5).any(0).all())
    kept = (one != 0).float().mean()
    assert 0.4 < float(kept) < 0.6  # P(some entry kept) = 1 - 0.7^2 = 0.51
    assert torch.equal(combine([t1, t2], [1.0, 1.0], "dare_linear", 1.0), t1 + t2)  # density 1: plain sum


def test_merge_linear_with_unit_weights_is_pic_task_arithmetic_at_lambda_1(tmp_path):
    """Same seed, same training (merge trains as PIC): linear merging with weights 1 computes exactly PIC's
    Theta_pre + 1 * sum tau_i, layer by layer and in the logits."""
    torch.manual_seed(0)  # the heads' initial weights
    scenario = text_scenario(tmp_path, classes_per_task=2)
    pic, _ = _train("pic", {"rank": 2, "lam": 1.0}, scenario)
    torch.manual_seed(0)
    scenario = text_scenario(tmp_path, classes_per_task=2)
    merged, _ = _train("merge", {"rank": 2, "lam": 1.0, "combination_type": "linear", "weights": 1.0}, scenario)
    pic.model.eval(), merged.model.eval()
    layers = [name for name, _ in pic.model.lora_layers()]
    assert layers and layers == [name for name, _ in merged.model.lora_layers()]
    for name in layers:
        assert torch.allclose(pic.model.effective_weight(name), merged.model.effective_weight(name), atol=1e-6)
    x = scenario.tasks[0].test_x
    with torch.no_grad():
        assert torch.allclose(pic.model.forward_single_task(x, 0), merged.model.forward_single_task(x, 0), atol=1e-4)
    ties, _ = _train(
        "merge",
        {"rank": 2, "lam": 1.0, "combination_type": "ties", "density": 0.2},
        text_scenario(tmp_path, classes_per_task=2),
    )
    ties.model.eval()
    assert not torch.allclose(ties.model.effective_weight(layers[0]), merged.model.effective_weight(layers[0]))
    assert ties.pic.extra_results()["merge"] == {"combination_type": "ties", "density": 0.2, "weights": 1.0}


def test_merge_refuses_a_weights_list_shorter_than_its_adapters(tmp_path):
    with pytest.raises(ValueError, match="weights: 1 given, but 2 adapters are merged"):
        _train("merge", {"rank": 2, "weights": [1.0]}, _three(tmp_path))


def _three(tmp_path):
    """The toy corpus with two more classes: three tasks, so two adapters to merge."""
    from text_fixtures import WORDS

    corpus = tmp_path / "six"
    words = dict(WORDS, ants="march colony hill", bees="buzz hive honey")
    for cls, text in words.items():
        (corpus / cls).mkdir(parents=True)
        for i in range(10):
            (corpus / cls / f"{i:02d}.txt").write_text(f"note {i}: the {cls} {text}")
    return text_scenario(tmp_path, corpus=f"folder:{corpus}", classes_per_task=2)


# ------------------------------------------------------------------ diagnostics
def test_adapter_diagnostics_by_hand():
    a0, b0 = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[2.0], [0.0]])  # Delta W_0 = [[2, 0, 0], [0, 0, 0]]
    a1, b1 = torch.tensor([[1.0, 1.0, 0.0]]), torch.tensor([[0.0], [3.0]])  # rows at 45 degrees to a0's
    rows = adapter_diagnostics({"layer": [(0, a0, b0, 1.0), (1, a1, b1, 0.5)]})
    assert rows[0] == {"task": 0, "norm": 2.0, "overlap": None, "trainable_params": 5, "total_params": 5}
    # Delta W_1 = 0.5 * [[0, 0, 0], [3, 3, 0]]: norm sqrt(2 * 1.5^2)
    assert rows[1]["norm"] == pytest.approx(math.sqrt(2 * 1.5**2))
    assert rows[1]["overlap"] == pytest.approx(math.sqrt(0.5))
    assert (rows[1]["trainable_params"], rows[1]["total_params"]) == (5, 10)
    assert principal_overlap(torch.tensor([[0.0, 0.0, 1.0]]), a0) == pytest.approx(0.0)


# ------------------------------------------------------------------ the domain-IL head
def test_shared_head_is_one_head_over_local_labels_and_never_reads_the_task(tmp_path):
    scenario = text_scenario(tmp_path, head="shared")
    assert len(scenario.model.heads) == 1 and scenario.model.heads[0].out_features == 2
    assert [sorted(t.train_y.unique().tolist()) for t in scenario.tasks] == [[0, 1], [0, 1]]
    assert all(t.num_classes == 2 for t in scenario.tasks) and scenario.meta["scenario_type"] == "domain-IL"
    x = scenario.tasks[1].test_x
    with torch.no_grad():
        assert torch.equal(scenario.model.forward_single_task(x, 0), scenario.model.forward_single_task(x, 1))
    assert {"heads.0.weight", "heads.0.bias"} <= scenario.tasks[0].used_params & scenario.tasks[1].used_params


def test_text_traits_say_it_has_a_pretrained_backbone():
    from forgetbench.benchmark.data.scenarios.text import TextParams

    assert TextParams(head="multi").model_traits() == {"pretrained_backbone", "unmasked_outputs", "task_heads"}
    assert TextParams(head="shared").model_traits() == {"pretrained_backbone", "unmasked_outputs", "single_head"}
    assert "disjoint_labels" in TextParams(head="single").model_traits()


# ------------------------------------------------------------------ the Fisher's scale
def test_normalise_importance_divides_by_the_mean_entry_of_the_named_tensors():
    importance = {"a": torch.tensor([1e-10, 3e-10]), "b": torch.tensor([[2e-10, 2e-10]]), "head": torch.tensor([1.0])}
    out = normalise_importance(importance, "mean", {"a", "b"})  # mean over a and b: 2e-10
    assert torch.allclose(out["a"], torch.tensor([0.5, 1.5])) and torch.allclose(out["b"], torch.tensor([[1.0, 1.0]]))
    assert torch.allclose(out["head"], torch.tensor([5e9]))
    assert normalise_importance(importance, "none") is importance
    zeros = {"a": torch.zeros(2)}
    assert torch.equal(normalise_importance(zeros, "mean")["a"], torch.zeros(2))


def test_penalty_gradient_ratio_by_hand():
    """Linear model y = w x, loss (w x - t)^2 / 1 on one sample; penalty c (w - m)^2: gradients
    2 x (w x - t) and 2 c (w - m)."""
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(2.0)
    x, t = torch.tensor([[3.0]]), torch.tensor([[1.0]])
    strategy = SimpleNamespace(model=model, mbatch=[x, t], mb_y=t, forward=lambda: model(x), _criterion=nn.MSELoss())
    c, m = 0.1, 1.0
    ratio = penalty_gradient_ratio(strategy, [model.weight], lambda: c * (model.weight - m).square().sum())
    assert ratio == pytest.approx(abs(2 * c * (2.0 - m)) / abs(2 * 3.0 * (2.0 * 3.0 - 1.0)))  # 0.2 / 30, inert
    assert model.weight.grad is None and model.training
    assert penalty_strength_results("ewc", [None, 0.5, 0.004]) == {
        "ewc_penalty_to_data_gradient": [None, 0.5, 0.004],
        "ewc_penalty_inert": [2],
    }
    # the one component ewc, wpl, mas, si and l2 keep it in: skipped experiences, a checkpoint's round trip
    diagnostics = PenaltyDiagnostics("mas")
    diagnostics.skip()
    diagnostics.measure(strategy, [model.weight], lambda: c * (model.weight - m).square().sum())
    diagnostics.measure(strategy, [], lambda: 0.0)  # no parameter to weigh: None
    assert diagnostics.state_dict() == [-1.0, ratio, -1.0]
    restored = PenaltyDiagnostics("mas")
    restored.load_state_dict(diagnostics.state_dict())
    assert restored.results() == {"mas_penalty_to_data_gradient": [None, ratio, None], "mas_penalty_inert": [1]}


def test_the_ratio_is_measured_over_training_on_the_shared_parameters_by_hand():
    """Two looks inside an experience: .grad holds data + penalty gradients; the penalty's gradient is 2 c (w - m)
    on the shared tensor only (the private one is the current model's own: left out). Ratio of the looks' summed
    norms: (|2c(w1 - m)| + |2c(w2 - m)|) / (|g1| + |g2|)."""
    shared, private = nn.Parameter(torch.tensor([2.0])), nn.Parameter(torch.tensor([5.0]))
    model = nn.ParameterDict({"shared": shared, "private": private})
    clock = SimpleNamespace(train_exp_iterations=0)
    strategy = SimpleNamespace(model=model, clock=clock, experience=SimpleNamespace(current_experience=1))
    c, m = 0.5, 1.0
    diagnostics = PenaltyDiagnostics("l2", [frozenset({"shared"}), frozenset({"shared", "private"})])
    penalty = lambda: c * (shared - m).square().sum() + c * (private - 4.0).square().sum()  # noqa: E731
    looks = [(50, 2.0, 3.0), (150, 3.0, -1.0), (9, 1.5, 2.0)]  # iteration, w, data gradient; 9: not looked at
    for iteration, w, data in looks:
        clock.train_exp_iterations = iteration
        with torch.no_grad():
            shared.fill_(w)
        shared.grad = torch.tensor([data + 2 * c * (w - m)])
        private.grad = torch.tensor([100.0])
        diagnostics.observe(strategy, [shared, private], penalty)
    diagnostics.measure(strategy, [shared, private], penalty)
    expected = (abs(2 * c * (2.0 - m)) + abs(2 * c * (3.0 - m))) / (3.0 + 1.0)
    assert diagnostics.ratios == [pytest.approx(expected)]


@pytest.mark.parametrize("name", ["ewc", "wpl"])
@pytest.mark.effect
def test_a_tiny_fisher_is_flagged_inert_and_the_normalised_one_acts(name, tmp_path):
    """MiniLM fits the toy tasks with near-zero loss: the default penalty's gradient is a tiny share of the data
    loss's (recorded inert); with ``importance_norm: mean`` it is not, and the shared weights move less."""
    from forgetbench.strategies.ewc import EWCPlugin
    from forgetbench.strategies.wpl import WPLPlugin

    kind = EWCPlugin if name == "ewc" else WPLPlugin
    plain, _ = _train(name, {}, text_scenario(tmp_path, head="shared"))
    normed, _ = _train(name, {"importance_norm": "mean"}, text_scenario(tmp_path, head="shared"))
    plain_results, normed_results = _plugin(plain, kind).extra_results(), _plugin(normed, kind).extra_results()
    assert plain_results[f"{name}_penalty_inert"] == [1]
    assert plain_results[f"{name}_penalty_to_data_gradient"][0] is None
    assert normed_results[f"{name}_penalty_inert"] == []
    assert (
        normed_results[f"{name}_penalty_to_data_gradient"][1]
        > 100 * plain_results[f"{name}_penalty_to_data_gradient"][1]
    )


# ------------------------------------------------------------------ a sequence of datasets (text-CL order)
def _dataset(path, features: dict, rows: dict[str, list[tuple]]):
    """A tiny dataset in the Hub's own layout (a `save_to_disk` DatasetDict with train and test splits)."""
    import datasets

    columns = list(features)
    datasets.DatasetDict(
        {
            split: datasets.Dataset.from_dict(
                {c: [row[i] for row in items] for i, c in enumerate(columns)}, features=datasets.Features(features)
            )
            for split, items in rows.items()
        }
    ).save_to_disk(str(path))


def test_corpora_make_one_task_per_dataset_with_its_own_columns(tmp_path):
    """configs/text_cl_standard.yaml's shape on local files: DBpedia-like (title, content, 3 classes) then
    Yahoo-like (topic over joined question and answer, 2 classes), each one task with its classes, capped per class
    and split; the shipped config itself validates."""
    from text_fixtures import require_datasets as _require_datasets

    _require_datasets()
    import datasets

    label = lambda names: datasets.ClassLabel(names=names)  # noqa: E731
    words = {"Company": "shares board", "Artist": "paint gallery", "Animal": "fur paws"}
    _dataset(
        tmp_path / "dbpedia",
        {"title": datasets.Value("string"), "content": datasets.Value("string"), "label": label(list(words))},
        {
            split: [
                (f"t{i}", f"{name} {text} item {i}", k)
                for i in range(n)
                for k, (name, text) in enumerate(words.items())
            ]
            for split, n in (("train", 6), ("test", 3))
        },
    )
    _dataset(
        tmp_path / "yahoo",
        {
            "question_title": datasets.Value("string"),
            "question_content": datasets.Value("string"),
            "best_answer": datasets.Value("string"),
            "topic": label(["Sports", "Health"]),
        },
        {
            split: [(f"q{i}", "which team" if k == 0 else "which cure", "answer", k) for i in range(n) for k in (0, 1)]
            for split, n in (("train", 6), ("test", 3))
        },
    )
    scenario = text_scenario(
        tmp_path,
        max_per_class=4,
        corpora=[
            {"corpus": f"hf:{tmp_path / 'dbpedia'}", "text_column": "content", "name": "dbpedia"},
            {
                "corpus": f"hf:{tmp_path / 'yahoo'}",
                "text_column": ["question_title", "question_content", "best_answer"],
                "label_column": "topic",
                "name": "yahoo",
            },
        ],
    )
    assert [t.name for t in scenario.tasks] == [
        "task0(dbpedia/Company,dbpedia/Artist,dbpedia/Animal)",
        "task1(yahoo/Sports,yahoo/Health)",
    ]
    assert [len(t.train_y) for t in scenario.tasks] == [12, 8] and [len(t.test_y) for t in scenario.tasks] == [9, 6]
    assert [t.num_classes for t in scenario.tasks] == [3, 2] and len(scenario.model.heads) == 2
    from forgetbench.benchmark.front.cli import main

    assert main(["validate", "configs/text_cl_standard.yaml", "--skip-data"]) == 0


# ------------------------------------------------------------------ OSF (PEFT's OSFConfig per task)
def _osf_first_task(tmp_path, optimizer: str, reproject: bool):
    """Train task 0 with osf; return, per target layer, the update's share in the preserved directions
    (||U_k^T dW|| / ||dW||, ||dW V_k|| / ||dW||, from an SVD of the weight the adapter started from) and the
    model's logits on task 0 just before and just after the boundary re-decomposition."""
    from forgetbench.benchmark.core.config import TrainingConfig
    from forgetbench.benchmark.run.schedule import build_strategy, scheduled_experiences
    from forgetbench.benchmark.train.harness import Harness
    from forgetbench.strategies.osf import ADAPTER

    scenario = text_scenario(tmp_path, head="multi")
    training = TrainingConfig(
        optimizer=optimizer, lr=1e-3 if optimizer == "adam" else 0.05, batch_size=8, epochs=1, eval_batch_size=64
    )
    torch.manual_seed(0)
    strategy = build_strategy(
        "osf", {"reproject": reproject}, scenario, scenario.model, training, torch.device("cpu"), 0, Harness()
    )
    model, original, shares, logits = strategy.model, strategy.model.next_task, {}, []
    x = scenario.tasks[0].test_x

    def measured():
        for name, layer in model.osf_layers().items():
            weight = layer.get_base_layer().weight.detach().double()
            delta = layer.get_delta_weight(ADAPTER).detach().double()
            k = layer.effective_rank[ADAPTER]
            u, _, vh = torch.linalg.svd(weight, full_matrices=False)
            shares[name] = (
                float((u[:, :k].T @ delta).norm() / delta.norm()),
                float((delta @ vh[:k].T).norm() / delta.norm()),
                k,
            )
        model.eval()
        with torch.no_grad():
            logits.append(model.forward_single_task(x, 0))
            original()
            logits.append(model.forward_single_task(x, 0))

    model.next_task = measured
    strategy.train([e for _, e in scheduled_experiences(scenario)][0])
    return model, shares, logits


@pytest.mark.effect
def test_osf_update_stays_off_the_preserved_singular_subspace_under_adam(tmp_path):
    """Task 0 preserves the top half of each weight's singular directions (192 of 384): with `reproject` the update
    has no component there (relative 1e-4); PEFT's gradient projection alone leaves >5% there under Adam. At the
    task boundary the adapter is merged and the next one (60% preserved) starts as an identity: same logits."""
    model, shares, logits = _osf_first_task(tmp_path, "adam", reproject=True)
    assert len(shares) == 6 and all(k == 192 for *_, k in shares.values())
    assert all(u < 1e-4 and v < 1e-4 for u, v, _ in shares.values()), shares
    assert torch.allclose(logits[0], logits[1], atol=1e-4)
    assert {layer.effective_rank["osf"] for layer in model.osf_layers().values()} == {230}  # floor(384 * 0.6)
    _, unprojected, _ = _osf_first_task(tmp_path, "adam", reproject=False)
    assert max(max(u, v) for u, v, _ in unprojected.values()) > 0.05


def test_osf_preserved_rank_keeps_a_direction_to_train():
    from forgetbench.strategies.osf import preserved_rank

    assert preserved_rank(384, 0.5) == 192 and preserved_rank(384, 0.6) == 230
    assert preserved_rank(4, 0.99) == 3 and preserved_rank(4, 0.01) == 1
