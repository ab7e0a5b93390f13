"""One import name: ``import forgetbench`` is the public API, nothing a user names can shadow it, and the
checkout's folders (``benchmark``, ``strategies``, ``reports``) imported by their own names say which name to use."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import forgetbench
from conftest import tiny_suite

ROOT = Path(__file__).resolve().parents[2]


def python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter started in ``cwd`` (which Python puts first on ``sys.path``)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow  # fresh interpreters and worker processes: 10-60 s, for the full tier (make test), not the inner loop (make test-fast)
@pytest.mark.parametrize("executor", ["local", "process"])  # process: the workers' fork server preloads modules too
def test_run_suite_beside_a_users_benchmark_py(tmp_path, executor):
    # a notebook folder with its own benchmark.py, reports.py and strategies.py: importing any of them fails loudly
    for name in ("benchmark", "reports", "strategies"):
        (tmp_path / f"{name}.py").write_text(f"raise RuntimeError('the user\\'s own {name}.py was imported')\n")
    (tmp_path / "suite.json").write_text(json.dumps(tiny_suite()))
    done = python(
        f"""
        import json, forgetbench
        results = forgetbench.run_suite(json.load(open("suite.json")), out="out", progress=False,
                                        executor="{executor}", workers=1)
        print(results.exit_code, len(results.records))
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "1"]
    record = json.loads(next((tmp_path / "out" / "runs").glob("*/result.json")).read_text())
    assert record["status"] == "ok"


def test_import_forgetbench_loads_no_heavy_library(tmp_path):
    done = python(
        """
        import sys, forgetbench
        print(sorted(m for m in ("torch", "avalanche", "pandas", "matplotlib") if m in sys.modules))
        print(forgetbench.__version__, sorted(forgetbench.__all__) == sorted(dir(forgetbench)))
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["[]", f"{forgetbench.__version__} True"]


def test_the_public_names_are_the_modules_own():
    from forgetbench.benchmark.core.components import STRATEGIES
    from forgetbench.benchmark.front.api import run_suite
    from forgetbench.strategies.base import register_strategy

    assert forgetbench.run_suite is run_suite
    assert forgetbench.register_strategy is register_strategy
    assert forgetbench.STRATEGIES is STRATEGIES
    for name in forgetbench.__all__:
        assert getattr(forgetbench, name) is not None


@pytest.mark.parametrize(
    "statement, new",
    [
        ("from benchmark.api import run_suite", "forgetbench.benchmark.front.api"),
        ("from reports.metrics import run_metrics", "forgetbench.benchmark.core.metrics"),
        ("import strategies", "forgetbench.strategies"),
    ],
)
def test_a_checkout_folder_by_its_own_name_is_an_import_error_naming_the_new_name(statement, new):
    done = python(
        f"""
        try:
            {statement}
        except ImportError as exc:
            print("ImportError:", exc)
        """,
        ROOT,
    )  # the repository root first on sys.path, where the folders are found under their own names
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ImportError: ") and new in done.stdout and "import forgetbench" in done.stdout
