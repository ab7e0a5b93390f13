"""What one run is: :class:`RunSpec` (everything that determines its numbers), the suite's expansion into
specs, the seeding and device, and the record a run starts from (or a worker's failure ends in)."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import platform
import random
import re
import subprocess
import sys
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import numpy as np
import torch

from forgetbench.benchmark import __version__
from forgetbench.benchmark.core.config import (
    ComponentSpec,
    SuiteConfig,
    refused_pairs,
    run_id,
    runs_on,
    strategy_variants,
)
from forgetbench.benchmark.core.components import SCENARIOS, STRATEGIES
from forgetbench.benchmark.core.record import (
    SCHEMA_VERSION,
    Component,
    EvaluatedOn,
    RunRecord,
    Timing,
    config_fingerprint,
)
from forgetbench.benchmark.core.training import TrainingConfig, training_identity
from forgetbench.benchmark.core import migrations

__all__ = [
    "RunSpec",
    "expand_suite",
    "resolve_device",
    "seed_everything",
    "environment",
    "new_record",
    "failure_record",
]


@dataclass(frozen=True)
class PruneRule:
    """Stop a tuning trial's run after experience k when ``objective`` on the experiences so far
    (:func:`~forgetbench.benchmark.core.metrics.running_metric`) is worse than ``bounds[k]``, the median of the
    study's completed trials there for the same seed (None: no bound after that experience).

    With ``points`` > 0 the run is also checked inside each experience k, at its steps' c / (points + 1) for c = 1 ..
    points: the tasks so far evaluated there stand in for row k, and ``inside[k][c - 1]`` is the bound. The run
    records its value at every such point (``RunRecord.prune_points``), bounded or not: the later trials' bounds."""

    objective: str  # ACC, LA, BWT or forgetting
    maximise: bool  # True: lower is worse
    bounds: tuple[float | None, ...]  # per experience index
    name: str = "median"  # what the bounds are, for the record's message ("lower quartile", ...)
    points: int = 0  # checks inside each experience
    inside: tuple[tuple[float | None, ...], ...] = ()  # inside[k][c - 1]: the bound at point c of experience k

    def falls_behind(self, k: int, value: float) -> bool:
        return self._behind(self.bounds[k] if k < len(self.bounds) else None, value)

    def inside_bound(self, k: int, point: int) -> float | None:
        row = self.inside[k] if k < len(self.inside) else ()
        return row[point - 1] if 0 < point <= len(row) else None

    def falls_behind_inside(self, k: int, point: int, value: float) -> bool:
        return self._behind(self.inside_bound(k, point), value)

    @property
    def can_prune(self) -> bool:
        """Whether any bound is set (a rule without one only records the inside points' values)."""
        return any(b is not None for b in self.bounds) or any(b is not None for row in self.inside for b in row)

    def _behind(self, bound: float | None, value: float) -> bool:
        if bound is None or value != value:  # NaN: undefined so far, no verdict
            return False
        return value < bound if self.maximise else value > bound


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines one run's numbers."""

    suite: str
    scenario: ComponentSpec
    strategy: ComponentSpec
    seed: int
    training: TrainingConfig
    device: str
    # None: evaluate on each task's test split. A fraction: hold out that share of each task's
    # *training* data (seeded) and evaluate on it instead (tuning trials, calibration probes).
    validation_fraction: float | None = None
    # None: every task. k: the scenario cut to its first k tasks (and the turns that train them), a tuning protocol
    first_tasks: int | None = None
    # None: run every experience. A rule: a tuning trial's run stops where it falls behind the study (pruning)
    prune: PruneRule | None = None
    # the round of seeds: {start, max} that adds this run (0: the first seeds; None: no rounds): kept in its record
    # for the order of the decisions, never part of what it computes (not in resolved())
    round: int | None = None

    @property
    def run_id(self) -> str:
        return run_id(self.scenario.display_name, self.strategy.display_name, self.seed)

    def retired_params(self) -> dict[str, Any]:
        """The strategy's retired params with the defaults records written before hold (its params model's
        ``retired_defaults``): a record with them is still this run
        (:func:`~forgetbench.benchmark.core.store.is_complete`)."""
        return dict(getattr(type(self.strategy.typed_params(STRATEGIES)), "retired_defaults", {}))

    def resolved(self) -> dict[str, Any]:
        """The resolved configuration of this run (what resume compares).

        Execution-only training keys (checkpointing, resources) are left out: they do not change
        the numbers, so changing them must not rerun completed runs.
        """
        resolved = {
            "scenario": self.scenario.model_dump(mode="json"),
            "strategy": self.strategy.model_dump(mode="json", exclude=set(migrations.STRATEGY_KEYS_OUTSIDE_IDENTITY)),
            "seed": self.seed,
            "training": training_identity(self.training),
            "device": self.device,
        }
        if self.validation_fraction is not None:
            resolved["validation_fraction"] = self.validation_fraction
        if self.first_tasks is not None:
            resolved["first_tasks"] = self.first_tasks
        if self.prune is not None:
            prune: dict[str, Any] = {"objective": self.prune.objective, "bounds": list(self.prune.bounds)}
            if self.prune.points:
                prune.update(points=self.prune.points, inside=[list(row) for row in self.prune.inside])
            resolved["prune"] = prune
        sources = plugin_sources(self)
        if sources:  # a plug-in's code is part of what the run computes (built-in runs keep their config as it was)
            resolved["sources"] = sources
        return resolved


