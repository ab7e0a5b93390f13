"""The result record of one run: :class:`RunRecord`, typed and versioned.

One ``runs/<run_id>/result.json`` is one ``RunRecord.to_dict()``. The runner builds a record while
the run goes and returns it; the executors, the store, the metrics
(:func:`forgetbench.benchmark.core.metrics.run_metrics`) and the reports pass it as this type: JSON only at
the file (``store``) and process (``executors``) boundaries.

Every key the project's scenarios and strategies add is declared here, typed, as a sub-record (the
searches' ``err1`` / ``err2`` and :class:`SearchSummary`, the mask methods' :class:`Isolation`,
``pic``'s :class:`PICResult`, ...): this class is the result-file schema. A third-party plug-in's own
keys (its scenario's ``summarize()`` or its plugin's ``extra_results()``) are kept as given, in
``model_extra``; they may not reuse a declared name.

Schema versions (:func:`upgrade` reads every one):

* 1: the first wave's records.
* 2: ``memory.regularizer_bytes`` counts what the regularizer must keep between experiences (the
  tensors in its ``state_dict()``: importances, anchors, masks, stored samples), no longer its
  per-experience scratch buffers; a resumed run's ``turn_accuracy``, ``curves`` and ``timing``
  cover the whole run. The keys are those of version 1, so version 1 records read unchanged.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Literal, Mapping

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
    search_seconds: float | None = None  # an adaptive scenario's own work between turns (a controller's updates)
    standalone_seconds: float | None = None  # training the standalone references
    retrain_seconds: float | None = None  # retraining the derived architecture alone


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


class EvaluatedOn(_Part):
    """Where the accuracies were measured when not on each task's test split (selection sweeps)."""

    split: str
    fraction: float | None = None


class ArchitectureScores(_Part):
    """An architecture's scores on the whole validation and test splits: err and accuracy (image searches) or
    log-perplexity and perplexity (language-model searches)."""

    valid_err: float | None = None
    valid_accuracy: float | None = None
    test_err: float | None = None
    test_accuracy: float | None = None
    valid_log_ppl: float | None = None
    valid_ppl: float | None = None
    test_log_ppl: float | None = None
    test_ppl: float | None = None


class RetrainedScores(ArchitectureScores):
    """The derived architecture trained alone for ``steps`` steps from the run's initial weights."""

    steps: int


class DerivedArchitecture(ArchitectureScores):
    """The architecture a search derived: best of ``candidates`` samples by err on the shared weights, scored
    on the shared weights."""

    architecture: list[int]
    cell: Any = None
    task: int | None = None
    candidates: int | None = None
    candidates_err: list[float] | None = None
    retrained: RetrainedScores | None = None


class SearchSummary(_Part):
    """What a search scenario decided: its kind, the controller's rewards, the chosen / derived architecture."""

    kind: str
    top_k: int | None = None
    validation_accuracy: list[float] | None = None
    chosen: int | None = None
    chosen_architecture: list[Any] | None = None
    rewards: list[Any] | None = None  # per turn (supernet search) or per epoch, one per controller step (cells)
    controller_probabilities: Any = None
    error: str | None = None  # the err a cell search reports (error rate or log-perplexity)
    measured_from_epoch: int | None = None
    derived: DerivedArchitecture | None = None


class Isolation(_Part):
    """Supermask methods: per trained slot, mask density and the share of masked weights it owns."""

    slots: list[int] = Field(default_factory=list)
    mask_density: list[float] = Field(default_factory=list)
    owned_fraction: list[float] = Field(default_factory=list)
    union_fraction: float = 0.0
    exclusive_fraction: list[float] | None = None  # ExSSNeT's exclusive share per experience


class KKTEntry(_Part):
    """ExSSNeT's KNN-based knowledge transfer for one experience: the sources it drew on."""

    experience: int
    chance: float
    knn_accuracy: dict[str, float] = Field(default_factory=dict)
    sources: dict[str, float] = Field(default_factory=dict)


