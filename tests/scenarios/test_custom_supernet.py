"""Your own supernet (issue 53): a user's weight-sharing network with ``forward(x, arch)``, its space declared in
YAML or by reference, searched by the ENAS engine (random, controller, fixed rounds), with architectures named by
their options, err1 / err2 and a K-architecture ground truth (tau, precision@K, regret) shared by the strategies."""

from __future__ import annotations

import contextlib

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from forgetbench.benchmark.core import metrics
from forgetbench.benchmark.core.config import ComponentSpec
from forgetbench.benchmark.core.training import TrainingConfig
from forgetbench.benchmark.data.scenarios.base import ScenarioInputs
from forgetbench.benchmark.data.scenarios.custom_supernet import (
    CustomSupernetParams,
    Space,
    build_custom_supernet,
)
from forgetbench.benchmark.run import trained_alone
from forgetbench.benchmark.run.runner import run
from forgetbench.benchmark.run.spec import RunSpec
from byo_fixtures import tiny_supernet_params
from helpers import REPO, make_record, run_command

TRAINING = TrainingConfig(lr=0.1, batch_size=32, eval_batch_size=256)
EXAMPLE = REPO / "tests" / "example_supernet"


def params(**overrides) -> dict:
    return (
        tiny_supernet_params(search="random", epochs=2, turns_per_epoch=3, steps_per_turn=5, derive_samples=4)
        | overrides
    )


def spec(strategy: str = "naive", seed: int = 0, **overrides) -> RunSpec:
    return RunSpec(
        "own",
        ComponentSpec(name="custom_supernet", params=params(**overrides)),
        ComponentSpec(name=strategy),
        seed,
        TRAINING,
        "cpu",
    )


def build(**overrides):
    return build_custom_supernet(CustomSupernetParams(**params(**overrides)), ScenarioInputs(0, Path(".")))


def test_space_maps_names_to_indices_and_names_what_is_wrong():
    space = Space([["c3", "c5", "skip"], ["c3", "skip"]])
    assert space.size == 6
    assert space.index(["skip", "c3"], "here") == (2, 0)
    assert space.names((1, 1)) == ("c5", "skip")
    assert space.all() == [(a, b) for a in range(3) for b in range(2)]
    with pytest.raises(ValueError, match=r"here: decision 1 has no option 'c5' \(allowed: \['c3', 'skip'\]\)"):
        space.index(["c3", "c5"], "here")
    with pytest.raises(ValueError, match="has 1 decisions, the space 2"):
        space.index(["c3"], "here")


def test_each_architecture_uses_exactly_the_weights_its_options_pick():
    scenario = build(search="fixed", architectures=[["lin", "lin"], ["wide", "lin"], ["skip", "skip"]])
    used = [task.used_params for task in scenario.tasks]
    trunk = {"net.inp.weight", "net.inp.bias", "net.head.weight", "net.head.bias"}

    def op(decision: int, name: str) -> set[str]:
        return {f"net.blocks.{decision}.{name}.0.weight", f"net.blocks.{decision}.{name}.0.bias"}

    assert used[0] == trunk | op(0, "lin") | op(1, "lin")
    assert used[1] == trunk | op(0, "wide") | op(1, "lin")
    assert used[2] == trunk  # skip, skip: the shared input layer and classifier only
    assert [t.name for t in scenario.tasks] == ["arch0(lin-lin)", "arch1(wide-lin)", "arch2(skip-skip)"]


def test_fixed_search_trains_the_list_in_rounds_one_task_per_architecture():
    """Rounds, not new tasks: 3 architectures x 2 epochs is 6 turns over 3 tasks, err1 / err2 one row per round
    (200 steps a turn: the tiny net needs ~100 to leave chance level, and a run at chance is `collapsed`)."""
    listed = [["lin", "lin"], ["wide", "skip"], ["skip", "lin"]]
    record = run(spec(search="fixed", architectures=listed, epochs=2, steps_per_turn=200), Path("."))
    assert record.status == "ok", record.error
    assert record.experiences == ["arch0(lin-lin)", "arch1(wide-skip)", "arch2(skip-lin)"]
    assert [t.task for t in record.turn_accuracy] == [0, 1, 2, 0, 1, 2]
    assert record.epoch_architectures == [[0, 1, 2], [0, 1, 2]]
    assert np.shape(record.err1) == np.shape(record.err2) == (2, 3)
    assert record.architecture_names == ["lin-lin", "wide-skip", "skip-lin"]
    # err1 is the error right after each turn: 1 - the accuracy the runner recorded there
    assert record.err1[1] == pytest.approx([1 - t.accuracy for t in record.turn_accuracy[3:]])
    assert record.search.derived.cell in {"lin-lin", "wide-skip", "skip-lin"}  # derived among the list
    # an accuracy row (every listed architecture on the evaluation data) at each round's end: err2 is its error
    assert np.shape(record.accuracy_matrix) == (2, 3)
    assert record.err2 == pytest.approx(1 - np.asarray(record.accuracy_matrix))
    one_round = run(spec(search="fixed", architectures=listed, epochs=1, steps_per_turn=200), Path("."))
    assert np.shape(one_round.accuracy_matrix) == (3, 3)  # one round: a row after every turn, a square matrix


