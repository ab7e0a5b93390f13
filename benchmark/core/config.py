"""Suite configuration: YAML validated with pydantic.

Unknown keys are errors at every level. Scenario and strategy params are validated against the
params model their component registered, so a typo or an out-of-range value is reported with its
full location (``strategies[1].params.ewc_lambda``) before anything runs.
"""

from __future__ import annotations

import importlib

import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Union

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PositiveFloat,
    PrivateAttr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from forgetbench.benchmark.core import migrations
from forgetbench.benchmark.core.grid import combination_label, combinations, grid_axes
from forgetbench.benchmark.core.metric_registry import METRICS, registered_metrics
from forgetbench.benchmark.core.references import add_search_folder
from forgetbench.benchmark.core.components import SCENARIOS, STRATEGIES
from forgetbench.benchmark.core.registry import Registry, UnknownNameError, did_you_mean, strength_params
from forgetbench.benchmark.core.training import EXECUTION_KEYS, Seed, TrainingConfig  # noqa: F401  (re-exported)


class ConfigError(ValueError):
    """An invalid suite configuration; the message names the field and the allowed values."""


class StrictModel(BaseModel):
    # strict: `lr: "0.1"` or `seeds: [true]` is a mistake to report, not a value to convert
    model_config = ConfigDict(extra="forbid", strict=True)


_SAFE_LABEL = re.compile(r"^[A-Za-z0-9_.+=-]+$")
# Labels and the suite's name become folder names (OUT/runs/<scenario>__<strategy>__seed<N>, results/<name>);
# a file system allows 255 bytes per path component, so each part is kept well within it.
MAX_LABEL_LENGTH = 100
MAX_PATH_COMPONENT_BYTES = 255


class ComponentSpec(StrictModel):
    """A scenario or strategy entry: registered ``name``, its ``params``, an optional ``label``."""

    name: str  # the registered name (`forgetbench list`)
    label: str | None = None  # display name in run ids and reports (default: the name)
    params: dict[str, Any] = Field(
        default_factory=dict
    )  # the component's parameters (its page); a list of values is a grid

    @field_validator("label")
    @classmethod
    def _label_is_path_safe(cls, label: str | None) -> str | None:
        if label is not None and not _SAFE_LABEL.match(label):
            raise ValueError("label may use only letters, digits and _ . + = -")
        if label is not None and not label.strip("."):
            raise ValueError(f"label {label!r}: a plain name, not only dots (labels name files and folders)")
        if label is not None and len(label) > MAX_LABEL_LENGTH:
            raise ValueError(
                f"label is {len(label)} characters long; at most {MAX_LABEL_LENGTH} (labels name "
                f"result folders, and a file name may have at most {MAX_PATH_COMPONENT_BYTES} bytes)"
            )
        return label

    # The params as the component's own pydantic model, parsed once when the suite is resolved (a grid entry
    # keeps one per combination); the runner, the checks and the strategy builders receive these.
    _typed: BaseModel | None = PrivateAttr(None)
    _variants: list[tuple[dict[str, Any], BaseModel]] | None = PrivateAttr(None)

    @property
    def display_name(self) -> str:
        return self.label or self.name

    def __getstate__(self) -> dict[Any, Any]:
        # A spec crosses to workers as its plain params: the typed model's class may live in a plug-in module the
        # worker can import only once the harness has set up its search path, so the far side parses again, once.
        return {**super().__getstate__(), "__pydantic_private__": {"_typed": None, "_variants": None}}

    def typed_params(self, registry: Registry[Any]) -> BaseModel:
        """The params as the registered component's model: the one parsed at resolution, else parsed now, once
        (a spec rebuilt from JSON on the far side of a process boundary)."""
        if self._typed is None:
            self._typed = registry.get(self.name).parse_params(self.params)
        return self._typed


class TuneRange(StrictModel):
    """A numeric range to search: ``low`` to ``high``, on a log scale unless ``log: false``."""

    low: float  # the smallest value searched
    high: float  # the largest value searched
    log: bool = True  # log scale (a strength spans decades)

    @model_validator(mode="after")
    def _ordered(self) -> "TuneRange":
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low >= self.high:
            raise ValueError(f"needs finite low < high, got low {self.low}, high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scale range needs low > 0, got {self.low} (or give log: false)")
        return self


class TuneChoices(StrictModel):
    """Values to choose among (categorical)."""

    choices: list[Any] = Field(min_length=2)  # the values, two or more


def _tune_kind(value: Any) -> str:  # called on the YAML's dicts when validating, on the models when serialising
    if isinstance(value, (dict, TuneChoices, TuneRange)):
        return (
            "choices" if isinstance(value, TuneChoices) or (isinstance(value, dict) and "choices" in value) else "range"
        )
    return "auto"


