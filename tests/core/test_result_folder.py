"""The results folder object (``store.ResultFolder``): one run's record and checkpoint, read strictly, written
atomically, a record of another config never taken for the run's own."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from forgetbench.benchmark.core import store
from helpers import make_record


@dataclass
class Spec:
    """The part of a RunSpec the folder reads: its id, its resolved config, the params retired since."""

    run_id: str
    config: dict[str, Any]
    retired: dict[str, Any] = field(default_factory=dict)

    def resolved(self) -> dict[str, Any]:
        return self.config

    def retired_params(self) -> dict[str, Any]:
        return self.retired


def _record(config: dict[str, Any], status: str = "ok"):
    return make_record(
        {
            "scenario": {"label": "s"},
            "strategy": {"label": "naive"},
            "status": status,
            "config": config,
            "accuracy_matrix": [[0.9, 0.5], [0.7, 0.95]],
            "experiences": ["t0", "t1"],
            "init_accuracy": [0.5, 0.5],
        }
    )


def test_a_written_record_reads_back_equal_and_its_files_sit_under_runs(tmp_path):
    folder = store.ResultFolder(tmp_path)
    record = _record({"lr": 0.1})
    path = folder.write(record)
    assert path == tmp_path / "runs" / record.run_id / "result.json" == folder.record_path(record.run_id)
    assert folder.read(record.run_id).to_dict() == record.to_dict()
    assert folder.checkpoint(record.run_id).parent == path.parent
    assert [r.run_id for r in folder.records()] == [record.run_id]
    assert folder.read("nothing_here") is None


def test_complete_only_for_a_finished_run_of_exactly_the_specs_config(tmp_path):
    folder = store.ResultFolder(tmp_path)
    record = _record({"lr": 0.1})
    folder.write(record)
    assert folder.complete(Spec(record.run_id, {"lr": 0.1})) is not None
    assert folder.complete(Spec(record.run_id, {"lr": 0.5})) is None  # another config: rerun, never reuse
    folder.write(_record({"lr": 0.1}, status="failed"))
    assert folder.complete(Spec(record.run_id, {"lr": 0.1})) is None  # a failed run is rerun


def test_set_aside_moves_what_stands_in_the_runs_place_and_keeps_it(tmp_path):
    folder = store.ResultFolder(tmp_path)
    record = _record({"lr": 0.1})
    folder.write(record)
    moved = folder.set_aside(record.run_id)
    assert moved is not None and moved.is_file() and store.SET_ASIDE_DIR in moved.parts
    assert folder.read(record.run_id) is None and folder.set_aside(record.run_id) is None
