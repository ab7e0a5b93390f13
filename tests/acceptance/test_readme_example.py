"""The README's own suite ("A suite of your own"), run exactly as printed: it must show the phenomenon the tool is
for (naive forgets, by an amount its seeds establish) and the verdict must decide at least one pair. An example whose
models barely learn, or whose regularizer does nothing, is a defect of the example: change the setting, never the
check."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from forgetbench.benchmark.core.stats import t_interval
from forgetbench.benchmark.front.cli import main

README = Path(__file__).parents[2] / "README.md"
pytestmark = [pytest.mark.slow, pytest.mark.effect, pytest.mark.timeout(1800)]


def readme_suite() -> str:
    """The first YAML block under the README's "A suite of your own"."""
    section = README.read_text().split("## A suite of your own", 1)[1]
    return re.search(r"```yaml\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_forgets_and_decides_as_printed(tmp_path, monkeypatch):
    import forgetbench

    monkeypatch.chdir(tmp_path)
    Path("quick.yaml").write_text(readme_suite())
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main(["run", "quick.yaml", "--quiet", "--no-report"])  # the README's command, its default --out
    assert status == 0, printed.getvalue()[-3000:]
    results = forgetbench.load_results(Path("results") / "quick")
    frame = results.frame()
    naive = frame[(frame.strategy == "naive") & (frame.metric == "forgetting")].value.to_numpy()
    low, _ = t_interval(naive * 100, 0.95)
    assert low >= 5.0, f"naive forgets {naive.mean() * 100:.1f} points, 95% interval from {low:.1f}: under 5"
    decided = results.decisions()
    claims = decided[decided.outcome.isin(["less", "greater"])]
    assert len(claims), decided.to_string()


def test_getting_started_shows_the_readmes_example():
    """One example, two pages: docs/getting-started.md's suite is the README's, character for character."""
    page = (README.parent / "docs" / "getting-started.md").read_text()
    assert "```yaml\n" + readme_suite() + "```" in page