TuneHow = Annotated[
    Union[
        Annotated[Literal["auto"], Tag("auto")],
        Annotated[TuneRange, Tag("range")],
        Annotated[TuneChoices, Tag("choices")],
    ],
    Discriminator(_tune_kind),
]


class TuneSpec(StrictModel):
    """Tune a strategy's params with Optuna before the suite's seeds run with the best point.

    Each trial is an ordinary run (or one per tuning seed) on a validation split held out from each task's
    training data (the test split is never read), recorded under ``OUT/tuning/``; the study lives in
    ``OUT/tuning/study.db`` (SQLite; ``--storage URL`` for any database Optuna supports), so a killed tuning rerun
    with the same command continues it."""

    params: dict[str, TuneHow] = Field(min_length=1)  # auto: the calibrated range; {low, high}; {choices}
    trials: int = Field(12, ge=1, le=10_000)  # per (scenario, strategy entry); a grid of choices: its size
    # auto: qmc below `TPE_MIN_TRIALS` trials (TPE's random start-up would be most of them), else tpe;
    # qmc: a scrambled Sobol design over the ranges (log scale where they are); grid: every choice, and ranges at
    # `trials` log-spaced points; tpe: Optuna's TPE after `max(5, trials // 4)` random start-up trials
    sampler: Literal["auto", "qmc", "tpe", "random", "grid"] = "auto"
    # the samplers' seed: each study's is this plus a number from its scenario and strategy labels (studies never
    # share proposals), and trial n's sampler uses the study's + n (an interrupted study continues the same)
    seed: int = Field(0, ge=0)
    objective: Literal["ACC", "LA", "forgetting", "BWT"] = "ACC"  # forgetting is minimised, the others maximised
    fraction: float = Field(0.2, gt=0.0, lt=1.0)  # share of each task's training data held out for the trials
    # seeds of each trial, averaged (default: the suite's first three; its first when it has fewer than three)
    seeds: list[Seed] | None = Field(None, min_length=1)
    decades: int = Field(3, ge=1, le=6)  # for `auto` without a calibration yet: probes 10^-N..10^N x the value
    scenario: str | None = None  # the protocol: tune on this scenario of the suite (its label), run on every one
    first_tasks: int | None = Field(None, ge=2)  # the protocol: tune on each scenario's first k tasks only
    # median / quartile: a trial's first seed runs alone and stops after an experience where its objective so far is
    # worse than half / three quarters of the completed trials' there (same seed); a stopped trial is pruned (its
    # other seeds never run) and counts against the budget. off: every trial runs whole
    pruning: Literal["off", "median", "quartile"] = "off"
    pruning_startup: int = Field(4, ge=1)  # completed trials before any trial is pruned
    # checks inside each experience besides its end, at 1/(n+1), ..., n/(n+1) of its steps: the first seed's tasks so
    # far are evaluated there on the held-out split (a scenario of two tasks can then be pruned while its second trains)
    pruning_points: int = Field(0, ge=0, le=9)
    # the final runs: the suite's seeds at the chosen point, and at these multiples of its chosen strength too (on the
    # test split), so the report compares the methods at matched plasticity on the test split; [] runs the point alone
    neighbours: list[Annotated[float, Field(gt=0)]] = Field(default_factory=lambda: [0.1, 10.0], max_length=8)

    @model_validator(mode="after")
    def _grid_fits_its_trials(self) -> "TuneSpec":
        choices = [how.choices for how in self.params.values() if isinstance(how, TuneChoices)]
        if self.sampler == "grid" and len(choices) == len(self.params):
            combos = math.prod(len(values) for values in choices)
            if "trials" not in self.model_fields_set:  # the whole grid, once
                self.trials = combos
            elif self.trials > combos:
                raise ValueError(
                    f"trials {self.trials} > the grid's {combos} combination(s): a point would run twice "
                    f"(give trials: {combos})"
                )
        return self

    @model_validator(mode="after")
    def _pruning_can_act(self) -> "TuneSpec":
        for field in ("pruning_startup", "pruning_points"):
            if self.pruning == "off" and field in self.model_fields_set:
                raise ValueError(f"{field} is read only with pruning: median or quartile")
        if self.pruning != "off" and self.pruning_startup >= self.trials:
            raise ValueError(
                f"pruning_startup {self.pruning_startup} >= trials {self.trials}: no trial could be "
                "pruned (give fewer startup trials or more trials)"
            )
        return self


