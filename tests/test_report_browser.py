"""The report in headless Chromium: images decode, no console errors, a non-blank screenshot."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from report_records import basic_records, full_records, write_folder
from reports.html import write_report

CHROMIUM = os.environ.get("FORGETBENCH_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps calling home, which a closed network floods.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _need_browser():
    problem = None
    if not Path(CHROMIUM).exists():
        problem = f"{CHROMIUM} is missing (apt-get install chromium; .ci/run does it)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError as exc:
            problem = f"playwright is not installed: {exc}"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)  # CI must run the real thing
        pytest.skip(problem)


@contextmanager
def browser_page(width: int = 1280, height: int = 900):
    """A page of Debian's headless Chromium (a throw-away profile), driven by playwright."""
    _need_browser()
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=FLAGS,
                viewport={"width": width, "height": height},
            )
            try:
                yield browser.new_page()
            finally:
                browser.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def test_report_opens_in_headless_chromium(tmp_path):
    records = full_records() + basic_records(label="<script>console.error('xss')</script>")
    report = write_report([write_folder(tmp_path / "results", records)])
    errors: list[str] = []
    with browser_page() as page:
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(report.as_uri(), wait_until="load")
        widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=False)

    assert len(widths) >= 8 and all(w > 0 for w in widths), widths
    assert errors == []  # an unescaped label would have logged 'xss'
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (900, 1280)
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.01  # text and figures, not a blank page
