"""The ENAS recurrent-cell search (issue 33): corpora, the cell's equations, the language-model score,
WPL's online Fisher, gradient clipping and the search end to end on a small corpus."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from forgetbench.benchmark.data import language
from forgetbench.benchmark.train.harness import evaluate, majority_rate
from forgetbench.benchmark.data.scenarios.base import ScenarioInputs, Task
from forgetbench.benchmark.data.scenarios.enas_rnn import (
    RecurrentSearchParams,
    RecurrentSupernet,
    build_enas_rnn,
    decision_choices,
    decode,
    loose_ends,
)
from helpers import REPO, make_record, check_reduced_strength_study

CORPUS = REPO / "tests" / "data" / "lm_corpus"


def tiny_params(**overrides) -> RecurrentSearchParams:
    base = dict(
        corpus=f"folder:{CORPUS}",
        vocabulary=30,
        nodes=3,
        embedding=8,
        hidden=8,
        bptt=6,
        epochs=2,
        turns_per_epoch=3,
        steps_per_turn=2,
        derive_samples=4,
        controller={"steps_per_epoch": 3, "reward_windows": 4},
    )
    return RecurrentSearchParams(**(base | overrides))


# ------------------------------------------------------------------------------------------ corpora
def test_vocabulary_keeps_the_most_frequent_ties_alphabetical_and_unk():
    tokens = "b a c a b d a".split()
    assert language.build_vocabulary(tokens, 3) == ["a", "b", language.UNK]
    assert language.build_vocabulary(tokens, None) == ["a", "b", "c", "d", language.UNK]
    # a corpus with its own <unk> among the most frequent (PTB) keeps it there, not twice
    assert language.build_vocabulary(["<unk>", "<unk>", "x", "y"], 2) == ["<unk>", "x"]
    ids = language.encode("a d z".split(), ["a", "b", language.UNK])
    assert ids.tolist() == [0, 2, 2]


def test_windows_are_inputs_and_next_tokens():
    x, y = language.windows(torch.arange(11), 3)
    assert x.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert y.tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    with pytest.raises(ValueError, match="no window"):
        language.windows(torch.arange(3), 3)


def test_folder_corpus_lines_end_with_eos(tmp_path):
    for split, text in (("train", "a b\n\nb c\n"), ("valid", "a\n"), ("test", "c\n")):
        (tmp_path / f"{split}.txt").write_text(text)
    splits = language.folder_splits(tmp_path)
    assert splits["train"] == ["a", "b", "<eos>", "b", "c", "<eos>"]
    (tmp_path / "train.txt").unlink()
    with pytest.raises(language.CorpusError, match="missing: train.txt"):
        language.folder_splits(tmp_path)


def test_hub_id_offline_says_how_to_download():
    with pytest.raises(language.CorpusError, match="download: true"):
        language.read_splits("hf:ptb_text_only", download=False)


def test_austen_words_split_punctuation():
    assert language.austen_words('"Mr. Darcy\'s" pride--') == ['"', "mr", ".", "darcy's", '"', "pride", "-", "-"]


# ----------------------------------------------------------------------------------------- the cell
def test_decisions_decode_and_loose_ends():
    assert decision_choices(3, 4) == [4, 1, 4, 2, 4]
    prev, act = decode((2, 0, 1, 0, 3))
    assert prev == [-1, 0, 0] and act == [2, 1, 3]
    assert loose_ends(prev) == [1, 2]
    assert loose_ends([-1, 0, 1]) == [2]


def test_cell_matches_the_equations_by_hand():
    """One time step of the 3-node cell (tanh; node 1 = relu of node 0; node 2 = sigmoid of node 0), written out."""
    torch.manual_seed(0)
    net = RecurrentSupernet(tiny_params(max_hidden_norm=None), vocabulary=30)
    key = net.add_architecture((0, 0, 1, 0, 3))  # f0 tanh, 1: prev 0 relu, 2: prev 0 sigmoid
    x = torch.tensor([[4]])
    emb = net.encoder.weight[4]
    h = torch.zeros(8)
    pre = net.w_x.weight @ emb + net.w_x.bias + net.w_h.weight @ h
    c0, z0 = torch.sigmoid(pre[:8]), pre[8:]
    s0 = c0 * torch.tanh(z0) + (1 - c0) * h
    e1 = net.edges["0_1"].weight @ s0
    s1 = torch.sigmoid(e1[:8]) * torch.relu(e1[8:]) + (1 - torch.sigmoid(e1[:8])) * s0
    e2 = net.edges["0_2"].weight @ s0
    s2 = torch.sigmoid(e2[:8]) * torch.sigmoid(e2[8:]) + (1 - torch.sigmoid(e2[:8])) * s0
    out = (s1 + s2) / 2
    logits = net.encoder.weight @ out + net.decoder.bias  # tied softmax
    assert torch.allclose(net.forward_single_task(x, key)[0, :, 0], logits, atol=1e-6)


def test_hidden_norm_is_capped():
    net = RecurrentSupernet(tiny_params(max_hidden_norm=0.5), vocabulary=30)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(50)
    key = net.add_architecture((1, 0, 2, 1, 2))  # relu / identity: unbounded without the cap
    states = []
    net.decoder.register_forward_hook(lambda m, args, out: states.append(args[0]))
    net.forward_single_task(torch.randint(30, (2, 6)), key)
    assert states[0].norm(dim=-1).max() <= 0.5 + 1e-5


def test_an_architecture_trains_only_its_own_edges():
    net = RecurrentSupernet(tiny_params(), vocabulary=30)
    key = net.add_architecture((0, 0, 1, 1, 2))  # edges 0->1 and 1->2; 0->2 unused
    used = net.used_parameter_names(key)
    assert used == {
        "encoder.weight",
        "w_x.weight",
        "w_x.bias",
        "w_h.weight",
        "edges.0_1.weight",
        "edges.1_2.weight",
        "decoder.bias",
    }  # the tied softmax weight is the embedding's
    x, y = torch.randint(30, (4, 6)), torch.randint(30, (4, 6))
    torch.nn.functional.cross_entropy(net.forward_single_task(x, key), y).backward()
    grads = {n for n, p in net.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert grads == set(used)


# ------------------------------------------------------------------------------ the score of an LM
def test_language_model_score_is_inverse_perplexity():
    torch.manual_seed(1)
    net = RecurrentSupernet(tiny_params(), vocabulary=30)
    key = net.add_architecture((0, 0, 1, 1, 2))
    x, y = torch.randint(30, (5, 6)), torch.randint(30, (5, 6))
    task = Task("lm", key, x, y, x, y, frozenset(), 30)
    with torch.no_grad():
        nll = torch.nn.functional.cross_entropy(net.forward_single_task(x, key), y)
    assert evaluate(net, task, batch_size=2, device=torch.device("cpu")) == pytest.approx(
        math.exp(-float(nll)), rel=1e-5
    )


def test_chance_of_token_sequences_is_the_unigram_model():
    labels = torch.tensor([[0, 0, 1, 2]])  # p = 1/2, 1/4, 1/4
    entropy = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert majority_rate(labels) == pytest.approx(math.exp(-entropy))
    assert majority_rate(torch.tensor([0, 0, 1])) == pytest.approx(2 / 3)


# ---------------------------------------------------------------------------------------- the search
@pytest.mark.effect
def test_search_records_err_tables_rewards_and_the_derived_cell():
    from forgetbench.benchmark.core.config import ComponentSpec
    from forgetbench.benchmark.run.spec import RunSpec
    from forgetbench.benchmark.run.runner import run
    from forgetbench.benchmark.core.training import TrainingConfig

    params = tiny_params().model_dump(mode="json")
    spec = RunSpec(
        "t",
        ComponentSpec(name="enas_rnn", params=params),
        ComponentSpec(name="naive"),
        0,
        TrainingConfig(lr=5.0, grad_clip_norm=0.25, batch_size=8, eval_batch_size=64),
        "cpu",
    )
    record = run(spec, Path("."))
    assert record.status == "ok", record.error
    assert [len(row) for row in record.err1] == [3, 3] and [len(row) for row in record.err2] == [3, 3]
    assert record.timing.steps == 2 * 3 * 2
    assert len(record.search.rewards) == 2 and len(record.search.rewards[0]) == 3
    derived = record.search.derived
    assert derived.test_ppl == pytest.approx(math.exp(derived.test_log_ppl))
    assert derived.test_ppl < 30  # below a uniform guess over the 30-token vocabulary: it learned
    # the last turn of each epoch: nothing trained after it, so err2 == err1 there
    assert record.err2[0][-1] == pytest.approx(record.err1[0][-1])
    assert len(record.experiences) == len(record.architectures)
    again = run(spec, Path("."))
    assert again.err1 == record.err1 and again.search.derived == derived


def test_the_derived_cell_is_retrained_alone_from_the_initial_weights():
    """The retraining equals a hand-written loop: the run's initial weights (same seed), the derived cell
    alone, plain SGD with clipping on the same seeded batch order, ``retrain_steps`` steps."""
    from forgetbench.benchmark.core.config import ComponentSpec
    from forgetbench.benchmark.run.spec import RunSpec, seed_everything
    from forgetbench.benchmark.run.runner import run
    from forgetbench.benchmark.core.training import TrainingConfig

    steps, training = 7, TrainingConfig(lr=5.0, grad_clip_norm=0.25, batch_size=8, eval_batch_size=64)
    params = tiny_params(retrain_steps=steps)
    spec = RunSpec(
        "t",
        ComponentSpec(name="enas_rnn", params=params.model_dump(mode="json")),
        ComponentSpec(name="wpl_online", params={"alpha": 60}),
        0,
        training,
        "cpu",
    )
    record = run(spec, Path("."))
    assert record.status == "ok", record.error
    derived = record.search.derived
    retrained = derived.retrained
    assert retrained.steps == steps and record.timing.retrain_seconds > 0
    assert retrained.test_ppl == pytest.approx(math.exp(retrained.test_log_ppl))

    seed_everything(0)
    fresh = build_enas_rnn(params, ScenarioInputs(0, None))
    task = fresh.task_of(tuple(derived.architecture))
    model, generator = fresh.model, torch.Generator().manual_seed(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=training.lr, momentum=training.momentum)
    model.train()
    x, y = task.train_x, task.train_y
    order = torch.randperm(len(y), generator=generator)
    for start in range(0, steps * training.batch_size, training.batch_size):
        batch = order[start : start + training.batch_size]
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model.forward_single_task(x[batch], task.model_key), y[batch]).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), training.grad_clip_norm)
        optimizer.step()
    valid = evaluate(
        model,
        Task(**{**task.__dict__, "test_x": fresh.data.valid[0], "test_y": fresh.data.valid[1]}),
        64,
        torch.device("cpu"),
    )
    assert retrained.valid_ppl == pytest.approx(1.0 / valid, rel=1e-5)
    # the search's own weights score the derived cell differently: the retraining did not start from them
    assert retrained.valid_ppl != pytest.approx(derived.valid_ppl, rel=1e-3)


def test_random_search_samples_uniformly_and_needs_no_controller():
    scenario = build_enas_rnn(tiny_params(search="random", turns_per_epoch=50), ScenarioInputs(0, None))
    assert scenario.controller is None
    first_acts = [scenario.model.architectures[t.task][0] for t in scenario.schedule]
    assert set(first_acts) == {0, 1, 2, 3}


# ------------------------------------------------------------------------------ WPL's online Fisher
def _online_plugin(**params):
    from forgetbench.strategies.wpl import WPLPlugin
    from forgetbench.strategies.wpl_online import WPLOnlineParams

    scenario = build_enas_rnn(tiny_params(search="random", turns_per_epoch=3), ScenarioInputs(0, None))
    plugin = WPLPlugin(WPLOnlineParams(alpha=1.0, max_curvature=None, **params), scenario.turn_used_params, seed=3)
    return scenario, plugin


class _Strategy:
    """What the plugin's end-of-experience pass reads from an Avalanche template."""

    def __init__(self, scenario, turn: int):
        self.model = scenario.model
        self.device = torch.device("cpu")
        self.train_mb_size = 4
        self.experience = scenario.train_experiences(turn)[0]


