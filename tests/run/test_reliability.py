"""Issue 34's defects (found as new and as hostile users), each by behaviour; the config-error cases are rows
of the bad-input battery (``tests/*/test_bad_*.py``, its rules in ``tests/bad_input.py``)."""

from __future__ import annotations

import html as html_module
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from forgetbench.benchmark.front.cli import main
from conftest import tiny_suite
from helpers import REPO, mnist_root, run_command

BYO = Path(__file__).resolve().parents[1] / "byo_fixtures.py"


def _console() -> list[str]:
    script = Path(sys.executable).with_name("forgetbench")
    return [str(script)] if script.exists() else [sys.executable, "-m", "forgetbench.benchmark.front.cli"]


# --- 3. --out naming a file, from the Python API -------------------------------------------------------


def test_run_suite_with_out_a_file_raises_config_error_and_writes_nothing(tmp_path):
    from forgetbench.benchmark.front.api import run_suite
    from forgetbench.benchmark.core.config import ConfigError

    taken = tmp_path / "results.txt"
    taken.write_text("mine")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        run_suite(tiny_suite(), taken, progress=False)
    assert taken.read_text() == "mine" and sorted(tmp_path.iterdir()) == [taken]


# --- 5. the report's rerun command reruns; a complete suite reruns without its data --------------------


@pytest.mark.slow  # reruns the suite through its printed shell command: fresh interpreters, 12 s: for the full tier, not the inner loop
def test_the_reports_rerun_command_reruns_the_suite_as_printed(tmp_path):
    root = mnist_root()
    suite = tiny_suite(
        scenarios=[
            {"name": "split", "params": {"dataset": "mnist", "tasks": 2, "widths": [8], "max_train_per_task": 64}}
        ]
    )
    config = tmp_path / "conf" / "suite.yaml"
    config.parent.mkdir()
    config.write_text(yaml.safe_dump(suite))
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out), "--quiet", "--data-root", str(root)]) == 0
    html = (out / "report.html").read_text()
    command = html_module.unescape(
        re.search(r"<code>((?:PYTHONPATH=\S+ )?forgetbench run [^<]*)</code>", html).group(1)
    )
    assert f"--data-root {root}" in command

    (out / "runs" / "split__naive__seed0" / "result.json").unlink()  # one run to redo
    env = {k: v for k, v in os.environ.items() if k not in ("FORGETBENCH_DATA", "PYTHONPATH")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = run_command(
        ["bash", "-c", command + " --quiet --no-report"],
        cwd=elsewhere,
        env=env,
    )
    assert "1 run(s) executed, 0 skipped" in done.stdout
    assert json.loads((out / "runs" / "split__naive__seed0" / "result.json").read_text())["status"] == "ok"


def test_a_complete_suite_reruns_without_its_data(tmp_path, capsys):
    root = mnist_root()
    suite = tiny_suite(
        scenarios=[
            {"name": "split", "params": {"dataset": "mnist", "tasks": 2, "widths": [8], "max_train_per_task": 64}}
        ]
    )
    config = tmp_path / "suite.yaml"
    config.write_text(yaml.safe_dump(suite))
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out), "--quiet", "--no-report", "--data-root", str(root)]) == 0
    capsys.readouterr()
    no_data = tmp_path / "no-data"  # the data check used to run first: "dataset 'mnist' not found under ..."
    assert (
        main(
            [
                "run",
                str(out / "suite.yaml"),
                "--out",
                str(out),
                "--quiet",
                "--no-report",
                "--data-root",
                str(no_data),
                "--executor",
                "process",
            ]
        )
        == 0
    )
    assert "0 run(s) executed, 1 skipped" in capsys.readouterr().out
    assert not no_data.exists()


# --- 7. runs that leave some tasks at chance are flagged -------------------------------------------------


def _task(name: str, labels: list[int]):
    from forgetbench.benchmark.data.scenarios.base import Task

    y = torch.tensor(labels)
    return Task(name, 0, y[:, None].float(), y, y[:, None].float(), y, frozenset(), 2)