class StrategySpec(ComponentSpec):
    """A strategy entry; params given as lists form a grid (every combination runs), ``tune`` chooses params on
    held-out validation data first (with ``sampler: grid``, the best of a grid)."""

    tune: TuneSpec | None = None  # search params with Optuna on held-out validation data first
    # run this entry only on these scenario labels (null: every scenario): a strength calibrated per scenario is one
    # entry per scenario, each with the same label
    scenarios: list[str] | None = Field(None, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _retired_keys(cls, data: Any) -> Any:
        return migrations.selection_is_tune(data)


TRACKER_PACKAGES: dict[str, str | None] = {"csv": None, "tensorboard": "tensorboard", "mlflow": "mlflow"}


def missing_tracker_package(logger: str) -> str | None:
    """The package the ``loggers`` entry ``logger`` needs when it is not installed, else None."""
    import importlib.util

    package = TRACKER_PACKAGES.get(logger)
    return package if package and importlib.util.find_spec(package) is None else None


def _reproducible_metric(key: str) -> str:
    """A metric a reproduction can compare in points: any accuracy metric of :data:`METRICS`, the built-in ones
    and those added with ``register_metric`` (entry points included)."""
    registered_metrics()  # loads the entry points' metrics
    allowed = [k for k, m in METRICS.items() if m.unit == "accuracy"]
    if key not in allowed:
        raise ValueError(f"{key!r} is not an accuracy metric; allowed: {', '.join(allowed)}")
    return key


ReproducedMetric = Annotated[str, AfterValidator(_reproducible_metric)]


class PublishedResult(StrictModel):
    """One published claim about a strategy, in percent points (accuracy 98.64 = 98.64%): either a
    figure, ``mean`` (with its ``std`` if given), met within the tolerance; or a bound, ``at_least`` and / or
    ``at_most``, in points, or with ``relative_to`` (another strategy label of the suite) as fractions of that
    strategy's obtained mean (``at_most: 0.25, relative_to: naive``: at most a quarter of naive's).
    ``metric`` overrides the block's."""

    mean: float | None = None
    std: float | None = Field(None, ge=0.0)
    at_least: float | None = None
    at_most: float | None = None
    relative_to: str | None = None
    metric: ReproducedMetric | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> "PublishedResult":
        bounds = self.at_least is not None or self.at_most is not None
        if (self.mean is None) == (not bounds):
            raise ValueError(
                "a target is either a published `mean` or a bound (`at_least` / `at_most`), exactly one of the two"
            )
        if self.std is not None and self.mean is None:
            raise ValueError("std belongs to a published `mean`")
        if self.relative_to is not None and not bounds:
            raise ValueError("relative_to scales `at_least` / `at_most`; a `mean` is absolute")
        return self


class ReproduceSpec(StrictModel):
    """What ``forgetbench reproduce`` checks this suite against: the published claims about each strategy
    label in ``targets`` (one or a list), on ``metric`` unless a claim names its own. A figure passes when
    |obtained mean - published mean| <= max(tolerance, published std); a bound when the obtained mean
    meets it."""

    source: str = Field(min_length=1)  # paper, table, and where the figure was read
    settings: str = Field(min_length=1)  # where the architecture, optimiser and lambdas come from
    metric: ReproducedMetric = (
        "ACC"  # default metric of the claims (ACC, LA, last, forgetting, BWT or a registered one)
    )
    targets: dict[str, PublishedResult | list[PublishedResult]] = Field(min_length=1)  # strategy label -> claims
    tolerance: float = Field(1.5, gt=0.0)  # points


class SeedsUntilDecided(StrictModel):
    """``seeds: {start: 3, max: 20}``: run ``start`` seeds, then add ``step`` seeds at a time, in rounds, to the
    strategies of every pair the verdict has not decided, until every pair is decided or ``max`` seeds are spent
    (docs/guide/decisions.md). The decisions are then anytime-valid (confidence sequences), so stopping on them keeps
    their error rates."""

    start: int = Field(3, ge=3, le=10_000)  # seeds every strategy runs first (3: the fewest a pair is tested on)
    max: int = Field(20, ge=3, le=10_000)  # the most seeds any strategy runs
    step: int = Field(1, ge=1, le=10_000)  # seeds a round adds to each strategy still in an undecided pair

    @model_validator(mode="after")
    def _max_at_least_start(self) -> "SeedsUntilDecided":
        if self.max < self.start:
            raise ValueError(f"max: {self.max} is below start {self.start}; the budget includes the first seeds")
        return self


class VerdictConfig(StrictModel):
    """How the verdict decides a pair (docs/guide/decisions.md): the family-wise error rate ``alpha`` and, per metric,
    the margin of practical equivalence (accuracy points for an accuracy metric, else the metric's own unit)."""

    equivalence_margin: dict[str, PositiveFloat] = Field(
        default_factory=lambda: {"forgetting": 1.0, "ACC": 1.0}
    )  # metric -> margin (points): |difference| below it is "equivalent"
    alpha: float = Field(0.05, gt=0.0, lt=0.5)  # family-wise error rate of the verdict's claims

    @field_validator("equivalence_margin")
    @classmethod
    def _known_metrics(cls, margins: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(margins) - set(METRICS))
        if unknown:
            raise ValueError(f"{unknown} name no metric; allowed: {', '.join(METRICS)}")
        return margins


class SuiteConfig(StrictModel):
    """A suite: every (scenario x strategy x seed) combination is one run."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9_.-]+$", max_length=MAX_LABEL_LENGTH
    )  # names the default output folder (results/<name>)
    seeds: list[Seed] = Field(default_factory=lambda: [0], min_length=1)  # one run per seed (distinct, 0..2**32-1)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: cuda if available, else cpu
    training: TrainingConfig = Field(default_factory=TrainingConfig)  # how every run of the suite is trained
    scenarios: list[ComponentSpec] = Field(min_length=1)  # the scenarios, each {name, label?, params}
    strategies: list[StrategySpec] = Field(min_length=1)  # the strategies, each {name, label?, params, tune?}
    # experiment trackers each finished run is written to (benchmark/run/tracking.py); execution-only
    loggers: list[Literal["csv", "tensorboard", "mlflow"]] = Field(
        default_factory=list
    )  # trackers each finished run is written to
    reproduce: ReproduceSpec | None = None  # a published result this suite reproduces
    # `seeds: {start, max, step}` is read as seeds [0 .. start - 1] and this: more seeds where a pair is undecided
    until_decided: SeedsUntilDecided | None = None
    verdict: VerdictConfig = Field(default_factory=VerdictConfig)  # how the verdict decides each pair
    # modules imported before the suite's names are read: a plug-in's strategies, scenarios or metrics in a module
    # beside the suite file (or on PYTHONPATH), with nothing installed into forgetbench's environment
    imports: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _seeds_until_decided(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("seeds"), dict):
            return data
        if "until_decided" in data:
            raise ValueError("seeds: a mapping ({start, max}) and until_decided both given; give one")
        try:
            until = SeedsUntilDecided.model_validate(data["seeds"])
        except ValidationError as exc:
            where = "; ".join(
                ".".join(["seeds", *map(str, e["loc"])]) + ": " + e["msg"].removeprefix("Value error, ")
                for e in exc.errors()
            )
            raise ValueError(where or "seeds: {start, max, step}") from None
        return {**data, "seeds": list(range(until.start)), "until_decided": until.model_dump()}

    @model_validator(mode="after")
    def _first_seeds_are_the_start(self) -> "SuiteConfig":
        if self.until_decided is not None and len(self.seeds) > self.until_decided.max:
            raise ValueError(
                f"until_decided.max: {self.until_decided.max} is below the {len(self.seeds)} seeds every strategy runs"
            )
        return self

    @field_validator("name")
    @classmethod
    def _plain_folder_name(cls, name: str) -> str:
        # `.` and `..` pass the pattern but are not a folder of their own: results/.. is the working folder, whose
        # suite.yaml (the user's own config) the run would overwrite
        if not name.strip("."):
            raise ValueError(
                f"{name!r} is not a plain folder name (the default output folder is results/<name>); use letters, "
                "digits and _ . -, not only dots"
            )
        return name

    @model_validator(mode="after")
    def _unique_labels(self) -> "SuiteConfig":
        if self.reproduce is not None:
            labels = [spec.display_name for spec in self.strategies]
            unknown = sorted(set(self.reproduce.targets) - set(labels))
            if unknown:
                raise ValueError(
                    f"reproduce.targets: {unknown} name no strategy of this suite; its strategies: {', '.join(labels)}"
                )
            for label, claims in self.reproduce.targets.items():
                for claim in claims if isinstance(claims, list) else [claims]:
                    if claim.relative_to is not None and claim.relative_to not in labels:
                        raise ValueError(
                            f"reproduce.targets.{label}.relative_to: {claim.relative_to!r} names no "
                            f"strategy of this suite; its strategies: {', '.join(labels)}"
                        )
            if len(self.scenarios) != 1:
                raise ValueError("reproduce: a reproduction suite has exactly one scenario (one published row)")
        scenario_labels = [spec.display_name for spec in self.scenarios]
        for i, entry in enumerate(self.strategies):
            unknown = [label for label in entry.scenarios or [] if label not in scenario_labels]
            if unknown:
                raise ValueError(
                    f"strategies[{i}].scenarios: {unknown} name no scenario of this suite; its scenarios: "
                    f"{', '.join(scenario_labels)}"
                )
        for field in ("scenarios", "strategies"):
            seen: dict[str, list[int]] = {}
            for i, spec in enumerate(getattr(self, field)):
                for j in seen.get(spec.display_name, []):
                    if field == "scenarios" or _overlap(self.strategies[j], spec, scenario_labels):
                        raise ValueError(
                            f"{field}[{i}]: label {spec.display_name!r} is used twice"
                            + (" on one scenario" if field == "strategies" else "")
                            + f"; give each entry of the same {field[:-1]} a distinct `label`"
                            + (" (or `scenarios:` that do not overlap)" if field == "strategies" else "")
                        )
                seen.setdefault(spec.display_name, []).append(i)
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds: each seed may appear only once")
        for i, logger in enumerate(self.loggers):
            package = missing_tracker_package(logger)
            if package:
                raise ValueError(
                    f"loggers[{i}]: {logger!r} needs the {package} package, which is not installed "
                    f"(pip install 'forgetbench[tracking]')"
                )
        return self


def _format_validation_error(exc: ValidationError, prefix: str = "", model: type[BaseModel] | None = None) -> str:
    """One line per error, ``location: message``; an unknown key lists the keys allowed there (those of
    ``model``, the model validated, at that location) and the closest one."""
    lines = []
    for err in exc.errors():
        loc = prefix
        for part in err["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key" + _allowed_keys_hint(model, err["loc"])
        lines.append(f"{loc or '<root>'}: {msg}")
    return "\n".join(lines)


def _allowed_keys_hint(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> str:
    """``; did you mean 'x'? allowed: a, b, c`` for the unknown key at ``loc`` of ``model``, or ''."""
    owner = model
    for part in loc[:-1]:
        if owner is None:
            return ""
        if isinstance(part, int):
            continue  # a list item: the list's field already named its item model
        field = owner.model_fields.get(str(part))
        owner = model_in(field.annotation) if field is not None else None
    if owner is None:
        return ""
    allowed = list(owner.model_fields)
    key = str(loc[-1]) if loc else ""
    return f"; {did_you_mean(key, allowed)}allowed: {', '.join(allowed)}"


def model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds (``M``, ``M | None``, ``list[M]``...), else None."""
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = model_in(arg)
        if found is not None:
            return found
    return None


def _tune_problems(tune: TuneSpec, entry: Any, spec: ComponentSpec, axes: dict[str, list[Any]]) -> list[str]:
    """What is wrong with a ``tune`` block on this entry (empty when nothing is)."""
    problems = []
    if axes:
        problems.append(f"params: a tuned entry takes one value per param, not a grid ({', '.join(axes)})")
    fields = entry.params.model_fields
    declared = strength_params(entry.params)
    for name, how in tune.params.items():
        if name not in fields:
            problems.append(
                f"params.{name}: not a param of {spec.name!r}; {did_you_mean(name, list(fields))}"
                f"allowed: {', '.join(fields)}"
            )
        elif how == "auto" and name not in declared:
            problems.append(
                f"params.{name}: auto (the calibrated range) is for a strategy's declared strength "
                f"({', '.join(declared) or 'it declares none'}); give {{low, high}} or {{choices}}"
            )
    return problems


def _resolve_components(specs: list[ComponentSpec], registry: Registry[Any], field: str) -> list[ComponentSpec]:
    """Check names and validate params; returns specs whose params have every default filled in.

    Strategy params may form a grid (see :mod:`forgetbench.benchmark.core.grid`): every combination is validated,
    and the resolved params keep each grid axis as its list of values.
    """
    resolved, errors = [], []
    for i, spec in enumerate(specs):
        try:
            entry = registry.get(spec.name)
        except UnknownNameError as exc:
            errors.append(f"{field}[{i}].name: {exc}")
            continue
        if entry.extra.get("unavailable"):
            errors.append(
                f"{field}[{i}].name: {spec.name!r} cannot run on forgetbench's scenarios: {entry.extra['unavailable']}"
            )
            continue
        axes = grid_axes(entry.params, spec.params) if field == "strategies" else {}
        empty = [name for name, values in axes.items() if not values]
        if empty:
            errors.extend(
                f"{field}[{i}].params.{name}: an empty list; give one value, or a non-empty list of "
                "values to run each (a grid)"
                for name in empty
            )
            continue
        tune = getattr(spec, "tune", None)
        if tune is not None:
            problems = _tune_problems(tune, entry, spec, axes)
            if problems:
                errors.extend(f"{field}[{i}].tune.{problem}" for problem in problems)
                continue
        first, parsed = None, []
        for choice in combinations(axes):
            try:
                params = entry.parse_params(spec.params | choice)
            except ValidationError as exc:
                where = f"{field}[{i}].params" + (f" (grid combination {choice})" if choice else "")
                errors.append(_format_validation_error(exc, prefix=where, model=entry.params))
                break
            first = first or params.model_dump(mode="json")
            parsed.append((choice, params))
        else:
            same = _same_params(parsed)
            if same:
                errors.append(f"{field}[{i}].params: grid values {same}")
                continue
            done = spec.model_copy(update={"params": (first or {}) | axes})
            if axes:
                done._variants = parsed
            else:
                done._typed = parsed[0][1]
            resolved.append(done)
    if errors:
        raise ConfigError("\n".join(errors))
    return resolved


def _same_params(parsed: list[tuple[dict[str, Any], BaseModel]]) -> str | None:
    """Two grid combinations that resolve to the same params (``[100000000000000000000, 100000000000000000001]``
    both read as the float 1e+20): two labels would run one point twice. None when every combination differs."""
    seen: dict[str, dict[str, Any]] = {}
    for choice, params in parsed:
        key = json.dumps(params.model_dump(mode="json"), sort_keys=True)
        if key in seen:
            return (
                f"{seen[key]} and {choice} are the same point once read as the strategy's params "
                f"({ {k: getattr(params, k, v) for k, v in choice.items()} }); give distinct values"
            )
        seen[key] = choice
    return None


def strategy_variants(spec: ComponentSpec) -> list[tuple[dict[str, Any], ComponentSpec]]:
    """``(choice, concrete spec)`` per grid combination of a resolved strategy entry.

    The concrete spec's params are fully validated (defaults filled) and its label records the
    chosen values, e.g. ``ewc[ewc_lambda=10]``. Without a grid: ``[({}, spec)]``.
    """
    entry = STRATEGIES.get(spec.name)
    axes = grid_axes(entry.params, spec.params)
    if not axes:
        return [({}, spec)]
    parsed = spec._variants or [(choice, entry.parse_params(spec.params | choice)) for choice in combinations(axes)]
    return [(choice, _variant(spec, choice, params)) for choice, params in parsed]


def strategy_variant(spec: ComponentSpec, choice: dict[str, Any]) -> ComponentSpec:
    """The entry ``spec`` with ``choice``'s values in place of its own, labelled with them (``ewc[ewc_lambda=10]``):
    one concrete run of a grid, a calibration probe or a tuning trial. Raises pydantic's ValidationError on a value
    the strategy's params refuse."""
    return _variant(spec, choice, STRATEGIES.get(spec.name).parse_params(spec.params | choice))


def _variant(spec: ComponentSpec, choice: dict[str, Any], params: BaseModel) -> ComponentSpec:
    label = combination_label(spec.display_name, choice)
    # model_construct: the generated label carries [ , ] which user labels may not use
    variant = ComponentSpec.model_construct(name=spec.name, label=label, params=params.model_dump(mode="json"))
    variant._typed = params
    return variant


def import_plugins(modules: Any, where: str = "imports") -> None:
    """Import a suite's ``imports:`` (or ``--import``'s) modules, which register plug-in components; a
    :class:`ConfigError` naming the module and why it failed, before anything runs."""
    if modules is None:
        return
    if not isinstance(modules, list) or not all(isinstance(m, str) and m.strip() for m in modules):
        raise ConfigError(f"{where}: a list of module names (e.g. [my_strategies]), got {modules!r}")
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:  # a plug-in's own error is the user's to read, with its type
            raise ConfigError(
                f"{where}: cannot import {module!r} ({type(exc).__name__}: {exc}); put {module}.py beside the suite "
                "file, or name a module on PYTHONPATH or installed"
            ) from None


def resolve_config(raw: dict[str, Any]) -> SuiteConfig:
    """Validate a raw config mapping; raise :class:`ConfigError` naming every bad field."""
    if not isinstance(raw, dict):
        raise ConfigError("<root>: a suite config must be a mapping of keys to values")
    non_finite = [f"{where}: must be a finite number, got {value}" for where, value in _non_finite(raw)]
    non_finite += [
        f"{where}: {value!r} is beyond the float32 range runs train in (largest {FLOAT32_MAX:.4g}): it would "
        "overflow to infinity"
        for where, value in _beyond_float32(raw)
    ]
    if non_finite:
        raise ConfigError("\n".join(non_finite))
    import_plugins(raw.get("imports"))
    try:
        suite = SuiteConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, model=SuiteConfig)) from None
    _check_names(suite)
    errors = []
    updates = {}
    for field, registry in (("scenarios", SCENARIOS), ("strategies", STRATEGIES)):
        try:
            updates[field] = _resolve_components(getattr(suite, field), registry, field)
        except ConfigError as exc:
            errors.append(str(exc))
    if errors:
        raise ConfigError("\n".join(errors))
    suite = suite.model_copy(update=updates)
    _check_run_ids(suite)
    _check_requirements(suite)
    _check_tuning_scenarios(suite)
    return suite


