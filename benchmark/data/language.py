"""Word-level language-modelling corpora: text -> token ids, offline first.

A :class:`LanguageCorpus` is three token streams (train / valid / test) over one vocabulary.

* ``austen``: Jane Austen's six novels (Debian's ``r-cran-janeaustenr``, read by
  :func:`forgetbench.benchmark.data.text.austen_novels`). Each novel's paragraphs (lines joined between blank lines)
  are split by position: the first 80% train, the next 10% valid, the last 10% test, so every split
  holds all six novels and no paragraph is in two splits. Text is lower-cased and split into words
  and punctuation marks (``[a-z0-9]+('[a-z]+)?`` or one other non-space character); every paragraph
  ends with ``<eos>``.
* ``folder:/path``: a folder with ``train.txt``, ``valid.txt`` and ``test.txt`` (the Penn Treebank /
  WikiText layout): tokens are whitespace-separated, as in the files, and every line ends with
  ``<eos>`` (empty lines are skipped).
* ``hf:<id>`` (``hf:ptb_text_only``, ``hf:wikitext:wikitext-2-raw-v1``): a Hugging Face dataset with
  ``train`` / ``validation`` / ``test`` splits and a text column (``text_column``, default: the first of
  ``sentence`` / ``text`` it has), one line per row, tokenised as a folder's. The Hub is used only with
  ``download: true``; offline it fails with a message saying so.

The vocabulary is the ``vocabulary - 1`` most frequent training tokens (ties broken alphabetically)
plus ``<unk>``, which every other token maps to (a corpus that already holds ``<unk>``, like PTB, keeps
it among the most frequent); ``vocabulary: null`` keeps every training token.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from forgetbench.benchmark.core.components import LANGUAGE_CORPORA, corpus_entry, corpus_names
from forgetbench.benchmark.data import text
from forgetbench.benchmark.data.datasets import record_data_read, tensors_digest

UNK, EOS = "<unk>", "<eos>"
SPLITS = ("train", "valid", "test")
AUSTEN_SPLIT = (0.8, 0.1)  # train and valid shares of each novel's paragraphs; test is the rest
_AUSTEN_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


class CorpusError(ValueError):
    """A language-modelling corpus cannot be read (missing files, offline Hub id, unknown name)."""


@dataclass(frozen=True)
class LanguageCorpus:
    """Token ids of the three splits over ``vocabulary`` (``vocabulary[i]`` is token i's word)."""

    name: str
    vocabulary: list[str]
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor

    @property
    def unk_rate(self) -> dict[str, float]:
        """Share of ``<unk>`` tokens per split (how much the vocabulary cap hides)."""
        unk = self.vocabulary.index(UNK) if UNK in self.vocabulary else -1
        return {s: float((getattr(self, s) == unk).float().mean()) for s in SPLITS}


def austen_words(paragraph: str) -> list[str]:
    return _AUSTEN_WORD.findall(paragraph.lower())


def austen_splits() -> dict[str, list[str]]:
    """Austen's tokens per split (see the module docstring)."""
    try:
        novels = text.austen_novels()
    except text.TextUnavailableError as exc:
        raise CorpusError(str(exc)) from None
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for _, lines in sorted(novels.items()):
        paragraphs = text.paragraphs(lines)
        n = len(paragraphs)
        cut_train, cut_valid = round(n * AUSTEN_SPLIT[0]), round(n * sum(AUSTEN_SPLIT))
        for split, part in zip(
            SPLITS, (paragraphs[:cut_train], paragraphs[cut_train:cut_valid], paragraphs[cut_valid:])
        ):
            for paragraph in part:
                out[split].extend([*austen_words(paragraph), EOS])
    return out


def line_tokens(lines: list[str]) -> list[str]:
    """Whitespace tokens of each non-empty line, each line closed by ``<eos>``."""
    tokens: list[str] = []
    for line in lines:
        words = line.split()
        if words:
            tokens.extend([*words, EOS])
    return tokens


def folder_splits(root: Path) -> dict[str, list[str]]:
    root = Path(root).expanduser()
    missing = [f"{s}.txt" for s in SPLITS if not (root / f"{s}.txt").is_file()]
    if missing:
        raise CorpusError(
            f"corpus folder {root} needs train.txt, valid.txt and test.txt; missing: {', '.join(missing)}"
        )
    return {
        s: line_tokens((root / f"{s}.txt").read_text(encoding="utf-8", errors="replace").splitlines()) for s in SPLITS
    }


def hf_splits(source: str, download: bool, text_column: str | None = None) -> dict[str, list[str]]:
    """Splits of a Hugging Face dataset (``name`` or ``name:config``; a local path is read offline)."""
    path = Path(source).expanduser()
    local = path.exists()
    if not local and not download:
        raise CorpusError(
            f"corpus 'hf:{source}' is a Hugging Face Hub dataset and downloads are off: set "
            "`download: true` (it needs internet and pip install 'forgetbench[text]'), or use "
            "'folder:/path' with train.txt / valid.txt / test.txt"
        )
    try:
        datasets = text._import_datasets()
    except text.TextUnavailableError as exc:
        raise CorpusError(str(exc)) from None
    try:
        if local:
            loaded = datasets.load_from_disk(str(path))
        else:
            name, _, config = source.partition(":")
            loaded = datasets.load_dataset(name, config or None)
    except Exception as exc:  # noqa: BLE001 - network, hub or file errors alike: say what failed
        raise CorpusError(f"could not load Hugging Face dataset {source!r}: {type(exc).__name__}: {exc}") from None
    names = {"train": "train", "valid": "validation" if "validation" in loaded else "valid", "test": "test"}
    missing = [n for n in names.values() if n not in loaded]
    if missing:
        raise CorpusError(f"Hugging Face dataset {source!r} has no split(s) {missing} (it has {sorted(loaded)})")
    columns = loaded["train"].column_names
    column = text_column or next((c for c in ("sentence", "text") if c in columns), None)
    if column not in columns:
        raise CorpusError(f"Hugging Face dataset {source!r} has no text column {column!r}; its columns: {columns}")
    return {s: line_tokens([str(v) for v in loaded[names[s]][column]]) for s in SPLITS}


def build_vocabulary(tokens: list[str], cap: int | None) -> list[str]:
    """The ``cap - 1`` most frequent tokens (ties alphabetical) and ``<unk>``; ``cap=None``: every token."""
    ranked = sorted(Counter(tokens).items(), key=lambda item: (-item[1], item[0]))
    words = [w for w, _ in ranked]
    if cap is None:
        return words if UNK in words else [*words, UNK]
    if UNK in words[:cap]:  # the corpus's own <unk> (PTB) is among the most frequent: it stays one of them
        return words[:cap]
    return [*words[: cap - 1], UNK]


def encode(tokens: list[str], vocabulary: list[str]) -> torch.Tensor:
    index = {w: i for i, w in enumerate(vocabulary)}
    unk = index[UNK]
    return torch.tensor([index.get(t, unk) for t in tokens], dtype=torch.long)


def read_splits(name: str, download: bool = False, text_column: str | None = None) -> dict[str, list[str]]:
    """The token streams of a corpus of ``LANGUAGE_CORPORA``: ``austen``, ``folder:/path``, ``hf:<id>``, or a plug-in's."""
    found = corpus_entry(LANGUAGE_CORPORA, name)
    if found is None:
        raise CorpusError(
            f"corpus: unknown language-modelling corpus {name!r}; allowed: {corpus_names(LANGUAGE_CORPORA)}"
        )
    entry, argument = found
    return entry.factory(argument, download=download, text_column=text_column)


@LANGUAGE_CORPORA.register("austen", reads_files=False)  # an installed package, not the data root
def _austen(argument: str, **options: Any) -> dict[str, list[str]]:
    """Jane Austen's six novels: each novel's paragraphs split 80 / 10 / 10 into train / valid / test, in order."""
    return austen_splits()


@LANGUAGE_CORPORA.register("folder", argument=True, argument_help="/path (with train.txt, valid.txt, test.txt)")
def _folder(argument: str, **options: Any) -> dict[str, list[str]]:
    """Any folder with train.txt, valid.txt and test.txt (one sentence per line, as PTB and WikiText ship)."""
    return folder_splits(Path(argument))


@LANGUAGE_CORPORA.register("hf", argument=True, argument_help="<Hugging Face id>")
def _hugging_face(argument: str, *, download: bool, text_column: str | None, **options: Any) -> dict[str, list[str]]:
    """A Hugging Face datasets corpus with train / validation / test splits (ptb_text_only, wikitext:...)."""
    return hf_splits(argument, download, text_column)


def load_language_corpus(
    name: str, vocabulary: int | None, download: bool = False, text_column: str | None = None
) -> LanguageCorpus:
    """The corpus ``name`` as token ids over its capped training vocabulary (cached per process)."""
    corpus = _load_language_corpus(name, vocabulary, download, text_column)
    record_data_read(name, lambda: _language_digest(name, vocabulary, download, text_column))
    return corpus


@functools.lru_cache(maxsize=4)
def _language_digest(name: str, vocabulary: int | None, download: bool, text_column: str | None) -> str:
    corpus = _load_language_corpus(name, vocabulary, download, text_column)
    return tensors_digest(corpus.train, corpus.valid, corpus.test)


@functools.lru_cache(maxsize=4)
def _load_language_corpus(
    name: str, vocabulary: int | None, download: bool = False, text_column: str | None = None
) -> LanguageCorpus:
    splits = read_splits(name, download, text_column)
    words = build_vocabulary(splits["train"], vocabulary)
    return LanguageCorpus(name, words, *(encode(splits[s], words) for s in SPLITS))


def windows(ids: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping ``length``-token windows of ``ids`` and their next tokens: ``(x, y)``, each
    ``(n, length)`` with ``y[i, t] = ids[i * length + t + 1]``."""
    n = (len(ids) - 1) // length
    if n < 1:
        raise ValueError(f"{len(ids)} tokens hold no window of {length} tokens and a next token")
    return ids[: n * length].view(n, length).clone(), ids[1 : n * length + 1].view(n, length).clone()
