"""A component's params are parsed once, when the suite is resolved; the runner, the size checks and the
strategy builders receive that typed model (a grid entry keeps one per combination)."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

import forgetbench
from forgetbench.benchmark.core import registry
from forgetbench.benchmark.core.config import resolve_config, strategy_variants
from forgetbench.strategies.ewc import EWCParams

from conftest import tiny_suite


@pytest.fixture
def parses(monkeypatch):
    counts: Counter = Counter()
    original = registry.Entry.parse_params

    def counting(self, raw):
        counts[self.name] += 1
        return original(self, raw)

    monkeypatch.setattr(registry.Entry, "parse_params", counting)
    return counts


def test_a_suite_parses_each_component_once_and_strategies_get_the_typed_params(parses, tmp_path, monkeypatch):
    received = []
    entry = forgetbench.STRATEGIES.get("ewc")

    def spy(ctx, params):
        received.append(params)
        return entry.factory(ctx, params)

    monkeypatch.setitem(forgetbench.STRATEGIES._entries, "ewc", dataclasses.replace(entry, factory=spy))
    suite = tiny_suite(seeds=[0, 1], strategies=[{"name": "ewc", "params": {"ewc_lambda": [1.0, 10.0]}}])
    results = forgetbench.run_suite(suite, out=tmp_path / "out", progress=False)
    assert results.exit_code == 0 and len(results.ran) == 4
    assert parses == {"split": 1, "ewc": 2}  # one per scenario, one per grid combination: at resolution only
    assert all(type(p) is EWCParams for p in received) and sorted(p.ewc_lambda for p in received) == [1, 1, 10, 10]


def test_grid_variants_carry_the_model_parsed_at_resolution(parses):
    suite = resolve_config(tiny_suite(strategies=[{"name": "ewc", "params": {"ewc_lambda": [1.0, 10.0]}}]))
    before = parses["ewc"]
    variants = strategy_variants(suite.strategies[0])
    assert parses["ewc"] == before == 2
    assert [v.typed_params(forgetbench.STRATEGIES).ewc_lambda for _, v in variants] == [1.0, 10.0]
    assert [v.params["ewc_lambda"] for _, v in variants] == [1.0, 10.0]  # the JSON form the record stores


def test_a_spec_crosses_a_process_boundary_as_plain_params():
    """Workers (process, Ray) unpickle the spec before the harness sets up a plug-in's search path, so the typed
    model, whose class may live in that plug-in, stays behind; the worker parses the plain params once."""
    import pickle

    suite = resolve_config(tiny_suite(strategies=[{"name": "ewc", "params": {"ewc_lambda": 3.0}}]))
    spec = suite.strategies[0]
    assert spec._typed is not None
    copy = pickle.loads(pickle.dumps(spec))
    assert copy._typed is None and copy.params == spec.params
    assert copy.typed_params(forgetbench.STRATEGIES).ewc_lambda == 3.0
