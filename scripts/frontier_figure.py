"""One scenario's frontier figure from a results folder, as a PNG (the report's own figure, for a docs page).

python scripts/frontier_figure.py /tmp/fbbc bbc_domain_il docs/assets/frontier_bbc.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from forgetbench.benchmark.core.store import load_results
from forgetbench.reports import figures as F
from forgetbench.reports.html import png_bytes
from forgetbench.reports import frontier as FT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("scenario")
    parser.add_argument("png", type=Path)
    args = parser.parse_args()
    points = FT.frontier_frame(load_results(args.folder))
    mine = points[points.scenario == args.scenario]
    if mine.empty:
        raise SystemExit(f"no frontier points for scenario {args.scenario!r} in {args.folder}")
    axes = FT.scenario_axes(points, args.scenario)
    naive = float(mine[mine.method == FT.NAIVE].plasticity.mean())
    figure = F.frontier(
        mine, F.palette(list(dict.fromkeys(mine.method)), FT.NAIVE), {d: naive - axes.sign * d for d in FT.DROPS}, axes
    )
    args.png.write_bytes(png_bytes(figure))
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
