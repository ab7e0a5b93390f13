"""``perf``'s ``suite_overhead`` section: what a suite costs beyond its runs' own training and evaluation.

The demo's suite (``configs/demo.yaml``, or a quick two-run cut of it) runs in a fresh folder, in this process,
with the local executor (one run after another: nothing to overlap), its wall timed from the call to
:func:`forgetbench.benchmark.run.suite.run_suite` to its return; the runs' own seconds are the records'
``train_seconds + eval_seconds``. ``ratio = wall / runs``: what the suite spends building scenarios, computing the
attribution, writing records and checking resume (target <= 1.25). The report's wall is timed apart.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from forgetbench.benchmark.perf.measurements import REPO, section, row
from forgetbench.benchmark.perf.common import PerfOptions, median_of

DEMO = REPO / "configs" / "demo.yaml"


def demo_suite(quick: bool) -> Any:
    """The demo's suite (configs/demo.yaml of the checkout); ``quick``: its first strategy on one seed."""
    from forgetbench.benchmark.core.config import load_config

    suite = load_config(DEMO)
    if quick:
        suite = suite.model_copy(update={"seeds": [0], "strategies": suite.strategies[:1]})
    return suite


def suite_overhead(opts: PerfOptions) -> dict[str, Any]:
    from forgetbench.benchmark.core.store import load_results
    from forgetbench.benchmark.data.datasets import default_data_root
    from forgetbench.benchmark.run.suite import run_suite
    from forgetbench.reports.html import write_report

    suite = demo_suite(opts.quick)
    walls, runs, reports, attribution = [], [], [], []
    for _ in range(opts.repeats):
        with tempfile.TemporaryDirectory(prefix="forgetbench-perf-") as scratch:
            out = Path(scratch) / "demo"
            begun = time.perf_counter()
            run_suite(suite, out, default_data_root(), show_progress=False)
            walls.append(time.perf_counter() - begun)
            records = load_results(out)
            runs.append(sum(r.timing.train_seconds + r.timing.eval_seconds for r in records))
            attribution.append(sum(r.timing.attribution_seconds or 0.0 for r in records))
            begun = time.perf_counter()
            write_report([out])
            reports.append(time.perf_counter() - begun)
    wall, work = median_of(walls), median_of(runs)
    return {
        "suite": f"{suite.name}: {len(suite.seeds) * len(suite.strategies) * len(suite.scenarios)} runs, local executor",
        "wall_seconds": wall,
        "run_seconds": work,
        "attribution_seconds": median_of(attribution),
        "ratio": wall / work if work else float("nan"),
        "report_seconds": median_of(reports),
    }


def lines(r: Any) -> list[str]:
    """Its block of perf's table."""
    return [
        f"suite_overhead ({r['suite']})",
        row(
            f"suite wall / runs' train + eval: {r['wall_seconds']:.1f} s / {r['run_seconds']:.1f} s",
            f"{r['ratio']:.2f}",
            "target <= 1.25",
        ),
        row(
            f"of which attribution: {r['attribution_seconds']:.1f} s; the report after it",
            f"{r['report_seconds']:.1f} s",
        ),
    ]


section(__name__, "the demo suite's wall against its runs' own seconds", suite_overhead, lines, rank=8)
