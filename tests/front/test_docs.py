"""The docs: reference pages generated from the code (as the site builds) say what it has, every built-in name is described, the
README's links resolve, and the site builds (warnings as errors) and renders in headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from pydantic import BaseModel, Field

from forgetbench.benchmark.core.components import SCENARIOS, STRATEGIES
from forgetbench.benchmark.core.registry import Entry
from forgetbench.benchmark.front import docs
from helpers import browser_page, run_command

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference"


@pytest.fixture(scope="module")
def reference_pages(tmp_path_factory):
    """The reference pages as the site build writes them (docs/hooks/site.py), written once a module (3 s)."""
    pages = tmp_path_factory.mktemp("docs") / "reference"
    docs.write(pages)
    assert docs.check(pages) == []
    return pages


@pytest.fixture
def reference_copy(reference_pages, tmp_path):
    """A copy of the reference pages in a folder of the test's own."""
    return Path(shutil.copytree(reference_pages, tmp_path / "reference"))


def test_a_parameter_added_to_a_model_and_not_documented_is_named(reference_copy, monkeypatch):
    entry = STRATEGIES.get("wpl")

    class WiderParams(entry.params):
        new_knob: int = 3  # a knob the docs do not have yet

    monkeypatch.setitem(
        STRATEGIES._entries, "wpl", Entry("wpl", entry.factory, WiderParams, entry.description, entry.extra)
    )
    problems = docs.check(reference_copy)
    assert problems == ["strategies/wpl.md: the code has new_knob, which the docs lack"]


def test_a_documented_parameter_the_code_no_longer_has_is_named(reference_copy):
    page = reference_copy / "strategies" / "ewc.md"
    page.write_text(page.read_text().replace("| `mode` |", "| `gone_knob` | float | 1 |  | removed |\n| `mode` |"))
    assert docs.check(reference_copy) == ["strategies/ewc.md: documents gone_knob, which the code no longer has"]


def test_a_page_of_an_unregistered_strategy_or_a_missing_page_is_named(reference_copy):
    (reference_copy / "strategies" / "ghost.md").write_text(docs.GENERATED_NOTE + "\n# `ghost`\n")
    (reference_copy / "scenarios" / "split.md").unlink()
    assert docs.check(reference_copy) == [
        "strategies/ghost.md: documents something the code no longer has (remove the page)",
        "scenarios/split.md: missing (the code has it, the docs do not)",
    ]


def test_a_changed_default_is_out_of_date(reference_copy):
    page = reference_copy / "strategies" / "l2.md"
    page.write_text(page.read_text().replace("| `l2_lambda` | float | 1.0 |", "| `l2_lambda` | float | 2.0 |"))
    assert docs.check(reference_copy) == ["strategies/l2.md: out of date (types, defaults or descriptions changed)"]


def test_write_then_check_is_clean_and_removes_stale_pages(tmp_path):
    (tmp_path / "strategies").mkdir()
    stale = tmp_path / "strategies" / "ghost.md"
    stale.write_text(docs.GENERATED_NOTE + "\n")
    hand_written = tmp_path / "notes.md"
    hand_written.write_text("# mine\n")
    docs.write(tmp_path)
    assert not stale.exists() and hand_written.exists()
    assert docs.check(tmp_path) == []


def _undescribed(markdown: str) -> list[str]:
    return [m for m in re.findall(r"^\| `([^`]+)` \|.*\|  \|$", markdown, re.M)]


def test_every_parameter_key_and_option_of_forgetbench_itself_is_described():
    """Avalanche's classes are documented as Avalanche documents them; every name of forgetbench's own has a
    description (its Field's, the comment on its line, or its docstring's bullet)."""
    pages = docs.pages()
    own = {path: text for path, text in pages.items() if not path.startswith("strategies/avalanche-")}
    missing = {path: names for path, text in own.items() if (names := _undescribed(text))}
    assert missing == {}