def test_a_space_by_reference_samples_only_what_it_allows():
    scenario = build(choices=None, space="byo_fixtures:NoZeroFirst", search="fixed")
    assert len(scenario.tasks) == 6 and not any("(skip-" in t.name for t in scenario.tasks)  # its all(): 6 of 9
    record = run(spec(choices=None, space="byo_fixtures:NoZeroFirst", epochs=3, turns_per_epoch=4), Path("."))
    assert record.status == "ok", record.error
    assert len(record.architecture_names) >= 3
    assert not any(name.startswith("skip-") for name in record.architecture_names)


def test_ground_truth_is_computed_once_for_the_suite_and_scores_the_ranking(tmp_path, monkeypatch):
    retrained = []
    original = trained_alone._retrain
    monkeypatch.setattr(trained_alone, "RETRAINED_CACHE", {})
    monkeypatch.setattr(
        trained_alone, "_retrain", lambda *a: retrained.append(a[3].cache_key is not None) or original(*a)
    )
    gt = {"architectures": 4, "steps": 20, "top_k": 2}
    naive = run(spec("naive", ground_truth=gt, retrain_steps=10), Path("."), cache_dir=tmp_path)
    assert retrained == [False, True, True, True, True]  # the derived architecture, then the 4 of the ground truth
    monkeypatch.setattr(trained_alone, "RETRAINED_CACHE", {})  # another process: only the results folder is shared
    wpl = run(spec("wpl", ground_truth=gt, retrain_steps=10), Path("."), cache_dir=tmp_path)
    assert retrained[5:] == [False]  # wpl retrained its own derived architecture only
    assert naive.status == wpl.status == "ok"
    a, b = naive.search.ground_truth, wpl.search.ground_truth
    assert a.architectures == b.architectures and len(set(a.architectures)) == 4
    assert a.standalone_accuracy == b.standalone_accuracy  # the same ground truth for both strategies
    got = metrics.search_metrics(naive)
    assert got["search_tau"] == pytest.approx(metrics.kendall_tau(a.supernet_accuracy, a.standalone_accuracy))
    assert got["regret"] == pytest.approx(
        max(a.standalone_accuracy) - a.standalone_accuracy[int(np.argmax(a.supernet_accuracy))]
    )


def test_retrainings_split_the_search_data_once_and_score_as_when_each_split_it_again(monkeypatch):
    """Each retraining rebuilds the run's scenario (its initial weights); inside the run its data split is made once
    and handed to every rebuild, and the scores are those that splitting again gives."""
    from forgetbench.benchmark.data.scenarios import search_splits
    from forgetbench.benchmark.run import runner

    splits: list[int] = []
    original = search_splits._split
    monkeypatch.setattr(search_splits, "_split", lambda *a: splits.append(a[1].seed) or original(*a))
    monkeypatch.setattr(trained_alone, "RETRAINED_CACHE", {})
    gt = {"architectures": 4, "steps": 20}
    once = run(spec("naive", ground_truth=gt, retrain_steps=10), Path(".")).to_dict()
    assert splits == [0, 0]  # the run's scenario, then one split for its 5 retrainings
    splits.clear()
    monkeypatch.setattr(trained_alone, "RETRAINED_CACHE", {})
    monkeypatch.setattr(runner, "search_data_reused", contextlib.nullcontext)
    again = run(spec("naive", ground_truth=gt, retrain_steps=10), Path(".")).to_dict()
    assert splits == [0] * 6
    for record in (once, again):
        for key in ("timing", "started_at", "finished_at"):
            record.pop(key)
    assert once == again


