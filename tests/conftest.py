from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from forgetbench.benchmark.front.cli import main
from forgetbench.benchmark.core.registry import NoParams
from forgetbench.strategies import STRATEGIES, StrategyContext, register_strategy
from forgetbench.strategies.plugin import Plugin

import fault_strategies  # noqa: F401  (registers the test-only faulty strategies)


# Tiny models run several times faster on one thread (every test module relies on this), and a shared machine is
# never oversubscribed by the test suite. Determinism tests compare runs within this process.
torch.set_num_threads(1)
# The suite runs one xdist worker per core: a report draws its figures in the worker's own process rather than
# forking more (tests/reports/test_report.py asks for worker processes where it compares the two).
os.environ.setdefault("FORGETBENCH_REPORT_WORKERS", "1")


def pytest_sessionstart(session) -> None:
    """The index of built-in components for the checkout as it is (written by the first listing that has to import
    them): the CLI's latency tests time a `list` or `validate` that reads it, as every call after the first does."""
    from forgetbench.benchmark.core.components import INDEX

    if INDEX.path() is None:
        INDEX.write()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items) -> None:
    """``--dist loadgroup``'s groups, as pytest-xdist 3.8 means them: it names an ``xdist_group`` test's group by
    setting ``item._nodeid``, which pytest 9.2 no longer reads (a node's id is ``item._id``), so every group was
    silently spread over the workers: two Ray clusters at once, one worker waiting on the other for the demo's run.
    The group goes into the id here as xdist writes it (``id@group``); tests/packaging/test_xdist_groups.py checks
    that it holds. No private pytest module is imported (an older pytest, as on a GPU machine's own Python, has
    none of them): the id is rebuilt by its own type, or set where older pytests keep it (``_nodeid``)."""
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        groups = {
            str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in item.iter_markers("xdist_group")
        }
        if groups and item.nodeid.rfind("@") <= item.nodeid.rfind("]"):  # no suffix yet (xdist's own test for one)
            grouped = f"{item.nodeid}@{'_'.join(sorted(groups))}"
            node_id = getattr(item, "_id", None)
            if node_id is not None and hasattr(type(node_id), "parse"):
                item._id = type(node_id).parse(grouped)
            else:
                item._nodeid = grouped


def pytest_report_header(config) -> str:
    """Which CPU kernels round the effect tests' floats (`make test-kernels` runs them again under DEFAULT)."""
    import os

    return (
        f"torch {torch.__version__}, CPU kernels {torch.backends.cpu.get_cpu_capability()} "
        f"(ATEN_CPU_CAPABILITY={os.environ.get('ATEN_CPU_CAPABILITY', 'unset')})"
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """FORGETBENCH_TEST_TIMELINE=FILE appends one line per test: worker, start and end (epoch seconds), process
    CPU seconds, node id. `--durations` says how long each test took; this says what ran beside it, and when a
    worker's core sat idle (docs/development.md: reading a suite's timeline)."""
    path = os.environ.get("FORGETBENCH_TEST_TIMELINE")
    if not path:
        yield
        return
    import time

    start, cpu = time.time(), time.process_time()
    yield
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    line = f"{worker}\t{start:.3f}\t{time.time():.3f}\t{time.process_time() - cpu:.3f}\t{item.nodeid}\n"
    with open(path, "a") as out:  # one short write per line: the workers' lines do not interleave
        out.write(line)


class _Boom(RuntimeError):
    pass


if "test_failing" not in STRATEGIES:

    @register_strategy("test_failing", params=NoParams)
    def _build_failing(ctx: StrategyContext, params: NoParams):
        """Test-only: raises while being built."""
        raise _Boom("this strategy always fails")


class _NaNLoss(Plugin):
    def before_backward(self, strategy, **kwargs):
        if strategy.clock.train_exp_counter == 1:
            strategy.loss = strategy.loss + float("nan")


if "test_nan_loss" not in STRATEGIES:

    @register_strategy("test_nan_loss", params=NoParams)
    def _build_nan(ctx: StrategyContext, params: NoParams):
        """Test-only: the loss turns NaN in the second experience."""
        return ctx.build(plugins=[_NaNLoss()])


class _UnserialisableResult(Plugin):
    def extra_results(self) -> dict[str, Any]:
        return {"odd_value": {1, 2}}  # a set: JSON cannot hold it


if "test_unserialisable" not in STRATEGIES:

    @register_strategy("test_unserialisable", params=NoParams)
    def _build_unserialisable(ctx: StrategyContext, params: NoParams):
        """Test-only: reports an extra result that JSON cannot hold."""
        return ctx.build(plugins=[_UnserialisableResult()])


def tiny_suite(**overrides: Any) -> dict[str, Any]:
    """A suite that runs in about a second per run (digits, 2 tasks, small MLP)."""
    suite = {
        "name": "tiny",
        "seeds": [0],
        "device": "cpu",
        "training": {
            "optimizer": "sgd",
            "lr": 0.05,
            "momentum": 0.9,
            "batch_size": 32,
            "epochs": 1,
            "eval_batch_size": 256,
        },
        "scenarios": [
            {"name": "split", "params": {"dataset": "digits", "tasks": 2, "classes_per_task": 2, "widths": [32]}}
        ],
        "strategies": [{"name": "naive"}],
    }
    suite.update(overrides)
    return suite


@pytest.fixture
def write_suite(tmp_path: Path):
    def write(suite: dict[str, Any], name: str = "suite.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(suite))
        return path

    return write


@pytest.fixture
def cli():
    """Run the CLI in-process; returns the exit status."""

    def run(*args: str) -> int:
        try:
            return main([str(a) for a in args])
        except SystemExit as exc:  # argparse usage errors
            return int(exc.code)

    return run


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


class _ForgetFirstTask(Plugin):
    """Zeroes task 0's head after the last experience: its model then predicts one class (chance), the others not."""

    def after_training_exp(self, strategy, **kwargs):
        if strategy.experience.current_experience == 1:  # the second (last) experience of the tiny suite
            with torch.no_grad():
                for name, p in strategy.model.named_parameters():
                    if name.startswith("heads.0."):
                        p.zero_()


if "test_forget_first_task" not in STRATEGIES:

    @register_strategy("test_forget_first_task", params=NoParams)
    def _build_forget_first(ctx: StrategyContext, params: NoParams):
        """Test-only: task 0's head is zeroed at the end (task 0 at chance, task 1 fine)."""
        return ctx.build(plugins=[_ForgetFirstTask()])


@pytest.fixture(scope="session")
def shared_results(tmp_path_factory, request):
    """Expensive values computed once per session and shared by the xdist workers (helpers.SharedResults)."""
    from helpers import SharedResults, shared_results_folder

    worker = getattr(request.config, "workerinput", {}).get("workerid", "master")
    return SharedResults(shared_results_folder(tmp_path_factory, worker))
