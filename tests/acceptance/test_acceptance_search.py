"""Real-data acceptance: the ENAS-style controller search on the MNIST supernet of configs/nas_search.yaml
(one seed, naive): the controller learns (its reward rises), the ground truth covers the whole space,
and the architecture the search ships is a good one."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from forgetbench.benchmark.core.config import ComponentSpec, TrainingConfig
from forgetbench.benchmark.run.spec import RunSpec
from forgetbench.benchmark.run.runner import run
from helpers import REPO, mnist_root
from forgetbench.benchmark.core.metrics import search_metrics

pytestmark = [pytest.mark.slow, pytest.mark.effect]


def test_controller_search_on_mnist(tmp_path):
    suite = yaml.safe_load((REPO / "configs" / "nas_search.yaml").read_text())
    controller = next(s for s in suite["scenarios"] if s["params"]["search"] == "controller")
    spec = RunSpec(
        "search_acceptance",
        ComponentSpec(name="supernet_search", params=controller["params"]),
        ComponentSpec(name="naive"),
        0,
        TrainingConfig(**suite["training"]),
        "cpu",
    )
    record = run(spec, mnist_root(), cache_dir=tmp_path)
    assert record.status == "ok", record.error
    search = record.search
    truth = np.array(search.ground_truth.standalone_accuracy)
    assert len(truth) == 81 and len(search.ground_truth.supernet_accuracy) == 81
    chosen = int(np.argmax(search.ground_truth.supernet_accuracy))  # the search ships the best on the shared weights
    rewards = [float(np.mean(r)) for r in search.rewards]
    values = search_metrics(record)
    print(
        f"measured: rewards {np.round(rewards, 3)}, best-5 truth min {np.sort(truth)[-5:].min():.4f}, chosen {truth[chosen]:.4f}, regret {values['regret']:.4f}"
    )
    assert rewards[-1] > rewards[0] + 0.1, f"controller reward per epoch {np.round(rewards, 3)}: it did not learn"
    assert np.sort(truth)[-5:].min() > 0.85, "the ground truth's best architectures should learn MNIST in 300 steps"
    assert truth[chosen] > 0.8 and values["regret"] < 0.1, values
    assert len(list((tmp_path / "ground_truth").glob("*.json"))) == 81  # one file per architecture trained alone
