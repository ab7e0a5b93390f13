"""Adding a strategy is one file: in a copy of the checkout, a regularizer written as one file in strategies/ (built
from the quadratic core's parts) is listed, validated, run, tuned, resumed by the resume tests as they stand and
measured by ``perf``, with no other file of the copy touched."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("forgetbench", "benchmark", "strategies", "reports", "configs", "tests")

NEW_STRATEGY = '''r"""``decayed_ewc``: EWC online with a fixed decay of one half (a throwaway strategy of the packaging test).

$$
\\mathcal{L}(\\theta) = \\mathcal{L}_t(\\theta) + \\lambda \\sum_i \\tilde F_i \\, (\\theta_i - \\theta^{t-1}_i)^2,
\\qquad \\tilde F \\leftarrow \\tfrac12 \\tilde F + F^{t-1}
$$

* ``lam`` (>= 0): the penalty's weight lambda.
"""

from pydantic import NonNegativeFloat

from forgetbench.strategies.base import StrategyParams, register_strategy, strength
from forgetbench.strategies.parts import FisherEstimate, OnlineQuadratic
from forgetbench.strategies.quadratic import QuadraticRegularizer


class DecayedParams(StrategyParams):
    lam: NonNegativeFloat = strength(50.0)


@register_strategy("decayed_ewc", params=DecayedParams)
def build(ctx, params):
    """EWC online with decay 1/2 (a throwaway strategy)."""
    regularizer = QuadraticRegularizer.from_context(
        ctx, "decayed_ewc", params.lam, FisherEstimate("minibatch"), OnlineQuadratic(0.5), max_curvature="auto",
        reports=("capped", "skipped"),
    )
    return ctx.build(plugins=[regularizer])
'''


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for folder in FOLDERS
        for p in sorted((root / folder).rglob("*"))
        if p.is_file() and not p.is_symlink() and "__pycache__" not in p.parts and not p.name.startswith("components-")
    }


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    copy = tmp_path_factory.mktemp("checkout")
    ignore = shutil.ignore_patterns("__pycache__", "components-*.json", "*.pyc")
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, copy / folder, symlinks=True, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")  # pytest's markers and options
    return copy


def _forgetbench(checkout: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(checkout), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "forgetbench.benchmark.front.cli", *args]
    return subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.timeout(900)  # a few minutes: a copy of the checkout, a suite with a tuned strength, resume tests, perf
def test_a_strategy_file_is_all_a_new_regularizer_needs(checkout, tmp_path):
    before = _tree_digest(checkout)
    (checkout / "strategies" / "decayed_ewc.py").write_text(NEW_STRATEGY)
    out = _forgetbench(checkout, "list", "strategies")
    assert out.returncode == 0, out.stderr
    assert "decayed_ewc" in out.stdout and "EWC online with decay 1/2" in out.stdout
    # validated (a wrong key names the field, exit 2), run beside naive and tuned: records like any built-in's
    suite = {
        "name": "new_file",
        "seeds": [0],
        "device": "cpu",
        "training": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "batch_size": 32, "eval_batch_size": 256},
        "scenarios": [{"name": "two_model", "params": {"dataset": "digits", "width": 16, "a_steps": 60,
                                                      "b_steps": 60}}],
        "strategies": [
            {"name": "naive"},
            {"name": "decayed_ewc", "params": {"lam": 30.0}},
            {"name": "decayed_ewc", "label": "decayed-tuned",
             "tune": {"params": {"lam": {"low": 1.0, "high": 100.0}}, "trials": 2, "seeds": [0]}},
        ],
    }  # fmt: skip
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**suite, "strategies": [{"name": "decayed_ewc", "params": {"lamb": 1.0}}]}))
    refused = _forgetbench(checkout, "validate", str(bad))
    assert refused.returncode == 2 and "lamb" in refused.stderr and "Traceback" not in refused.stderr
    assert _forgetbench(checkout, "validate", str(path)).returncode == 0
    ran = _forgetbench(checkout, "run", str(path), "--out", str(tmp_path / "out"), "--quiet")
    assert ran.returncode == 0, ran.stderr[-3000:]
    records = [yaml.safe_load(p.read_text()) for p in (tmp_path / "out" / "runs").glob("*decayed*/result.json")]
    assert len(records) >= 2 and all(r["status"] == "ok" for r in records)  # the tuned one at its chosen strength too
    assert all("decayed_ewc_penalty_to_data_gradient" in r and "decayed_ewc_capped_entries" in r for r in records)
    assert (tmp_path / "out" / "tuning.json").is_file()
    # the resume tests, as they stand, take it up with every built-in: killed after an experience, resumed exactly
    env = {**os.environ, "PYTHONPATH": str(checkout), "PYTHONDONTWRITEBYTECODE": "1"}
    resumed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         "tests/run/test_checkpoint_resume.py", "-k", "test_resumed_run_equals_the_uninterrupted_one and decayed_ewc"],
        cwd=checkout, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert resumed.returncode == 0 and "3 passed" in resumed.stdout, resumed.stdout[-3000:]
    # perf's rows are every registered regularizer of the core: measured with no list to edit
    perf = _forgetbench(checkout, "perf", "--only", "step_overhead", "--repeats", "1", "--dataset", "digits")
    assert perf.returncode == 0, perf.stderr[-3000:]
    assert "decayed_ewc" in perf.stdout
    after = _tree_digest(checkout)
    assert {k for k in after if before.get(k) != after[k]} == {"strategies/decayed_ewc.py"}
