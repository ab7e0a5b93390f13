"""A results folder's matched-plasticity tables, as Markdown: per scenario with a frontier, each method's forgetting
at naive's plasticity minus 1, 2 and 5 (mean [95% t-interval] over the seeds whose front reaches it, and how many
do), naive's own forgetting, and the report's verdicts (which pairwise differences are resolved). Read from the
report's own frontier.csv (``forgetbench run`` or ``forgetbench report`` writes it).

    python scripts/frontier_table.py results/frontier_demo
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from forgetbench.reports import frontier as FT


def frontier_tables(folder: Path) -> str:
    frame = pd.read_csv(folder / "frontier.csv")
    out = []
    for scenario in dict.fromkeys(frame.scenario):
        if not FT.has_frontier(frame, scenario):
            continue
        axes = FT.scenario_axes(frame, scenario)
        matched = FT.matched_plasticity(frame, scenario)
        naive = frame[(frame.scenario == scenario) & (frame.method == FT.NAIVE)].forgetting.mean()
        drops = list(dict.fromkeys(matched["drop"]))
        out += [f"## {scenario} (naive forgets {naive:.{axes.digits}f})", ""]
        out.append("| method | " + " | ".join(f"naive {axes.name} - {d:g}" for d in drops) + " |")
        out.append("|---" * (len(drops) + 1) + "|")
        for method, rows in matched.groupby("method", sort=False):
            cells = [
                "not reached"
                if r.n < 1
                else f"{r.mean:.{axes.digits}f} ({r.n}/{r.seeds})"  # one seed: no interval
                if r.n < 2
                else f"{r.mean:.{axes.digits}f} [{r.ci_low:.{axes.digits}f}, {r.ci_high:.{axes.digits}f}] ({r.n}/{r.seeds})"
                for r in rows.itertuples()
            ]
            out.append(f"| {method} | " + " | ".join(cells) + " |")
        out += ["", *FT.matched_verdicts(matched, FT.matched_pairs(matched), axes), ""]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    print(frontier_tables(parser.parse_args().folder))


if __name__ == "__main__":
    main()
