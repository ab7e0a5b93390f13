"""Helpers shared by several test modules (test modules never import each other)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from forgetbench.benchmark.core.config import ComponentSpec, TrainingConfig
from forgetbench.benchmark.core.record import RunRecord
from forgetbench.benchmark.data.datasets import DataMissingError, check_available, default_data_root
from forgetbench.benchmark.core.components import SCENARIOS, STRATEGIES
from forgetbench.benchmark.run.spec import RunSpec, seed_everything
from forgetbench.benchmark.data.scenarios import ScenarioInputs

REPO = Path(__file__).resolve().parent.parent
# what legitimately differs between two runs of one config: timings, host, and whether it trained in a batch of seeds
VOLATILE = ("timing", "environment", "started_at", "finished_at", "batch")


# two models sharing layers, small enough for a test (A two hidden layers, B three)
TINY_TWO_MODEL = {
    "dataset": "digits",
    "depth_a": 2,
    "depth_b": 3,
    "width": 16,
    "shared": 2,
    "a_steps": 30,
    "b_steps": 30,
}
# a supernet search small enough for a test: 2 positions x 2 ops, 3 epochs of 3 turns
TINY_SEARCH = {
    "dataset": "digits",
    "layers": 2,
    "ops": 2,
    "width": 16,
    "epochs": 3,
    "turns_per_epoch": 3,
    "steps_per_turn": 10,
    "validation_size": 200,
    "ground_truth_steps": 30,
}


def builtin_strategies() -> list[str]:
    """Every strategy this distribution implements, from the registry (not test-only or plug-in ones, and not
    Avalanche's own methods registered by name: they keep state outside the plugin protocol, so the checkpoint and
    protocol checks do not apply; tests/strategies/test_avalanche_zoo.py runs each of them)."""
    return sorted(
        e.name
        for e in STRATEGIES
        if e.factory.__module__.startswith("forgetbench.strategies.")
        and e.factory.__module__ != "forgetbench.strategies.avalanche_zoo"
    )


def needs_traits(name: str) -> bool:
    """Whether strategy ``name`` runs only on scenarios with certain traits (olora / inflora: a pretrained
    backbone), so the tiny digits scenarios cannot run it."""
    return bool(STRATEGIES.get(name).extra.get("requires"))


def toy_text_scenario(root: Path) -> dict:
    """The `text` scenario on a toy four-class corpus written under ``root`` (two tasks, 16 tokens, MiniLM's top
    layer trained): the smallest scenario with a pretrained backbone."""
    from text_fixtures import folder_corpus, require_text_extra

    require_text_extra()
    corpus = root / "toy_corpus"
    if not corpus.exists():
        folder_corpus(corpus)
    return {"name": "text", "params": {"corpus": f"folder:{corpus}", "max_length": 16, "trainable_layers": 1}}


def mnist_root() -> Path:
    """The data root holding real MNIST; skips offline, except on CI where it must be there."""
    root = default_data_root()
    try:
        check_available("mnist", root, download=False)
    except DataMissingError as exc:
        if os.environ.get("CI"):
            raise  # CI has ../shared/data: the real thing must run there
        pytest.skip(f"real MNIST not available offline: {exc}")
    return root


def comparable(out: Path) -> dict[str, dict]:
    """Every result file under ``out`` (what a rerun moved aside, ``OUT/set_aside/``, left out) without the keys that
    legitimately differ (timings, host)."""
    records = {}
    for path in sorted(p for p in out.rglob("result.json") if "set_aside" not in p.relative_to(out).parts):
        record = json.loads(path.read_text())
        for key in VOLATILE:
            record.pop(key, None)
        records[str(path.relative_to(out))] = record
    return records


# A tiny split on digits (3 tasks, 80 samples each) and its training config, for plugin-level tests.
TRAINING = TrainingConfig(
    optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=1e-3, batch_size=16, epochs=1, eval_batch_size=256
)


def small_split(tasks: int = 3):
    seed_everything(0)
    entry = SCENARIOS.get("split")
    params = entry.parse_params(
        {"dataset": "digits", "tasks": tasks, "classes_per_task": 2, "widths": [12], "max_train_per_task": 80}
    )
    return entry.factory(params, ScenarioInputs(0, Path(".")))


def two_model(seed=0, **params):
    entry = SCENARIOS.get("two_model")
    base = {"dataset": "digits", "depth_a": 2, "depth_b": 3, "width": 8, "shared": 1}
    return entry.factory(entry.parse_params(base | params), ScenarioInputs(seed, None))


def two_model_spec(strategy: str, params: dict) -> RunSpec:
    return RunSpec(
        suite="t",
        scenario=ComponentSpec(
            name="two_model",
            params=TINY_TWO_MODEL | {"shared": 1, "data_b": "permuted", "a_steps": 30, "b_steps": 40},
        ),
        strategy=ComponentSpec(name=strategy, params=params),
        seed=0,
        training=TrainingConfig(lr=0.05, momentum=0.9, batch_size=32, eval_every=5),
        device="cpu",
    )


def pip_install_target(source: Path, site: Path, scratch: Path) -> None:
    """``pip install`` the package folder ``source`` (a copy in ``scratch``, so build artefacts stay out
    of the repository) into the private site folder ``site``, without its dependencies."""
    import shutil
    import subprocess
    import sys

    src = scratch / source.name
    shutil.copytree(source, src)
    base = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        "--target",
        str(site),
    ]
    done = subprocess.run([*base, "--no-build-isolation", str(src)], capture_output=True, text=True)
    if done.returncode != 0:  # no local setuptools: let pip fetch the build backend
        done = subprocess.run([*base, str(src)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


CHROMIUM = os.environ.get("FORGETBENCH_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps calling home, which a closed network floods.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _need_browser():
    problem = None
    if not Path(CHROMIUM).exists():
        problem = f"{CHROMIUM} is missing (apt-get install chromium; .ci/run does it)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError as exc:
            problem = f"playwright is not installed: {exc}"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)  # CI must run the real thing
        pytest.skip(problem)


@contextmanager
def browser_page(width: int = 1280, height: int = 900):
    """A page of Debian's headless Chromium (a throw-away profile), driven by playwright."""
    _need_browser()
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=FLAGS,
                viewport={"width": width, "height": height},
            )
            try:
                yield browser.new_page()
            finally:
                browser.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def make_record(fields: dict | None = None, **more) -> RunRecord:
    """A :class:`RunRecord` from a test's partial record (what the test is about), the identity fields it does
    not care about filled in: scenario / strategy names from their labels, a run id, suite, seed 0."""
    raw = {**(fields or {}), **more}
    scenario = dict(raw.get("scenario") or {})
    scenario.setdefault("label", scenario.get("name", "s"))
    scenario.setdefault("name", scenario["label"])
    strategy = dict(raw.get("strategy") or {})
    strategy.setdefault("label", strategy.get("name", "naive"))
    strategy.setdefault("name", strategy["label"])
    if raw.get("search") is not None:
        raw["search"] = {"kind": "random", **raw["search"]}
    seed = raw.get("seed", 0)
    return RunRecord.from_dict(
        {
            "run_id": f"{scenario['label']}__{strategy['label']}__seed{seed}",
            "suite": "test",
            "seed": seed,
            **raw,
            "scenario": scenario,
            "strategy": strategy,
        }
    )


