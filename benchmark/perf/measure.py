"""``forgetbench perf``'s driver: run the measurements named (or the default ones) from the one registry of
:mod:`forgetbench.benchmark.perf.measurements`, under the conditions recorded beside them, and write the table."""

from __future__ import annotations

import math
import os
import platform
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch

from forgetbench.benchmark.data.datasets import check_available, load_dataset
from forgetbench.benchmark.perf.common import DeviceMissingError, PerfOptions
from forgetbench.benchmark.perf.measurements import Measurement, default_names, load, measurement_names


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()})"


@contextmanager
def deterministic_kernels(device: torch.device) -> Iterator[bool]:
    """On CUDA, deterministic kernels inside the block (yields whether it turned them on). cuDNN's default
    convolution backward sums in a run-to-run order, so the harness and the plain loop end with different weights
    and the comparison is void (0.008 apart for the ResNet on an H200, 2026-11-26); both sides pay the same for
    the deterministic kernels. On the CPU nothing changes: its kernels are deterministic already."""
    if device.type != "cuda":
        yield False
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's condition for deterministic results
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True, warn_only=True)  # an op without a deterministic kernel warns
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield True
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn


def conditions(opts: PerfOptions) -> dict[str, Any]:
    """What the figures depend on: machine, threads, load, versions, sizes."""
    import avalanche

    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    return {
        "torch": torch.__version__,
        "avalanche": avalanche.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1m": load[0],
        "repeats": opts.repeats,
        "dataset": opts.dataset,
        "quick": opts.quick,
        "device": _device_name(opts.torch_device),
        "model": opts.model or "mlp (and cnn in harness_vs_plain)",
        "precision": opts.training.precision,
        "channels_last": opts.training.channels_last,
        "batch_size": opts.training.batch_size,
        "optimizer": f"{opts.training.optimizer} lr={opts.training.lr} momentum={opts.training.momentum}",
        "epochs_per_experience": opts.training.epochs,
    }


def run_perf(opts: PerfOptions, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the measurements ``opts.only`` names (none named: the default ones), in that order; raises
    DataMissingError when the dataset is not under the root (only when a measurement reads it)."""
    if opts.device == "cuda" and not torch.cuda.is_available():
        raise DeviceMissingError(
            "--device cuda: torch sees no CUDA device on this machine (torch.cuda.is_available() is False)"
        )
    measurements = [load(name) for name in opts.only or default_names()]
    data = None
    if any(m.needs_data for m in measurements):
        check_available(opts.dataset, opts.data_root, download=False)
        data = load_dataset(opts.dataset, opts.data_root)
    result: dict[str, Any] = {"conditions": conditions(opts)}
    # the measurements that run on deterministic kernels: only those whose validity is equal weights; the others
    # measure the kernels a run gets (on an H100 the per-sample Fisher's fast path was 8.0x the loop on
    # deterministic kernels, against 14.0x on an H200 on cuDNN's default ones)
    result["conditions"]["deterministic_kernels"] = []
    for measurement in measurements:
        (progress or (lambda message: None))(measurement.name)
        result.update(_measure(measurement, opts, data, result["conditions"]))
    result["conditions"]["load_average_1m_after"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return result


def _measure(measurement: Measurement, opts: PerfOptions, data: Any, conditions: dict[str, Any]) -> dict[str, Any]:
    """The result keys one measurement writes, run on deterministic kernels where its validity asks for them."""
    params = opts.params.get(measurement.name) or measurement.params()
    if measurement.deterministic:
        with deterministic_kernels(opts.torch_device) as deterministic:
            value = measurement.run(opts, params, data)
        if deterministic:
            conditions["deterministic_kernels"].append(measurement.name)
    else:
        value = measurement.run(opts, params, data)
    return value if measurement.also else {measurement.name: value}


def format_table(result: dict[str, Any]) -> str:
    """The plain-text report of :func:`run_perf`'s result: each measurement's block, in the order it ran."""
    lines = []
    c = result["conditions"]
    lines.append(
        f"forgetbench perf: {c['dataset']}, {c['repeats']} repeats (medians), torch {c['torch']}, "
        f"{c['torch_threads']} threads on {c['cpus']} CPUs, load {c['load_average_1m']:.2f}"
    )
    lines.append(
        f"device {c['device']}, model {c['model']}, precision {c['precision']}"
        f"{', channels_last' if c['channels_last'] else ''}, batch {c['batch_size']}"
    )
    known = set(measurement_names())
    for name in [key for key in result if key in known]:
        measurement = load(name)
        value = {key: result[key] for key in measurement.keys if key in result} if measurement.also else result[name]
        if measurement.titled:
            lines += measurement.lines(value)
        else:
            lines.append(f"{name} ({measurement.summary})")
            lines += [f"  {line}" for line in measurement.lines(value)]
    return "\n".join(lines)
