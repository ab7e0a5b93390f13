"""Importance passes that no later step could read are skipped, and the run's numbers do not move.

``importance_needed`` decides from the schedule (``used_params``); each test runs a strategy once with the
schedule known (passes skipped) and once with it unknown (``adaptive``: every pass runs) from the same weights
and data order, and asks for the same weights after every experience and the skipped experiences in the record.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from helpers import TRAINING, small_split
from forgetbench.benchmark.data.models import TaskRoutedModule
from forgetbench.benchmark.data.scenarios import Scenario
from forgetbench.benchmark.run.runner import strategy_extra_results
from forgetbench.strategies import STRATEGIES, StrategyContext
from forgetbench.strategies.base import importance_needed

NO_DECAY = TRAINING.model_copy(update={"weight_decay": 0.0})


def _sgd(weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, weight_decay=weight_decay)


@pytest.mark.parametrize(
    "used, index, every, decay, adaptive, expected",
    [
        # shared trunk t: every model but the last needs its importance
        ([{"t", "h0"}, {"t", "h1"}, {"t", "h2"}], 0, False, 0.0, False, True),
        ([{"t", "h0"}, {"t", "h1"}, {"t", "h2"}], 1, True, 0.0, False, True),
        ([{"t", "h0"}, {"t", "h1"}, {"t", "h2"}], 2, False, 0.0, False, False),
        ([{"t", "h0"}, {"t", "h1"}, {"t", "h2"}], 2, True, 1e-3, False, False),  # last: nothing trains again
        # a search adds turns while training: never skipped
        ([{"t", "h0"}, {"t", "h1"}], 1, False, 0.0, True, True),
        # model 1 shares t with model 0 only: no later model reads it (WPL), but EWC's combined anchor does
        ([{"t", "h0"}, {"t", "h1"}, {"h2"}], 1, False, 0.0, False, False),
        ([{"t", "h0"}, {"t", "h1"}, {"h2"}], 1, True, 0.0, False, True),
        # isolated models (frozen backbone, private heads): skipped unless weight decay moves unused weights
        ([{"h0"}, {"h1"}, {"h2"}], 0, True, 0.0, False, False),
        ([{"h0"}, {"h1"}, {"h2"}], 0, True, 1e-3, False, True),
        ([{"h0"}, {"h1"}, {"h2"}], 0, False, 1e-3, False, False),  # WPL never penalises an unshared weight
    ],
)
def test_importance_needed_by_hand(used, index, every, decay, adaptive, expected):
    used = [frozenset(u) for u in used]
    assert importance_needed(used, index, adaptive=adaptive, every_parameter=every, optimizer=_sgd(decay)) is expected


def test_importance_needed_without_a_schedule_is_always_true():
    assert importance_needed(None, 5, every_parameter=True, optimizer=_sgd(0.0))


def _frozen_trunk_split():
    """Three Split tasks on a frozen trunk: each model trains only its own head (parameter isolation)."""
    scenario = small_split(tasks=3)
    for name, p in scenario.model.named_parameters():
        p.requires_grad_(not name.startswith("trunk."))
    used = [frozenset(n for n in u if not n.startswith("trunk.")) for u in scenario.turn_used_params]
    return scenario, used


class _BypassNet(TaskRoutedModule):
    """Models 0 and 1 share a trainable trunk; model 2 reads the input through its own layer only."""

    def __init__(self, features: int):
        super().__init__()
        self.trunk = torch.nn.Sequential(torch.nn.Linear(features, 12), torch.nn.ReLU())
        self.heads = torch.nn.ModuleList([torch.nn.Linear(12, 2), torch.nn.Linear(12, 2)])
        self.own = torch.nn.Linear(features, 2)

    def forward_single_task(self, x, task_label):
        x = x.flatten(1)
        return self.own(x) if task_label == 2 else self.heads[task_label](self.trunk(x))

    def used_parameter_names(self, task_label):
        prefixes = ("own.",) if task_label == 2 else ("trunk.", f"heads.{task_label}.")
        return frozenset(n for n, _ in self.named_parameters() if n.startswith(prefixes))


def _bypass_split():
    """The trunk is shared by models 0 and 1 only: model 1's importance matters to EWC and MAS (the trunk,
    trainable and penalised, is pulled towards the earlier quadratics' combined anchor while model 2 trains)
    but to no later WPL penalty."""
    split = small_split(tasks=3)
    torch.manual_seed(0)
    model = _BypassNet(split.tasks[0].train_x[0].numel())
    tasks = [dataclasses.replace(task, used_params=model.used_parameter_names(k)) for k, task in enumerate(split.tasks)]
    scenario = Scenario("bypass", tasks, model)
    return scenario, scenario.turn_used_params


def _run(name: str, params: dict, scenario, used, init, *, adaptive: bool, training=NO_DECAY):
    model = copy.deepcopy(scenario.model)
    model.load_state_dict(init)
    ctx = StrategyContext(
        model=model, training=training, device=torch.device("cpu"), used_params=used, seed=0, adaptive=adaptive
    )
    entry = STRATEGIES.get(name)
    strategy = entry.factory(ctx, entry.parse_params(params))
    weights = []
    for experience in scenario.avalanche_benchmark().train_stream:
        strategy.train(experience, eval_streams=[], reset_optimizer_state=True)
        weights.append({n: p.detach().clone() for n, p in model.named_parameters()})
    return strategy, weights


def _assert_same(ours, reference):
    for exp, (a, b) in enumerate(zip(ours, reference)):
        for n in a:
            assert torch.equal(a[n], b[n]), (exp, n)


@pytest.mark.parametrize(
    "name, params, key, setting",
    [
        ("ewc", {"ewc_lambda": 50.0}, "ewc_importance_skipped", "shared"),
        ("ewc", {"ewc_lambda": 50.0}, "ewc_importance_skipped", "bypass"),
        ("ewc", {"ewc_lambda": 50.0, "mode": "online", "decay_factor": 0.5}, "ewc_importance_skipped", "bypass"),
        ("mas", {"lambda_reg": 5.0}, "mas_importance_skipped", "bypass"),
        ("wpl", {"alpha": 50.0}, "wpl_importance_skipped", "bypass"),
        ("ewc", {"ewc_lambda": 50.0, "mode": "online", "decay_factor": 0.5}, "ewc_importance_skipped", "isolated"),
        ("ewc", {"ewc_lambda": 50.0, "importance": "exact"}, "ewc_importance_skipped", "isolated"),
        ("mas", {"lambda_reg": 5.0}, "mas_importance_skipped", "isolated"),
        ("mas", {"lambda_reg": 5.0}, "mas_importance_skipped", "shared"),
        ("wpl", {"alpha": 50.0}, "wpl_importance_skipped", "shared"),
        ("wpl", {"alpha": 50.0, "fisher": "minibatch"}, "wpl_importance_skipped", "shared"),
        ("wpl", {"alpha": 50.0, "anchor": "per_model"}, "wpl_importance_skipped", "isolated"),
    ],
)
def test_skipped_passes_change_no_weight(name, params, key, setting):
    if setting == "isolated":
        scenario, used = _frozen_trunk_split()
        skipped = [0, 1, 2]
    elif setting == "bypass":
        scenario, used = _bypass_split()
        skipped = [1, 2] if name == "wpl" else [2]
    else:
        scenario = small_split(tasks=3)
        used = scenario.turn_used_params
        skipped = [2]
    init = copy.deepcopy(scenario.model.state_dict())
    strategy, ours = _run(name, params, scenario, used, init, adaptive=False)
    reference, theirs = _run(name, params, scenario, used, init, adaptive=True)
    _assert_same(ours, theirs)
    assert strategy_extra_results(strategy)[key] == skipped
    assert strategy_extra_results(reference)[key] == []


def test_weight_decay_keeps_every_pass_of_a_penalty_on_every_parameter():
    scenario, used = _frozen_trunk_split()
    init = copy.deepcopy(scenario.model.state_dict())
    strategy, _ = _run("ewc", {"ewc_lambda": 50.0}, scenario, used, init, adaptive=False, training=TRAINING)
    assert strategy_extra_results(strategy)["ewc_importance_skipped"] == [2]  # only after the last experience


@pytest.mark.parametrize(
    "name, params, drawn_in",  # drawn_in: the module whose sample_subset the pass calls
    [
        ("ewc", {"importance_samples": 40}, "passes"),  # the estimate EWC and WPL share
        ("mas", {"importance_samples": 40}, "parts"),  # MAS's estimator, a part of the quadratic core
        ("wpl", {"fisher_samples": 40, "fisher": "minibatch"}, "passes"),
    ],
)
def test_importance_sample_budget_reads_that_many_samples(name, params, drawn_in, monkeypatch):
    """The pass reads ``importance_samples`` (``fisher_samples``) rows of the experience, drawn with the seed."""
    from forgetbench.strategies import passes

    seen = []
    real = passes.sample_subset

    def spy(tensors, samples, generator):
        out = real(tensors, samples, generator)
        seen.append((len(tensors[0]), len(out[0])))
        return out

    monkeypatch.setattr(f"forgetbench.strategies.{drawn_in}.sample_subset", spy)
    scenario = small_split(tasks=2)
    init = copy.deepcopy(scenario.model.state_dict())
    _run(name, params, scenario, scenario.turn_used_params, init, adaptive=False)
    assert seen == [(80, 40)]  # experience 0 only: after the last one no pass runs


def test_sample_subset_draws_without_replacement_and_keeps_rows_together():
    from forgetbench.strategies.passes import sample_subset

    x, y = torch.arange(10.0)[:, None], torch.arange(10)
    sx, sy = sample_subset((x, y), 4, torch.Generator().manual_seed(0))
    assert len(sy) == 4 and len(set(sy.tolist())) == 4
    assert torch.equal(sx[:, 0].long(), sy)
    assert sample_subset((x, y), 10, torch.Generator())[1] is y  # no draw when nothing is left out
