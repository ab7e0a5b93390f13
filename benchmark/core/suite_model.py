"""The suite config as typed models: a suite (seeds, training, scenarios, strategies and their tuning, loggers,
a published result to reproduce, seeds in rounds, the verdict) and its parts, each field with its bounds and a
comment that the reference page reads. What needs more than one model (names registered, params parsed by each
component, run ids distinct) is checked by :func:`forgetbench.benchmark.core.config.resolve_config`."""

from __future__ import annotations


import math
import re
from typing import Annotated, Any, Literal, Union

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
from forgetbench.benchmark.core.metric_registry import METRICS, registered_metrics
from forgetbench.benchmark.core.registry import Registry
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
    (docs/guide/decisions.md). Each round is a look of group-sequential tests planned to ``max`` seeds, so stopping on
    them keeps their error rates."""

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
    # one run's seeds train as one stacked model where that gives each seed its own run's numbers (run.batching);
    # false: every seed trains alone (`run --batch-seeds off`)
    batch_seeds: bool = True

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


def _overlap(a: StrategySpec, b: StrategySpec, scenarios: list[str]) -> bool:
    """Whether two strategy entries run on a common scenario."""
    return bool(set(a.scenarios or scenarios) & set(b.scenarios or scenarios))