def test_tasks_at_chance_hand_computed():
    from forgetbench.benchmark.train.harness import chance_message, tasks_at_chance

    # 100 test samples each, half of each label: majority 0.5, margin 2 * sqrt(0.25 / 100) = 0.1
    tasks = [_task(f"t{j}", [0] * 50 + [1] * 50) for j in range(3)]
    matrix = [[0.95, 0.5, 0.5], [0.80, 0.55, 0.5], [0.59, 0.61, 0.97]]
    assert tasks_at_chance(matrix[-1], tasks, [0, 1, 2]) == [0]  # 0.59 <= 0.6 < 0.61
    message = chance_message(matrix, tasks, [0, 1, 2], [0])
    assert message.startswith("1 of 3 tasks at chance at the end: t0 0.590 (majority 0.500")
    assert "forgotten entirely (0.950 after its training)" in message
    assert "never learned (0.550 after its training)" in chance_message(matrix, tasks, [0, 1, 2], [1])


def test_a_run_leaving_a_task_at_chance_is_flagged_in_the_record_and_the_report(tmp_path):
    from forgetbench.benchmark.front.api import run_suite

    suite = tiny_suite(seeds=[0], strategies=[{"name": "test_forget_first_task"}])
    results = run_suite(suite, tmp_path / "out", progress=False)
    record = results.records[0]
    assert record.status == "ok"
    assert record.tasks_at_chance == [0]
    assert any(w.startswith("1 of 2 tasks at chance at the end: task0") for w in record.warnings)
    html = results.report().read_text()
    assert "Runs with tasks at chance (1)" in html and "1 of 2 tasks at chance at the end" in html


# --- 9. a module beside the config, from the console script ---------------------------------------------