def _check_names(suite: SuiteConfig) -> None:
    """Every scenario and strategy name is registered, checked from the registries' listings: a misspelt name is
    refused without importing the components (torch and Avalanche take seconds); their params are checked after."""
    errors = []
    for field, registry in (("scenarios", SCENARIOS), ("strategies", STRATEGIES)):
        for i, spec in enumerate(getattr(suite, field)):
            if not registry.knows(spec.name):
                allowed = [item.name for item in registry.listing()]
                errors.append(f"{field}[{i}].name: {UnknownNameError(registry.kind, spec.name, allowed)}")
    if errors:
        raise ConfigError("\n".join(errors))


def _check_tuning_scenarios(suite: SuiteConfig) -> None:
    """``tune.scenario`` names a scenario of the suite."""
    labels = [s.display_name for s in suite.scenarios]
    errors = [
        f"strategies[{i}].tune.scenario: {entry.tune.scenario!r} is not a scenario of this suite; "
        f"{did_you_mean(entry.tune.scenario, labels)}allowed: {', '.join(labels)}"
        for i, entry in enumerate(suite.strategies)
        if entry.tune is not None and entry.tune.scenario is not None and entry.tune.scenario not in labels
    ]
    if errors:
        raise ConfigError("\n".join(errors))


def _overlap(a: StrategySpec, b: StrategySpec, scenarios: list[str]) -> bool:
    """Whether two strategy entries run on a common scenario."""
    return bool(set(a.scenarios or scenarios) & set(b.scenarios or scenarios))