def test_ground_truth_metrics_by_hand():
    """supernet [0.3, 0.1, 0.2] against standalone [0.5, 0.7, 0.6]: every pair is discordant (tau = -1); the search's
    pick (0.3, the first) is the truly worst: regret 0.7 - 0.5 = 0.2; its top-1 misses the true top-1 (P@1 = 0)."""
    record = make_record(
        search={
            "kind": "random",
            "ground_truth": {
                "architectures": ["a", "b", "c"],
                "top_k": 1,
                "supernet_accuracy": [0.3, 0.1, 0.2],
                "standalone_accuracy": [0.5, 0.7, 0.6],
            },
        }
    )
    got = metrics.search_metrics(record)
    assert got["search_tau"] == pytest.approx(-1.0)
    assert got["regret"] == pytest.approx(0.2)
    assert got["precision_at_k"] == 0.0


def test_controller_search_on_the_example_supernet_reduced(monkeypatch):
    """configs/example_supernet.yaml, reduced: the SPOS example package, controller search, names and ground truth."""
    root = os.environ.get("FORGETBENCH_DATA")
    if not root or not (Path(root) / "fashion_mnist").exists():
        pytest.skip("Fashion-MNIST is not under $FORGETBENCH_DATA (CI sets it to ../shared/data)")
    monkeypatch.syspath_prepend(str(EXAMPLE))
    suite = yaml.safe_load((REPO / "configs" / "example_supernet.yaml").read_text())
    scenario = suite["scenarios"][0]["params"] | {
        "epochs": 2,
        "turns_per_epoch": 3,
        "steps_per_turn": 5,
        "max_train": 1000,
        "validation_size": 300,
        "eval_size": 100,
        "max_test": 200,
        "derive_samples": 3,
        "retrain_steps": 5,
        "controller": {"steps_per_epoch": 3},
        "ground_truth": {"architectures": 3, "steps": 5},
    }
    training = TrainingConfig(**suite["training"] | {"eval_batch_size": 500})
    for entry in suite["strategies"]:
        one = RunSpec(
            "ex", ComponentSpec(name="custom_supernet", params=scenario), ComponentSpec(**entry), 0, training, "cpu"
        )
        record = run(one, Path(root))
        assert record.status == "ok", (entry["name"], record.error)
        assert record.search.kind == "controller" and len(record.search.rewards) == 2
        assert all(set(name.split("-")) <= {"c3", "c5", "skip"} for name in record.architecture_names)
        assert len(record.search.ground_truth.standalone_accuracy) == 3


