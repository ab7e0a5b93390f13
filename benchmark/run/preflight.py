"""Before a suite runs anything: what would make it fail later, said now (a Ray cluster that is not there or lacks
the resources a run asks for, a model that cannot fit the device's memory), each problem one sentence."""

from __future__ import annotations


from pathlib import Path
from typing import cast


from forgetbench.benchmark.core.config import ConfigError, SuiteConfig
from forgetbench.benchmark.data.datasets import DataMissingError, check_available, default_data_root
from forgetbench.benchmark.data.models import checking_only
from forgetbench.benchmark.core.references import user_code
from forgetbench.benchmark.core.units import format_bytes
from forgetbench.benchmark.data.scenarios import SCENARIOS
from forgetbench.benchmark.data.scenarios.base import ScenarioParams


def preflight(
    suite: SuiteConfig,
    data_root: Path | None,
    executor: str = "local",
    address: str | None = None,
    scenarios: set[int] | None = None,
) -> None:
    """Raise :class:`ConfigError` if the suite cannot run here: ``device: cuda`` without a GPU
    (unless the runs go to a Ray cluster at ``address``), a network too large for the device's memory,
    a scenario's data missing under ``data_root`` where it may not be downloaded, or a scenario that
    cannot be built (its own preflight: a factory that raises, a model without the task labels it needs...).

    ``data_root`` None (``validate --skip-data``): every check that reads no file under the data root
    still runs. ``scenarios``: the indices of the scenarios with runs still to execute (default: all);
    the others' data and build are not checked, since nothing will train on them."""
    errors = []
    if suite.device == "cuda" and not (executor == "ray" and address):
        import torch

        if not torch.cuda.is_available():
            errors.append(
                "device: 'cuda' but this machine has no usable CUDA GPU "
                f"(torch {torch.__version__}, built for CUDA {torch.version.cuda or 'none'}); "
                "allowed here: auto, cpu (or run on a Ray cluster with GPUs: --executor ray --address ...)"
            )
    errors += _memory_problems(suite)
    if executor == "ray":
        errors += _cluster_problems(suite)
    for i, spec in enumerate(suite.scenarios):
        if scenarios is not None and i not in scenarios:
            continue
        params = cast(ScenarioParams, spec.typed_params(SCENARIOS))
        if data_root is None and params.needs_data_files():
            continue
        missing = False
        for dataset, download in params.data_requirements() if data_root is not None else []:
            try:
                check_available(dataset, data_root, download)
            except DataMissingError as exc:
                errors.append(f"scenarios[{i}].params.dataset: {exc}")
                missing = True
        if not missing:
            try:
                # what the preflight builds is inspected, never trained (no Avalanche); a user's factory in it may
                # exit or hang: named, not obeyed
                with checking_only(), user_code(f"scenarios[{i}] ({spec.label or spec.name}): building it"):
                    params.preflight(data_root if data_root is not None else default_data_root(), suite.seeds[0])
            except ValueError as exc:
                if data_root is None and _caused_by(exc, DataMissingError):
                    continue  # a user's factory reading data files: the data check --skip-data skips
                errors.append(f"scenarios[{i}] ({spec.label or spec.name}): {exc}")
    if errors:
        raise ConfigError("\n".join(errors))


def _cluster_problems(suite: SuiteConfig) -> list[str]:
    """A run's resource request that no node of the Ray cluster (already started or joined) can satisfy: Ray would
    keep it pending forever, the suite at 0 runs with no word."""
    try:
        import ray
    except ImportError:
        return []  # the executor says so when it starts
    if not ray.is_initialized():
        return []
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if not nodes:
        return []
    most = {key: max(float(n.get("Resources", {}).get(key, 0.0)) for n in nodes) for key in ("CPU", "GPU")}
    described = "; ".join(
        f"{n.get('NodeManagerAddress', '?')}: {float(n.get('Resources', {}).get('CPU', 0)):g} CPU, "
        f"{float(n.get('Resources', {}).get('GPU', 0)):g} GPU"
        for n in nodes
    )
    problems = []
    for option, key, wanted in (
        ("num_cpus", "CPU", suite.training.num_cpus),
        ("num_gpus", "GPU", suite.training.num_gpus),
    ):
        if wanted > most[key]:
            problems.append(
                f"training.{option}: each run asks for {wanted:g} {key}, but no node of the Ray cluster has "
                f"more than {most[key]:g} ({len(nodes)} node(s): {described}); lower it, or add a node "
                "that has them"
            )
    return problems


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """True when ``exc`` or an exception it was raised from is a ``kind``."""
    link: BaseException | None = exc
    while link is not None:
        if isinstance(link, kind):
            return True
        link = link.__cause__ or link.__context__
    return False


def _memory_problems(suite: SuiteConfig) -> list[str]:
    """A scenario whose network cannot fit: its weights, gradients and optimiser state (fp32) alone exceed
    the memory of the device it would train on (checked without building it)."""
    problems = []
    for i, spec in enumerate(suite.scenarios):
        count = cast(ScenarioParams, spec.typed_params(SCENARIOS)).parameter_count()
        if count is None:
            continue
        need = training_bytes(count, suite.training)
        where, available = device_memory(suite.device)
        if need > available:
            problems.append(
                f"scenarios[{i}].params: the network would have {count:,} parameters; its weights, gradients and "
                f"{suite.training.optimizer} state alone need about {format_bytes(need)} (fp32), more than the "
                f"{format_bytes(available)} of {where}; reduce its widths / width / layers"
            )
    return problems


def training_bytes(parameters: int, training) -> int:
    """fp32 bytes of weights + gradients + optimiser state (Adam: 2 moments; SGD with momentum: 1)."""
    state = 2 if training.optimizer == "adam" else (1 if training.momentum else 0)
    return 4 * parameters * (2 + state)


def device_memory(device: str) -> tuple[str, int]:
    """(what, bytes): the GPU's memory where the suite trains on one, else this machine's physical memory."""
    import os

    import torch

    if device in ("cuda", "auto") and torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(0)}", torch.cuda.get_device_properties(0).total_memory
    return "this machine's memory", os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
