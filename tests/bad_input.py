"""The bad-input battery's shared parts: the suites its rows start from and the check every row passes. Each
area keeps its rows in its own ``test_bad_*.py`` (tests/core/test_bad_config.py, tests/front/test_bad_options.py,
tests/scenarios/test_bad_scenarios.py, tests/strategies/test_bad_strategies.py, tests/run/test_bad_runs.py); every
case goes through the CLI entry point and must exit 2, name the field at fault, print no traceback and write
nothing under ``--out``.

Add a row for every new kind of bad input, in the area it belongs to. A row is ``(id, files, argv, field)``:
``files`` maps file names to their content (a dict is written as YAML, ``bytes`` as is), ``argv`` is the command
line with ``{name}`` standing for that file's path and ``{out}`` for the output folder.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from forgetbench.benchmark.core import references
from forgetbench.benchmark.front.cli import main
from conftest import tiny_suite
from byo_fixtures import tiny_supernet_params
from helpers import REPO

Case = tuple[str, dict[str, Any], tuple[str, ...], str]

RUN = ("run", "{suite}", "--out", "{out}", "--quiet")
CALIBRATE = ("calibrate", "{suite}", "--out", "{out}", "--quiet")


def _suite(**overrides: Any) -> dict[str, Any]:
    return tiny_suite(**overrides)


def _strategy(name: str, **params: Any) -> dict[str, Any]:
    return _suite(strategies=[{"name": name, "params": params}])


_TUNED = _suite(strategies=[{"name": "l2", "tune": {"params": {"l2_lambda": {"low": 0.1, "high": 1.0}}, "trials": 2}}])


def _yaml_with(line_old: str, line_new: str) -> str:
    """The tiny suite as YAML text with one line replaced (for values only YAML text can carry)."""
    text = yaml.safe_dump(_suite(), sort_keys=False)
    assert line_old in text
    return text.replace(line_old, line_new)


def _tuned(params: dict[str, Any], name: str = "l2", **tune: Any) -> dict[str, Any]:
    """The tiny suite with one strategy entry tuned by ``tune: {params, **tune}``."""
    return _suite(strategies=[{"name": name, "tune": {"params": params, **tune}}])


def _custom(**params: Any) -> dict[str, Any]:
    """The tiny suite on the `custom` scenario (a multi-head MLP on two tensor tasks), params overridden."""
    base = {"model": "byo_fixtures:multihead_mlp", "benchmark": "byo_fixtures:tensor_benchmark"}
    return _suite(scenarios=[{"name": "custom", "params": base | params}])


def _search(**params: Any) -> dict[str, Any]:
    """The tiny suite on the `supernet_search` scenario (2 positions x 2 ops on digits), params overridden."""
    base = {"dataset": "digits", "layers": 2, "ops": 2, "width": 8, "validation_size": 100}
    return _suite(scenarios=[{"name": "supernet_search", "params": base | params}])


def _enas(**params: Any) -> dict[str, Any]:
    """The tiny suite on the `enas_rnn` scenario (a 3-node cell on the test corpus folder), params overridden."""
    base = {
        "corpus": f"folder:{REPO / 'tests' / 'data' / 'lm_corpus'}",
        "vocabulary": 30,
        "nodes": 3,
        "embedding": 8,
        "hidden": 8,
        "bptt": 6,
        "epochs": 1,
        "turns_per_epoch": 2,
        "steps_per_turn": 1,
    }
    return _suite(scenarios=[{"name": "enas_rnn", "params": base | params}])


def _own_supernet(**params: Any) -> dict[str, Any]:
    """The tiny suite on the `custom_supernet` scenario (tests/byo_fixtures.py's MLP supernet on points)."""
    base = tiny_supernet_params(search="random", epochs=1, turns_per_epoch=2, steps_per_turn=1)
    return _suite(scenarios=[{"name": "custom_supernet", "params": base | params}])


def _nb201(**params: Any) -> dict[str, Any]:
    """The tiny suite on the `nb201` scenario (NAS-Bench-201's cell space at 4 channels on digits)."""
    base = {"dataset": "digits", "channels": 4, "validation_size": 100, "epochs": 1, "turns_per_epoch": 2}
    return _suite(scenarios=[{"name": "nb201", "params": base | params}])


def _enas_cnn(**params: Any) -> dict[str, Any]:
    """The tiny suite on the `enas_cnn` scenario (a 2-node cell on digits), params overridden."""
    base = {
        "dataset": "digits",
        "nodes": 2,
        "channels": 4,
        "cells_per_stage": 1,
        "reductions": 1,
        "validation_size": 100,
        "eval_size": 50,
        "epochs": 1,
        "turns_per_epoch": 2,
        "steps_per_turn": 1,
    }
    return _suite(scenarios=[{"name": "enas_cnn", "params": base | params}])


def _text(**params: Any) -> dict[str, Any]:
    """The tiny suite on the `text` scenario (BBC News on MiniLM), params overridden."""
    return _suite(scenarios=[{"name": "text", "params": {"corpus": "bbc_news", "max_length": 16} | params}])


# nine levels of ten aliases each: 10^9 values once expanded, a few hundred bytes as text
_ALIAS_BOMB = (
    "\n".join(
        ["name: t", 'a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
        + [f"{b}: &{b} [{', '.join(['*' + a] * 10)}]" for a, b in zip("abcdefgh", "bcdefghi")]
        + ["strategies: [*i]"]
    )
    + "\n"
)

_RECORD = {  # the least a readable result file holds
    "schema_version": 2,
    "run_id": "r",
    "suite": "t",
    "seed": 0,
    "status": "ok",
    "config": {},
    "scenario": {"name": "split", "label": "split"},
    "strategy": {"name": "naive", "label": "naive"},
    "accuracy_matrix": [[0.9, 0.5], [0.7, 0.95]],
    "experiences": ["t0", "t1"],
    "init_accuracy": [0.5, 0.5],
}


def battery(cases: list[Case]) -> Any:
    """The parametrisation of one area's rows: ids are the rows' names."""
    return pytest.mark.parametrize(("files", "argv", "field"), [c[1:] for c in cases], ids=[c[0] for c in cases])


def _materialise(tmp_path: Path, files: dict[str, Any]) -> dict[str, str]:
    paths = {"dir": str(tmp_path)}
    for name, content in files.items():
        path = tmp_path / (name if "." in name else f"{name}.yaml")
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, dict):
            path.write_text(yaml.safe_dump(content, sort_keys=False))
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        paths[name] = str(path)
    return paths


def _snapshot(folder: Path) -> set[Path]:
    """What a row's folder holds, but Python's own bytecode cache (a plug-in module a row imports gets one)."""
    found = set(folder.rglob("*")) if folder.exists() else set()
    return {p for p in found if "__pycache__" not in p.parts}


def check_refused(files: dict[str, Any], argv: tuple[str, ...], field: str, tmp_path: Path, capsys: Any) -> None:
    """The row is refused: exit 2, the field named, no traceback, nothing written, in under a minute of CPU."""
    paths = _materialise(tmp_path, files)
    out = tmp_path / "out"
    if "report" in argv:
        out.mkdir()  # `-o` at an existing directory
    before = _snapshot(tmp_path)
    args = [a.format(out=out, **paths) for a in argv]
    # a suite's folder joins sys.path and PYTHONPATH (its plug-ins, for the workers): a row's json.py or yaml.py
    # there would shadow the real modules for every later test and subprocess of this worker
    path, pythonpath, searched = list(sys.path), os.environ.get("PYTHONPATH"), list(references._SEARCHED)
    started = time.process_time()  # CPU, not wall: a loaded machine slows the wall, never the work refusing does
    try:
        status = main(args)
    except SystemExit as exc:  # argparse usage errors exit 2 themselves
        status = exc.code
    finally:
        sys.path[:], references._SEARCHED[:] = path, searched
        if pythonpath is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = pythonpath
    seconds = time.process_time() - started
    err = capsys.readouterr().err
    assert status == 2, err
    assert field in err, err
    assert "Traceback" not in err
    assert _snapshot(tmp_path) == before, "bad input wrote files"
    assert seconds < 60, f"refusing bad input took {seconds:.0f} s of CPU"  # an alias bomb ran 60 s, past 1.2 GB
