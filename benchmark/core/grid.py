"""Hyperparameter grids: a strategy param given as a list expands into one run per combination.

A param is a *grid axis* when its value is a list and the param's declared type is not itself a
list; a param whose type is a list (``widths: list[int]``, per-experience lambdas) is an axis only
when given as a list of lists. The grid is the cartesian product of the axes, in the order the
axes appear in the params, each axis in the order its values are listed::

    {ewc_lambda: [1, 10], mode: [separate, online]}
        -> ewc[ewc_lambda=1,mode=separate], ewc[ewc_lambda=1,mode=online],
           ewc[ewc_lambda=10,mode=separate], ewc[ewc_lambda=10,mode=online]

Each combination's label is the entry's label followed by the chosen values in brackets, so run
ids and reports say which values a run used.
"""

from __future__ import annotations

import itertools
import json
import re
import typing
from typing import Any

from pydantic import BaseModel

_UNSAFE = re.compile(r"[^A-Za-z0-9_.+=-]")


def _is_list_type(annotation: Any) -> bool:
    """True when ``annotation`` (or one arm of a union/Optional) is a list/tuple/sequence type."""
    origin = typing.get_origin(annotation)
    if origin in (list, tuple, set, frozenset) or annotation in (list, tuple, set, frozenset):
        return True
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return any(_is_list_type(arm) for arm in typing.get_args(annotation))
    if origin is typing.Annotated:
        return _is_list_type(typing.get_args(annotation)[0])
    return False


def grid_axes(params_model: type[BaseModel], raw: dict[str, Any]) -> dict[str, list[Any]]:
    """The grid axes of ``raw`` params: ``{param: [values...]}`` (empty when there is no grid)."""
    axes: dict[str, list[Any]] = {}
    for name, value in raw.items():
        if not isinstance(value, list):
            continue
        field = params_model.model_fields.get(name)
        if field is None:
            continue  # unknown key: validation reports it
        if _is_list_type(field.annotation):
            if value and all(isinstance(v, list) for v in value):
                axes[name] = value
        else:
            axes[name] = value
    return axes


def combinations(axes: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Cartesian product of the axes, as ``{param: value}`` dicts (``[{}]`` without axes)."""
    names = list(axes)
    return [dict(zip(names, values)) for values in itertools.product(*(axes[n] for n in names))]


def format_value(value: Any) -> str:
    """A path-safe rendering of a param value: ``10``, ``0.5``, ``online``, ``1_10_100``."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        text = str(int(value))
    else:
        text = json.dumps(value, separators=("_", "_"))
    text = text.replace("[", "").replace("]", "")
    return _UNSAFE.sub("_", text)


def combination_label(base: str, choice: dict[str, Any]) -> str:
    """``ewc[ewc_lambda=10,mode=online]``; ``base`` alone when nothing was chosen."""
    if not choice:
        return base
    return base + "[" + ",".join(f"{k}={format_value(v)}" for k, v in choice.items()) + "]"