def runs_on(scenario: ComponentSpec, entry: ComponentSpec, refused: Mapping[tuple[str, str], str]) -> bool:
    """Whether strategy ``entry`` runs on ``scenario``: the scenario is among the entry's ``scenarios`` (when it
    lists them) and the pair is not ``refused`` (:func:`refused_pairs`). Decided per entry, not per label: entries
    that share a label on different scenarios are one strategy of the reports."""
    listed = getattr(entry, "scenarios", None)
    return (listed is None or scenario.display_name in listed) and (
        scenario.display_name,
        entry.display_name,
    ) not in refused


def refused_pairs(suite: SuiteConfig) -> dict[tuple[str, str], str]:
    """``(scenario label, strategy label) -> why`` for each pair whose scenario's network lacks what the strategy
    ``requires``; those pairs are not run (a suite mixing task-IL and class-IL runs each method where it applies).

    A strategy registers ``requires={trait: why}`` (the traits are the scenarios' ``MODEL_TRAITS``); a scenario's
    params say which traits its network has (``model_traits()``; None when not known without building it, and
    then nothing is refused up front)."""
    refused = {}
    for strategy in suite.strategies:
        requires: dict[str, str] = STRATEGIES.get(strategy.name).extra.get("requires") or {}
        if not requires:
            continue
        for scenario in suite.scenarios:
            traits = getattr(scenario.typed_params(SCENARIOS), "model_traits", lambda: None)()
            if traits is None:
                continue
            lacking = sorted(set(requires) - set(traits))
            if lacking:
                refused[(scenario.display_name, strategy.display_name)] = "; ".join(
                    f"it needs {trait} ({requires[trait]}); this scenario's network has "
                    f"{', '.join(sorted(traits)) or 'none of those traits'}"
                    for trait in lacking
                )
    return refused