def _reference_fisher(scenario, turn: int, seed: int, batches: int) -> dict[str, torch.Tensor]:
    """Slow reference: the same seeded rows, one backward per batch through the plain model, squared grads averaged."""
    task = scenario.tasks[scenario.schedule[turn].task]
    generator = torch.Generator().manual_seed(seed)
    used = task.used_params
    total: dict[str, torch.Tensor] = {}
    for _ in range(batches):
        rows = torch.randint(len(task.train_y), (4,), generator=generator)
        scenario.model.zero_grad()
        torch.nn.functional.cross_entropy(
            scenario.model.forward_single_task(task.train_x[rows], task.model_key), task.train_y[rows]
        ).backward()
        for n, p in scenario.model.named_parameters():
            if n in used:
                total[n] = total.get(n, torch.zeros_like(p)) + p.grad**2 / batches
    scenario.model.zero_grad()
    return total


def test_online_fisher_is_the_squared_batch_gradient_with_momentum():
    scenario, plugin = _online_plugin(fisher_batches=2, accumulate="momentum", momentum=0.9)
    reference = _reference_fisher(scenario, 0, seed=3, batches=2)
    plugin.after_training_exp(_Strategy(scenario, 0))
    assert set(plugin.importance) == set(reference) == scenario.tasks[scenario.schedule[0].task].used_params
    for name, f in reference.items():
        assert torch.allclose(plugin.importance[name], 0.9 * f, rtol=1e-5, atol=1e-10), name
        assert torch.equal(plugin.anchor[name], dict(scenario.model.named_parameters())[name].detach())


