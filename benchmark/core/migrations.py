"""Every retired key and rule, in one place: what an old config, an old record or an old strategy entry says, and
what it means today. Each rule names what replaced the key (an entry that still uses it is refused with the line
to write instead) or reads it as the same run (a record written before still matches). Pure functions on plain
data: the config, the store, the record and the strategies' params models call them.

- ``selection:`` on a strategy entry: replaced by ``tune:`` with ``sampler: grid`` (:func:`selection_is_tune`);
  resolved configs written before hold ``selection: null`` (:data:`RETIRED_NULL_STRATEGY_KEYS`).
- a strategy's params that moved to a variant of their own (``wpl``'s online estimate to ``wpl_online``, its
  per-update scaling to ``wpl_enas``): its params model lists them with the defaults old records hold
  (``retired_defaults``); :func:`moved_params` finds an entry that still sets one, :func:`without_retired_keys`
  reads an old record as today's run; ``wpl``'s are :data:`WPL_RETIRED_DEFAULTS` (:func:`wpl_params_today`).
- record schema version 1: the same keys as version 2 (:func:`upgrade_record`).
- training keys added later (:data:`UNSET_LATER_KEYS`) and strategy-entry keys that never change a run
  (:data:`STRATEGY_KEYS_OUTSIDE_IDENTITY`): outside a run's identity, so results stored before still resume.
- a tuning trial written before trials named their driver (:func:`trial_from_before_drivers`).
"""

from __future__ import annotations

import math
from typing import Any, Mapping


class SchemaError(ValueError):
    """A record's ``schema_version`` is not one this code reads."""


# keys a strategy entry's resolved config had, always null for the runs that were kept: a record that has one still
# matches the same run today (`selection`: its runs were those of entries without one; `tune:` replaced it)
RETIRED_NULL_STRATEGY_KEYS = ("selection",)


