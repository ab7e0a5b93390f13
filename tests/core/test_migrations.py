"""Every retired key's rule (benchmark/core/migrations.py), by hand: what an old config, record or entry says and
what it means today."""

from __future__ import annotations

import pytest

from forgetbench.benchmark.core import migrations


def test_a_resolved_selection_null_is_dropped_and_any_other_selection_names_its_tune_block():
    entry = {"name": "ewc", "params": {"ewc_lambda": [1, 10, 100]}, "selection": None}
    assert migrations.selection_is_tune(entry) == {"name": "ewc", "params": {"ewc_lambda": [1, 10, 100]}}
    with pytest.raises(ValueError) as refused:
        migrations.selection_is_tune({**entry, "selection": {"metric": "forgetting", "seeds": 2}})
    message = str(refused.value)
    assert "tune: {params: {ewc_lambda: {choices: [1, 10, 100]}}, sampler: grid, trials: 3" in message
    assert "objective: forgetting, seeds: 2" in message and "ewc_lambda one value in params" in message


def test_an_old_record_at_the_retired_defaults_is_todays_run_and_another_value_is_not():
    retired = {"start_after": 0, "clip_norm": None}
    old = {"seed": 0, "strategy": {"name": "wpl", "selection": None, "params": {"lam": 1.0, "start_after": 0}}}
    assert migrations.without_retired_keys(old, retired) == {
        "seed": 0,
        "strategy": {"name": "wpl", "params": {"lam": 1.0}},
    }
    moved = {**old, "strategy": {"name": "wpl", "params": {"lam": 1.0, "start_after": 2}}}
    assert migrations.without_retired_keys(moved, retired)["strategy"]["params"] == {"lam": 1.0, "start_after": 2}
    assert migrations.moved_params({"lam": 1.0, "start_after": 2, "clip_norm": None}, retired) == ["start_after"]
    assert migrations.without_keys({"lam": 1.0, "start_after": 0}, retired) == {"lam": 1.0}


def test_a_version_1_record_reads_as_the_current_version_and_an_unknown_version_is_named():
    assert migrations.upgrade_record({"run_id": "r"}, 2) == {"run_id": "r", "schema_version": 2}
    assert migrations.upgrade_record({"schema_version": 2}, 2) == {"schema_version": 2}
    for version in (0, 3, "2"):
        with pytest.raises(migrations.SchemaError, match=f"schema_version {version!r} is not one of 1..2"):
            migrations.upgrade_record({"schema_version": version}, 2)
