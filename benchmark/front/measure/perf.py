"""``forgetbench perf``: how close the harness is to a plain PyTorch loop, and what regularizers cost.

Pure measurement functions returning JSON-ready dicts. Every comparison runs both sides in one
process, alternating their order from repeat to repeat, and reports medians; ratios are
``harness / plain`` (or ``strategy / naive``), so 1.0 means "no overhead".

Sections (keys of the JSON object), each measured in its own module of this package:

* ``harness_vs_plain``: the harness's ``naive`` run (strategy built through the registry, with the
  runner's harness plugins) against a hand-written loop doing identical work: same initial
  weights, same data order (the same seeded generator), batch size, optimizer and steps. Both
  must end with the same weights (``weights_equal``), else the comparison is void.
* ``step_overhead``: time per training step of each regularizer (the quadratic ``ewc``, ``si``, ``wpl``, ``mas``,
  ``l2``, and ``lwf``'s distillation) over ``naive`` on the same Split task stream, counted over experiences 1..T-1 (where the penalties are
  active), excluding the once-per-experience importance pass; ``importance_vs_epoch``: the ``after_training_exp``
  work (the importance pass) over one training epoch of the same experience.
* ``fisher_fast_vs_loop``: ``forgetbench.strategies.importance.exact_fisher_diagonal`` against
  ``per_sample_fisher_loop`` on the same samples (speed-up = loop time / fast time).
* ``growth``: per-step time and regularizer memory (``state_bytes``) for T = 5, 10, 20 experiences.
* ``parallel_scaling``: what N worker processes gain over ``local`` on identical runs, and the most
  they could gain. The same K whole runs (``forgetbench.benchmark.run.runner.run`` of ``naive`` on the Split MNIST
  MLP of ``configs/split_mnist.yaml``: scenario, training, evaluation) run one after another in
  this process with one torch thread per core (what ``local`` does), then spread over N worker
  processes with ``cores // N`` threads each (what ``process``/``ray`` with ``--workers N`` do),
  workers started and warmed up beforehand: ``speedup = local seconds / parallel seconds``. Also
  one run alone on one worker (``cores // N`` threads, the other workers idle): if N workers ran each as fast as alone (perfect
  scaling, no start-up), the speed-up would be ``bound = N x local run / lone run``; when
  ``local`` already gains from its extra threads, the bound is below N. It ignores ``--threads``:
  the thread counts are the point.
* ``recurrent_supernet``: the ENAS recurrent supernet's turns (see :func:`recurrent_supernet`).
* ``suite_overhead``: the demo suite's wall against its runs' own training and evaluation seconds
  (:mod:`forgetbench.benchmark.front.measure.suite_overhead`).
* ``sequence_model``: EWC's and WPL's train time on a GRU against naive's, with the unrolled per-sample Fisher and
  with the fallback it replaced (:mod:`forgetbench.benchmark.front.measure.sequence`).
* ``avalanche_vs_own_loop``: forgetbench's run of Avalanche's GEM, AGEM, DER and ER_ACE against Avalanche's own
  class and loop on the same work (:mod:`forgetbench.benchmark.front.measure.avalanche_loop`).

Besides the sections, the probes of :mod:`forgetbench.benchmark.front.measure.probes` (the measurements behind
single figures of docs/studies/) run when ``--only`` names them, after the sections, with their ``--set`` params.
"""

from __future__ import annotations

import math
import os
import platform
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch

from forgetbench.benchmark.data.datasets import check_available, load_dataset
from forgetbench.benchmark.front.measure.common import (
    AVALANCHE_TRAIN_PER_TASK,
    NOT_AVAILABLE,
    SECTIONS,
    TEXT_MODELS,
    DeviceMissingError,
    PerfOptions,
    model_workload,
    target,
)
from forgetbench.benchmark.front.measure.fisher import fisher_fast_vs_loop
from forgetbench.benchmark.front.measure.growth import growth
from forgetbench.benchmark.front.measure.harness_vs_plain import harness_vs_plain
from forgetbench.benchmark.front.measure.recurrent import recurrent_supernet
from forgetbench.benchmark.front.measure.sequence import sequence_model
from forgetbench.benchmark.front.measure.suite_overhead import suite_overhead
from forgetbench.benchmark.front.measure.scaling import parallel_scaling
from forgetbench.benchmark.front.measure.step_overhead import step_overhead

