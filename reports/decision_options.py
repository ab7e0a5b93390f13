"""How a results folder's verdicts decide (:class:`DecisionOptions`): its suite's ``verdict`` settings (margins, the
family-wise error rate) and whether its seeds were fixed or added in rounds (its ``rounds.json``), validated as
strictly as a suite's own; folders decided together must agree on them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from forgetbench.benchmark.core import decide as D
from forgetbench.benchmark.core.config import SeedsUntilDecided, VerdictConfig
from forgetbench.benchmark.core.metric_registry import METRICS
from forgetbench.benchmark.core.store import ResultFolder


class DecisionSettingsError(ValueError):
    """A folder's verdict settings are not valid, or folders decided together disagree on them (one line)."""


@dataclass(frozen=True)
class DecisionOptions:
    """How a folder's verdicts decide: margins per metric (in the metric's display unit: points for accuracy),
    the family-wise error rate, and whether the seeds were added in rounds (group-sequential tests, planned to
    ``planned`` seeds: the rounds' ``max``) or fixed (one look)."""

    margins: Mapping[str, float] = field(default_factory=lambda: {"forgetting": 1.0, "ACC": 1.0})
    alpha: float = D.ALPHA
    method: D.Method = "fixed"
    planned: int | None = None

    def margin(self, metric: str) -> float:
        """``metric``'s margin in its own unit (fractions for accuracy metrics); 0 where none is set (no equivalence
        can be concluded)."""
        info = METRICS.get(metric)
        value = self.margins.get(metric)
        if value is None and info is not None and info.unit == "accuracy":
            value = self.margins.get("forgetting")  # an accuracy measure of forgetting: the forgetting margin
        if value is None:
            return 0.0
        return float(value) / 100.0 if info is not None and info.unit == "accuracy" else float(value)

    def said(self) -> str:
        margins = ", ".join(f"{k} {v:g}" for k, v in sorted(self.margins.items()))
        how = f"seeds added in rounds up to {self.planned}" if self.method == "sequential" else "fixed seeds (one look)"
        return f"alpha {self.alpha:g}, margins {margins}, {how}"


def folder_options(folder: Path) -> DecisionOptions:
    """One folder's ``verdict`` options (its ``suite.yaml``, validated as strictly as a suite's own:
    :class:`~forgetbench.benchmark.core.config.VerdictConfig`), ``sequential`` where its seeds were added in rounds
    (its ``rounds.json``, whose rule's ``max`` is the planned seeds); the defaults where it has no suite.yaml. A bad
    value is a :class:`DecisionSettingsError` naming the file and the field."""
    folder = Path(folder)
    rounds = rounds_of([folder])
    method: D.Method = "sequential" if rounds is not None else "fixed"
    planned = int(rounds["rule"]["max"]) if rounds is not None else None
    path = ResultFolder(folder).suite
    try:
        suite = yaml.safe_load(path.read_text()) if path.is_file() else {}
    except (OSError, yaml.YAMLError) as exc:
        raise DecisionSettingsError(f"{path}: not a readable suite ({str(exc).splitlines()[0]})") from None
    verdict = suite.get("verdict") if isinstance(suite, dict) else None
    if verdict is None:
        return DecisionOptions(method=method, planned=planned)
    try:
        checked = VerdictConfig.model_validate(verdict)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error.get("loc", ()))
        raise DecisionSettingsError(
            f"{path}: verdict.{where}: {error.get('msg')} (got {error.get('input')!r}); the verdict settings a suite "
            "accepts: alpha in (0, 0.5), equivalence_margin: {metric: points > 0}"
        ) from None
    return DecisionOptions(dict(checked.equivalence_margin), float(checked.alpha), method, planned)


def options_of(folders: Iterable[Path]) -> DecisionOptions:
    """The verdict options of the folders decided together (:func:`folder_options`); folders whose settings differ
    (alpha, margins, fixed seeds against seeds added until decided) are refused, each named with its settings: one
    folder's settings would decide the other's pairs under a rule its seeds were not run for."""
    found = {str(folder): folder_options(Path(folder)) for folder in folders}
    if not found:
        return DecisionOptions()
    distinct = list({options.said(): options for options in found.values()}.values())
    if len(distinct) > 1:
        listed = "; ".join(f"{folder}: {options.said()}" for folder, options in found.items())
        raise DecisionSettingsError(
            f"these folders decide under different settings, and one report cannot decide them together ({listed}); "
            "report each folder on its own"
        )
    return distinct[0]


class _RoundsFile(BaseModel):
    """What the report reads of ``rounds.json``: validated as strictly as the suite's ``seeds: {start, max}``."""

    model_config = ConfigDict(extra="allow")
    rule: SeedsUntilDecided
    rounds: list[dict[str, Any]]
    stopped: dict[str, dict[str, str]]


def rounds_of(folders: Iterable[Path]) -> dict[str, Any] | None:
    """The first folder's ``rounds.json`` (None: its seeds were fixed); a file that is not one is a
    :class:`DecisionSettingsError` naming it and the field."""
    for folder in folders:
        path = ResultFolder(Path(folder)).rounds
        if not path.is_file():
            continue
        try:
            rounds = json.loads(path.read_text())
            _RoundsFile.model_validate(rounds)
        except (OSError, ValueError) as exc:
            detail = exc.errors()[0] if isinstance(exc, ValidationError) else None
            where = ".".join(str(p) for p in detail["loc"]) + f": {detail['msg']}" if detail else str(exc)[:120]
            raise DecisionSettingsError(
                f"{path}: not a record of rounds ({where}); rerun the suite on this folder to write it again"
            ) from None
        return dict(rounds)
    return None
