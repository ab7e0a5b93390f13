"""Result records the store cannot trust (issue 67), and a disk that fills during a run or a report."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from forgetbench.benchmark.front.cli import main
from conftest import tiny_suite

# --- result records the store cannot trust (issue 67): table-driven. Each row damages a copy of a good results folder;
# `report` and `load_results` refuse the damaged file by name with its reason (never averaging it, never hanging,
# never a traceback, never touching an original file), and a rerun of the same command reruns the run it stood for.


def _json_edit(edit):
    def damage(run: Path) -> None:
        path = run / "result.json"
        path.write_text(edit(path.read_text()))

    return damage


def _with_nan(data: dict) -> str:
    data["accuracy_matrix"][1][0] = 0.123456789
    return json.dumps(data).replace("0.123456789", "NaN")


def _stray_copy(run: Path) -> None:  # a copy of the run in another folder, holding the run's id and other numbers
    data = json.loads((run / "result.json").read_text())
    data["accuracy_matrix"] = [[0.1, 0.1], [0.1, 0.1]]
    (run.parent / "zzz_copy").mkdir()
    (run.parent / "zzz_copy" / "result.json").write_text(json.dumps(data))


def _before_plans(runs: Path) -> None:
    """The folder as written before plans existed: no plan.json, suite.yaml or invocation.json, and no record carries
    a fingerprint."""
    for name in ("plan.json", "suite.yaml", "invocation.json"):
        (runs.parent / name).unlink(missing_ok=True)
    for path in runs.glob("*/result.json"):
        data = json.loads(path.read_text())
        data["fingerprint"] = None
        path.write_text(json.dumps(data))


def _same_run_twice(run: Path) -> None:  # a consistent record of the same scenario, strategy and seed, other numbers
    _before_plans(run.parent)  # in a folder written before plans (with one, the copy is not planned)
    data = json.loads((run / "result.json").read_text())
    data["run_id"] += "b"
    data["accuracy_matrix"] = [[0.1, 0.1], [0.1, 0.1]]
    (run.parent / data["run_id"]).mkdir()
    (run.parent / data["run_id"] / "result.json").write_text(json.dumps(data))


def _foreign_run(run: Path) -> None:  # a record of another suite's run (lr 0.5, seed 2) copied in beside the runs
    data = json.loads((run / "result.json").read_text())
    data["config"]["training"]["lr"] = 0.5
    data["config"]["seed"] = data["seed"] = 2
    data["run_id"] = data["run_id"].replace("seed0", "seed2")
    data["suite"], data["fingerprint"] = "other", None
    (run.parent / data["run_id"]).mkdir()
    (run.parent / data["run_id"] / "result.json").write_text(json.dumps(data))
    (run / "result.json").unlink()  # and the run itself missing: the foreign record must not stand in for it


def _edit(change):
    """A damage that edits the record's JSON object in place."""

    def damage(run: Path) -> None:
        data = json.loads((run / "result.json").read_text())
        change(data)
        (run / "result.json").write_text(json.dumps(data))

    return damage


def _set(path: str, value: Any):
    """Set ``a.b.0.1``-style ``path`` of the record to ``value``."""

    def change(data: dict) -> None:
        *parents, last = [int(k) if k.isdigit() else k for k in path.split(".")]
        node = data
        for key in parents:
            node = node[key]
        node[last] = value

    return _edit(change)


def _without_plan(change):
    """A damage in a folder written before plans (no OUT/plan.json): the records are held to each other."""

    def damage(run: Path) -> None:
        _before_plans(run.parent)
        _edit(change)(run)

    return damage


def _other_suites(data: dict) -> None:
    data["suite"], data["fingerprint"] = "other", None
    data["config"]["training"]["lr"] = 0.5


def _one_task_record(data: dict) -> None:  # a consistent record of a 1-task run: it names 1 experience and 1 row
    data["experiences"], data["rows_planned"] = data["experiences"][:1], 1
    data["accuracy_matrix"], data["init_accuracy"] = [[data["accuracy_matrix"][0][0]]], data["init_accuracy"][:1]


def _three_experiences(data: dict) -> None:  # a 3 x 3 matrix naming a third experience, rows_planned to match
    data["experiences"] = [*data["experiences"], "task2(1,9)"]
    data["accuracy_matrix"] = [[0.5, 0.5, 0.5]] * 3
    data["init_accuracy"], data["rows_planned"] = [0.5] * 3, 3


