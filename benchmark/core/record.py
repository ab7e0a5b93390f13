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
  Records since 2026-11-28 add ``fingerprint`` (the digest of ``config``) and ``rows_planned``; both optional.

A record read from a file is held to the schema strictly (:meth:`RunRecord.from_dict`): no bool or string where a
number belongs, no negative time, step count or byte count, a seed in 0..2**32-1 equal to its run id's, a
``fingerprint`` equal to its ``config``'s digest, and status ``ok`` only with a complete accuracy matrix (every row
the run planned). Records built in memory (the runner's) are not re-validated on each assignment.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any, Iterable, Literal, Mapping, NoReturn

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from typing_extensions import TypedDict

from forgetbench.benchmark.core import migrations
from forgetbench.benchmark.core.training import MAX_SEED

SCHEMA_VERSION = 2
# collapsed: finished with a finite loss but at chance level on every task seen (not averaged)
Status = Literal["ok", "failed", "diverged", "collapsed", "pruned"]


class RecordError(ValueError):
    """A result file that is not a readable run record (the message says what is wrong)."""


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow")


class Component(_Part):
    """The scenario or strategy of a run: registered name, display label, resolved params."""

    name: str  # the registered name
    label: str  # the label in run ids and reports
    params: dict[str, Any] = Field(default_factory=dict)  # the resolved params (defaults filled in)


class Timing(_Part):
    """Wall-clock seconds (training without evaluation, evaluation) and optimiser steps.

    For a resumed run, the sum over the interrupted part and the part after the resume.
    """

    train_seconds: float = Field(0.0, ge=0.0)  # training, evaluation excluded
    eval_seconds: float = Field(0.0, ge=0.0)  # evaluation
    steps: int = Field(0, ge=0)  # optimiser steps
    # an adaptive scenario's own work between turns (a controller's updates)
    search_seconds: float | None = Field(None, ge=0.0)
    standalone_seconds: float | None = Field(
        None, ge=0.0
    )  # older records: the standalone references (now retrain_seconds)
    retrain_seconds: float | None = Field(None, ge=0.0)  # models trained alone after the run (derived, ground truth)
    # forgetting attribution (its points within turns also in eval_seconds)
    attribution_seconds: float | None = Field(None, ge=0.0)
    # the importance passes of a regularizer (EWC's / WPL's Fisher, MAS's, SI's nothing: it accumulates while
    # training), summed over experiences; inside train_seconds
    importance_seconds: float | None = Field(None, ge=0.0)


class SeedBatch(_Part):
    """How a run ran (:mod:`forgetbench.benchmark.run.batching`): trained with ``seeds`` (its own included) as one
    stacked model, or alone for the reason ``alone`` says (set on every record a suite trained)."""

    seeds: list[int] | None = None  # the seeds it trained with as one stacked model, its own included
    # the batch's training wall, all its seeds together: the record's timing.train_seconds is its 1/K share
    train_seconds: float | None = Field(None, ge=0.0)
    alone: str | None = None  # why it trained alone: its batch refused, batching off, no other seed of its run


class TurnAccuracy(_Part):
    """Accuracy of the model trained in turn ``turn`` (on task ``task``), right after it."""

    turn: int  # the turn (0-based)
    task: int  # the task it trained
    accuracy: float  # its accuracy right after the turn


class CurvePoint(_Part):
    """One forgetting-curve point: model ``eval_exp``'s accuracy at ``iteration`` of turn ``train_exp``."""

    train_exp: int  # the experience being trained
    iteration: int  # the iteration within it
    eval_exp: int  # the model evaluated
    accuracy: float  # its accuracy then


class PrunePoint(_Part):
    """A tuning trial's objective so far at point ``point`` inside experience ``experience`` (its ``iteration``):
    the tasks trained so far evaluated there on the held-out split (``tune.pruning_points``)."""

    experience: int  # the experience it was checked inside (row k of the accuracy matrix)
    point: int  # 1 .. pruning_points
    iteration: int  # the experience's iteration it was checked after
    value: float | None  # the objective so far there; None: undefined so far (NaN)


class Memory(_Part):
    regularizer_bytes: int = Field(
        0, ge=0
    )  # bytes of the tensors the strategy keeps between experiences (its state_dict)


class LayerAttribution(_Part):
    """One layer's part of an earlier model's loss increase (see :mod:`forgetbench.benchmark.run.attribution`)."""

    layer: str  # the module owning the parameters (trunk.0)
    drift: float  # ||theta - theta*_k|| over the layer's shared parameters
    relative_drift: float | None = None  # drift / ||theta*_k|| (null when theta*_k is 0)
    predicted: float  # (1/2) sum F^k (theta - theta*_k)^2: the quadratic prediction of the increase (nats)
    first_order: float  # g^k . (theta - theta*_k): zero at an exact minimum


class AttributionEntry(_Part):
    """Model ``model``'s loss increase after turn ``turn`` and its attribution to the shared layers."""

    turn: int  # the turn after (or during) which it was measured
    iteration: int | None = None  # with training.eval_every: the iteration of the turn; null: after the turn
    model: int  # the earlier model (task index)
    observed: float  # L_k(theta) - L_k(theta*_k): mean cross-entropy increase on its held-out samples (nats)
    predicted: float  # sum over layers of the quadratic prediction
    first_order: float  # sum over layers of the first-order term
    layers: list[LayerAttribution] = Field(default_factory=list)  # per shared layer


class EvaluatedOn(_Part):
    """Where the accuracies were measured when not on each task's test split (tuning trials, calibration probes)."""

    split: str  # `validation`: a seeded share of each task's training data, held out from training
    fraction: float | None = None  # that share
    first_tasks: int | None = None  # trained and evaluated on the scenario's first k tasks only (a tuning protocol)
    samples: list[int] | None = None  # the samples each task was evaluated on (what a tuning tie is judged by)


class ArchitectureScores(_Part):
    """An architecture's scores on the whole validation and test splits: err and accuracy (image searches) or
    log-perplexity and perplexity (language-model searches)."""

    valid_err: float | None = None  # validation err
    valid_accuracy: float | None = None  # validation accuracy
    test_err: float | None = None  # test err
    test_accuracy: float | None = None  # test accuracy
    valid_log_ppl: float | None = None  # validation log-perplexity
    valid_ppl: float | None = None  # validation perplexity
    test_log_ppl: float | None = None  # test log-perplexity
    test_ppl: float | None = None  # test perplexity


class RetrainedScores(ArchitectureScores):
    """The derived architecture trained alone for ``steps`` steps from the run's initial weights."""

    steps: int  # retraining steps


class DerivedArchitecture(ArchitectureScores):
    """The architecture a search derived: best of ``candidates`` samples by err on the shared weights, scored
    on the shared weights."""

    architecture: list[int]  # the derived architecture
    cell: Any = None  # its cell (cell searches)
    task: int | None = None  # its task index, if trained during the search
    candidates: int | None = None  # candidates sampled to derive it
    candidates_err: list[float] | None = None  # their err on the shared weights
    retrained: RetrainedScores | None = None


class GroundTruth(_Part):
    """K architectures trained alone, against which a search's ranking of the same K is measured."""

    architectures: list[str]  # their names
    source: str | None = None  # standalone (trained here) or published (a benchmark's table, e.g. NAS-Bench-201)
    steps: int | None = None  # training steps of each alone (standalone)
    top_k: int | None = None  # K of precision@K
    supernet_accuracy: list[float]  # each one's accuracy on the shared weights at the search's end (validation)
    standalone_accuracy: list[float]  # each one's test accuracy trained alone (or as published)


class SearchSummary(_Part):
    """What a search scenario decided: its kind, the controller's rewards, the chosen / derived architecture."""

    kind: str  # the search: random, controller or fixed (rounds over a list)
    top_k: int | None = None  # K of precision@K
    validation_accuracy: list[float] | None = None  # older records: per candidate (now ground_truth)
    chosen: int | None = None  # older records only: the candidate the search picked
    chosen_architecture: list[Any] | None = None  # older records only: its architecture
    rewards: list[Any] | None = None  # per turn (supernet search) or per epoch, one per controller step (cells)
    controller_probabilities: Any = None  # the controller's final choice probabilities
    error: str | None = None  # the err a cell search reports (error rate or log-perplexity)
    measured_from_epoch: int | None = None  # first epoch the forgetting metrics average over
    derived: DerivedArchitecture | None = None  # the architecture derived at the end
    ground_truth: GroundTruth | None = None  # K architectures trained alone (every supernet search with one)


class Isolation(_Part):
    """Supermask methods: per trained slot, mask density and the share of masked weights it owns."""

    slots: list[int] = Field(default_factory=list)  # the mask slot of each experience
    mask_density: list[float] = Field(default_factory=list)  # each mask's kept fraction
    owned_fraction: list[float] = Field(default_factory=list)  # share of all masked weights first claimed by that task
    union_fraction: float = 0.0  # share of weights some mask holds
    exclusive_fraction: list[float] | None = None  # ExSSNeT's exclusive share per experience


class KKTEntry(_Part):
    """ExSSNeT's KNN-based knowledge transfer for one experience: the sources it drew on."""

    experience: int  # the experience
    chance: float  # chance accuracy
    knn_accuracy: dict[str, float] = Field(default_factory=dict)  # KNN accuracy of each earlier mask
    sources: dict[str, float] = Field(default_factory=dict)  # the mask(s) chosen and their weights


class PICResult(_Part):
    """PIC's merge coefficients per experience and the validation accuracy that chose them."""

    lam: list[Any] = Field(default_factory=list)  # lambda chosen after each experience
    val_accuracy: list[Any] = Field(default_factory=list)  # held-out accuracy at the chosen lambda
    val_accuracy_per_lambda: list[Any] = Field(default_factory=list)  # held-out accuracy for every lambda tried


class CorpusSummary(_Part):
    name: str  # the corpus
    vocabulary: int  # tokens in the vocabulary (<unk> included)
    tokens: dict[str, int] = Field(default_factory=dict)  # tokens per split
    train_tokens_used: int | None = None  # training tokens read (max_train_tokens)
    eval_tokens: int | None = None  # validation tokens an err is measured on
    unk_rate: dict[str, float] | None = None  # share of <unk> tokens per split


class DataSummary(_Part):
    dataset: str  # the dataset
    train: int  # training samples
    valid: int  # validation samples (held out of training)
    evaluation: int  # samples err1 / err2 read
    test: int  # test samples


def _fractions(values: list[float]) -> list[float]:
    """An accuracy is a fraction: a value outside [0, 1] (or infinite) is a corrupt record, not a number to average
    (NaN passes: not measured)."""
    outside = [v for v in values if not (0.0 <= v <= 1.0 or math.isnan(v))]
    if outside:
        raise ValueError(f"an accuracy is in [0, 1], got {outside[0]!r}")
    return values


class RunRecord(BaseModel):
    """One run's result: what ran, the accuracy matrix and what the scenario and strategy add (declared below);
    a third-party plug-in's own keys are kept in ``model_extra``."""

    model_config = ConfigDict(extra="allow", validate_assignment=False)

    schema_version: int = SCHEMA_VERSION  # the schema this record was written with (older ones are upgraded on read)
    run_id: str  # <scenario label>__<strategy label>__s<seed>; names the run folder
    suite: str  # the suite's name
    scenario: Component  # the scenario that ran
    strategy: Component  # the strategy that ran
    seed: int = Field(ge=0, le=MAX_SEED)  # the seed of every random draw of the run (the run id's)
    # ok, failed (error and traceback kept), diverged (a non-finite loss), collapsed (chance on every task) or
    # pruned (a tuning trial's run stopped after or inside an experience where it fell behind the study; error says so)
    status: Status = "ok"
    error: str | None = None  # what went wrong (failed / diverged / collapsed)
    config: dict[str, Any] = Field(default_factory=dict)  # the resolved suite config of this run (training included)
    # config_fingerprint(config): the planned run this record is (checked against OUT/plan.json when read)
    fingerprint: str | None = None
    # accuracy rows a complete run has (the turns that record one); null where a search decides its turns as it runs
    rows_planned: int | None = Field(None, ge=0)
    environment: dict[str, str] = Field(
        default_factory=dict
    )  # the run's fingerprint: versions, commit, device, threads (see Result files)
    experiences: list[str] = Field(default_factory=list)  # the experiences' names, in training order
    scenario_type: str | None = None  # task-IL, domain-IL or class-IL, where the scenario says
    accuracy_matrix: list[list[float]] = Field(
        default_factory=list
    )  # `R[i][j]`: accuracy (in [0, 1]) on task j after training experience i
    init_accuracy: list[float] = Field(
        default_factory=list
    )  # accuracy on each task before any training (the reference of forward transfer)
    timing: Timing = Field(default_factory=Timing)  # wall-clock seconds and optimiser steps
    started_at: str | None = None  # UTC start, ISO 8601
    finished_at: str | None = None  # UTC end, ISO 8601
    turn_accuracy: list[TurnAccuracy] | None = (
        None  # each turn's model right after its turn (searches: one row per turn)
    )
    curves: list[CurvePoint] | None = None  # forgetting curves, with training.eval_every
    prune_points: list[PrunePoint] | None = None  # a tuning trial's checks inside its experiences (pruning_points)
    standalone_accuracy: list[float] | None = None  # older records: per task, alone (now search.ground_truth)
    memory: Memory | None = None  # what the strategy keeps between experiences
    resumed_from_experience: int | None = None  # set when the run resumed from a checkpoint
    evaluated_on: EvaluatedOn | None = None  # where accuracies were measured when not the test split (trials, probes)
    # tasks whose final accuracy is at chance while the run is ok (others learned): flagged in the report
    tasks_at_chance: list[int] | None = None
    warnings: list[str] | None = None  # what the run noticed that does not fail it (each a sentence)
    traceback: str | None = None  # a failed run's traceback
    attribution: list[AttributionEntry] | None = None  # with training.attribution: per turn and earlier model
    attempt: int | None = None  # set by the suite when a failed run was retried (the attempt this record is)
    # the round of seeds: {start, max} that added this run (0: the first seeds; None: a suite without rounds): a
    # pair's seeds are decided in the order they were run
    round: int | None = Field(None, ge=0)
    # how it ran, never what it computes (not in the fingerprint): in a batch of seeds (run.batching), or alone and why
    batch: SeedBatch | None = None

    # --- what scenarios add (Scenario.summarize)
    architectures: list[Any] | None = None  # per task: the supernet's / search's architecture
    epoch_architectures: list[list[int]] | None = None  # cell searches: the tasks each epoch trained
    architecture_names: list[str] | None = None  # per task: its architecture's option names (a user's supernet)
    err1: list[list[float | None]] | None = None  # per round / epoch and architecture: err right after its turn
    err2: list[list[float | None]] | None = None  # ... and at the round's / epoch's end
    search: SearchSummary | None = None  # what a search decided
    data: DataSummary | None = None  # sizes of the splits a search read
    corpus: CorpusSummary | None = None  # the language-modelling corpus a search read

    # --- what strategies add (their plugins' extra_results)
    isolation: Isolation | None = None  # mask methods (supsup, exssnet): what each mask holds
    kkt: list[KKTEntry] | None = None  # exssnet's KNN transfer per experience
    pic: PICResult | None = None  # pic's chosen lambdas and their held-out accuracies

    @field_validator("accuracy_matrix")
    @classmethod
    def _rectangular(cls, rows: list[list[float]]) -> list[list[float]]:
        if rows and len({len(r) for r in rows}) != 1:
            raise ValueError(f"rows differ in length: {[len(r) for r in rows]}")
        for row in rows:
            _fractions(row)
        return rows

    @field_validator("init_accuracy", "standalone_accuracy")
    @classmethod
    def _accuracies(cls, values: list[float] | None) -> list[float] | None:
        return values if values is None else _fractions(values)

    @property
    def ok(self) -> bool:
        """A finished run with at least one accuracy row (what every metric needs)."""
        return self.status == "ok" and bool(self.accuracy_matrix) and bool(self.accuracy_matrix[0])

    def __getitem__(self, key: str) -> Any:
        # records used to be passed as dicts: a script that still indexes one learns how to read it now
        raise TypeError(
            f"a RunRecord is typed, not a dict: read record.{key} (or record.to_dict()[{key!r}] for the JSON form)"
        )

    def __contains__(self, key: object) -> bool:
        # `"err1" in record` on a dict asked whether a key was set; on a model it would silently be False
        raise TypeError(
            f"a RunRecord is typed, not a dict: test record.{key} is not None (or {key!r} in "
            f"record.to_dict() for the JSON form)"
        )

    def __iter__(self) -> NoReturn:
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
        dumped: dict[str, Any] = _finite(self.model_dump(mode="python", exclude_unset=True))
        return dumped

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "RunRecord":
        """Read a record of any schema version; raises :class:`RecordError` naming the bad field."""
        if not isinstance(raw, Mapping):
            raise RecordError(f"a run record is a JSON object, got {type(raw).__name__}")
        try:
            record = cls.model_validate(upgrade(dict(raw)), strict=True)
        except ValidationError as exc:
            raise RecordError(_where(exc)) from None
        return record

    @classmethod
    def from_dict_lean(cls, raw: Mapping[str, Any]) -> "tuple[RunRecord, list[tuple[int, int, int, float]]]":
        """Read a record without :data:`LEAN_SKIPS`, and its curve points as plain ``(train_exp, iteration,
        eval_exp, accuracy)`` tuples, validated as :class:`CurvePoint` validates them, for the curve metrics.

        ``curves`` and ``attribution`` are 93% of a demo record's bytes and seven eighths of its validation time
        (``forgetbench perf --only report_scale --set reading=true``), and only figures draw them; ``config`` repeats the suite's config (``suite.yaml``); no table reads
        ``turn_accuracy``. Only ``curves`` is read (validated, for the curve metrics). Raises
        :class:`RecordError` as :meth:`from_dict`."""
        if not isinstance(raw, Mapping):
            raise RecordError(f"a run record is a JSON object, got {type(raw).__name__}")
        kept = {k: v for k, v in raw.items() if k not in LEAN_SKIPS}
        try:
            points = _CURVE_POINTS.validate_python(raw.get("curves") or [], strict=True)
        except ValidationError as exc:
            raise RecordError(_where(exc, prefix="curves")) from None
        try:
            record = cls.model_validate(upgrade(kept), strict=True)
        except ValidationError as exc:
            raise RecordError(_where(exc)) from None
        return record, [(p["train_exp"], p["iteration"], p["eval_exp"], p["accuracy"]) for p in points]


LEAN_SKIPS = ("curves", "attribution", "config", "turn_accuracy")  # what RunRecord.from_dict_lean leaves out
# CurvePoint's fields as a TypedDict (built from the model: one definition): pydantic validates into dicts much
# faster than into models
_CURVE_FIELDS = {k: f.annotation for k, f in CurvePoint.model_fields.items()}
_CurvePointFields = TypedDict("_CurvePointFields", _CURVE_FIELDS)  # type: ignore[misc]
_CURVE_POINTS: TypeAdapter[list[Any]] = TypeAdapter(list[_CurvePointFields])


def _where(exc: ValidationError, prefix: str = "") -> str:
    return "; ".join(
        ".".join(str(p) for p in ([prefix] if prefix else []) + list(e["loc"])) + f": {e['msg']}"
        for e in exc.errors()[:3]
    )


def config_fingerprint(config: Mapping[str, Any]) -> str:
    """The digest of a run's resolved config (canonical JSON, SHA-256, 16 hex digits): equal configs, equal
    fingerprints, on every machine."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


_RUN_ID_SEED = re.compile(r"__seed(\d+)$")


def check_read(record: RunRecord, config: Any = None) -> None:
    """What a record read from a file must hold beyond its fields' types (raises :class:`RecordError` naming it):
    the seed its run id names, a fingerprint equal to its config's (``config``: the file's, for a lean read that
    leaves it out), and, when ``ok``, a complete accuracy matrix."""
    named = _RUN_ID_SEED.search(record.run_id)
    if named is not None and int(named.group(1)) != record.seed:
        raise RecordError(f"seed: {record.seed} but its run id {record.run_id!r} names seed {named.group(1)}")
    if record.fingerprint is not None and isinstance(config, Mapping):
        actual = config_fingerprint(config)
        if actual != record.fingerprint:
            raise RecordError(
                f"fingerprint: {record.fingerprint} but its config's digest is {actual}: the config was edited after "
                "the run (the numbers are those of another config)"
            )
    if record.status != "ok":
        return
    rows = record.accuracy_matrix
    if record.rows_planned is not None and len(rows) != record.rows_planned:
        raise RecordError(
            f"accuracy_matrix: status ok with {len(rows)} of the {record.rows_planned} rows a complete run has "
            "(a partial or padded matrix)"
        )
    if not rows and record.search is None:
        raise RecordError("accuracy_matrix: status ok but empty (a run that finished has at least one row)")


def coerce(record: "RunRecord | Mapping[str, Any]") -> RunRecord:
    """A :class:`RunRecord` from a record or its dict form."""
    return record if isinstance(record, RunRecord) else RunRecord.from_dict(record)


def as_records(records: "Iterable[RunRecord | Mapping[str, Any]]") -> list[RunRecord]:
    """The records as :class:`RunRecord` (dict forms, e.g. read from JSON by a user, are validated)."""
    return [coerce(r) for r in records]


def upgrade(raw: dict[str, Any]) -> dict[str, Any]:
    """A record of an earlier schema version brought to the current one (:mod:`.migrations`)."""
    try:
        return migrations.upgrade_record(raw, SCHEMA_VERSION)
    except migrations.SchemaError as exc:
        raise RecordError(str(exc)) from None


def _finite(value: Any) -> Any:
    """JSON has no NaN / inf: such floats become null (json.dumps would write invalid JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