def _check_requirements(suite: SuiteConfig) -> None:
    """A strategy that can run on none of the suite's scenarios is a config error (naming why for each)."""
    refused = refused_pairs(suite)
    errors: list[str] = []
    for j, strategy in enumerate(suite.strategies):
        reasons = [
            (i, scenario, refused.get((scenario.display_name, strategy.display_name)))
            for i, scenario in enumerate(suite.scenarios)
        ]
        if all(reason for _, _, reason in reasons):
            errors.extend(
                f"strategies[{j}].name: {strategy.name!r} cannot run on scenarios[{i}] "
                f"{scenario.display_name!r}: {reason}"
                for i, scenario, reason in reasons
            )
    if errors:
        raise ConfigError("\n".join(errors))


def run_name(scenario_label: str, strategy_label: str) -> str:
    """The part of a run id before its seed: ``<scenario label>__<strategy label>``."""
    return f"{scenario_label}__{strategy_label}"


def run_id(scenario_label: str, strategy_label: str, seed: int) -> str:
    """A run's id, its folder name under ``OUT/runs/``."""
    return f"{run_name(scenario_label, strategy_label)}__seed{seed}"


def _check_run_ids(suite: SuiteConfig) -> None:
    """Refuse labels whose run ids collide (``s`` x ``n__e`` and ``s__n`` x ``e``): one of the two
    runs would never get a result of its own, and every rerun would execute it again."""
    owners: dict[str, str] = {}
    for i, scenario in enumerate(suite.scenarios):
        for j, strategy in enumerate(suite.strategies):
            if strategy.scenarios is not None and scenario.display_name not in strategy.scenarios:
                continue  # not run there: no run id
            for _, variant in strategy_variants(strategy):
                name = run_name(scenario.display_name, variant.display_name)
                here = f"scenarios[{i}] {scenario.display_name!r} x strategies[{j}] {variant.display_name!r}"
                if name in owners:
                    raise ConfigError(
                        f"strategies[{j}].label: run ids collide: {owners[name]} and {here} both give "
                        f"{name}__seed<N>; choose scenario and strategy labels that stay distinct "
                        "when joined with '__'"
                    )
                owners[name] = here
                longest = run_id(scenario.display_name, variant.display_name, max(suite.seeds))
                if len(longest.encode()) > MAX_PATH_COMPONENT_BYTES:
                    raise ConfigError(
                        f"strategies[{j}].label: the run id {longest[:60]}... is {len(longest.encode())} bytes; a "
                        f"run id names a folder, at most {MAX_PATH_COMPONENT_BYTES} bytes: shorten the scenario "
                        "or strategy label (a grid's values are part of it)"
                    )