def test_parameter_rows_read_types_defaults_bounds_and_every_description_source():
    class Inner(BaseModel):
        depth: int = Field(2, ge=1)  # how deep

    class Params(BaseModel):
        """* ``rate`` (> 0): the step size. Longer text that the table leaves out.
        * ``mode``, ``other``: how it runs."""

        rate: float = Field(0.1, gt=0.0)
        mode: Literal["fast", "slow"] = "fast"
        # the size of
        # the thing
        size: int | None = None
        named: str = Field("x", description="from the Field")
        inner: Inner = Field(default_factory=Inner)

    rows = docs.model_rows(Params, docs.docstring_bullets(Params.__doc__))
    assert [(r.name, r.type, r.default, r.bounds, r.description) for r in rows] == [
        ("rate", "float", "0.1", "> 0.0", "the step size."),
        ("mode", '"fast" \\| "slow"', "fast", "", "how it runs."),
        ("size", "int \\| null", "null", "", "the size of the thing"),
        ("named", "str", "x", "", "from the Field"),
        ("inner", "Inner", "{...}", "", ""),
        ("inner.depth", "int", "2", ">= 1", "how deep"),
    ]


def test_avalanche_params_are_read_from_their_rest_docstrings():
    doc = """Replay.

    :param mem_size: replay buffer size. More words.
    :param batch_size_mem: the size of the
        memory batch.
    """
    assert docs.reST_params(doc) == {
        "mem_size": "replay buffer size.",
        "batch_size_mem": "the size of the memory batch.",
    }


def test_strategy_and_scenario_pages_carry_the_maths_and_link_from_their_index():
    pages = docs.pages()
    wpl = pages["strategies/wpl.md"]
    assert "$$" in wpl and "\\sum_{i \\in \\text{shared}}" in wpl  # the docstring's display maths, for the site
    assert docs.documented_names(wpl)[:3] == ["alpha", "fisher_samples", "estimator"]
    for registry, folder in ((STRATEGIES, "strategies"), (SCENARIOS, "scenarios")):
        index = pages[f"{folder}/index.md"]
        for entry in registry:
            if docs.documented(entry):
                assert f"]({entry.name.replace('.', '-').lower()}.md)" in index, entry.name


def test_readme_is_a_front_page_whose_links_resolve():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    assert "make test" in readme  # .ci/run calls the README's test command
    targets = [t for t in re.findall(r"\]\(([^)#]+)\)", readme) if not t.startswith("http")]
    assert len(targets) >= 20
    assert [t for t in targets if not (ROOT / t).exists()] == []


@pytest.mark.slow
def test_site_builds_strict_and_renders_navigation_and_maths_in_chromium(tmp_path):
    """mkdocs build --strict (a broken link, anchor or reference is an error); the notebook is not executed here
    (``make docs`` does it in CI). Then the home page and one strategy page in headless Chromium."""
    site = tmp_path / "site"
    env = {**os.environ, "FORGETBENCH_DOCS_EXECUTE": "false", "NO_MKDOCS_2_WARNING": "1"}
    run_command(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(site)],
        cwd=ROOT,
        env=env,
    )
    errors: list[str] = []
    with browser_page(1280, 900) as page:
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto((site / "index.html").as_uri(), wait_until="load")
        nav = page.eval_on_selector_all("nav.md-nav a.md-nav__link", "links => links.map(a => a.textContent.trim())")
        home = tmp_path / "home.png"
        page.screenshot(path=str(home))
        page.goto((site / "reference" / "strategies" / "wpl.html").as_uri(), wait_until="load")
        formula = page.eval_on_selector(
            'math[display="block"]',
            "m => { const r = m.getBoundingClientRect(); return [r.width, r.height, m.textContent]; }",
        )
        table_names = page.eval_on_selector_all("table td:first-child code", "cells => cells.map(c => c.textContent)")
    for title in ("Getting started", "Concepts", "Strategies", "Scenarios", "Result file schema", "Python API"):
        assert title in nav, (title, nav)
    assert "wpl" in nav  # every strategy page is in the navigation
    width, height, text = formula
    assert width > 100 and height > 10 and "θ" in text  # drawn as MathML, offline, no script
    assert table_names[:2] == ["alpha", "fisher_samples"]
    assert errors == []
    from PIL import Image

    pixels = np.asarray(Image.open(home).convert("L"), dtype=float)
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.01  # text, not a blank page
