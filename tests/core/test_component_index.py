"""The index of built-in components is generated, never edited: a file added to the built-ins makes the index that
was written before unread (the listing imports them and writes a new one), and a listing read from an index equals
the registries' own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from forgetbench.benchmark.core import components
from forgetbench.benchmark.core.components import INDEX, STRATEGIES, ComponentIndex, component_index


def test_the_index_names_its_sources_and_lists_what_the_registries_hold():
    path = INDEX.path() or INDEX.write()
    assert path is not None and components.sources_digest() in path.name
    rows = json.loads(path.read_text())
    assert rows == json.loads(component_index())
    assert {row["name"] for row in rows["strategy"]} >= {"naive", "ewc", "si", "mas", "l2", "wpl"}


def test_a_changed_source_makes_a_new_index_and_the_old_one_unread(tmp_path, monkeypatch):
    root = tmp_path / "pkg"
    (root / "strategies").mkdir(parents=True)
    (root / "benchmark" / "data" / "scenarios").mkdir(parents=True)
    (root / "strategies" / "a.py").write_text("A = 1\n")
    monkeypatch.setattr(components, "PACKAGE_ROOT", root)
    components.sources_digest.cache_clear()
    before = components.sources_digest()
    index = ComponentIndex()
    monkeypatch.setattr(index, "folders", lambda: [tmp_path / "index"])
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / f"components-{before}.json").write_text("{}")
    assert index.path() is not None
    (root / "strategies" / "b.py").write_text("B = 2\n")  # a strategy file dropped in
    components.sources_digest.cache_clear()
    try:
        assert components.sources_digest() != before
        assert index.path() is None  # the old index is not read: the next listing imports the built-ins
    finally:
        components.sources_digest.cache_clear()


def test_list_answers_from_the_index_without_importing_torch():
    assert INDEX.path() is not None or INDEX.write() is not None
    code = (
        "import sys\nfrom forgetbench.benchmark.core.components import STRATEGIES\n"
        "names = [row.name for row in STRATEGIES.listing()]\n"
        "print('torch' in sys.modules, 'wpl' in names)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path.cwd())
    assert out.stdout.split() == ["False", "True"]
    assert [row.name for row in STRATEGIES.listing()]  # and this process, which imported them, agrees
