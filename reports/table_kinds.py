"""The kinds of ``forgetbench table``: what each shows and the function of :mod:`forgetbench.reports.study_tables`
that builds it. The functions are named, not imported, so that the CLI lists the kinds without importing pandas
(every command's parser is built on each call; ``--help`` stays under half a second)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence


@dataclass(frozen=True)
class TableKind:
    """A kind: what it shows (the CLI's help), its builder in :mod:`forgetbench.reports.study_tables` (called with
    the records, their folders and the options it takes; it returns a DataFrame or a list of sections), and the
    keyword options it takes from the command line."""

    summary: str
    builder: str
    options: tuple[str, ...] = ()


TABLES: dict[str, TableKind] = {
    "interval": TableKind(
        "means with 95% intervals and a paired comparison with naive", "interval_frame", ("metrics", "compare")
    ),
    "cost": TableKind("training seconds against naive's, outcomes, skipped importance passes", "cost_frame"),
    "zoo": TableKind(
        "runs ok, ACC / forgetting / LA +- std, train seconds, regularizer memory", "zoo_frame", ("missing",)
    ),
    "plm": TableKind(
        "the zoo's columns, forgetting vs naive, adapter parameters and overlap", "plm_frame", ("missing",)
    ),
    "strength": TableKind(
        "a search's strength sweep: penalty acted, err2 - err1 and retrained score vs naive",
        "strength_frame",
        ("naive", "from_epoch_on"),
    ),
    "frontier": TableKind("forgetting at matched plasticity (naive's minus 1, 2, 5) and verdicts", "frontier_sections"),
    "attribution": TableKind("how much of the forgetting the quadratic prediction explains", "attribution_sections"),
}


def study_table(kind: str, records: Sequence[Any], folders: Sequence[str | Path] = (), **options: Any) -> str | None:
    """Kind ``kind`` of the records (RunRecords) as Markdown, None when it has no row; options it does not take,
    or left None, are ignored."""
    tables = importlib.import_module("forgetbench.reports.study_tables")
    table = TABLES[kind]
    given = {k: v for k, v in options.items() if k in table.options and v is not None}
    built = getattr(tables, table.builder)(records, [Path(f) for f in folders], **given)
    empty = built.empty if hasattr(built, "empty") else not built
    return None if empty else str(tables.render(built))
