"""``perf``'s ``parallel_scaling`` section: what N worker processes gain over ``local`` on identical runs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from forgetbench.benchmark.perf.measurements import section, row
from forgetbench.benchmark.perf.common import PerfOptions, median_of, ratio_of


def scaling_spec(opts: PerfOptions, seed: int) -> Any:
    """One run of configs/split_mnist.yaml's suite (``naive``; tiny with ``quick``) as a RunSpec."""
    from forgetbench.benchmark.core.config import ComponentSpec
    from forgetbench.benchmark.run.spec import RunSpec

    params: dict[str, Any] = dict(dataset=opts.dataset, tasks=5, classes_per_task=2, trunk="mlp", widths=[256, 256])
    if opts.quick:
        params.update(tasks=2, widths=[32], max_train_per_task=64)
    scenario = ComponentSpec(name="split", params=params)
    return RunSpec("perf_scaling", scenario, ComponentSpec(name="naive"), seed, opts.training, "cpu")


def _scaling_worker_init(threads: int) -> None:
    torch.set_num_threads(threads)


def _scaling_job(spec: Any, data_root: Path) -> float:
    """One whole run, as the suite's executors do it (scenario, training, evaluation); its wall time."""
    from forgetbench.benchmark.run.runner import run

    t0 = time.perf_counter()
    record = run(spec, data_root)
    if record.status not in ("ok", "collapsed"):  # collapsed: --quick sizes learn nothing; the time counts
        raise RuntimeError(f"parallel_scaling: the run failed: {record.error}")
    return time.perf_counter() - t0


def parallel_scaling(opts: PerfOptions) -> dict[str, Any]:
    """K identical runs: in this process on every core vs over N worker processes; one run alone."""
    from concurrent.futures import ProcessPoolExecutor

    from forgetbench.benchmark.run.executors import available_cores, threads_per_worker, worker_context

    cores = available_cores()
    workers = opts.scaling_workers
    worker_threads = threads_per_worker(workers, cores)
    jobs = workers * opts.scaling_jobs_per_worker
    specs = [scaling_spec(opts, opts.seed)] * jobs
    roots = [opts.data_root] * jobs
    times: dict[str, list[float]] = {"local": [], "parallel": [], "local_job": [], "worker_job": [], "lone_job": []}
    previous_threads = torch.get_num_threads()
    with ProcessPoolExecutor(
        workers, mp_context=worker_context(), initializer=_scaling_worker_init, initargs=(worker_threads,)
    ) as pool:
        try:
            # Warm-up, untimed: imports and the dataset cache, here and in every worker.
            torch.set_num_threads(cores)
            _scaling_job(specs[0], opts.data_root)
            list(pool.map(_scaling_job, specs[:workers], roots[:workers]))
            for r in range(opts.repeats):
                for side in ["local", "parallel", "lone"] if r % 2 == 0 else ["lone", "parallel", "local"]:
                    t0 = time.perf_counter()
                    if side == "local":
                        times["local_job"].extend(_scaling_job(spec, root) for spec, root in zip(specs, roots))
                        times["local"].append(time.perf_counter() - t0)
                    elif side == "parallel":
                        times["worker_job"].extend(pool.map(_scaling_job, specs, roots))
                        times["parallel"].append(time.perf_counter() - t0)
                    else:  # one worker busy, the others idle
                        times["lone_job"].append(pool.submit(_scaling_job, specs[0], opts.data_root).result())
        finally:
            torch.set_num_threads(previous_threads)
    median = {key: median_of(values) for key, values in times.items()}
    scenario = specs[0].scenario.params
    return {
        "cores": cores,
        "workers": workers,
        "jobs": jobs,
        "local_threads": cores,
        "worker_threads": worker_threads,
        "local_seconds": median["local"],
        "parallel_seconds": median["parallel"],
        "speedup": ratio_of(median["local"], median["parallel"]),
        "local_job_seconds": median["local_job"],
        "worker_job_seconds": median["worker_job"],
        "lone_job_seconds": median["lone_job"],
        "bound": workers * ratio_of(median["local_job"], median["lone_job"]),
        "job": f"naive run, split {scenario['dataset']} mlp {scenario['widths']}, {scenario['tasks']} tasks",
        "local_seconds_all": times["local"],
        "parallel_seconds_all": times["parallel"],
    }


def lines(r: Any) -> list[str]:
    """Its block of perf's table."""
    return [
        f"parallel_scaling ({r['jobs']} x {r['job']}; local / parallel)",
        row(f"local, {r['local_threads']} threads: {r['local_seconds']:.2f}s", f"{r['local_job_seconds']:.3f} s/run"),
        row(
            f"{r['workers']} workers x {r['worker_threads']} thread(s): {r['parallel_seconds']:.2f}s",
            f"{r['worker_job_seconds']:.3f} s/run",
        ),
        row(f"one run alone, {r['worker_threads']} thread(s)", f"{r['lone_job_seconds']:.3f} s/run"),
        row("speedup", f"{r['speedup']:.2f}x"),
        row("bound (perfect scaling)", f"{r['bound']:.2f}x", "(N x local run / lone run)"),
    ]


section(
    __name__,
    "what N worker processes gain over local on identical runs",
    parallel_scaling,
    lines,
    needs_data=True,
    rank=5,
)
