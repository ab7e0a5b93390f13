"""The strategy contract helper, every built-in strategy against it, and an entry-point plug-in."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from avalanche.core import SupervisedPlugin

from forgetbench.benchmark.core.registry import NoParams
from forgetbench.benchmark.front.testing import check_strategy
from helpers import builtin_strategies, needs_traits, pip_install_target, toy_text_scenario, cli_command
from forgetbench.strategies import STRATEGIES, StrategyContext, register_strategy

HERE = Path(__file__).resolve().parents[1]  # tests/
BUILT_IN = builtin_strategies()
TWO_MODEL = {
    "name": "two_model",
    "params": {"dataset": "digits", "depth_a": 2, "depth_b": 3, "width": 16, "shared": 1, "a_steps": 20, "b_steps": 20},
}


def test_list_shows_every_built_in(cli, capsys):
    assert cli("list", "strategies") == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert set(BUILT_IN) <= set(listed)


@pytest.mark.parametrize("name", BUILT_IN)
def test_built_in_strategy_passes_contract(name, tmp_path):
    """On the tiny digits split; a strategy that needs a pretrained backbone (olora, inflora) on a toy text scenario."""
    check_strategy(name, scenario=toy_text_scenario(tmp_path) if needs_traits(name) else None)


def test_check_strategy_says_which_trait_the_scenario_lacks():
    with pytest.raises(AssertionError, match="the scenario 'split' lacks pretrained_backbone"):
        check_strategy("olora")


@pytest.mark.parametrize("name", ["joint", "standalone", "spg", "l2"])
def test_strategy_passes_contract_on_two_model(name):
    check_strategy(name, scenario=TWO_MODEL)


def test_the_how_to_two_model_example_learns_for_naive():
    """docs/howto/own-strategy.md's two-model call, as written there, passes for naive (its scenario learns: a
    scenario too small to learn fails every strategy as collapsed)."""
    import ast
    import re

    text = (Path(__file__).resolve().parents[2] / "docs" / "howto" / "own-strategy.md").read_text()
    blocks = [ast.parse(code) for code in re.findall(r"```python\n(.*?)```", text, re.S) if "two_model" in code]
    calls = [
        keyword.value
        for tree in blocks
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "check_strategy"
        for keyword in node.keywords
        if keyword.arg == "scenario"
    ]
    assert calls, "the how-to no longer shows a two-model check_strategy call"
    scenario = ast.literal_eval(calls[0])
    assert scenario["name"] == "two_model"
    check_strategy("naive", scenario=scenario)


# ------------------------------------------------------------------ the helper can fail
class _Unseeded(SupervisedPlugin):
    def before_backward(self, strategy, **kwargs):
        noise = torch.from_numpy(__import__("numpy").frombuffer(os.urandom(4), dtype="float32").copy())
        strategy.loss = strategy.loss * (1 + torch.nan_to_num(noise.clamp(-1, 1)).abs().sum())


class _Frozen(SupervisedPlugin):
    def before_update(self, strategy, **kwargs):
        for p in strategy.model.parameters():
            p.grad = None


class _EvalMutates(SupervisedPlugin):
    @torch.no_grad()
    def after_eval_exp(self, strategy, **kwargs):
        for p in strategy.model.parameters():
            p.mul_(0.5)


for _name, _plugin in [("test_unseeded", _Unseeded), ("test_frozen", _Frozen), ("test_eval_mutates", _EvalMutates)]:
    if _name not in STRATEGIES:

        def _builder(ctx: StrategyContext, params: NoParams, _plugin=_plugin):
            return ctx.build(plugins=[_plugin()])

        _builder.__doc__ = f"Test-only: {_name}."
        register_strategy(_name, params=NoParams)(_builder)


@pytest.mark.parametrize(
    "name, message",
    [
        ("test_unseeded", "same seed, different accuracy matrices"),
        ("test_frozen", "training left every weight"),
        ("test_eval_mutates", "strategy.eval changed"),
        ("test_failing", "run status 'failed'"),
        ("nope", "not registered"),
    ],
)
def test_check_strategy_catches_broken_strategies(name, message):
    import conftest  # noqa: F401  (registers test_failing)

    with pytest.raises(AssertionError, match=message):
        check_strategy(name)


def test_check_strategy_rejects_bad_params():
    with pytest.raises(AssertionError, match="invalid params"):
        check_strategy("spg", {"importance_batch_size": 0})


# ------------------------------------------------------------------ entry-point plug-in
@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """``pip install`` the test-only package (tests/plugin_pkg) into a private site folder."""
    site = tmp_path_factory.mktemp("site")
    pip_install_target(HERE / "plugin_pkg", site, tmp_path_factory.mktemp("src"))
    assert list(site.glob("forgetbench_plugin_example-*.dist-info/entry_points.txt"))
    return site


@pytest.mark.slow  # runs pip
def test_entry_point_plugin_is_listed_by_the_cli(plugin_site):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(plugin_site), os.environ.get("PYTHONPATH", "")]))
    out = cli_command("list", "strategies", env=env).stdout
    assert "shrink" in out and "entry-point registered" in out
    without = cli_command("list", "strategies").stdout
    assert "shrink" not in without


@pytest.mark.slow  # runs pip
def test_entry_point_plugin_passes_contract(plugin_site, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_site))
    # Entry points are read once per process: make the registry read them again with the plug-in visible.
    monkeypatch.setattr(STRATEGIES, "_entry_points_loaded", False)
    assert "shrink" in STRATEGIES.names()
    assert sys.modules["forgetbench_plugin_example.shrink"].__file__.startswith(str(plugin_site))
    check_strategy("shrink", {"strength": 0.01})
