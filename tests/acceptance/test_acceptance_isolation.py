"""Real-data acceptance of issue 9: on split MNIST at sparsity 0.1, ExSSNeT learns each task better
than SupSup (higher LA) and both forget nothing."""

from __future__ import annotations


import numpy as np
import pytest

from forgetbench.benchmark.core.config import ComponentSpec, TrainingConfig
from forgetbench.benchmark.run.spec import RunSpec
from forgetbench.benchmark.run.runner import run
from helpers import mnist_root

pytestmark = pytest.mark.slow


def test_exssnet_learning_accuracy_above_supsup_on_split_mnist():
    root = mnist_root()
    training = TrainingConfig(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=128, epochs=1, eval_batch_size=2000)
    scenario = ComponentSpec(
        name="split",
        params={
            "dataset": "mnist",
            "tasks": 5,
            "classes_per_task": 2,
            "widths": [256, 256],
            "max_train_per_task": 2000,
        },
    )
    la = {}
    for name in ("supsup", "exssnet"):
        spec = RunSpec("acceptance", scenario, ComponentSpec(name=name, params={"sparsity": 0.1}), 0, training, "cpu")
        record = run(spec, root)
        assert record.status == "ok", record.error
        R = np.array(record.accuracy_matrix)
        assert np.abs(R[-1] - np.diag(R)).max() <= 1e-6, f"{name} forgot: {R}"
        la[name] = float(np.diag(R).mean())
    assert la["exssnet"] > la["supsup"], la