def test_online_fisher_waits_start_after_models_and_clips_the_running_importance():
    scenario, plugin = _online_plugin(start_after=1, clip_norm=1e-3, accumulate="sum")
    plugin.after_training_exp(_Strategy(scenario, 0))
    assert plugin.importance == {} and plugin.models_trained == 0  # the first model: no Fisher, no penalty
    plugin.after_training_exp(_Strategy(scenario, 1))
    plugin.after_training_exp(_Strategy(scenario, 2))
    assert plugin.models_trained == 2
    assert max(float(torch.linalg.vector_norm(f)) for f in plugin.importance.values()) <= 1e-3 * (1 + 1e-5)


# ----------------------------------------------------------------------------------- gradient clipping
def test_grad_clip_norm_clips_the_global_norm_before_the_step():
    from forgetbench.benchmark.core.config import ComponentSpec
    from forgetbench.benchmark.train.harness import Harness
    from forgetbench.benchmark.run.spec import RunSpec
    from forgetbench.benchmark.run.assemble import build_run_strategy, seeded_scenario
    from forgetbench.benchmark.run.schedule import scheduled_experiences, train_schedule
    from forgetbench.benchmark.core.training import TrainingConfig

    training = TrainingConfig(lr=1.0, grad_clip_norm=0.01, batch_size=8)
    spec = RunSpec(
        "t",
        ComponentSpec(name="enas_rnn", params=tiny_params(search="random").model_dump(mode="json")),
        ComponentSpec(name="naive"),
        0,
        training,
        "cpu",
    )
    scenario = seeded_scenario(spec, Path("."))
    scenario.schedule = [dataclass_replace(scenario.schedule[0], max_steps=1)]
    before = [p.detach().clone() for p in scenario.model.parameters()]
    harness = Harness()
    strategy = build_run_strategy(spec, scenario, scenario.model, torch.device("cpu"), harness)
    list(train_schedule(strategy, harness, scheduled_experiences(scenario), training))
    step = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(scenario.model.parameters(), before)))
    assert float(step) == pytest.approx(0.01, rel=1e-4)  # lr 1 x the clipped gradient's norm


