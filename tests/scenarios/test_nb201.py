"""NAS-Bench-201's cell space (issue 53, item 4): the cell's arithmetic by hand, which weights a cell uses, the
official benchmark file read without its package (on a small file written here in its format), and the search's
ranking scored against the published accuracies instead of retraining."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from forgetbench.benchmark.core import metrics
from forgetbench.benchmark.core.config import ComponentSpec
from forgetbench.benchmark.core.training import TrainingConfig
from forgetbench.benchmark.data.nb201_table import arch_ops, arch_string, read_accuracies
from forgetbench.benchmark.data.scenarios.base import ScenarioInputs
from forgetbench.benchmark.data.scenarios.nb201 import Cell, NB201Params, build_nb201
from forgetbench.benchmark.run.runner import run
from forgetbench.benchmark.run.spec import RunSpec

TRAINING = TrainingConfig(lr=0.05, momentum=0.9, batch_size=32, eval_batch_size=200)
ARCHS = [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
    "|skip_connect~0|+|none~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|",
    "|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|",
]


def write_benchmark_file(path: Path, accuracies: dict[str, list[float]], dataset: str = "cifar10") -> None:
    """A NAS-Bench-201 benchmark file in the official layout (torch.save of the dict the API's __init__ reads):
    ``accuracies[arch]`` = the ori-test top-1 (%) after the last of 3 epochs, one per seed; earlier epochs differ."""
    infos = {}
    for index, (arch, scores) in enumerate(accuracies.items()):
        seeds = [777, 888, 999][: len(scores)]
        runs = {}
        for seed, score in zip(seeds, scores):
            runs[(dataset, seed)] = {
                "name": dataset,
                "net_state_dict": None,
                "train_acc1es": {0: 10.0, 1: 20.0, 2: 30.0},
                "train_losses": {0: 2.0, 1: 1.5, 2: 1.0},
                "params": 0.1,
                "flop": 10.0,
                "seed": seed,
                "epochs": 3,
                "eval_names": ["ori-test"],
                "eval_acc1es": {"ori-test@0": 1.0, "ori-test@1": 2.0, "ori-test@2": score},
                "eval_losses": {"ori-test@0": 3.0, "ori-test@1": 2.5, "ori-test@2": 1.0},
                "eval_times": {},
            }
        result = {
            "arch_index": index,
            "arch_str": arch,
            "all_results": runs,
            "dataset_seed": {dataset: seeds},
            "clear_net_done": True,
        }
        infos[index] = {"full": result, "less": result}
    torch.save(
        {
            "meta_archs": list(accuracies),
            "arch2infos": infos,
            "evaluated_indexes": list(range(len(accuracies))),
            "total_archs": len(accuracies),
        },
        path,
    )


def test_architecture_strings_round_trip_in_edge_order():
    ops = arch_ops(ARCHS[0])
    assert ops == ("nor_conv_3x3", "nor_conv_3x3", "avg_pool_3x3", "skip_connect", "nor_conv_3x3", "skip_connect")
    assert arch_string(ops) == ARCHS[0]
    with pytest.raises(ValueError, match="one op on each of the edges"):
        arch_ops("|nor_conv_3x3~0|+|none~0|+|none~0|none~1|none~2|")
    with pytest.raises(ValueError, match="op~source"):
        arch_ops("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|")


def test_the_reader_averages_the_last_epoch_over_seeds(tmp_path):
    path = tmp_path / "NAS-Bench-201-v1_1-096897.pth"
    write_benchmark_file(path, {ARCHS[0]: [90.0, 92.0, 94.0], ARCHS[1]: [80.0], ARCHS[2]: [50.0, 60.0]})
    table = read_accuracies(path, "cifar10")
    assert table == pytest.approx({ARCHS[0]: 0.92, ARCHS[1]: 0.80, ARCHS[2]: 0.55})
    with pytest.raises(ValueError, match="holds no full results on cifar100"):
        read_accuracies(path, "cifar100")


def test_the_reader_takes_numpy_scalars_as_the_official_files_hold_them(tmp_path):
    import numpy as np

    path = tmp_path / "nb201.pth"
    write_benchmark_file(path, {ARCHS[0]: [np.float64(90.0), np.float64(94.0)]})
    assert read_accuracies(path) == pytest.approx({ARCHS[0]: 0.92})


def test_the_reader_refuses_what_is_not_the_benchmark_file(tmp_path):
    with pytest.raises(ValueError, match="is not a file"):
        read_accuracies(tmp_path / "missing.pth")
    (tmp_path / "garbage.pth").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="cannot be read as NAS-Bench-201's benchmark file"):
        read_accuracies(tmp_path / "garbage.pth")
    torch.save({"something": 1}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="no meta_archs"):
        read_accuracies(tmp_path / "other.pth")


def test_the_cell_by_hand():
    """skip everywhere: node1 = x, node2 = x + node1 = 2x, node3 = x + node1 + node2 = 4x; average pooling and
    'none' as NAS-Bench-201 defines them."""
    cell = Cell(3).eval()
    x = torch.randn(2, 3, 5, 5)
    assert torch.equal(cell(x, ["skip_connect"] * 6), 4 * x)
    pooled = cell(x, ["none", "none", "none", "avg_pool_3x3", "none", "none"])
    assert torch.allclose(pooled, F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False))
    assert torch.equal(
        cell(x, ["skip_connect", "skip_connect", "skip_connect", "none", "none", "none"]), torch.zeros_like(x)
    )


def nb201_params(**overrides) -> dict:
    base = {
        "dataset": "digits",
        "channels": 4,
        "cells_per_stage": 1,
        "validation_size": 200,
        "eval_size": 100,
        "max_train": 400,
        "search": "random",
        "epochs": 2,
        "turns_per_epoch": 3,
        "steps_per_turn": 3,
        "derive_samples": 3,
    }
    return base | overrides


def test_a_cell_uses_the_weights_of_its_edges_ops_and_the_shared_network():
    scenario = build_nb201(
        NB201Params(**nb201_params(search="fixed", architectures=[ARCHS[2]], turns_per_epoch=None)),
        ScenarioInputs(0, Path(".")),
    )
    used = scenario.tasks[0].used_params
    cell_weights = {n.split(".", 3)[3] for n in used if n.startswith("net.cells.") and ".edges." in n}
    assert cell_weights == {"edges.0_3.nor_conv_3x3.1.weight"}  # its only conv; every other edge is none
    assert {"net.stem.0.weight", "net.classifier.weight"} <= used
    assert not any(".edges.0_1." in n or ".edges.1_2." in n for n in used)


def test_the_ranking_is_scored_against_the_published_accuracies(tmp_path):
    path = tmp_path / "nb201.pth"
    write_benchmark_file(path, {ARCHS[0]: [93.0], ARCHS[1]: [71.0, 73.0], ARCHS[2]: [40.0]})
    params = nb201_params(nb201=str(path), ground_truth={"architectures": ARCHS, "top_k": 1})
    record = run(
        RunSpec("nb", ComponentSpec(name="nb201", params=params), ComponentSpec(name="naive"), 0, TRAINING, "cpu"),
        Path("."),
    )
    assert record.status == "ok", record.error
    truth = record.search.ground_truth
    assert truth.source == "published" and truth.steps is None
    assert truth.standalone_accuracy == pytest.approx([0.93, 0.72, 0.40])
    assert truth.architectures == ["-".join(arch_ops(a)) for a in ARCHS]
    assert record.timing.retrain_seconds is None  # nothing trained alone: no derived retraining, no ground truth
    got = metrics.search_metrics(record)
    assert got["search_tau"] == pytest.approx(metrics.kendall_tau(truth.supernet_accuracy, [0.93, 0.72, 0.40]))
    assert got["regret"] == pytest.approx(
        0.93 - [0.93, 0.72, 0.40][max(range(3), key=lambda i: (truth.supernet_accuracy[i], -i))]
    )
