"""The report in headless Chromium: images decode, no console errors, a non-blank screenshot."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import browser_page
from report_records import basic_records, full_records, write_folder
from forgetbench.reports.html import write_report


@pytest.mark.slow  # starts a browser, 4 s: for the full tier, not the inner loop
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