def dataclass_replace(obj, **changes):
    import dataclasses

    return dataclasses.replace(obj, **changes)


# ------------------------------------------------------------------------------------ search metrics
def test_best_err1_gap_and_search_epochs_by_hand():
    from forgetbench.benchmark.core.metrics import best_err1_gap, run_metrics, search_epochs

    err1 = [[1.0, 2.0, 3.0], [4.0, 5.0, None]]
    err2 = [[1.5, 2.0, 2.0], [4.5, 6.0, None]]
    assert best_err1_gap(err1[0], err2[0], k=2) == pytest.approx((0.5 + 0.0) / 2)  # err1 1.0 and 2.0
    record = make_record(
        {
            "status": "ok",
            "accuracy_matrix": [],
            "err1": err1,
            "err2": err2,
            "search": {
                "error": "validation log-perplexity (nats per token)",
                "rewards": [[0.2, 0.4], [0.6]],
                "measured_from_epoch": 1,
                "derived": {"architecture": [0], "valid_ppl": 50.0, "test_ppl": 60.0},
            },
            "timing": {"train_seconds": 2.0, "steps": 10},
        }
    )
    epochs = search_epochs(record, k=2)
    assert epochs["mean_gap"] == pytest.approx([(0.5 + 0.0 - 1.0) / 3, (0.5 + 1.0) / 2])
    assert epochs["max_gap"] == pytest.approx([0.5, 1.0])
    assert epochs["reward"] == pytest.approx([0.3, 0.6])
    values = run_metrics(record)
    assert values["lm_forgetting_mean"] == pytest.approx(0.75)  # epoch 1 only (measured_from_epoch)
    assert values["lm_forgetting_whole_search"] == pytest.approx(((-0.5 / 3) + 0.75) / 2)
    assert values["lm_controller_reward"] == pytest.approx(0.6)
    assert values["derived_test_ppl"] == 60.0 and values["steps_per_second"] == pytest.approx(5.0)
    assert math.isnan(values["ACC"])  # no accuracy matrix: no accuracy metrics, the search's own only


