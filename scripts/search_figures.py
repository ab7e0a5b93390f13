"""A search suite's four panels (the WPL paper's Figure 3: mean, best-5 and max err2 - err1 per search epoch, and the
controller's reward), the report's own figure, as a PNG for a docs page; ``--strategies`` keeps some of them
(e.g. naive and the best WPL point of a strength sweep).

python scripts/search_figures.py results/example_supernet spos-fashion docs/assets/example_supernet_search.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from forgetbench.benchmark.core.store import load_results
from forgetbench.reports import figures as F
from forgetbench.reports.html import png_bytes
from forgetbench.reports import frames as FR

ERRORS = ("fv_mean", "fv_top5", "fv_max", "fv_best5")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("scenario")
    parser.add_argument("png", type=Path)
    parser.add_argument("--strategies", nargs="*", help="strategy labels to draw (default: every one)")
    parser.add_argument("--naive", default="naive", help="the baseline's label (drawn grey)")
    args = parser.parse_args()
    records = load_results(args.folder)
    epochs = FR.search_epochs_frame(records, args.scenario)
    if args.strategies:
        epochs = epochs[epochs.strategy.isin(args.strategies)]
    unit = FR.sampled_search_unit(records, args.scenario)
    if epochs.empty or unit is None:
        raise SystemExit(f"no search epochs for scenario {args.scenario!r} in {args.folder}")
    label, scale = unit
    colours = F.palette(list(dict.fromkeys(epochs.strategy)), args.naive)
    figure = F.search_four_panels(epochs.assign(**{c: epochs[c] * scale for c in ERRORS}), colours, label)
    if figure is None:
        raise SystemExit("nothing to draw")
    args.png.write_bytes(png_bytes(figure))
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