def _replace_with(make):
    def damage(run: Path) -> None:
        (run / "result.json").unlink()
        make(run / "result.json")

    return damage


def _folder_deleted(run: Path) -> None:
    import shutil

    shutil.rmtree(run)


def _folder_linked(run: Path) -> None:  # the run's folder moved out and a link left in its place
    outside = run.parent.parent.parent / f"outside_{run.parent.parent.name}"
    run.rename(outside)
    run.symlink_to(outside, target_is_directory=True)


def _folder_a_file(run: Path) -> None:
    _folder_deleted(run)
    run.write_text("not a run folder")


RECORD_DEFECTS = [
    # (id, damage, the words that name why, whether the run's own record survives (only a stray copy leaves it))
    ("stray-copy-with-the-runs-id", _stray_copy, "is not its folder's name", True),
    (
        "run-id-differs-from-its-folder",
        _json_edit(lambda t: t.replace('"run_id": "split__naive__seed0"', '"run_id": "split__naive__seed7"')),
        "is not its folder's name",
        False,
    ),
    ("two-records-of-one-run", _same_run_twice, "differs from it", False),
    (
        "nan-in-the-matrix",
        _json_edit(lambda t: _with_nan(json.loads(t))),
        "NaN",
        False,
    ),
    (
        "nan-train-seconds",
        _json_edit(
            lambda t: json.dumps(json.loads(t) | {"timing": {"train_seconds": 1.5}}).replace(
                '"train_seconds": 1.5', '"train_seconds": NaN'
            )
        ),
        "NaN",
        False,
    ),
    (
        "matrix-wider-than-the-experiences",
        _json_edit(lambda t: json.dumps(json.loads(t) | {"accuracy_matrix": [[0.5] * 9] * 9})),
        "column(s) but the record names 2 experience(s)",
        False,
    ),
    ("result-is-a-directory", _replace_with(lambda p: p.mkdir()), "a directory", False),
    ("dangling-symlink", _replace_with(lambda p: p.symlink_to(p.parent / "gone.json")), "symbolic link", False),
    ("symlink-loop", _replace_with(lambda p: p.symlink_to(p)), "symbolic link", False),
    ("fifo", _replace_with(lambda p: os.mkfifo(p)), "FIFO", False),
    ("byte-order-mark", _json_edit(lambda t: "\ufeff" + t), "byte-order mark", False),
    ("folder-without-its-record", _replace_with(lambda p: None), "holds no result.json", False),
    # issue 74: a record is checked against the suite that asked for it, and the schema is strict
    ("record-of-another-suite", _foreign_run, "is not a run this suite planned", False),
    (
        "config-edited-after-the-run",
        _set("config.training.lr", 0.5),
        "the config was edited after the run",
        False,
    ),
    (
        "config-and-fingerprint-edited",
        _edit(lambda d: d["config"]["training"].update(lr=0.5) or d.update(fingerprint=None)),
        "training.lr: 0.5 in the record, 0.05 planned",
        False,
    ),
    (
        "only-the-first-row",
        _edit(lambda d: d.update(accuracy_matrix=d["accuracy_matrix"][:1])),
        "with 1 of the 2 rows",
        False,
    ),
    (
        "partial-matrix-without-rows-planned",
        _edit(lambda d: d.update(accuracy_matrix=d["accuracy_matrix"][:1], rows_planned=None)),
        "has 1 row(s) over 2",
        False,
    ),
    ("three-experiences-in-a-two-task-suite", _edit(_three_experiences), "has 3 row(s) over 3", False),
    ("a-one-task-record", _edit(_one_task_record), "has 1 row(s) over 1", False),
    ("ok-with-an-empty-matrix", _edit(lambda d: d.update(accuracy_matrix=[], rows_planned=None)), "but empty", False),
    ("bool-in-the-matrix", _set("accuracy_matrix.1.0", True), "valid number", False),
    ("string-in-the-matrix", _set("accuracy_matrix.1.0", "0.95"), "valid number", False),
    ("negative-train-seconds", _set("timing.train_seconds", -100), "greater than or equal to 0", False),
    ("negative-regularizer-bytes", _set("memory.regularizer_bytes", -5), "greater than or equal to 0", False),
    ("seed-beyond-range", _edit(lambda d: d.update(seed=10**30)), "seed", False),
    ("another-suites-record-without-a-plan", _without_plan(_other_suites), "suite: 'other', where the folder's", False),
    (
        "an-edited-lr-without-a-plan",
        _without_plan(lambda d: d["config"]["training"].update(lr=0.5) or d.update(fingerprint=None)),
        "training.lr: 0.5 in the record, 0.05 in the others",
        False,
    ),
    ("seed-not-its-run-ids", _edit(lambda d: d.update(seed=7)), "names seed 0", False),
    # issue 94 item 2: a planned run with no record to read is named, and counted as not ok
    ("run-folder-deleted", _folder_deleted, "planned run 'split__naive__seed0' has no record", False),
    ("run-folder-a-symlink", _folder_linked, "is a symbolic link, not the run's own folder", False),
    ("run-folder-a-file", _folder_a_file, "is not a folder, so it holds no record", False),
]
_DEFECT_SUITE = tiny_suite(seeds=[0, 1], strategies=[{"name": "naive"}, {"name": "ewc"}])