def check_reduced_strength_study(
    config: str, scenario_params: dict, training: dict, wpl: dict, cli, write_suite, out: Path
) -> None:
    """Run the strength study ``configs/<config>`` reduced (one seed, each sweep's weakest and strongest point,
    ``scenario_params`` and ``training`` replacing the config's, ``wpl`` added to every WPL, WPL-online and WPL-ENAS entry) and check that
    every run finishes and that within each method the strongest point's penalty is the larger share of the data
    gradient (the median ``*_penalty_to_data_gradient``)."""
    import yaml

    from forgetbench.benchmark.core.calibration import median_ratio
    from forgetbench.benchmark.core.store import load_results

    suite = yaml.safe_load((REPO / "configs" / config).read_text())
    suite["seeds"] = [0]
    suite["training"] |= training
    suite["scenarios"][0]["params"] = scenario_params
    sweeps = {}
    for entry in suite["strategies"][1:]:
        key = next(k for k in ("ewc_lambda", "alpha") if k in entry["params"])
        entry["params"][key] = [min(entry["params"][key]), max(entry["params"][key])]
        if entry["name"] in ("wpl", "wpl_online", "wpl_enas"):
            entry["params"] |= wpl
        sweeps[entry.get("label", entry["name"])] = key
    assert cli("run", write_suite(suite), "--out", out) == 0
    records = load_results(out)
    assert len(records) == 1 + 2 * len(sweeps) and all(r.status == "ok" for r in records)
    for label, key in sweeps.items():
        ratios = {
            r.strategy.params[key]: median_ratio(r.model_extra or {})
            for r in records
            if r.strategy.label.startswith(label + "[")
        }
        weak, strong = sorted(ratios)
        assert ratios[weak] is not None and ratios[strong] > ratios[weak], (label, ratios)


