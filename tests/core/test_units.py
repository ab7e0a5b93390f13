"""How quantities are written for people (benchmark/core/units.py), by hand."""

from __future__ import annotations

from forgetbench.benchmark.core.metric_registry import METRICS
from forgetbench.benchmark.core.units import display_scale, format_bytes
from forgetbench.reports.tables import format_value


def test_bytes_by_hand():
    assert format_bytes(812) == "812 B"
    assert format_bytes(1536) == "1.5 KB"
    assert format_bytes(-3 * 1024**2, signed=True) == "-3.0 MB"
    assert format_bytes(2048, signed=True) == "+2.0 KB"


def test_accuracies_are_written_in_points_everything_else_as_stored():
    assert display_scale("accuracy") == 100.0
    assert display_scale("seconds") == display_scale("tau") == display_scale(None) == 1.0
    # the report's cells and the scripts' intervals use the same factor
    assert format_value(METRICS["ACC"], 0.8766, 0.0123) == "87.7 ± 1.2"
    assert format_value(METRICS["search_tau"], 0.4712) == "0.471"