FLOAT32_MAX = 3.4028234663852886e38  # numpy.finfo(numpy.float32).max: weights, gradients and strengths are float32


def _beyond_float32(value: Any, where: str = "") -> list[tuple[str, float]]:
    """``(location, value)`` of every number of a raw config that float32 cannot hold (``lr: 1e308``)."""
    if isinstance(value, int) and not isinstance(value, bool) or isinstance(value, float) and math.isfinite(value):
        return [(where or "<root>", value)] if abs(value) > FLOAT32_MAX else []
    if isinstance(value, dict):
        return [hit for k, v in value.items() for hit in _beyond_float32(v, f"{where}.{k}" if where else str(k))]
    if isinstance(value, list):
        return [hit for i, v in enumerate(value) for hit in _beyond_float32(v, f"{where}[{i}]")]
    return []


def _non_finite(value: Any, where: str = "") -> list[tuple[str, float]]:
    """``(location, value)`` of every NaN or infinity in a raw config (``.inf`` and ``.nan`` in YAML)."""
    if isinstance(value, float) and not math.isfinite(value):
        return [(where or "<root>", value)]
    if isinstance(value, dict):
        return [hit for k, v in value.items() for hit in _non_finite(v, f"{where}.{k}" if where else str(k))]
    if isinstance(value, list):
        return [hit for i, v in enumerate(value) for hit in _non_finite(v, f"{where}[{i}]")]
    return []