def one_step_updates(device, trunk: str, widths: list[int], **options) -> tuple[list, list]:
    """The weight updates of one SGD step of ``naive`` from the same weights on the same batch of a digits Split
    scenario: under fp32, and under the training ``options`` (precision, channels_last). Comparing one step,
    not a whole run, is what tells a precision's rounding from a broken step: whole runs diverge
    chaotically by amounts that depend on the machine's kernels (on an H200, EWC's runs of 6 epochs in bf16 and
    fp32 ended 1.49 apart in one weight)."""
    import copy

    import torch

    from forgetbench.benchmark.run.schedule import build_strategy, scheduled_experiences, train_schedule
    from forgetbench.benchmark.train.harness import Harness

    entry = SCENARIOS.get("split")
    params = {"dataset": "digits", "tasks": 2, "classes_per_task": 2, "trunk": trunk, "widths": widths}
    scenario = entry.factory(entry.parse_params(params | {"max_train_per_task": 64}), ScenarioInputs(0, None))
    base = TrainingConfig(optimizer="sgd", lr=0.05, batch_size=32, epochs=1, iterations_per_task=1)
    updates = []
    for training in (base, base.model_copy(update=options)):
        torch.manual_seed(0)
        model = copy.deepcopy(scenario.model).to(device)
        start = [p.detach().clone() for p in model.parameters()]
        harness = Harness()
        strategy = build_strategy("naive", {}, scenario, model, training, device, 0, harness)
        for _ in train_schedule(strategy, harness, scheduled_experiences(scenario)[:1], training):
            pass
        assert all(p.dtype == torch.float32 for p in strategy.model.parameters())  # weights stay fp32
        updates.append([p.detach() - s for p, s in zip(strategy.model.parameters(), start)])
    return updates[0], updates[1]


def relative_update_error(reference: list, other: list) -> float:
    """||other - reference|| / ||reference|| over all tensors together."""
    import torch

    error = torch.sqrt(sum(((o - r) ** 2).sum() for r, o in zip(reference, other)))
    return float(error / torch.sqrt(sum((r**2).sum() for r in reference)))


class SharedResults:
    """Values computed once per test session and shared by every pytest-xdist worker: each value is a JSON file
    under the session's shared folder, written by whichever worker takes its lock first.

    :meth:`many` takes the keys no other worker holds first and waits for the rest only at the end, so two workers
    asking for the same list (the naive seeds every regularizer of test_defaults pairs with) split it between them
    instead of one waiting for the other."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.folder / ("".join(c if c.isalnum() or c in "-_." else "_" for c in key) + ".json")

    def _compute_locked(self, key: str, compute, blocking: bool):
        from filelock import FileLock, Timeout

        path = self._path(key)
        try:
            with FileLock(str(path) + ".lock", timeout=-1 if blocking else 0):
                if not path.exists():
                    value = compute()
                    scratch = path.with_suffix(".tmp")
                    scratch.write_text(json.dumps(value))
                    os.replace(scratch, path)
                return True
        except Timeout:
            return False

    def get(self, key: str, compute):
        """The value of ``key``, computed by ``compute()`` (JSON-ready) unless a worker already has."""
        self._compute_locked(key, compute, blocking=True)
        return json.loads(self._path(key).read_text())

    def many(self, computations: dict[str, object]) -> dict[str, object]:
        """``{key: compute}`` -> ``{key: value}``; keys another worker is computing are waited for last."""
        deferred = [key for key, compute in computations.items() if not self._compute_locked(key, compute, False)]
        for key in deferred:
            self._compute_locked(key, computations[key], blocking=True)
        return {key: json.loads(self._path(key).read_text()) for key in computations}


def shared_results_folder(tmp_path_factory, worker_id: str) -> Path:
    """The folder every worker of this session sees (the session's own temporary root under xdist)."""
    base = tmp_path_factory.getbasetemp()
    return (base if worker_id == "master" else base.parent) / "shared-results"


def run_command(args: list[str], *, expect: int = 0, timeout: float = 600, **options: Any) -> Any:
    """``subprocess.run(args)`` capturing text output (``options``: ``cwd``, ``env``, ...), asserting that it ended
    with ``expect`` (the last 3,000 characters of its stderr said otherwise)."""
    import subprocess

    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **options)
    assert done.returncode == expect, done.stderr[-3000:]
    return done


# the training the scenario tests run their tiny suites with
SCENARIO_TRAINING = TrainingConfig(optimizer="sgd", lr=0.05, momentum=0.0, batch_size=32, eval_batch_size=512)


def scenario_and_spec(name: str, base: dict) -> tuple[Any, Any]:
    """``(scenario(seed=0, **params), spec(strategy="naive", params=None, seed=0, **scenario_params))`` for the
    scenario ``name`` on ``base`` params (updated by the keywords): a scenario test's two builders."""

    def scenario(seed: int = 0, **params: Any) -> Any:
        entry = SCENARIOS.get(name)
        return entry.factory(entry.parse_params(base | params), ScenarioInputs(seed, None))

    def spec(strategy: str = "naive", params: dict | None = None, seed: int = 0, **scenario_params: Any) -> RunSpec:
        return RunSpec(
            "t",
            ComponentSpec(name=name, params=base | scenario_params),
            ComponentSpec(name=strategy, params=params or {}),
            seed,
            SCENARIO_TRAINING,
            "cpu",
        )

    return scenario, spec


def cli_command(*args: str, **options: Any) -> Any:
    """``forgetbench ARGS`` in a fresh process (``python -m``, so a PYTHONPATH in ``env`` is seen), as
    :func:`run_command`."""
    import sys

    return run_command([sys.executable, "-m", "forgetbench.benchmark.front.cli", *args], **options)
