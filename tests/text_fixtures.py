"""What the text tests share (the `text` extra's check, a folder corpus, a text scenario on it): imported by the
tests of several folders, so it lives beside conftest.py."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from forgetbench.benchmark.data import text


def require_text_extra() -> None:
    """The text tests need the `text` extra and the data packages; CI installs them (`make test`)."""
    missing = [
        m for m in ("transformers", text.MINILM_PACKAGE, text.BBC_PACKAGE) if importlib.util.find_spec(m) is None
    ]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the text tests: {missing} not installed (make test installs them)")
        pytest.skip(f"text extra not installed ({', '.join(missing)}): make install")


WORDS = {"cats": "purr meow whiskers", "dogs": "bark woof fetch", "birds": "tweet wing nest", "fish": "swim fin gill"}


def folder_corpus(root: Path) -> str:
    for cls, words in WORDS.items():
        (root / cls).mkdir(parents=True)
        for i in range(25):
            (root / cls / f"{i:02d}.txt").write_text(f"note {i}: the {cls} {words} {'again ' * (i % 3)}")
    return f"folder:{root}"


def text_scenario(tmp_path, **params):
    from forgetbench.benchmark.data.scenarios import SCENARIOS, ScenarioInputs

    require_text_extra()
    corpus_dir = tmp_path / "corpus"
    if not corpus_dir.exists():
        folder_corpus(corpus_dir)
    base = {"corpus": f"folder:{corpus_dir}", "max_length": 16, "trainable_layers": 1}
    entry = SCENARIOS.get("text")
    return entry.factory(entry.parse_params(base | params), ScenarioInputs(0, tmp_path / "data"))


def require_datasets() -> None:
    if importlib.util.find_spec("datasets") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the Hugging Face datasets tests (make test installs the text extra)")
        pytest.skip("Hugging Face datasets not installed: make install")
