"""docs/howto/torchvision-benchmark.md runs as written: its factory module and suite, from the page's own code
blocks, on the Fashion-MNIST files under the data root (a smaller subsample, one seed, two strategies)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from helpers import REPO

PAGE = REPO / "docs" / "howto" / "torchvision-benchmark.md"
DATA = Path(os.environ.get("FORGETBENCH_DATA", REPO.parent / "shared" / "data"))


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", PAGE.read_text(), flags=re.S)


@pytest.mark.slow  # a CNN on Fashion-MNIST through Avalanche: 20-40 s, for the full tier
@pytest.mark.skipif(
    not (DATA / "fashion_mnist" / "FashionMNIST" / "raw").is_dir(),
    reason="Fashion-MNIST is not under the data root (FORGETBENCH_DATA or ../shared/data)",
)
def test_the_pages_factories_and_suite_run_as_written(tmp_path, monkeypatch, capsys):
    from forgetbench.benchmark.front.cli import main

    (module,) = _blocks("python")
    (tmp_path / "fashion_tasks.py").write_text(module)
    suite = yaml.safe_load(_blocks("yaml")[0])
    params = suite["scenarios"][0]["params"]
    assert params["benchmark"] == "fashion_tasks:make_benchmark" and params["model"] == "fashion_tasks:make_model"
    # smaller than the page's (the same code): 100 / 40 images a class, two epochs, one seed, naive and ewc
    params["benchmark_params"] = {"train_per_class": 100, "test_per_class": 40}
    suite |= {"seeds": [0], "device": "cpu", "strategies": [{"name": "naive"}, {"name": "ewc"}]}
    suite["training"]["epochs"] = 2
    config = tmp_path / "fashion.yaml"
    config.write_text(yaml.safe_dump(suite))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    assert main(["validate", str(config), "--data-root", str(DATA), "--show-params"]) == 0
    shown = capsys.readouterr().out
    assert "trunk" in shown and "classifier.classifiers.0" in shown
    assert main(["run", str(config), "--out", str(out), "--data-root", str(DATA), "--quiet", "--no-report"]) == 0

    import forgetbench

    results = forgetbench.load_results(out)
    assert [r.status for r in results.records] == ["ok", "ok"]  # BatchNorm with momentum=None: not collapsed
    record = results.records[0]
    assert len(record.experiences) == 5 and len(record.accuracy_matrix) == 5
    learned = [record.accuracy_matrix[i][i] for i in range(5)]  # each task right after its training
    assert sum(learned) / 5 > 0.75, learned  # well above chance (0.5): the BatchNorm statistics are the model's