@pytest.mark.slow  # pip-free console script in a fresh interpreter: 10-60 s, for the full tier (make test), not the inner loop (make test-fast)
def test_a_module_beside_the_config_is_imported_by_the_console_script(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "mymodels.py").write_text(BYO.read_text())
    suite = tiny_suite(
        scenarios=[
            {"name": "custom", "params": {"model": "mymodels:multihead_mlp", "benchmark": "mymodels:tensor_benchmark"}}
        ]
    )
    (folder / "suite.yaml").write_text(yaml.safe_dump(suite))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if _console()[0] == sys.executable:
        env["PYTHONPATH"] = str(REPO)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for cwd, config in ((elsewhere, folder / "suite.yaml"), (folder, Path("suite.yaml"))):
        done = subprocess.run(
            [*_console(), "validate", str(config)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert "valid suite" in done.stdout
    (folder / "suite.yaml").write_text(
        yaml.safe_dump(
            tiny_suite(
                scenarios=[
                    {"name": "custom", "params": {"model": "notthere:make", "benchmark": "mymodels:tensor_benchmark"}}
                ]
            )
        )
    )
    done = subprocess.run(
        [*_console(), "validate", "suite.yaml"], cwd=folder, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2 and "put notthere.py" in done.stderr and "Traceback" not in done.stderr
    assert str(folder.resolve()) in done.stderr  # says where it looked


# --- 10. one unit in the terminal table -------------------------------------------------------------------


def test_terminal_table_in_points_with_non_zero_seconds():
    import pandas as pd

    from forgetbench.reports.tables import format_overview

    table = pd.DataFrame(
        [
            {
                "scenario": "s",
                "strategy": "naive",
                "ok": 2,
                "not_ok": 0,
                "ACC_mean": 0.9123,
                "ACC_std": 0.01,
                "forgetting_mean": 0.041,
                "forgetting_std": 0.002,
                "LA_mean": 0.95,
                "LA_std": float("nan"),
                "train_seconds_mean": 0.043,
                "train_seconds_std": 0.001,
            }
        ]
    )
    text = format_overview(table)
    assert "91.2 ± 1.0" in text and "4.1 ± 0.2" in text and "95.0" in text and "0.043" in text
    assert "0.041" not in text and "forgetting (pts)" in text


# --- 11. the custom scenario's `net.` prefix ---------------------------------------------------------------


def test_strategy_context_maps_the_harness_names_to_the_users_own():
    from forgetbench.benchmark.data.scenarios.custom import UserModel
    from forgetbench.benchmark.core.training import TrainingConfig
    from forgetbench.strategies import StrategyContext

    user = nn.Sequential(nn.Linear(2, 2))
    ctx = StrategyContext(UserModel(user), TrainingConfig(), torch.device("cpu"), [], 0)
    harness_names = [n for n, _ in ctx.model.named_parameters()]
    assert harness_names == ["net.0.weight", "net.0.bias"]
    assert [ctx.own_name(n) for n in harness_names] == [n for n, _ in user.named_parameters()]
    assert ctx.harness_name("0.weight") == "net.0.weight"
    plain = StrategyContext(nn.Linear(2, 2), TrainingConfig(), torch.device("cpu"), [], 0)
    assert plain.own_name("weight") == "weight" == plain.harness_name("weight")


# --- 13 / 14. frozen parameters and a stock transformers encoder in the exact Fisher --------------------------


class _FrozenNorm(nn.Module):
    """Linear(8, 16) -> LayerNorm(16) (frozen) -> per-task heads; or a frozen Linear after a trained one."""

    def __init__(self, frozen: str):
        super().__init__()
        self.first = nn.Linear(8, 16)
        self.mid = nn.LayerNorm(16) if frozen == "norm" else nn.Linear(16, 16)
        self.mid.requires_grad_(False)
        self.heads = nn.ModuleList(nn.Linear(16, 2) for _ in range(2))

    def forward_single_task(self, x, task_label):
        return self.heads[task_label](torch.relu(self.mid(torch.relu(self.first(x)))))


def frozen_norm_model():
    return _FrozenNorm("norm")


def frozen_linear_model():
    return _FrozenNorm("linear")


@pytest.mark.parametrize("model", ["frozen_norm_model", "frozen_linear_model"])
@pytest.mark.parametrize("strategy", [{"name": "wpl"}, {"name": "ewc", "params": {"importance": "exact"}}])
def test_wpl_and_exact_ewc_run_with_frozen_parameters(model, strategy, tmp_path):
    from forgetbench.benchmark.front.api import run_suite

    sys.modules.setdefault("test_reliability", sys.modules[__name__])
    suite = tiny_suite(
        scenarios=[
            {
                "name": "custom",
                "params": {"model": f"test_reliability:{model}", "benchmark": "byo_fixtures:tensor_benchmark"},
            }
        ],
        strategies=[strategy],
    )
    results = run_suite(suite, tmp_path / "out", progress=False)
    record = results.records[0]
    assert record.status == "ok", record.error
    # the state kept covers exactly the trainable parameters: first, heads (no importance or anchor for mid.*)
    trainable = sum(p.numel() for n, p in globals()[model]().named_parameters() if p.requires_grad)
    assert 0 < record.memory.regularizer_bytes <= 2 * 4 * trainable  # fp32 importance + anchor at most


def test_exact_fisher_skips_frozen_parameters_and_matches_the_slow_reference():
    from forgetbench.strategies.importance import exact_fisher_diagonal, per_sample_fisher_loop

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(6, 12), nn.LayerNorm(12), nn.ReLU(), nn.Linear(12, 12), nn.LayerNorm(12), nn.Linear(12, 3)
    )
    model[3].requires_grad_(False)  # a frozen Linear between trained layers
    model[4].bias.requires_grad_(False)  # a LayerNorm half frozen
    x, y = torch.randn(40, 6), torch.randint(0, 3, (40,))
    fast, slow = exact_fisher_diagonal(model, x, y, batch_size=16), per_sample_fisher_loop(model, x, y)
    assert set(fast) == set(slow) == {"0.weight", "0.bias", "1.weight", "1.bias", "4.weight", "5.weight", "5.bias"}
    for name in fast:
        torch.testing.assert_close(fast[name], slow[name], rtol=1e-4, atol=1e-7)


def test_layer_norm_per_sample_rule_on_sequences_matches_the_slow_reference():
    """LayerNorm over (N, positions, features): the rule sums each sample's gradient over its positions."""
    from forgetbench.strategies.importance import _split_parameters, exact_fisher_diagonal, per_sample_fisher_loop

    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp, self.norm, self.out = nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 3)

        def forward(self, x):
            return self.out(self.norm(self.inp(x)).mean(1))

    torch.manual_seed(1)
    model = Seq()
    fast_modules, fallback = _split_parameters(model, {n for n, _ in model.named_parameters()})
    assert "norm." in fast_modules and not fallback  # no vmap needed
    x, y = torch.randn(20, 5, 4), torch.randint(0, 3, (20,))
    fast, slow = exact_fisher_diagonal(model, x, y), per_sample_fisher_loop(model, x, y)
    for name in slow:
        torch.testing.assert_close(fast[name], slow[name], rtol=1e-4, atol=1e-7)


def test_exact_fisher_on_a_stock_transformers_encoder(monkeypatch):
    """vmap died inside transformers' masking utilities (`.item()` on the padding mask). Now no parameter of a stock
    encoder leaves the per-sample rules: the word and token-type tables take the Embedding rule, and so do the
    position embeddings (one (1, S) lookup the batch shares, handed on expanded to the batch so that each sample's
    output gradient reaches the rule). Checked against the slow loop."""
    pytest.importorskip("transformers")
    from transformers import AutoModel, AutoTokenizer

    from forgetbench.benchmark.data import text
    from forgetbench.strategies.importance import exact_fisher_diagonal, per_sample_fisher_loop

    try:
        directory = text.encoder_dir("minilm", Path(os.environ.get("FORGETBENCH_DATA", "/nonexistent")))
    except text.TextUnavailableError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"the MiniLM package is not installed: {exc}")
    tokenizer = AutoTokenizer.from_pretrained(directory)
    encoder = AutoModel.from_pretrained(directory)

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder, self.head = encoder, nn.Linear(encoder.config.hidden_size, 2)

        def forward(self, ids):
            mask = (ids != tokenizer.pad_token_id).long()
            return self.head(self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0])

    model = Classifier()
    for p in model.encoder.encoder.layer[:5].parameters():  # a partly frozen encoder, as users fine-tune it
        p.requires_grad_(False)
    ids = tokenizer(
        ["a short one", "a somewhat longer sentence here", "third", "and the fourth one"],
        padding=True,
        return_tensors="pt",
    )["input_ids"]
    y = torch.tensor([0, 1, 1, 0])
    from forgetbench.strategies import importance

    for fallback in ("_vmap_squared_grads", "_looped_squared_grads"):
        monkeypatch.setattr(importance, fallback, lambda *a, **k: pytest.fail("a parameter took the fallback"))
    fast = exact_fisher_diagonal(model, ids, y)
    monkeypatch.undo()
    slow = per_sample_fisher_loop(model, ids, y)
    assert set(fast) == set(slow) and "encoder.embeddings.word_embeddings.weight" in fast
    assert "encoder.embeddings.position_embeddings.weight" in fast
    assert not any(n.startswith("encoder.encoder.layer.0.") for n in fast)
    for name in slow:
        torch.testing.assert_close(fast[name], slow[name], rtol=1e-3, atol=1e-9)


