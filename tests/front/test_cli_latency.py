"""A CLI that answers at once (issue 50 item 2): ``--help``, ``list`` and ``validate`` of a config refused before
its components are built import neither torch nor Avalanche (their import is the seconds and the gigabyte the
issue measured); the listing read from the index of built-ins equals the registries' own. The times and memory
are measured by ``forgetbench perf --only cli_latency``; what is asserted here is the cause, which holds on any machine."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from conftest import tiny_suite

HEAVY = ("torch", "avalanche", "pandas", "matplotlib", "seaborn", "scipy.stats")


def _cli(args: list[str], cwd: Path, first: str = "") -> tuple[int, list[str], str]:
    """``forgetbench ARGS`` in a fresh interpreter (after the statement ``first``): exit status, the heavy libraries
    it imported, its stdout."""
    code = f"""
        import json, sys
        {first}
        from forgetbench.benchmark.front.cli import main
        try:
            status = main({args!r})
        except SystemExit as exc:
            status = exc.code
        sys.stdout.flush()
        print("\\n" + json.dumps([status, sorted(m for m in {HEAVY!r} if m in sys.modules)]))
        """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    *out, last = done.stdout.rstrip("\n").split("\n")
    status, heavy = json.loads(last)
    return int(status), heavy, "\n".join(out)


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdef", "bcdefg")
)


def _refused() -> dict[str, str]:
    suite = tiny_suite()
    return {
        "yaml-error": "name: [unclosed\n",
        "alias-bomb": BOMB,
        "top-level-typo": yaml.safe_dump({**suite, "sedes": [0]}),
        "training-field": yaml.safe_dump({**suite, "training": {"lr": -1.0}}),
        "unknown-strategy": yaml.safe_dump({**suite, "strategies": [{"name": "WPLL"}]}),
        "unknown-scenario": yaml.safe_dump({**suite, "scenarios": [{"name": "two_modle"}]}),
    }


@pytest.mark.parametrize("case", list(_refused()))
def test_a_refused_config_is_refused_without_importing_torch(case, tmp_path):
    (tmp_path / "suite.yaml").write_text(_refused()[case])
    status, heavy, _ = _cli(["validate", "suite.yaml"], tmp_path)
    assert status == 2 and heavy == []


@pytest.mark.slow  # fresh interpreters importing torch and Avalanche: 10-60 s, for the full tier (make test), not the inner loop (make test-fast)
def test_an_unknown_name_is_refused_with_the_same_words_as_after_import(tmp_path):
    """The listing's answer equals the registry's own (did-you-mean and allowed names): the same config refused
    in a fresh interpreter from the index, and in one that imported every built-in first."""
    (tmp_path / "suite.yaml").write_text(_refused()["unknown-strategy"])
    answers = []
    for first in ("", "from forgetbench.strategies import STRATEGIES; STRATEGIES.names()"):
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                textwrap.dedent(f"""
            import sys, yaml
            {first}
            from forgetbench.benchmark.core.config import ConfigError, resolve_config
            try:
                resolve_config(yaml.safe_load(open("suite.yaml")))
            except ConfigError as exc:
                print(exc)
            print(sorted(m for m in ("torch", "avalanche") if m in sys.modules))
            """),
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        answers.append(done.stdout.strip().split("\n"))
    (from_index, nothing_heavy), (after_import, heavy) = answers
    assert nothing_heavy == "[]" and heavy == "['avalanche', 'torch']"
    assert from_index == after_import and "did you mean 'wpl'?" in from_index


@pytest.mark.slow  # fresh interpreters importing torch and Avalanche: 10-60 s, for the full tier (make test), not the inner loop (make test-fast)
def test_list_reads_the_index_and_lists_what_the_registries_hold(tmp_path):
    status, heavy, from_index = _cli(["list"], tmp_path)
    assert status == 0 and heavy == []
    loaded = "from forgetbench.strategies import STRATEGIES; STRATEGIES.names()"  # every built-in imported first
    status, heavy, after_import = _cli(["list"], tmp_path, first=loaded)
    assert status == 0 and "torch" in heavy
    assert from_index == after_import and "  wpl " in from_index


def test_a_bad_perf_setting_is_refused_before_avalanche_is_imported(tmp_path):
    """``perf --set`` is validated by its measurement's params model before perf imports the harness: a typo exits 2
    in the seconds torch takes to import, not the ten Avalanche adds."""
    status, heavy, _ = _cli(
        ["perf", "--only", "step_costs", "--set", "strategies=[{name: ewc, params: {x: 1}}]"], tmp_path
    )
    assert status == 2 and "avalanche" not in heavy


def test_help_imports_nothing_heavy(tmp_path):
    status, heavy, out = _cli(["--help"], tmp_path)
    assert status == 0 and heavy == [] and "validate" in out


@pytest.mark.slow  # a fresh interpreter per command, 5 s: for the full tier, not the inner loop
def test_a_good_config_still_validates_its_params(tmp_path):
    """The name check answers from the index; params still need the components (imported then)."""
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(tiny_suite()))
    status, heavy, out = _cli(["validate", "suite.yaml", "--skip-data"], tmp_path)
    assert status == 0 and "valid suite" in out
    bad = tiny_suite()
    bad["strategies"] = [{"name": "ewc", "params": {"ewc_lambda": -1.0}}]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    status, heavy, _ = _cli(["validate", "bad.yaml", "--skip-data"], tmp_path)
    assert status == 2 and "torch" in heavy


@pytest.mark.slow  # fresh interpreters: 10-60 s, for the full tier (make test), not the inner loop (make test-fast)
def test_reading_a_config_or_results_never_imports_avalanche(tmp_path):
    """Issue 65: `validate` of a good config imported Avalanche (7-15 s, 1 GB) because every strategy and scenario
    module did, for its params model. Now its plugins are Avalanche's protocol by duck typing, the networks become
    MultiTaskModules when one is built to train, and Avalanche's own methods register when one is named: `--help`,
    `list`, `validate` (its preflight included: torch may load there), `report`, `table` and `load_results` never
    import it.
    """
    from helpers import REPO
    from report_records import basic_records, write_folder

    results = write_folder(tmp_path / "results", basic_records())
    for args in (
        ["--help"],
        ["list"],
        ["validate", str(REPO / "configs" / "demo.yaml")],
        ["report", str(results)],
        ["table", "interval", str(results)],
    ):
        status, heavy, _ = _cli(args, tmp_path)
        assert status == 0 and "avalanche" not in heavy, args
        if args[0] == "table":  # matplotlib alone, Student's t from scipy.special: 1.1 s of imports less
            assert "seaborn" not in heavy and "scipy.stats" not in heavy, args
        if args[0] == "report":  # seaborn never; scipy.stats only as statsmodels' own import, for Holm (0.5 s)
            assert "seaborn" not in heavy, args
    reading = f"import forgetbench; forgetbench.load_results({str(results)!r}).summary()"
    status, heavy, _ = _cli(["--help"], tmp_path, first=reading)
    assert status == 0 and "avalanche" not in heavy and "torch" not in heavy


def test_the_plugin_base_has_exactly_avalanches_supervised_callbacks():
    """Avalanche's templates call a plugin's callbacks by name and warn about any they do not know
    (BaseTemplate._check_plugin_compatibility): the duck-typed base has the same 26 as SupervisedPlugin."""
    from avalanche.core import SupervisedPlugin

    from forgetbench.strategies.plugin import SUPERVISED_CALLBACKS, Plugin

    def callbacks(cls):
        return {n for n in dir(cls) if n.startswith(("before", "after"))}

    assert callbacks(SupervisedPlugin) == set(SUPERVISED_CALLBACKS) == callbacks(Plugin)
    assert Plugin.supports_distributed is SupervisedPlugin.supports_distributed is False


@pytest.mark.slow  # four fresh interpreters, 6 s: for the full tier (make test), not the inner loop (make test-fast)
def test_the_console_script_ends_a_reading_command_with_its_output_and_status_whole(tmp_path):
    """``validate``, ``table`` and ``report`` end their process without the interpreter's teardown
    (QUICK_EXIT_COMMANDS): what they print arrives whole, in order, with the command's exit status, and the report's
    files are on disk; ``run`` is not among them (its executors clean up at exit)."""
    from forgetbench.benchmark.front.cli import QUICK_EXIT_COMMANDS
    from report_records import basic_records, write_folder

    assert {"validate", "report", "table", "list"} <= QUICK_EXIT_COMMANDS and "run" not in QUICK_EXIT_COMMANDS
    script = Path(sys.executable).with_name("forgetbench")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "forgetbench.benchmark.front.cli"]
    (tmp_path / "good.yaml").write_text(yaml.safe_dump(tiny_suite()))
    (tmp_path / "bad.yaml").write_text(_refused()["top-level-typo"])
    results = write_folder(tmp_path / "results", basic_records())

    def console(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*command, *args], cwd=tmp_path, capture_output=True, text=True, timeout=300)

    good = console("validate", "good.yaml", "--skip-data")
    assert good.returncode == 0 and good.stdout.endswith("run(s)\n") and "valid suite" in good.stdout
    bad = console("validate", "bad.yaml")
    assert bad.returncode == 2 and "sedes: unknown key; did you mean 'seeds'?" in bad.stderr
    table = console("table", "interval", str(results))
    assert table.returncode == 0 and table.stdout.count("\n| pair |") == 2  # naive and ewc, the last line included
    report = console("report", str(results), "-o", str(tmp_path / "out" / "report.html"))
    assert report.returncode == 0 and "Report:" in report.stdout
    assert (tmp_path / "out" / "report.html").stat().st_size > 10_000 and (results / "summary.csv").is_file()