# ------------------------------------------------------------------------------------- the report
@pytest.mark.slow  # starts a browser, 4 s: for the full tier, not the inner loop (as the report's other browser tests)
def test_the_search_report_opens_on_the_four_panel_figure_above_the_fold(write_suite, cli, tmp_path):
    """Screenshot at 1280x1200: the first figure of the report is the WPL paper's four panels, drawn."""
    import numpy as np
    from PIL import Image

    from helpers import browser_page

    params = tiny_params(search="controller", epochs=3).model_dump(mode="json")
    suite = {
        "name": "enas_tiny",
        "seeds": [0, 1],
        "device": "cpu",
        "training": {
            "optimizer": "sgd",
            "lr": 5.0,
            "momentum": 0.0,
            "batch_size": 8,
            "eval_batch_size": 64,
            "grad_clip_norm": 0.25,
        },
        "scenarios": [{"name": "enas_rnn", "label": "enas_tiny", "params": params}],
        "strategies": [
            {"name": "naive"},
            {"name": "wpl_online", "params": {"alpha": 60, "accumulate": "momentum"}},
        ],
    }
    out = tmp_path / "out"
    assert cli("run", write_suite(suite), "--out", out, "--quiet") == 0
    with browser_page(1280, 1200) as page:
        page.goto((out / "report.html").resolve().as_uri(), wait_until="load")
        first = page.query_selector("figure.headline")
        assert first is not None and first.get_attribute("id") == "headline-s-enas-tiny"
        caption = page.eval_on_selector("figure.headline figcaption", "c => c.textContent")
        top, bottom, width = page.eval_on_selector(
            "figure.headline img",
            "i => { const r = i.getBoundingClientRect(); return [r.top, r.bottom, i.complete ? i.naturalWidth : 0]; }",
        )
        shot = tmp_path / "above_the_fold.png"
        page.screenshot(path=str(shot), full_page=False)
    assert "the WPL paper's Figure 3" in caption
    assert width > 900 and 0 <= top and bottom <= 1200, (top, bottom, width)  # the 2 x 2 panels, whole
    band = np.asarray(Image.open(shot).convert("L"), dtype=float)[int(top) : int(bottom)]
    assert band.std() > 10 and (band < 128).mean() > 0.01  # lines and labels, not a blank box


def test_a_corpus_says_whether_it_reads_data_files(monkeypatch):
    """``validate --skip-data`` skips the preflight of a scenario that reads files; the corpus entry says so."""
    from forgetbench.benchmark.core.components import LANGUAGE_CORPORA

    assert not RecurrentSearchParams(corpus="austen").needs_data_files()  # an installed package
    assert RecurrentSearchParams(corpus="folder:/somewhere").needs_data_files()
    assert RecurrentSearchParams(corpus="hf:ptb_text_only").needs_data_files()
    monkeypatch.setattr(LANGUAGE_CORPORA, "_entries", dict(LANGUAGE_CORPORA._entries))  # undone after the test
    LANGUAGE_CORPORA.register("mine_test")(lambda argument, **options: {})
    LANGUAGE_CORPORA.register("generated_test", reads_files=False)(lambda argument, **options: {})
    assert RecurrentSearchParams(corpus="mine_test").needs_data_files()  # not declared: assumed to read files
    assert not RecurrentSearchParams(corpus="generated_test").needs_data_files()