class _YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``1e-3`` as the float it means (YAML 1.1 wants ``1.0e-3``), and refusing a key
    given twice in one mapping (PyYAML keeps the last one silently: ``seeds: [0, 1]`` then ``seeds: {start: 3}``
    ran the second).

    Config numbers are validated strictly (a string is never converted), so without this a
    plain ``lr: 1e-3`` would be refused as a string.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: its keys may be overridden here, by design
                continue
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
                seen.setdefault(key, line)
            except TypeError:  # an unhashable key: the base loader says what is wrong with it
                break
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} appears twice in one mapping (lines {first} and {line}); only one can be meant: "
                    "remove the other",
                    key_node.start_mark,
                )
        return dict(super().construct_mapping(node, deep=deep))


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


# A suite config is a few hundred nodes; these bounds refuse an alias bomb (nested anchors that expand
# exponentially: `b: &b [*a, *a, ...]`) or absurd nesting in well under a second, before anything walks it.
MAX_CONFIG_NODES = 100_000
MAX_CONFIG_DEPTH = 64


def _expanded_size(root: yaml.Node, source: str) -> int:
    """Nodes of the document with every alias expanded, counted without expanding anything
    (an alias is the same node object: its size is computed once)."""
    sizes: dict[int, int] = {}
    # iterative post-order walk: the composer shares nodes for aliases, so the graph is a DAG
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, expanded = stack.pop()
        if id(node) in sizes:
            continue
        if depth > MAX_CONFIG_DEPTH:
            raise ConfigError(
                f"{source}: the config nests deeper than {MAX_CONFIG_DEPTH} levels; "
                "a suite config is a few levels of mappings and lists"
            )
        children = _children(node)
        if expanded or not children:
            total = 1 + sum(sizes.get(id(c), 0) for c in children)
            if total > MAX_CONFIG_NODES:
                raise ConfigError(
                    f"{source}: the config expands to more than {MAX_CONFIG_NODES:,} values once its anchors and "
                    "aliases (&name / *name) are expanded; a suite config needs a few hundred, so this is refused "
                    "(an alias bomb?)"
                )
            sizes[id(node)] = total
            continue
        stack.append((node, depth, True))
        stack.extend((c, depth + 1, False) for c in children if id(c) not in sizes)
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def parse_yaml(data: bytes, source: str) -> Any:
    """The YAML document in ``data`` (UTF-8), or :class:`ConfigError` saying what is wrong with it.

    Documents that expand (aliases included) to more than :data:`MAX_CONFIG_NODES` values or nest
    deeper than :data:`MAX_CONFIG_DEPTH` levels are refused before any Python object is built."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{source}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); save the config as UTF-8"
        ) from None
    loader = _YamlLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        _expanded_size(root, source)
        return loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(
            f"{source}: the config nests deeper than {MAX_CONFIG_DEPTH} levels; "
            "a suite config is a few levels of mappings and lists"
        ) from None
    finally:
        loader.dispose()


def load_config(path: str | Path) -> SuiteConfig:
    """Read and validate a YAML suite file."""
    path = Path(path)
    add_search_folder(path.parent)  # `module:attribute` references may name modules beside the config
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
    raw = parse_yaml(data, str(path))
    try:
        return resolve_config(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: invalid config\n{exc}") from None
