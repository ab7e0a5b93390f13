"""The package as built is the package as tested: the wheel holds every module of the tree and the configs the
commands read when given none, and, installed outside the checkout, it lists the strategies, measures the CLI's
latency (its probes are in it) and runs a suite."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

from helpers import REPO


def _modules_of_the_tree() -> set[str]:
    """Every module the checkout installs, as the wheel names it (forgetbench/<folder>/...)."""
    found = {"forgetbench/__init__.py"}
    for folder in ("benchmark", "strategies", "reports"):
        found |= {f"forgetbench/{p.relative_to(REPO).as_posix()}" for p in (REPO / folder).rglob("*.py")}
    return {p for p in found if "__pycache__" not in p}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-w", str(out), "-q"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("forgetbench-*.whl")
    return built


@pytest.mark.slow  # builds the wheel and installs it in a fresh environment: 30-60 s, for the full tier
def test_the_wheel_holds_every_module_and_runs_outside_the_checkout(wheel, tmp_path):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(_modules_of_the_tree() - names)
    assert not missing, f"modules of the tree not in the wheel: {missing}"
    for data in (
        "forgetbench/reports/templates/report.html.j2",
        "forgetbench/configs/demo.yaml",
        "forgetbench/configs/reproduce/wpl_two_model.yaml",
    ):
        assert data in names, data

    # a clean environment: the wheel alone, its dependencies seen through a path (not the checkout's editable install)
    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=600)
    python = env_dir / "bin" / "python"
    site = Path(
        subprocess.check_output(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site), str(wheel), "-q"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["FORGETBENCH_DATA"] = env.get("FORGETBENCH_DATA", str(REPO.parent / "shared" / "data"))

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(python), "-m", "forgetbench.benchmark.front.cli", *args],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    where = subprocess.check_output(
        [str(python), "-c", "import forgetbench; print(forgetbench.__file__)"], cwd=work, env=env, text=True
    )
    assert str(site) in where and str(REPO) not in where  # the installed package, not the checkout's
    listed = cli("list", "strategies")
    assert listed.returncode == 0 and "wpl" in listed.stdout and "ewc" in listed.stdout, listed.stderr
    probe = cli("perf", "--only", "cli_latency", "--repeats", "1")
    assert probe.returncode == 0, probe.stderr[-2000:]
    suite = {
        "name": "installed",
        "seeds": [0],
        "device": "cpu",
        "training": {"optimizer": "sgd", "lr": 0.05, "batch_size": 32, "epochs": 1},
        "scenarios": [{"name": "split", "params": {"dataset": "digits", "tasks": 2, "classes_per_task": 2}}],
        "strategies": [{"name": "naive"}],
    }
    (work / "suite.yaml").write_text(yaml.safe_dump(suite))
    ran = cli("run", "suite.yaml", "--out", "out", "--quiet")
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert (work / "out" / "report.html").exists() and "1 run(s) executed" in ran.stdout