@pytest.mark.slow  # a reduced strength study: 6 s, for the full tier (make test), as the CNN search's
def test_the_wpl_strength_study_runs_reduced_and_its_strengths_order_the_penalty(write_suite, cli, tmp_path):
    """configs/enas_wpl_strength.yaml (issue 52) reduced: one seed, each sweep's weakest and strongest point, the
    tiny corpus and cell, the penalty started after 2 turns and reset every 4 (the config's 40 and 16 are
    counted for 112 turns). Every run finishes, and within each method the strongest point's penalty is the
    larger share of the data gradient (the points are 100-1000x apart: a wide margin on any CPU)."""
    check_reduced_strength_study(
        "enas_wpl_strength.yaml",
        tiny_params(epochs=3, search="controller").model_dump(mode="json"),
        {"batch_size": 8},
        {"start_after": 2, "reset_every": 4},
        cli,
        write_suite,
        tmp_path / "out",
    )


def test_the_strength_table_by_hand(tmp_path, capsys):
    """``forgetbench table strength`` on hand-made search records: naive's err2 - err1 is 15 and 10 points on seeds 0 / 1,
    wpl[alpha=60]'s 5 and 5 (paired: -10, -5, mean -7.5); rows in naive-first, numeric order of the strengths; the
    penalty's inert turns counted from the records; seed 1 of naive in a second folder, read as one with the first."""
    from forgetbench.benchmark.core.store import write_result
    from forgetbench.benchmark.front.cli import main

    def strength_table(*folders, from_epoch: int | None = None) -> str:
        options = [] if from_epoch is None else ["--from-epoch", str(from_epoch)]
        assert main(["table", "strength", *map(str, folders), *options]) == 0
        return capsys.readouterr().out

    def record(label: str, seed: int, err2: list[float], folder: str = "", first_epoch: bool = False, **extra) -> None:
        """One search record; ``first_epoch`` puts an epoch of gaps 70 and 60 points (rewards 0.5) before ``err2``'s."""
        write_result(
            tmp_path / (folder or ("later" if (label, seed) == ("naive", 1) else "first")),
            make_record(
                strategy={"name": label.split("[")[0], "label": label},
                seed=seed,
                status="ok",
                config={},
                accuracy_matrix=[],
                err1=[[0.2, 0.3]] * (1 + first_epoch),
                err2=[[0.9, 0.9]] * first_epoch + [err2],
                search={"error": "validation error (1 - accuracy)", "rewards": [[0.5]] * first_epoch + [[0.5, 0.7]]},
                **extra,
            ),
        )

    record("naive", 0, [0.3, 0.5])
    record("naive", 1, [0.3, 0.4])
    inert = {"wpl_penalty_to_data_gradient": [None, 0.01, 1.0], "wpl_penalty_inert": [1]}
    for label in ("wpl[alpha=600]", "wpl[alpha=60]"):
        record(label, 0, [0.25, 0.35], **inert)
        record(label, 1, [0.2, 0.4], **inert)
    table = strength_table(tmp_path / "first", tmp_path / "later")
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()[2:]]
    assert [r[0] for r in rows] == ["naive", "wpl[alpha=60]", "wpl[alpha=600]"]
    assert rows[0][4].startswith("12.50 [") and rows[1][4].startswith("5.00")
    assert rows[1][5].startswith("-7.50 [") and rows[1][3] == "2 / 4"
    assert rows[1][8].startswith("0.60")  # the controller's mean reward in the last epoch
    assert rows[0][1] == "2" and rows[1][9] == "–"  # both of naive's seeds; no derived architecture recorded
    # from epoch 1 on: naive's mean gap in epoch 1 is 20 and 10 points on seeds 0 / 1, wpl's 5 on seed 0; the first
    # epoch (90 - 20 and 90 - 30 points for all of them), with the penalty off, no longer counts
    for label, seed, err2 in (("naive", 0, [0.5, 0.4]), ("naive", 1, [0.3, 0.4]), ("wpl[alpha=60]", 0, [0.25, 0.35])):
        record(label, seed, err2, folder="second", first_epoch=True)
    later = strength_table(tmp_path / "second", from_epoch=1)
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in later.splitlines()[2:]]
    assert "epochs 1+" in later.splitlines()[0]
    assert rows[0][4].startswith("15.00 [") and rows[1][4] == "5.00" and rows[1][5] == "-15.00 (1 seed)"
    whole, from_zero = (strength_table(tmp_path / "second", **k) for k in ({}, {"from_epoch": 0}))
    assert whole.splitlines()[2:] == from_zero.splitlines()[2:]  # from epoch 0 is the forgetting value itself