# the names the CLI, scripts and tests use from here (each section lives in its own module)
__all__ = [
    "NOT_AVAILABLE",
    "SECTIONS",
    "TEXT_MODELS",
    "DeviceMissingError",
    "PerfOptions",
    "conditions",
    "fisher_fast_vs_loop",
    "format_table",
    "growth",
    "harness_vs_plain",
    "model_workload",
    "parallel_scaling",
    "recurrent_supernet",
    "run_perf",
    "step_overhead",
    "target",
]

# ----------------------------------------------------------------------------- entry point


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
    """Run the selected sections, then the probes named; raises DataMissingError when the dataset is not under the
    root (only when a section or probe reads it)."""
    from forgetbench.benchmark.front.measure.probes import load_probe

    if opts.device == "cuda" and not torch.cuda.is_available():
        raise DeviceMissingError(
            "--device cuda: torch sees no CUDA device on this machine (torch.cuda.is_available() is False)"
        )
    data = None
    if any(name in SECTIONS for name in opts.only) or any(load_probe(name).needs_data for name in opts.probes):
        check_available(opts.dataset, opts.data_root, download=False)
        data = load_dataset(opts.dataset, opts.data_root)
    result = _run_sections(opts, data, progress)
    for name, params in opts.probes.items():
        (progress or (lambda message: None))(name)
        result[name] = load_probe(name).run(opts, params, data)
    return result