# --- 16. pic trains the step budget like every other strategy -------------------------------------------------


@pytest.mark.parametrize("strategy", ["naive", "pic"])
def test_iterations_per_task_is_every_strategys_step_count(strategy):
    from forgetbench.benchmark.core.config import ComponentSpec
    from forgetbench.benchmark.run.spec import RunSpec
    from forgetbench.benchmark.run.runner import run
    from forgetbench.benchmark.core.training import TrainingConfig

    # digits: ~290 samples a task, 10 batches of 32; pic holds 10% out (9 batches): 3 epochs gave it 27 steps
    training = TrainingConfig(optimizer="adam", lr=1e-3, batch_size=32, epochs=1, iterations_per_task=30)
    spec = RunSpec(
        "t",
        ComponentSpec(name="split", params={"dataset": "digits", "tasks": 2, "classes_per_task": 2, "widths": [16]}),
        ComponentSpec(name=strategy),
        0,
        training,
        "cpu",
    )
    record = run(spec, None)
    assert record.status == "ok", record.error
    assert record.timing.steps == 2 * 30


# --- 17. the detected parameter sets are visible ---------------------------------------------------------------


def missing_data_benchmark(data_root):
    from forgetbench.benchmark.data.datasets import DataMissingError

    raise DataMissingError(f"dataset 'mine' not found under data root {data_root}")


