"""Suite configuration: YAML validated with pydantic.

Unknown keys are errors at every level. Scenario and strategy params are validated against the
params model their component registered, so a typo or an out-of-range value is reported with its
full location (``strategies[1].params.ewc_lambda``) before anything runs.
"""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel, ValidationError

from forgetbench.benchmark.core.grid import combination_label, combinations, grid_axes
from forgetbench.benchmark.core.references import add_search_folder, searched_folders
from forgetbench.benchmark.core.components import SCENARIOS, STRATEGIES
from forgetbench.benchmark.core.registry import Registry, UnknownNameError, did_you_mean, strength_params
from forgetbench.benchmark.core.training import EXECUTION_KEYS, Seed, TrainingConfig  # noqa: F401  (re-exported)

# the suite's models (suite_model) and its YAML reader (config_yaml): the rest of the code imports them from here
from forgetbench.benchmark.core.suite_model import (
    ConfigError as ConfigError,
    MAX_PATH_COMPONENT_BYTES as MAX_PATH_COMPONENT_BYTES,
    ComponentSpec as ComponentSpec,
    TuneRange as TuneRange,
    TuneChoices as TuneChoices,
    TuneSpec as TuneSpec,
    StrategySpec as StrategySpec,
    PublishedResult as PublishedResult,
    ReproduceSpec as ReproduceSpec,
    SeedsUntilDecided as SeedsUntilDecided,
    VerdictConfig as VerdictConfig,
    SuiteConfig as SuiteConfig,
    TRACKER_PACKAGES as TRACKER_PACKAGES,
)
from forgetbench.benchmark.core.config_yaml import (
    parse_yaml as parse_yaml,
)


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
        _check_plugin_name(module, where)
        try:
            importlib.import_module(module)
        except SystemExit as exc:  # not an Exception: it would end the command quietly, with the module's status
            raise ConfigError(
                f"{where}: importing {module!r} called sys.exit({exc.code!r}); a plug-in module registers components "
                "when imported and must not exit"
            ) from None
        except Exception as exc:  # a plug-in's own error is the user's to read, with its type
            raise ConfigError(
                f"{where}: cannot import {module!r} ({type(exc).__name__}: {exc}); put {module}.py beside the suite "
                "file, or name a module on PYTHONPATH or installed"
            ) from None
        _check_plugin_origin(module, where)


def _check_plugin_name(module: str, where: str) -> None:
    """A module name, not a file path; and not one of Python's own modules, which an import finds first."""
    if module.endswith(".py") or "/" in module or "\\" in module:
        stem = Path(module).name.removesuffix(".py")
        raise ConfigError(
            f"{where}: {module!r} is a file path; name its module ({stem!r}), with {Path(module).name} beside the suite "
            "file or on PYTHONPATH"
        )
    top = module.split(".")[0]
    if top in sys.stdlib_module_names:
        raise ConfigError(
            f"{where}: {module!r} is a module of Python's standard library, which an import finds before any file of "
            f"that name; give the plug-in module a name of its own (rename {top}.py)"
        )


def _check_plugin_origin(module: str, where: str) -> None:
    """The module imported is the plug-in beside the suite, where one of that name is there: an installed module of
    the same name would shadow it."""
    loaded = getattr(sys.modules.get(module), "__file__", None)
    top = module.split(".")[0]
    for folder in searched_folders():
        beside = Path(folder) / f"{top}.py"
        if beside.is_file() and "." not in module and loaded and Path(loaded).resolve() != beside.resolve():
            raise ConfigError(
                f"{where}: {module!r} imported {loaded}, not {beside}: an installed module of that name shadows the "
                "plug-in; rename the plug-in module"
            )


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
