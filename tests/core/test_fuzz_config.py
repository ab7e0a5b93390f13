"""Config fuzzer: configs made by mutating the shipped ones go through ``validate`` and ``run --no-report``.

Whatever the mutation (wrong types, extreme numbers, unicode and control characters, very long strings,
missing, unknown and duplicated keys, anchors and aliases, deep nesting), every outcome is exit 0, 1 or 2
with no traceback, within a time bound, and nothing is written outside ``--out``. CI runs a few hundred
examples, derandomised (the same examples every run); ``FORGETBENCH_FUZZ=N`` runs N random ones locally.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from forgetbench.benchmark.front.cli import main
from conftest import tiny_suite
from helpers import REPO

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

LONG_RUN = int(os.environ.get("FORGETBENCH_FUZZ", "0"))
SHIPPED = sorted((REPO / "configs").rglob("*.yaml"))
SECONDS_PER_CONFIG = 30  # an alias bomb used to run 60 s and grow past 1.2 GB before anything was refused


def _fuzz_settings(examples: int):
    return settings(
        max_examples=LONG_RUN or examples,
        derandomize=not LONG_RUN,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )


_text = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=40),  # any unicode, control characters included
    st.just("x" * 10_000),
    st.sampled_from(["", " ", "\x00", "\u202e", "../..", "/etc/passwd", "${HOME}", "{x}", "é" * 300, "nan", "1e999"]),
)
_scalar = st.one_of(
    st.none(),
    st.booleans(),
    _text,
    st.integers(),
    st.sampled_from([0, -1, 2**31, 2**63, -(2**63), 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e-320, 1e308, -0.0]),
)
_value = st.recursive(
    _scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_text, inner, max_size=4)),
    max_leaves=8,
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every location in a parsed config (a key path), the root included."""
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, (*prefix, i))
    return found


def _get(node: Any, path: tuple) -> Any:
    for part in path:
        node = node[part]
    return node


def _mutate(config: Any, data) -> Any:
    """One structural mutation of a parsed config (it is changed in place and returned)."""
    paths = _paths(config)
    path = data.draw(st.sampled_from(paths), label="where")
    kind = data.draw(st.sampled_from(["replace", "delete", "add", "nest", "swap-type"]), label="mutation")
    if not path:
        return data.draw(_value) if kind == "replace" else config
    parent, last = _get(config, path[:-1]), path[-1]
    if kind == "replace":
        parent[last] = data.draw(_value, label="value")
    elif kind == "delete":
        del parent[last]
    elif kind == "add" and isinstance(parent, dict):
        parent[data.draw(_text, label="key")] = data.draw(_value, label="value")
    elif kind == "nest":
        depth = data.draw(st.integers(1, 200), label="depth")
        value = parent[last]
        for _ in range(depth):
            value = [value]
        parent[last] = value
    else:  # the same value with another type: 1 -> "1", [x] -> x, {...} -> [...]
        value = parent[last]
        parent[last] = (
            str(value)
            if not isinstance(value, (dict, list))
            else list(value.values())
            if isinstance(value, dict)
            else (value[0] if value else {})
        )
    return config


def _textual(text: str, data) -> str:
    """A mutation only YAML text can carry: duplicated keys, anchors / aliases, a bomb, raw bytes."""
    kind = data.draw(st.sampled_from(["none", "duplicate", "alias", "bomb", "tabs", "truncate"]), label="text")
    lines = text.splitlines()
    if kind == "duplicate" and lines:
        line = data.draw(st.sampled_from(lines), label="duplicated")
        return "\n".join(lines + [line]) + "\n"
    if kind == "alias":
        return "x-anchor: &shared {lr: 0.1, epochs: 1}\n" + text + "extra: *shared\n"
    if kind == "bomb":
        depth, fan = data.draw(st.integers(2, 12), label="depth"), data.draw(st.integers(2, 12), label="fan")
        bomb = ["b0: &b0 [x, x]"] + [f"b{i}: &b{i} [{', '.join([f'*b{i - 1}'] * fan)}]" for i in range(1, depth)]
        return "\n".join(bomb) + "\n" + text
    if kind == "tabs":
        return text.replace("  ", "\t", 1)
    if kind == "truncate" and text:
        return text[: data.draw(st.integers(0, len(text)), label="cut")]
    return text


def _write(path: Path, config: Any, data) -> None:
    try:
        text = yaml.safe_dump(config, sort_keys=False, allow_unicode=data.draw(st.booleans(), label="unicode"))
    except yaml.YAMLError:
        text = "name: [unclosed\n"
    path.write_text(_textual(text, data), encoding="utf-8", errors="surrogatepass")


def _snapshot(folder: Path, out: Path) -> dict[Path, float]:
    return {p: p.stat().st_mtime for p in folder.rglob("*") if out not in p.parents and p != out}


def _check(argv: list[str], capsys) -> int:
    started = time.process_time()  # CPU, not wall: what a loaded machine cannot inflate
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        status = exc.code
    seconds = time.process_time() - started
    err = capsys.readouterr().err
    assert status in (0, 1, 2), (status, err[-2000:])
    assert "Traceback" not in err, err[-2000:]
    assert seconds < SECONDS_PER_CONFIG, f"{argv[0]} took {seconds:.0f} s of CPU"
    return status


@pytest.mark.slow  # 250 mutated configs, 6 s: for the full tier, as the report's fuzz
@_fuzz_settings(examples=250)
@given(data=st.data())
def test_mutated_shipped_configs_validate_with_exit_0_1_or_2(data, tmp_path_factory, capsys):
    folder = tmp_path_factory.mktemp("fuzz")
    base = data.draw(st.sampled_from(SHIPPED), label="config")
    config = yaml.safe_load(base.read_text())
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        config = _mutate(config, data)
    path = folder / "suite.yaml"
    _write(path, config, data)
    before = _snapshot(folder, folder / "out")
    _check(["validate", str(path), "--skip-data"], capsys)
    assert _snapshot(folder, folder / "out") == before, "validate wrote files"


@_fuzz_settings(examples=25)
@given(data=st.data())
def test_mutated_tiny_suites_run_with_exit_0_1_or_2_and_write_only_under_out(
    data, tmp_path_factory, capsys, monkeypatch
):
    folder = tmp_path_factory.mktemp("fuzzrun")
    monkeypatch.chdir(folder)  # a relative path a mutation writes would land here, and be caught
    config = tiny_suite(strategies=[{"name": data.draw(st.sampled_from(["naive", "ewc", "wpl", "l2"]))}])
    config = _mutate(config, data)
    path = folder / "suite.yaml"
    _write(path, config, data)
    out = folder / "out"
    before = _snapshot(folder, out)
    _check(["run", str(path), "--out", str(out), "--quiet", "--no-report"], capsys)
    assert _snapshot(folder, out) == before, "run wrote outside --out"