def expand_suite(suite: SuiteConfig, seeds: list[int] | None = None) -> list[RunSpec]:
    """Every (scenario x strategy x grid combination x seed) of the suite, in that nesting order.

    Strategies with a ``tune`` are left out: their runs depend on the study's outcome (see
    :mod:`forgetbench.benchmark.run.tuning`); so are the pairs refused at config time and those outside a strategy
    entry's ``scenarios`` (:func:`~forgetbench.benchmark.core.config.runs_on`). With ``seeds: {start, max}`` each
    run is round 0 of the rounds (its record says so).
    """
    refused = refused_pairs(suite)
    first_round = 0 if suite.until_decided is not None else None  # the rounds' first seeds are round 0
    return [
        RunSpec(suite.name, scenario, variant, seed, suite.training, suite.device, round=first_round)
        for scenario in suite.scenarios
        for strategy in suite.strategies
        if strategy.tune is None and runs_on(scenario, strategy, refused)
        for _, variant in strategy_variants(strategy)
        for seed in (seeds if seeds is not None else suite.seeds)
    ]


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@functools.lru_cache(maxsize=1)
def source_commit() -> str:
    """The git commit of the forgetbench checkout this process runs (``+dirty`` with uncommitted changes to
    tracked files), or ``unknown`` when it is not a git checkout (an installed wheel)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return "unknown"
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--"], cwd=root, capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.returncode == 1 else "")


@functools.lru_cache(maxsize=None)
def _version(distribution: str) -> str:  # reads the distribution's metadata from disk: once per process
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "none"


@functools.lru_cache(maxsize=1)
def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.lru_cache(maxsize=1)
def _distributions_of_packages() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()  # scans every installed distribution: once per process


_REFERENCE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")  # module.path:attribute


def _referenced_modules(value: Any) -> Iterator[str]:
    """The module of every ``module.path:attribute`` reference in a component's params (nested ones too)."""
    if isinstance(value, str) and _REFERENCE.match(value):
        yield value.partition(":")[0]
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _referenced_modules(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _referenced_modules(item)


def _plugin_file(module: str) -> Path | None:
    """The source file of ``module`` where it is a plug-in's own (not forgetbench's, Python's or an installed
    distribution's, which the environment's versions pin); None otherwise."""
    top = module.split(".")[0]
    if top == "forgetbench" or top in sys.stdlib_module_names or top in _distributions_of_packages():
        return None
    origin = getattr(sys.modules.get(module), "__file__", None)
    if origin is None:
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            return None
        origin = found.origin if found is not None else None
    return Path(origin) if origin and origin.endswith(".py") else None


_SOURCE_DIGESTS: dict[tuple[str, int], str] = {}  # (module, id of the module object) -> its source's digest


def _source_digest(module: str) -> str | None:
    """The first 16 hex digits of the SHA-256 of ``module``'s source, read once per loaded module: the code this
    process runs, even if the file changes after the import (a module not yet imported: the file as it is)."""
    path = _plugin_file(module)
    if path is None:
        return None
    loaded = sys.modules.get(module)
    key = (module, id(loaded))
    if loaded is not None and key in _SOURCE_DIGESTS:
        return _SOURCE_DIGESTS[key]
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return None
    if loaded is not None:
        _SOURCE_DIGESTS[key] = digest
    return digest


def plugin_sources(spec: "RunSpec") -> dict[str, str]:
    """Module -> a digest of its source, for every plug-in module whose code the run executes directly: the module
    that registered its scenario or strategy (``imports:``, ``--import``) and every module a ``module:attr``
    reference in their params names (a custom model, data or supernet). Part of the run's resolved config, so a
    plug-in edited between two runs into one folder reruns the runs it touches (their old records set aside) and
    the plan refuses a record of another version, naming the module; what those modules import in turn is not
    read. Empty for built-in components and installed plug-ins (their versions are in the environment)."""
    modules: set[str] = set()
    for registry, component in ((SCENARIOS, spec.scenario), (STRATEGIES, spec.strategy)):
        if component.name in registry:
            modules.add(registry.get(component.name).factory.__module__)
        modules.update(_referenced_modules(component.params))
    digests = {module: _source_digest(module) for module in sorted(modules)}
    return {module: digest for module, digest in digests.items() if digest is not None}


def plugin_distributions(spec: "RunSpec") -> str:
    """``name==version`` of the installed distributions (not forgetbench) whose code the run's scenario or
    strategy is, comma-separated; ``none`` for built-in components."""
    found = set()
    for registry, component in ((SCENARIOS, spec.scenario), (STRATEGIES, spec.strategy)):
        if component.name not in registry:
            continue
        top = registry.get(component.name).factory.__module__.split(".")[0]
        if top == "forgetbench":
            continue
        for distribution in _distributions_of_packages().get(top, []):
            found.add(f"{distribution}=={_version(distribution)}")
    return ", ".join(sorted(found)) or "none"


def environment(device: torch.device | str, spec: "RunSpec | None" = None) -> dict[str, str]:
    """The run's fingerprint: what besides its config and seed can move its numbers (the report warns when runs
    it averages or pairs differ in any of these)."""
    import avalanche

    device = torch.device(device)
    cuda = device.type == "cuda"
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "avalanche": avalanche.__version__,
        "numpy": np.__version__,
        "peft": _version("peft"),
        "transformers": _version("transformers"),
        "forgetbench": __version__,
        "forgetbench_commit": source_commit(),
        "device": str(device),
        # a Ray driver without a GPU writes the failed record of a run whose GPU worker died: it cannot name that GPU
        "device_name": (torch.cuda.get_device_name(device) if torch.cuda.is_available() else "unknown")
        if cuda
        else _cpu_name(),
        "gpu_count": str(torch.cuda.device_count() if torch.cuda.is_available() else 0),
        "cuda": str(torch.version.cuda or "none"),
        "cudnn": str(torch.backends.cudnn.version() or "none") if cuda and torch.cuda.is_available() else "none",
        "platform": platform.platform(),
        "node": platform.node(),  # the machine that ran it (a Ray cluster's node); not compared between runs
        "torch_threads": str(torch.get_num_threads()),
        # the ATen kernel set (AVX512, AVX2, DEFAULT, ...): another set rounds floats differently, so the same seed
        # gives other numbers (ATEN_CPU_CAPABILITY chooses it)
        "cpu_kernels": torch.backends.cpu.get_cpu_capability(),
        "deterministic_algorithms": str(torch.are_deterministic_algorithms_enabled()).lower(),
    }
    if spec is not None:
        env["precision"] = spec.training.precision
        env["batch_size"] = str(spec.training.batch_size)
        env["plugins"] = plugin_distributions(spec)
    return env


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def new_record(spec: RunSpec, device: torch.device | str | None = None) -> RunRecord:
    """The record of ``spec`` before anything ran (status ``ok``, empty results)."""
    device = resolve_device(spec.device) if device is None else device
    record = RunRecord(
        schema_version=SCHEMA_VERSION,
        run_id=spec.run_id,
        suite=spec.suite,
        scenario=Component(name=spec.scenario.name, label=spec.scenario.display_name, params=spec.scenario.params),
        strategy=Component(name=spec.strategy.name, label=spec.strategy.display_name, params=spec.strategy.params),
        seed=spec.seed,
        status="ok",
        error=None,
        config=(config := spec.resolved()),
        fingerprint=config_fingerprint(config),
        environment=environment(device, spec),
        experiences=[],
        accuracy_matrix=[],
        init_accuracy=[],
        timing=Timing(train_seconds=0.0, eval_seconds=0.0, steps=0),
        started_at=now(),
        round=spec.round,
    )
    if spec.validation_fraction is not None or spec.first_tasks is not None:
        where = {"fraction": spec.validation_fraction, "first_tasks": spec.first_tasks}
        record.evaluated_on = EvaluatedOn(
            split="validation" if spec.validation_fraction is not None else "test",
            **{k: v for k, v in where.items() if v is not None},
        )  # unset: not written
    return record


def failure_record(spec: RunSpec, error: str) -> RunRecord:
    """A ``failed`` record for a run that could not report itself (e.g. its worker died or was stopped); its device
    is ``spec.device`` as this process resolves it (``auto`` included)."""
    record = new_record(spec)
    record.status, record.error = "failed", error
    record.finished_at = now()
    return record