@pytest.fixture(scope="module")
def good_results(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("good")
    config = folder / "suite.yaml"
    config.write_text(yaml.safe_dump(_DEFECT_SUITE))
    assert main(["run", str(config), "--out", str(folder / "results"), "--quiet", "--no-report"]) == 0
    return config, folder / "results"


@pytest.fixture(scope="module")
def clean_summary(good_results):
    """The undamaged folder's summary (each case compares against it)."""
    import forgetbench

    return forgetbench.load_results(good_results[1]).summary()


def _originals(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.glob("runs/*/*") if p.is_file() and not p.is_symlink()}


@pytest.mark.parametrize(
    ("damage", "why", "survives"), [r[1:] for r in RECORD_DEFECTS], ids=[r[0] for r in RECORD_DEFECTS]
)
@pytest.mark.timeout(600)  # a FIFO opened for reading would block forever
def test_a_record_the_store_cannot_trust_is_refused_by_name_and_rerun(
    damage, why, survives, good_results, clean_summary, tmp_path, capsys, caplog
):
    import shutil

    import forgetbench

    config, good = good_results
    clean = clean_summary.copy()
    folder = tmp_path / "results"
    shutil.copytree(good, folder, symlinks=True)
    victim = folder / "runs" / "split__naive__seed0"
    damage(victim)
    before = _originals(folder)

    assert main(["report", str(folder)]) == 0
    printed = capsys.readouterr()
    assert "Traceback" not in printed.out + printed.err
    import html

    assert why in caplog.text and why in html.unescape((folder / "report.html").read_text())  # named, with why
    summary = forgetbench.load_results(folder).summary()
    assert _originals(folder) == before  # nothing read was changed
    naive = summary[summary.strategy == "naive"].iloc[0]
    expected = clean[clean.strategy == "naive"].iloc[0]
    if survives:  # the stray copy is refused and the run's own record stands: the summary is the clean one
        pd.testing.assert_frame_equal(summary, clean)
    else:  # the run is left out, never averaged with numbers it does not have
        assert (naive.ok, expected.ok) == (1, 2)
        if (folder / "plan.json").exists():  # and, planned, it counts as not ok: "1/2", never "1/1"
            assert naive.not_ok == 1

    caplog.clear()
    status = main(["run", str(config), "--out", str(folder), "--quiet", "--no-report"])
    printed = capsys.readouterr()
    assert "Traceback" not in printed.out + printed.err
    if damage is _folder_linked:  # a link out of the folder: the run will not write through it, and says so
        assert status == 2 and "is a symbolic link to" in printed.err and "outside the folder" in printed.err
    elif survives or damage is _same_run_twice:  # resume reads each run's own record: nothing to run again
        assert status == 0 and "0 run(s) executed" in printed.out
    else:
        assert status == 0 and "1 run(s) executed" in printed.out  # the refused run, and only it, ran again
        moved = list((folder / "set_aside").glob("*/*"))  # what stood in its place (a record, a file): kept
        assert len(moved) == (0 if damage in (_foreign_run, RECORD_DEFECTS[11][1], _folder_deleted) else 1)
        numbers = [c for c in clean.columns if "seconds" not in c]  # timings differ from run to run
        pd.testing.assert_frame_equal(forgetbench.load_results(folder).summary()[numbers], clean[numbers])


def test_load_results_of_a_folder_whose_runs_is_a_file_is_an_error(tmp_path):
    import forgetbench
    from forgetbench.benchmark.core.config import ConfigError

    (tmp_path / "runs").write_text("not a folder")
    with pytest.raises(ConfigError, match="runs: not a folder"):
        forgetbench.load_results(tmp_path)


def _disk_fills_after(monkeypatch, module, name: str, writes: int) -> None:
    """``module.name`` (a writer) raises ENOSPC from its ``writes + 1``-th call on, as a full disk does."""
    import errno

    real, calls = getattr(module, name), {"n": 0}

    def full(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > writes:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, full)


def test_a_full_disk_during_run_stops_with_one_line_and_the_rerun_continues(tmp_path, capsys, monkeypatch):
    from forgetbench.benchmark.core import store

    config = tmp_path / "suite.yaml"
    config.write_text(yaml.safe_dump(_DEFECT_SUITE))
    out = tmp_path / "out"
    _disk_fills_after(monkeypatch, store, "write_result", 2)  # the third run's record finds the disk full
    assert main(["run", str(config), "--out", str(out), "--quiet", "--no-report"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"the disk holding {out} is full" in err and "rerun the same command" in err
    assert len(list(out.glob("runs/*/result.json"))) == 2 and not list(out.rglob("*.tmp"))
    monkeypatch.undo()
    assert main(["run", str(config), "--out", str(out), "--quiet", "--no-report"]) == 0
    assert "2 run(s) executed, 2 skipped" in capsys.readouterr().out


def test_a_full_disk_during_report_leaves_the_report_and_its_tables_as_they_were(
    good_results, tmp_path, capsys, monkeypatch
):
    import shutil

    folder = tmp_path / "results"
    shutil.copytree(good_results[1], folder)
    assert main(["report", str(folder)]) == 0
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    (folder / "runs" / "split__ewc__seed1" / "result.json").unlink()  # the next report would differ everywhere
    _disk_fills_after(monkeypatch, os, "fsync", 1)  # the second file of the set finds the disk full
    assert main(["report", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "is full" in err and "as they were" in err
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before  # all old, no temporary


# --- issue 81: the folder's plan, the one every reader reads by


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (
            lambda plan: plan.unlink(),
            "plan.json is missing, but the folder was written by a suite that keeps one",
        ),
        (lambda plan: plan.write_text(plan.read_text()[:40]), "cannot be read as the folder's plan"),
        (lambda plan: plan.write_text("[1, 2]"), "cannot be read as the folder's plan (not an object of planned runs)"),
        (lambda plan: plan.write_bytes(os.urandom(4096)), "cannot be read as the folder's plan"),
    ],
    ids=["deleted", "truncated", "a-list", "junk"],
)
def test_a_plan_that_cannot_be_read_is_named_by_every_reader_and_rebuilt_by_a_rerun(
    damage, why, good_results, tmp_path, capsys
):
    """Without its plan a copied record of another seed was averaged in with no message: now every reader refuses
    the folder with one line, and a rerun writes the plan again (its complete runs kept)."""
    import shutil

    import forgetbench
    from forgetbench.benchmark.core.config import ConfigError

    config, good = good_results
    folder = tmp_path / "results"
    shutil.copytree(good, folder)
    damage(folder / "plan.json")
    assert main(["report", str(folder)]) == 2
    assert why in capsys.readouterr().err
    assert main(["table", "zoo", str(folder)]) == 2
    assert why in capsys.readouterr().err
    with pytest.raises(ConfigError, match="plan"):
        forgetbench.load_results(folder).summary()
    assert main(["run", str(config), "--out", str(folder), "--quiet", "--no-report"]) == 0
    assert "0 run(s) executed, 4 skipped" in capsys.readouterr().out
    assert len(forgetbench.load_results(folder).records) == 4


def test_a_rerun_on_fewer_seeds_reads_only_the_seeds_it_asked_for(good_results, tmp_path, capsys):
    """cp -r A F; run --seeds 0 over it: the terminal said 1 seed, report.html and summary.csv 2. Now every reader
    reads the last invocation's runs; the other seed's records stay on disk, named."""
    import shutil

    import forgetbench

    config, good = good_results
    folder = tmp_path / "results"
    shutil.copytree(good, folder)
    assert main(["run", str(config), "--out", str(folder), "--quiet", "--seeds", "0"]) == 0
    printed = capsys.readouterr().out
    assert "1/1" in printed and "2/2" not in printed  # the terminal's table: one seed
    summary = pd.read_csv(folder / "summary.csv")
    assert set(summary.n_seeds) == {1}
    results = forgetbench.load_results(folder)
    assert {r.seed for r in results.records} == {0}
    assert all("not asked for by the last run" in why for _, why in results.skipped)
    assert (folder / "runs" / "split__naive__seed1" / "result.json").exists()  # kept on disk
