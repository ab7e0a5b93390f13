"""The result record of one run: :class:`RunRecord`, typed and versioned.

One ``runs/<run_id>/result.json`` is one ``RunRecord.to_dict()``. The runner fills a record while
the run goes; the store writes and reads them; every metric comes from :func:`forgetbench.benchmark.core.metrics.run_metrics`
applied to one. Keys a scenario or strategy adds (the supernet's ``err1``/``err2``, the mask
methods' ``isolation``, ``pic``'s chosen lambdas...) are kept as extra fields.

Schema versions (:func:`upgrade` reads every one):

* 1: the first wave's records.
* 2: ``memory.regularizer_bytes`` counts what the regularizer must keep between experiences (the
  tensors in its ``state_dict()``: importances, anchors, masks, stored samples), no longer its
  per-experience scratch buffers; a resumed run's ``turn_accuracy``, ``curves`` and ``timing``
  cover the whole run. The keys are those of version 1, so version 1 records read unchanged.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

SCHEMA_VERSION = 2
# collapsed: finished with a finite loss but at chance level on every task seen (not averaged)
Status = Literal["ok", "failed", "diverged", "collapsed"]


class RecordError(ValueError):
    """A result file that is not a readable run record (the message says what is wrong)."""


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow")


class Component(_Part):
    """The scenario or strategy of a run: registered name, display label, resolved params."""

    name: str
    label: str
    params: dict[str, Any] = Field(default_factory=dict)


class Timing(_Part):
    """Wall-clock seconds (training without evaluation, evaluation) and optimiser steps.

    For a resumed run, the sum over the interrupted part and the part after the resume.
    """

    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    steps: int = 0


class TurnAccuracy(_Part):
    """Accuracy of the model trained in turn ``turn`` (on task ``task``), right after it."""

    turn: int
    task: int
    accuracy: float


class CurvePoint(_Part):
    """One forgetting-curve point: model ``eval_exp``'s accuracy at ``iteration`` of turn ``train_exp``."""

    train_exp: int
    iteration: int
    eval_exp: int
    accuracy: float


class Memory(_Part):
    regularizer_bytes: int = 0


class RunRecord(BaseModel):
    """One run's result; extra keys (scenario summaries, strategies' extra results) are kept."""

    model_config = ConfigDict(extra="allow", validate_assignment=False)

    schema_version: int = SCHEMA_VERSION
    run_id: str
    suite: str
    scenario: Component
    strategy: Component
    seed: int
    status: Status = "ok"
    error: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    environment: dict[str, str] = Field(default_factory=dict)
    experiences: list[str] = Field(default_factory=list)
    scenario_type: str | None = None  # task-IL, domain-IL or class-IL, where the scenario says
    accuracy_matrix: list[list[float]] = Field(default_factory=list)
    init_accuracy: list[float] = Field(default_factory=list)
    timing: Timing = Field(default_factory=Timing)
    started_at: str | None = None
    finished_at: str | None = None
    turn_accuracy: list[TurnAccuracy] | None = None
    curves: list[CurvePoint] | None = None
    standalone_accuracy: list[float] | None = None
    memory: Memory | None = None
    resumed_from_experience: int | None = None
    evaluated_on: dict[str, Any] | None = None
    # tasks whose final accuracy is at chance while the run is ok (others learned): flagged in the report
    tasks_at_chance: list[int] | None = None
    warnings: list[str] | None = None  # what the run noticed that does not fail it (each a sentence)
    traceback: str | None = None

    @field_validator("accuracy_matrix")
    @classmethod
    def _rectangular(cls, rows: list[list[float]]) -> list[list[float]]:
        if rows and len({len(r) for r in rows}) != 1:
            raise ValueError(f"rows differ in length: {[len(r) for r in rows]}")
        return rows

    @property
    def ok(self) -> bool:
        """A finished run with at least one accuracy row (what every metric needs)."""
        return self.status == "ok" and bool(self.accuracy_matrix) and bool(self.accuracy_matrix[0])

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to ``result.json`` (keys never set are left out)."""
        return _finite(self.model_dump(mode="python", exclude_unset=True))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "RunRecord":
        """Read a record of any schema version; raises :class:`RecordError` naming the bad field."""
        if not isinstance(raw, Mapping):
            raise RecordError(f"a run record is a JSON object, got {type(raw).__name__}")
        try:
            return cls.model_validate(upgrade(dict(raw)))
        except ValidationError as exc:
            where = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:3])
            raise RecordError(where) from None


def coerce(record: "RunRecord | Mapping[str, Any]") -> RunRecord:
    """A :class:`RunRecord` from a record or its dict form."""
    return record if isinstance(record, RunRecord) else RunRecord.from_dict(record)


def upgrade(raw: dict[str, Any]) -> dict[str, Any]:
    """Bring a record of an earlier schema version to the current one (same keys since version 1)."""
    version = raw.get("schema_version", 1)
    if not isinstance(version, int) or version < 1 or version > SCHEMA_VERSION:
        raise RecordError(f"schema_version {version!r} is not one of 1..{SCHEMA_VERSION}")
    if version == 1:
        raw = {**raw, "schema_version": SCHEMA_VERSION}
    return raw


def _finite(value: Any) -> Any:
    """JSON has no NaN / inf: such floats become null (json.dumps would write invalid JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
