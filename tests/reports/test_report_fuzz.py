"""The report on damaged folders: fuzzed result files never give a traceback, and integrity mutations never a wrong
summary (Hypothesis; `FORGETBENCH_FUZZ_EXAMPLES=2000` for the long run)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from report_records import CURVES, basic_records, write_folder
from forgetbench.reports import summary as S


@pytest.mark.slow  # a fuzzer over many mutated folders: 10-60 s, for the full tier (make test), not the inner loop (make test-fast)
def test_fuzzed_result_files_never_give_a_traceback(tmp_path):
    # Result files mutated every way a crash, an edit or another version can leave them: the report and
    # load_results skip what they cannot read, with the reason, and never raise. (A long run of this fuzzer:
    # FORGETBENCH_FUZZ_EXAMPLES=2000.)
    import contextlib
    import io
    import json
    import os

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from forgetbench import load_results
    from forgetbench.benchmark.front.cli import main

    records = [dict(r, curves=CURVES) for r in basic_records()]  # curves: what a lean read validates on its own
    junk = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-10, 10**12),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=5),
        st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=3),
        st.lists(st.lists(st.floats(-1, 2), min_size=1, max_size=3), max_size=3),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    )
    mutation = st.tuples(
        st.sampled_from(["drop", "replace", "nested", "truncate", "huge", "schema", "keep"]),
        st.sampled_from(sorted(records[0])),
        junk,
        st.floats(0, 1),
    )

    @settings(
        max_examples=int(os.environ.get("FORGETBENCH_FUZZ_EXAMPLES", 60)),
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(mutation, min_size=len(records), max_size=len(records)))
    def check(mutations):
        folder = tmp_path / "fuzz"
        for path in folder.glob("runs/*/result.json"):
            path.unlink()
        for record_, (how, key, value, where) in zip(records, mutations):
            data = json.loads(json.dumps(record_))
            if how == "drop":
                data.pop(key, None)
            elif how == "replace":
                data[key] = value
            elif how == "nested" and isinstance(data.get(key), dict) and data[key]:
                data[key][sorted(data[key])[0]] = value
            elif how == "huge":
                data["accuracy_matrix"] = [[0.5] * 400] * 400
            elif how == "schema":
                data["schema_version"] = value
            text = json.dumps(data, allow_nan=True)
            if how == "truncate":
                text = text[: int(where * len(text))]
            path = folder / "runs" / record_["run_id"] / "result.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        loop = folder / "runs" / "loop"
        if not loop.is_symlink():
            loop.symlink_to(loop)  # a symlink loop among the run folders
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            status = main(["report", str(folder)])
            load_results(folder)
            S.load_records(folder, figure_runs=0)  # every record read lean, as beyond a report's figure sample
        assert status in (0, 2) and "Traceback" not in printed.getvalue()

    check()


def _integrity_mutation(run: Path, how: str) -> bool:
    """Damage run folder ``run`` as ``how`` says; True when the run's own record must still count (a stray copy
    elsewhere is refused and leaves it be), False when the run must be refused."""
    import os

    path = run / "result.json"
    data = json.loads(path.read_text())
    other = dict(data, accuracy_matrix=[[0.11, 0.12], [0.13, 0.14]], experiences=["task0", "task1"])
    if how == "stray":
        (run.parent / f"zz_{run.name}").mkdir()
        (run.parent / f"zz_{run.name}" / "result.json").write_text(json.dumps(other))
        return True
    if how == "twin":
        twin = dict(other, run_id=data["run_id"] + "_twin")
        (run.parent / twin["run_id"]).mkdir()
        (run.parent / twin["run_id"] / "result.json").write_text(json.dumps(twin))
        return False
    if how in ("dir", "dangling", "loop", "fifo", "missing"):
        path.unlink()
        {
            "dir": path.mkdir,
            "dangling": lambda: path.symlink_to(run / "gone.json"),
            "loop": lambda: path.symlink_to(path),
            "fifo": lambda: os.mkfifo(path),
            "missing": lambda: None,
        }[how]()
        return False
    text = {
        "nan": lambda: json.dumps(dict(data, accuracy_matrix=[[0.123456789, 0.5], [0.5, 0.5]])).replace(
            "0.123456789", "NaN"
        ),
        "inf_timing": lambda: json.dumps(dict(data, timing={**data["timing"], "train_seconds": 1e999})),
        "wide": lambda: json.dumps(dict(data, accuracy_matrix=[[0.5] * 7] * 7)),
        "runid": lambda: json.dumps(dict(data, run_id=data["run_id"] + "_elsewhere")),
        "bom": lambda: "\ufeff" + json.dumps(data),
    }[how]()
    path.write_text(text)
    return False


INTEGRITY_MUTATIONS = ["stray", "twin", "dir", "dangling", "loop", "fifo", "missing", "nan", "inf_timing", "wide"]
INTEGRITY_MUTATIONS += ["runid", "bom"]


@pytest.mark.slow  # a fuzzer over many mutated folders: 10-60 s, for the full tier (make test), not the inner loop (make test-fast)
@pytest.mark.timeout(600)  # 2,000 folders (FORGETBENCH_FUZZ_EXAMPLES) take far longer: that long run is by hand
def test_fuzzed_integrity_mutations_never_give_a_wrong_summary(tmp_path):
    """Duplicates, stray copies, shape mismatches, NaN and Infinity, special files and links, on several runs at
    once: the report and load_results never raise, never change an original file, and the summary over what they
    keep equals the summary of a clean folder without the runs that had to be refused (issue 67: a stray copy
    moved naive's ACC from 87.1 to 47.1 with no word). Long run: FORGETBENCH_FUZZ_EXAMPLES=2000."""
    import contextlib
    import io
    import os
    import shutil

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from forgetbench import load_results
    from forgetbench.benchmark.front.cli import main

    records = basic_records()
    clean = write_folder(tmp_path / "clean", records)
    ids = sorted(p.name for p in (clean / "runs").iterdir())

    @settings(
        max_examples=int(os.environ.get("FORGETBENCH_FUZZ_EXAMPLES", 25)),
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.dictionaries(st.sampled_from(ids), st.sampled_from(INTEGRITY_MUTATIONS), min_size=1, max_size=3))
    def check(mutations):
        folder, expected = tmp_path / "fuzz", tmp_path / "expected"
        for f in (folder, expected):
            shutil.rmtree(f, ignore_errors=True)
        shutil.copytree(clean, folder)
        shutil.copytree(clean, expected)
        for run_id, how in mutations.items():
            if not _integrity_mutation(folder / "runs" / run_id, how):
                shutil.rmtree(expected / "runs" / run_id)
        originals = {p: p.read_bytes() for p in folder.glob("runs/*/*") if p.is_file() and not p.is_symlink()}
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            status = main(["report", str(folder)])
            kept = load_results(folder)
            summary = kept.summary() if kept.records else None
        assert status in (0, 2) and "Traceback" not in printed.getvalue(), printed.getvalue()
        assert {p: p.read_bytes() for p in originals} == originals
        wanted = load_results(expected)
        if not wanted.records:
            assert summary is None
        else:
            pd.testing.assert_frame_equal(summary, wanted.summary())

    check()