def _run_sections(opts: PerfOptions, data: Any, progress: Callable[[str], None] | None) -> dict[str, Any]:
    result: dict[str, Any] = {"conditions": conditions(opts)}
    note = progress or (lambda message: None)
    # the sections that run on deterministic kernels: only the one whose validity is equal weights; the others
    # measure the kernels a run gets (on an H100 the per-sample Fisher's fast path was 8.0x the loop on
    # deterministic kernels, against 14.0x on an H200 on cuDNN's default ones)
    result["conditions"]["deterministic_kernels"] = []
    if "harness_vs_plain" in opts.only:
        note("harness_vs_plain")
        with deterministic_kernels(opts.torch_device) as deterministic:
            result["harness_vs_plain"] = harness_vs_plain(opts, data)
        if deterministic:
            result["conditions"]["deterministic_kernels"].append("harness_vs_plain")
    if "step_overhead" in opts.only:
        note("step_overhead")
        result["step_overhead"], result["importance_vs_epoch"] = step_overhead(opts, data)
    if "fisher_fast_vs_loop" in opts.only:
        note("fisher_fast_vs_loop")
        result["fisher_fast_vs_loop"] = fisher_fast_vs_loop(opts, data)
    if "growth" in opts.only:
        note("growth")
        result["growth"] = growth(opts, data)
    if "parallel_scaling" in opts.only:
        note("parallel_scaling")
        result["parallel_scaling"] = parallel_scaling(opts)
    if "recurrent_supernet" in opts.only:
        note("recurrent_supernet")
        result["recurrent_supernet"] = recurrent_supernet(opts)
    if "sequence_model" in opts.only:
        note("sequence_model")
        result["sequence_model"] = sequence_model(opts)
    if "suite_overhead" in opts.only:
        note("suite_overhead")
        result["suite_overhead"] = suite_overhead(opts)
    if "avalanche_vs_own_loop" in opts.only:
        from forgetbench.benchmark.front.measure.avalanche_loop import avalanche_vs_own_loop

        note("avalanche_vs_own_loop")
        result["avalanche_vs_own_loop"] = avalanche_vs_own_loop(
            opts.data_root,
            opts.dataset,
            opts.training,
            opts.repeats,
            opts.seed,
            64 if opts.quick else AVALANCHE_TRAIN_PER_TASK,
            opts.torch_device,
        )
    result["conditions"]["load_average_1m_after"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return result


def _goal(text: str) -> str:
    return f"target {text}" if text else ""


def _row(label: str, value: str, wanted: str = "") -> str:
    return f"  {label:<34} {value:>28}  {wanted}"


def _harness_vs_plain_lines(result: dict[str, Any]) -> list[str]:
    """The ``harness_vs_plain`` section's lines."""
    lines: list[str] = []

    def row(label: str, value: str, wanted: str = "") -> None:
        lines.append(_row(label, value, wanted))

    lines.append("harness_vs_plain (harness naive / plain PyTorch loop)")
    for name, r in result["harness_vs_plain"].items():
        row(
            f"{name}: {r['harness_seconds']:.3f}s / {r['plain_seconds']:.3f}s",
            f"ratio {r['ratio']:.3f}, weights {'equal' if r['weights_equal'] else 'DIFFER'}",
            _goal(r["target"]),
        )

    return lines


def _step_overhead_lines(result: dict[str, Any]) -> list[str]:
    """The ``step_overhead`` section's lines."""
    lines: list[str] = []

    def row(label: str, value: str, wanted: str = "") -> None:
        lines.append(_row(label, value, wanted))

    lines.append("step_overhead (per-step time / naive, experiences 2..T)")
    so = result["step_overhead"]
    row("naive", f"{so['naive_step_seconds'] * 1e3:.3f} ms/step")
    for label, r in so.items():
        if label in ("naive_step_seconds", "model", "naive_step_seconds_all"):
            continue
        value = r if isinstance(r, str) else f"{r['step_seconds'] * 1e3:.3f} ms, ratio {r['ratio']:.3f}"
        row(label, value, "" if isinstance(r, str) else _goal(r["target"]))
    lines.append("importance_vs_epoch (after-experience work / one epoch)")
    for label, r in result["importance_vs_epoch"].items():
        row(label, r if isinstance(r, str) else f"{r:.3f}", "target <= 1.0" if label in ("ewc", "wpl") else "")

    return lines


def _fisher_fast_vs_loop_lines(result: dict[str, Any]) -> list[str]:
    """The ``fisher_fast_vs_loop`` section's lines."""
    lines: list[str] = []

    def row(label: str, value: str, wanted: str = "") -> None:
        lines.append(_row(label, value, wanted))

    r = result["fisher_fast_vs_loop"]
    lines.append("fisher_fast_vs_loop (loop time / fast time)")
    if isinstance(r, str):
        row("exact Fisher", r)
    else:
        row(
            f"{r['samples']} samples",
            f"{r['speedup']:.1f}x ({'equal' if r['equal'] else 'DIFFER'})",
            "target >= 10" if r["model"] == "mlp" else "",
        )
        row(
            f"fast pass / one epoch ({r['fast_seconds']:.3f}s / {r['epoch_seconds']:.3f}s)",
            f"{r['fisher_vs_epoch']:.3f}",
            _goal(r["fisher_vs_epoch_target"]),
        )

    return lines


def _growth_lines(result: dict[str, Any]) -> list[str]:
    """The ``growth`` section's lines."""
    lines: list[str] = []

    def row(label: str, value: str, wanted: str = "") -> None:
        lines.append(_row(label, value, wanted))

    if isinstance(result.get("growth"), str):
        lines.append("growth")
        row("growth", result["growth"])
    elif "growth" in result:
        g = result["growth"]
        lines.append(
            f"growth (T = {g['tasks']}; ms/step and regularizer bytes; T={g['tasks'][-1]} / T={g['tasks'][0]})"
        )
        for label, r in g.items():
            if label in ("tasks", "train_per_task", "model", "trunk_bytes", "head_bytes"):
                continue
            if isinstance(r, str):
                row(label, r)
                continue
            cells = ", ".join(
                f"T={T}: {v['step_seconds'] * 1e3:.2f}ms ({v['vs_naive']:.2f}x naive) {v['regularizer_bytes']}B"
                for T, v in r["per_T"].items()
            )
            br = r["bytes_ratio_last_vs_first"]
            value = f"time x{r['step_ratio_last_vs_first']:.2f} (vs naive x{r['vs_naive_ratio_last_vs_first']:.2f})"
            row(label, f"{value}, bytes x{br:.2f}" if br else value)
            lines.append(f"      {cells}")
        last = str(g["tasks"][-1])
        lines.append(
            f"      (2 x (trunk + heads) at T={last}: 2 x ({g['trunk_bytes']} + {g['head_bytes'][last]}) = "
            f"{2 * (g['trunk_bytes'] + g['head_bytes'][last])}B)"
        )
    return lines


def _parallel_scaling_lines(result: dict[str, Any]) -> list[str]:
    """The ``parallel_scaling`` section's lines."""
    lines: list[str] = []

    def row(label: str, value: str, wanted: str = "") -> None:
        lines.append(_row(label, value, wanted))

    r = result["parallel_scaling"]
    lines.append(f"parallel_scaling ({r['jobs']} x {r['job']}; local / parallel)")
    row(f"local, {r['local_threads']} threads: {r['local_seconds']:.2f}s", f"{r['local_job_seconds']:.3f} s/run")
    row(
        f"{r['workers']} workers x {r['worker_threads']} thread(s): {r['parallel_seconds']:.2f}s",
        f"{r['worker_job_seconds']:.3f} s/run",
    )
    row(f"one run alone, {r['worker_threads']} thread(s)", f"{r['lone_job_seconds']:.3f} s/run")
    row("speedup", f"{r['speedup']:.2f}x")
    row("bound (perfect scaling)", f"{r['bound']:.2f}x", "(N x local run / lone run)")

    return lines


def _recurrent_supernet_lines(result: dict[str, Any]) -> list[str]:
    """The ``recurrent_supernet`` section's lines."""
    lines: list[str] = []

    def row(label: str, value: str, wanted: str = "") -> None:
        lines.append(_row(label, value, wanted))

    r = result["recurrent_supernet"]
    lines.append(f"recurrent_supernet ({r['model']})")
    row(
        f"harness naive / plain: {r['harness_seconds']:.3f}s / {r['plain_seconds']:.3f}s",
        f"ratio {r['ratio']:.3f}, weights {'equal' if r['weights_equal'] else 'DIFFER'}",
        "target <= 1.10",
    )
    row(
        f"wpl (online) / naive step ({r['wpl_step_seconds'] * 1e3:.1f} / {r['step_seconds'] * 1e3:.1f} ms)",
        f"{r['wpl_vs_naive']:.3f}",
        "target <= 1.15",
    )
    row("Fisher update / the turn's batches", f"{r['fisher_vs_turn']:.3f}", "target <= 1.0")

    return lines


def _suite_overhead_lines(result: dict[str, Any]) -> list[str]:
    """The ``suite_overhead`` section's lines."""
    lines: list[str] = []

    def row(label: str, value: str, wanted: str = "") -> None:
        lines.append(_row(label, value, wanted))

    r = result["suite_overhead"]
    lines.append(f"suite_overhead ({r['suite']})")
    row(
        f"suite wall / runs' train + eval: {r['wall_seconds']:.1f} s / {r['run_seconds']:.1f} s",
        f"{r['ratio']:.2f}",
        "target <= 1.25",
    )
    row(
        f"of which attribution: {r['attribution_seconds']:.1f} s; the report after it",
        f"{r['report_seconds']:.1f} s",
    )

    return lines


def _sequence_model_lines(result: dict[str, Any]) -> list[str]:
    """The ``sequence_model`` section's lines."""
    lines: list[str] = []

    def row(label: str, value: str, wanted: str = "") -> None:
        lines.append(_row(label, value, wanted))

    r = result["sequence_model"]
    lines.append(f"sequence_model ({r['model']}): train time / naive's ({r['seconds']['naive']:.2f} s)")
    for side, ratio in r["ratio"].items():
        how = "the torch.func fallback (before)" if side.endswith("_fallback") else "unrolled Fisher"
        row(
            f"{side.removesuffix('_fallback')}, {how}: {r['seconds'][side]:.2f} s",
            f"{ratio:.2f}x",
            f"its pass {r['pass_vs_epoch'][side]:.2f} epochs; target <= 1.5x",
        )

    return lines


def _avalanche_vs_own_loop_lines(result: dict[str, Any]) -> list[str]:
    """The ``avalanche_vs_own_loop`` section's lines."""
    lines: list[str] = []

    def row(label: str, value: str, wanted: str = "") -> None:
        lines.append(_row(label, value, wanted))

    lines.append("avalanche_vs_own_loop (harness's avalanche.<Method> / Avalanche's own class and loop, same order)")
    for name, r in result["avalanche_vs_own_loop"].items():
        row(
            f"{name} ({r['setting']}): {r['harness_seconds']:.3f}s / {r['own_loop_seconds']:.3f}s",
            f"ratio {r['ratio']:.3f}, weights {'equal' if r['weights_equal'] else 'DIFFER'}",
            "lower is better",
        )

    return lines


SECTION_LINES: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "harness_vs_plain": _harness_vs_plain_lines,
    "step_overhead": _step_overhead_lines,
    "fisher_fast_vs_loop": _fisher_fast_vs_loop_lines,
    "growth": _growth_lines,
    "parallel_scaling": _parallel_scaling_lines,
    "recurrent_supernet": _recurrent_supernet_lines,
    "suite_overhead": _suite_overhead_lines,
    "sequence_model": _sequence_model_lines,
    "avalanche_vs_own_loop": _avalanche_vs_own_loop_lines,
}  # each section's rendering, in the table's order


def format_table(result: dict[str, Any]) -> str:
    """The plain-text report of :func:`run_perf`'s result."""
    from forgetbench.benchmark.front.measure.probes import load_probe, probe_names

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

    for key, section_lines in SECTION_LINES.items():
        if key in result:
            lines += section_lines(result)
    for name in [key for key in result if key in probe_names()]:
        probe = load_probe(name)
        lines.append(f"{name} ({probe.summary})")
        lines += [f"  {line}" for line in probe.lines(result[name])]
    return "\n".join(lines)
