"""`loggers:` writes each run's per-experience accuracies and forgetting curves to CSV, TensorBoard
event files and MLflow's local file store, read back here with each package's own reader."""

from __future__ import annotations

import csv
import json
import os

import pytest

from forgetbench.benchmark.front.cli import main
from forgetbench.benchmark.core.record import RunRecord
from forgetbench.benchmark.run.tracking import metric_name as tracking_name
from conftest import tiny_suite


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    pytest.importorskip("tensorboard", reason="the tensorboard package is not installed (make install adds it)")
    pytest.importorskip("mlflow", reason="mlflow(-skinny) is not installed (make install adds it)")
    import yaml

    folder = tmp_path_factory.mktemp("tracked")
    suite = tiny_suite(
        seeds=[0, 1], loggers=["csv", "tensorboard", "mlflow"], training=tiny_suite()["training"] | {"eval_every": 5}
    )
    (folder / "suite.yaml").write_text(yaml.safe_dump(suite))
    out = folder / "out"
    assert main(["run", str(folder / "suite.yaml"), "--out", str(out), "--quiet", "--no-report"]) == 0
    records = {p.parent.name: json.loads(p.read_text()) for p in out.glob("runs/*/result.json")}
    assert len(records) == 2
    return out, records


def test_csv_holds_every_matrix_entry_and_curve_point(tracked):
    out, records = tracked
    for run_id, record in records.items():
        rows = list(csv.DictReader((out / "logs" / "csv" / f"{run_id}.csv").open()))
        matrix = [r for r in rows if r["kind"] == "matrix"]
        curve = [r for r in rows if r["kind"] == "curve"]
        R = record["accuracy_matrix"]
        assert len(matrix) == sum(len(row) for row in R) and len(curve) == len(record["curves"]) > 0
        for r in matrix:
            assert float(r["accuracy"]) == pytest.approx(R[int(r["step"])][int(r["eval_exp"])])


def test_tensorboard_event_files_parse_with_tensorboards_reader(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, records = tracked
    for run_id, record in records.items():
        events = EventAccumulator(str(out / "logs" / "tensorboard" / run_id))
        events.Reload()
        tags = events.Tags()["scalars"]
        name = tracking_name(RunRecord.from_dict(record), 0)
        assert f"accuracy/{name}" in tags and f"curve/{name}" in tags and "final/ACC" in tags
        values = [(e.step, e.value) for e in events.Scalars(f"accuracy/{name}")]
        assert values == [(i, pytest.approx(row[0])) for i, row in enumerate(record["accuracy_matrix"])]


def test_mlflow_file_store_holds_one_run_per_forgetbench_run(tracked):
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    out, records = tracked
    client = MlflowClient(tracking_uri=(out / "mlruns").resolve().as_uri())
    experiment = client.get_experiment_by_name("tiny")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == set(records)
    for run_id, record in records.items():
        run = runs[run_id]
        assert run.data.params["seed"] == str(record["seed"]) and run.info.status == "FINISHED"
        name = tracking_name(RunRecord.from_dict(record), 1)
        history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, f"accuracy.{name}"))
        assert history == [(i, pytest.approx(row[1])) for i, row in enumerate(record["accuracy_matrix"])]


def test_a_logger_whose_package_is_missing_is_a_config_error(monkeypatch, write_suite, tmp_path, capsys):
    from forgetbench.benchmark.core import config

    monkeypatch.setitem(config.TRACKER_PACKAGES, "mlflow", "no_such_mlflow_package")
    status = main(["run", str(write_suite(tiny_suite(loggers=["csv", "mlflow"]))), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 2 and "loggers[1]: 'mlflow' needs the no_such_mlflow_package package" in err
    assert "forgetbench[tracking]" in err and "Traceback" not in err and not (tmp_path / "out").exists()


def test_a_failing_tracker_is_reported_and_costs_no_result(monkeypatch, write_suite, tmp_path, capsys):
    from forgetbench.benchmark.run import tracking

    def broken(out, record):
        raise OSError("disk full")

    monkeypatch.setattr(tracking, "_csv", broken)
    out = tmp_path / "out"
    assert (
        main(["run", str(write_suite(tiny_suite(loggers=["csv"]))), "--out", str(out), "--quiet", "--no-report"]) == 0
    )
    assert "csv logger failed for split__naive__seed0: OSError: disk full" in capsys.readouterr().out
    assert json.loads((out / "runs" / "split__naive__seed0" / "result.json").read_text())["status"] == "ok"