def without_retired_keys(config: dict[str, Any], retired_params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``config`` (a record's resolved config) as it is resolved today: retired null keys of the strategy entry
    dropped, and its params that hold a retired param's old default (``retired_params``: the strategy's params
    model's ``retired_defaults``, which name the same maths as its params today)."""
    strategy = config.get("strategy")
    if not isinstance(strategy, dict):
        return config
    kept = {k: v for k, v in strategy.items() if not (k in RETIRED_NULL_STRATEGY_KEYS and v is None)}
    params = kept.get("params")
    if retired_params and isinstance(params, dict):
        kept["params"] = {k: v for k, v in params.items() if not (k in retired_params and v == retired_params[k])}
    return config if kept == strategy else {**config, "strategy": kept}


def selection_is_tune(data: Any) -> Any:
    """A strategy entry as validated today: a resolved ``selection: null`` dropped; any other ``selection:`` refused
    with the ``tune:`` block that replaces it. ``selection:`` picked a grid's best combination; ``tune:`` with
    ``sampler: grid`` does the same with one code path (its trials, resume, frontier and report)."""
    if isinstance(data, dict) and "selection" in data:
        if data["selection"] is None:
            return {k: v for k, v in data.items() if k != "selection"}
        raise ValueError(selection_replacement(data))
    return data


def selection_replacement(entry: dict[str, Any]) -> str:
    """The error for a strategy entry that still says ``selection:``: the ``tune:`` block that replaces it, written
    from the entry's own grid."""
    selection = entry["selection"] if isinstance(entry.get("selection"), dict) else {}
    params: dict[str, Any] = entry["params"] if isinstance(entry.get("params"), dict) else {}
    grid = {name: values for name, values in params.items() if isinstance(values, list)}
    combos = math.prod(len(values) for values in grid.values()) if grid else 0
    choices = ", ".join(f"{name}: {{choices: {values}}}" for name, values in grid.items()) or "NAME: {choices: [...]}"
    options = [f"params: {{{choices}}}", "sampler: grid", f"trials: {combos or 'N'}"]
    key_of = {"metric": "objective", "fraction": "fraction", "seeds": "seeds"}
    options += [f"{key_of[key]}: {selection[key]}" for key in key_of if selection.get(key) is not None]
    return (
        "selection: was replaced by tune with the grid sampler (one way to choose a strength). Write "
        f"`tune: {{{', '.join(options)}}}` and give "
        + (" and ".join(grid) + " one value in params (or leave it out)" if grid else "each tuned param one value")
        + "; see docs/guide/grids.md"
    )


def moved_params(data: Mapping[str, Any], retired_defaults: Mapping[str, Any]) -> list[str]:
    """The retired params ``data`` (a strategy entry's params) sets to other than the default old records hold: the
    ones that now belong to another strategy name."""
    return [key for key, default in retired_defaults.items() if key in data and data[key] != default]


# wpl's params that moved to a variant of their own (wpl_enas: the per-update scaling; wpl_online: the online
# estimate and its schedule), at the defaults records written before hold (they still name wpl's maths)
WPL_RETIRED_DEFAULTS: dict[str, Any] = {
    "alpha_mode": "equation",
    "alpha_linear_decay": 0.0,
    "alpha_decay_after": 0,
    "alpha_decay": 1.0,
    "clip_norm": None,
    "reset_every": None,
    "start_after": 0,
    "fisher_batches": 1,
}
WPL_MOVED_TO = {"alpha_mode": "wpl_enas", "alpha_linear_decay": "wpl_enas", "alpha_decay_after": "wpl_enas"}


def wpl_params_today(data: Any) -> Any:
    """``wpl``'s params as validated today: a retired key at its old default dropped (an old record's run); one set
    otherwise, or ``fisher: online``, refused with the variant that now owns it (``wpl_online`` unless
    :data:`WPL_MOVED_TO` says ``wpl_enas``)."""
    if not isinstance(data, dict):
        return data
    moved = moved_params(data, WPL_RETIRED_DEFAULTS)
    moved += ["fisher: online"] if data.get("fisher") == "online" else []
    if moved:
        where = sorted({WPL_MOVED_TO.get(key, "wpl_online") for key in moved})
        raise ValueError(
            f"{', '.join(moved)}: {' and '.join(where)} now (name: {where[0]}): wpl_online is the authors' online "
            "Fisher with its schedule (alpha, fisher_batches, accumulate, momentum, clip_norm, reset_every, "
            "start_after, alpha_decay, max_curvature, importance_norm), wpl_enas their per-update scaling too; "
            "wpl is the paper's equation"
        )
    return without_keys(data, WPL_RETIRED_DEFAULTS)


# training keys added after results were stored: left out of a run's identity while unset, so those results resume
UNSET_LATER_KEYS = ("grad_clip_norm", "attribution", "threads")
# strategy-entry keys added after results were stored that never change a run's numbers: never in its identity
# (`scenarios`: which scenarios an entry runs on)
STRATEGY_KEYS_OUTSIDE_IDENTITY = frozenset({"scenarios"})


def trial_from_before_drivers(driver: str) -> bool:
    """Whether a RUNNING tuning trial was written before trials named their driver (``host:pid``): such a trial
    is the resuming driver's own, as it was then."""
    return not driver.rpartition(":")[0]


def without_keys(data: Mapping[str, Any], retired: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` without the retired keys (an old record's params at their old defaults: today's run)."""
    return {key: value for key, value in data.items() if key not in retired}


def upgrade_record(raw: dict[str, Any], current: int) -> dict[str, Any]:
    """A record of an earlier schema version brought to ``current`` (the same keys since version 1)."""
    version = raw.get("schema_version", 1)
    if not isinstance(version, int) or version < 1 or version > current:
        raise SchemaError(f"schema_version {version!r} is not one of 1..{current}")
    if version == 1:
        raw = {**raw, "schema_version": current}
    return raw