class PICResult(_Part):
    """PIC's merge coefficients per experience and the validation accuracy that chose them."""

    lam: list[Any] = Field(default_factory=list)
    val_accuracy: list[Any] = Field(default_factory=list)
    val_accuracy_per_lambda: list[Any] = Field(default_factory=list)


class CorpusSummary(_Part):
    name: str
    vocabulary: int
    tokens: dict[str, int] = Field(default_factory=dict)
    train_tokens_used: int | None = None
    eval_tokens: int | None = None
    unk_rate: dict[str, float] | None = None  # share of <unk> tokens per split


class DataSummary(_Part):
    dataset: str
    train: int
    valid: int
    evaluation: int
    test: int


class RunRecord(BaseModel):
    """One run's result: what ran, the accuracy matrix and what the scenario and strategy add (declared below);
    a third-party plug-in's own keys are kept in ``model_extra``."""

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
    attempt: int | None = None  # set by the suite when a failed run was retried (the attempt this record is)

    # --- what scenarios add (Scenario.summarize)
    architectures: list[Any] | None = None  # per task: the supernet's / search's architecture
    epoch_architectures: list[list[int]] | None = None  # cell searches: the tasks each epoch trained
    err1: list[list[float | None]] | None = None  # per round / epoch and architecture: err right after its turn
    err2: list[list[float | None]] | None = None  # ... and at the round's / epoch's end
    search: SearchSummary | None = None
    data: DataSummary | None = None
    corpus: CorpusSummary | None = None

    # --- what strategies add (their plugins' extra_results)
    isolation: Isolation | None = None
    kkt: list[KKTEntry] | None = None
    pic: PICResult | None = None
    ewc_capped_entries: int | None = None  # importance entries max_curvature capped, summed over experiences
    ewc_max_curvature: float | None = None
    wpl_capped_entries: int | None = None
    wpl_max_curvature: float | None = None

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

    def __getitem__(self, key: str) -> Any:
        # records used to be passed as dicts: a script that still indexes one learns how to read it now
        raise TypeError(f"a RunRecord is typed, not a dict: read record.{key} (or record.to_dict()[{key!r}] for "
                        f"the JSON form)")

    def __contains__(self, key: object) -> bool:
        # `"err1" in record` on a dict asked whether a key was set; on a model it would silently be False
        raise TypeError(f"a RunRecord is typed, not a dict: test record.{key} is not None (or {key!r} in "
                        f"record.to_dict() for the JSON form)")

    def __iter__(self):  # type: ignore[override]
        # dict(record), set(record), `for key in record`: dict habits that would silently see (name, value) pairs
        raise TypeError("a RunRecord is typed, not a dict: iterate record.to_dict() for the JSON form")

    def add_results(self, results: Mapping[str, Any], source: str) -> None:
        """Merge what a scenario or plugin reports (``source`` names it in errors): declared keys are
        validated into their sub-records; a plug-in's own keys are kept as given. A key the record
        already holds may not be overwritten (a scenario or strategy bug: the run fails)."""
        present = set(self.model_fields_set) | set(self.model_extra or {})
        clash = sorted(k for k in results if k in present)
        if clash:
            raise ValueError(f"{source} may not overwrite result keys {clash}")
        for key, value in results.items():
            try:  # only this key is validated (into its sub-record); the record's other fields are not re-read
                self.__pydantic_validator__.validate_assignment(self, key, value)
            except ValidationError as exc:
                where = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:3])
                raise ValueError(f"{source} reported a result the record cannot hold: {where}") from None

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


def as_records(records: "Iterable[RunRecord | Mapping[str, Any]]") -> list[RunRecord]:
    """The records as :class:`RunRecord` (dict forms, e.g. read from JSON by a user, are validated)."""
    return [coerce(r) for r in records]


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