@pytest.mark.slow  # the CLI in a fresh interpreter: 10-60 s, for the full tier (make test), not the inner loop (make test-fast)
def test_own_supernet_in_a_folder_outside_the_checkout_cli_and_api_agree(tmp_path):
    """The user's module and config in their own folder: `forgetbench run` from there and the Python API give the
    same numbers."""
    folder = tmp_path / "my_nas"
    folder.mkdir()
    (folder / "my_supernet.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            class Net(nn.Module):
                def __init__(self, choices, input_shape, num_classes):
                    super().__init__()
                    self.stem = nn.Linear(input_shape[0], 16)
                    self.ops = nn.ModuleList(nn.ModuleDict({o: nn.Linear(16, 16) for o in c if o != "skip"}) for c in choices)
                    self.head = nn.Linear(16, num_classes)

                def forward(self, x, arch):
                    h = torch.relu(self.stem(x))
                    for ops, name in zip(self.ops, arch):
                        h = h if name == "skip" else torch.relu(ops[name](h))
                    return self.head(h)

            def splits(seed):
                g = torch.Generator().manual_seed(seed)
                def split(n):
                    x = torch.randn(n, 6, generator=g)
                    return x, (x[:, 0] + x[:, 1] > 0).long()
                return {"train": split(400), "test": split(200)}
            """
        )
    )
    suite = {
        "name": "mine",
        "seeds": [0],
        "device": "cpu",
        "training": {"optimizer": "sgd", "lr": 0.1, "batch_size": 32, "eval_batch_size": 200},
        "scenarios": [
            {
                "name": "custom_supernet",
                "params": {
                    "model": "my_supernet:Net",
                    "choices": [["a", "b", "skip"], ["a", "skip"]],
                    "data": "my_supernet:splits",
                    "validation_size": 100,
                    "search": "random",
                    "epochs": 2,
                    "turns_per_epoch": 3,
                    "steps_per_turn": 4,
                    "derive_samples": 3,
                    "ground_truth": {"architectures": 3, "steps": 10},
                },
            }
        ],
        "strategies": [{"name": "naive"}, {"name": "wpl"}],
    }
    (folder / "suite.yaml").write_text(yaml.safe_dump(suite))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(REPO)}
    run_command(
        [
            sys.executable,
            "-m",
            "forgetbench.benchmark.front.cli",
            "run",
            "--no-report",
            "suite.yaml",
            "--out",
            "cli",
            "--quiet",
        ],
        cwd=folder,
        env=env,
    )
    api = subprocess.run(
        [
            sys.executable,
            "-c",
            "import forgetbench; r = forgetbench.run_suite('suite.yaml', out='api', progress=False); print(r.exit_code)",
        ],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert api.returncode == 0 and api.stdout.strip().endswith("0"), api.stderr[-2000:]
    for strategy in ("naive", "wpl"):
        a, b = (
            json.loads(next((folder / out).glob(f"runs/*{strategy}*/result.json")).read_text())
            for out in ("cli", "api")
        )
        assert a["status"] == b["status"] == "ok"
        for key in ("err1", "err2", "architecture_names"):
            assert a[key] == b[key], key
        assert a["search"]["ground_truth"] == b["search"]["ground_truth"]


def test_the_report_names_each_derived_architecture():
    from forgetbench.reports import frames
    from forgetbench.reports.views import derived_rows as _derived_rows

    def record(strategy, seed, cell, test, retrained):
        derived = {"architecture": [0, 1], "cell": cell, "test_accuracy": test}
        if retrained is not None:
            derived["retrained"] = {"steps": 5, "test_accuracy": retrained}
        return make_record(
            strategy={"name": strategy, "params": {}}, seed=seed, search={"kind": "controller", "derived": derived}
        )

    records = [record("wpl", 1, "c5-skip", 0.5, None), record("naive", 0, "c3-c3", 0.25, 0.875)]
    frame = frames.derived_frame(records, records[0].scenario.name)
    assert frame[["strategy", "seed", "architecture"]].values.tolist() == [["naive", 0, "c3-c3"], ["wpl", 1, "c5-skip"]]
    rows = _derived_rows(frame)
    assert [(r["test"], r["retrained"], r["score"]) for r in rows] == [
        ("25.0%", "87.5%", "accuracy"),
        ("50.0%", "–", "accuracy"),
    ]


def test_the_example_config_is_valid_with_its_package_importable(monkeypatch):
    from forgetbench.benchmark.core.config import load_config

    monkeypatch.syspath_prepend(str(EXAMPLE))
    suite = load_config(REPO / "configs" / "example_supernet.yaml")
    assert [s.name for s in suite.strategies] == ["naive", "ewc", "wpl"] and suite.seeds == [0, 1, 2]


def test_the_report_pools_each_named_architectures_forgetting_over_its_turns():
    """Turns of a-b gap 0.1 (seed 0), c-d 0.0 (seeds 0 and 1): a-b first with 1 turn, c-d 2. Each epoch's last turn
    (a-b on both seeds) is left out: nothing trains after it, so its gap is 0 by definition (a real search's; these
    toy records give it 0.2 and 0.3 to show it is dropped, not averaged)."""
    from forgetbench.reports import frames

    def record(seed, tasks, err1, err2):
        return make_record(
            seed=seed,
            status="ok",
            accuracy_matrix=[],
            architecture_names=["a-b", "c-d"],
            epoch_architectures=[tasks],
            err1=[err1],
            err2=[err2],
            search={"error": "validation error (1 - accuracy)"},
        )

    records = [record(0, [0, 1, 0], [0.2, 0.3, 0.25], [0.3, 0.3, 0.45]), record(1, [1, 0], [0.5, 0.1], [0.5, 0.4])]
    gaps = frames.named_gap_frame(records, records[0].scenario.name)
    assert len(gaps) == 3 and sorted(gaps.architecture) == ["a-b", "c-d", "c-d"]
    top = frames.most_forgotten(gaps)
    assert top.architecture.tolist() == ["a-b", "c-d"] and top.turns.tolist() == [1, 2]
    assert top.gap.tolist() == pytest.approx([0.1, 0.0])