def _custom_suite(write_suite, model: str, benchmark: str) -> Path:
    """A tiny suite on the ``custom`` scenario of the user's ``model`` and ``benchmark`` factories."""
    scenario = {"name": "custom", "params": {"model": model, "benchmark": benchmark}}
    return write_suite(tiny_suite(scenarios=[scenario]))


def test_validate_skip_data_skips_a_factory_that_needs_data_files_but_runs_the_others(tmp_path, capsys, write_suite):
    """--skip-data runs the user's factories (issue 34, item 6), but a factory that fails only because its data
    files are missing is the data check --skip-data skips; without --skip-data it is exit 2."""
    sys.modules.setdefault("test_reliability", sys.modules[__name__])
    config = _custom_suite(write_suite, "byo_fixtures:multihead_mlp", "test_reliability:missing_data_benchmark")
    assert main(["validate", str(config), "--skip-data"]) == 0
    assert main(["validate", str(config), "--data-root", str(tmp_path / "empty")]) == 2
    assert "dataset 'mine' not found" in capsys.readouterr().err


def test_a_task_with_no_trainable_parameter_is_a_config_error_naming_it(tmp_path, capsys, write_suite):
    """It passed validate and the run failed after training the others (issue 53); now validate says which."""
    config = _custom_suite(write_suite, "byo_fixtures:second_task_frozen_model", "byo_fixtures:tensor_benchmark")
    assert main(["validate", str(config)]) == 2
    err = capsys.readouterr().err
    assert "experience1 (task label 1) uses no trainable parameter" in err and "Traceback" not in err


def test_validate_show_params_lists_used_shared_and_private_parameters(tmp_path, capsys):
    suite = tiny_suite(
        scenarios=[
            {
                "name": "custom",
                "params": {"model": "test_reliability:frozen_norm_model", "benchmark": "byo_fixtures:tensor_benchmark"},
            }
        ]
    )
    sys.modules.setdefault("test_reliability", sys.modules[__name__])
    config = tmp_path / "suite.yaml"
    config.write_text(yaml.safe_dump(suite))
    assert main(["validate", str(config), "--show-params"]) == 0
    out = capsys.readouterr().out
    # shared = used by an earlier task's model (docs/concepts.md): the first task shares nothing yet
    assert re.search(r"net\.first\.weight\s+\(16, 8\)\s+128\s+private \(later shared by experience1\)", out)
    assert re.search(r"net\.first\.weight\s+\(16, 8\)\s+128\s+shared with experience0", out)
    assert re.search(r"net\.heads\.0\.weight\s+\(2, 16\)\s+32\s+private$", out, re.M)
    assert re.search(r"net\.mid\.weight\s+\(16,\)\s+16\s+frozen", out)
    assert "experience0: 4 tensors, 178 weights (0 shared, 178 private)" in out
    assert "experience1: 4 tensors, 178 weights (144 shared, 34 private)" in out
    assert main(["validate", str(config), "--show-params", "--skip-data"]) == 2


def test_a_worker_reply_that_is_no_record_fails_that_run_only():
    from forgetbench.benchmark.core.config import ComponentSpec
    from forgetbench.benchmark.core.training import TrainingConfig
    from forgetbench.benchmark.run.executors import Job, received
    from forgetbench.benchmark.run.spec import RunSpec
    from helpers import make_record

    job = Job("k", RunSpec("t", ComponentSpec(name="split"), ComponentSpec(name="naive"), 0, TrainingConfig(), "cpu"))
    record = received(job, {"status": "ok"})
    assert record.status == "failed" and "no valid record" in record.error and "run_id" in record.error
    assert received(job, make_record({"status": "ok"}).to_dict()).status == "ok"
