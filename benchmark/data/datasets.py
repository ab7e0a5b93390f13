"""Datasets, loaded once into normalised tensors.

Every dataset is returned as a :class:`TensorData`: float inputs already normalised, integer labels,
no per-sample transforms. Scenarios slice these tensors; the training loop never touches PIL images
(per-sample transforms make Avalanche about 5x slower than a plain PyTorch loop).

Torchvision datasets are read from ``<data root>/<dataset name>/`` in torchvision's own layout
(e.g. ``<data root>/mnist/MNIST/raw/train-images-idx3-ubyte``), the data root being ``--data-root``,
``$FORGETBENCH_DATA`` or ``~/.cache/forgetbench``; they are downloaded there only when the
scenario's params say ``download: true``.
"""

from __future__ import annotations

import functools
import hashlib
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from forgetbench.benchmark.core.components import DATASETS as _DATASETS
from forgetbench.benchmark.core.registry import Registry


class DataMissingError(RuntimeError):
    """The dataset's files are not under the data root and downloading is not allowed."""


@dataclass(frozen=True)
class TensorData:
    """A dataset as tensors: ``x`` float (N, C, ...) normalised, ``y`` int64 (N,)."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])


DatasetLoader = Callable[[Path, bool], TensorData]
DATASETS: Registry[DatasetLoader] = _DATASETS


def default_data_root() -> Path:
    """``$FORGETBENCH_DATA`` if set, else ``~/.cache/forgetbench``."""
    env = os.environ.get("FORGETBENCH_DATA")
    return Path(env) if env else Path.home() / ".cache" / "forgetbench"


def dataset_info(name: str) -> dict:
    """Static facts about a registered dataset (``num_classes``, ``input_shape``, ``files``)."""
    return DATASETS.get(name).extra


def load_dataset(name: str, root: Path | str | None = None, download: bool = False) -> TensorData:
    """Load (once per process) the named dataset as normalised tensors."""
    root = Path(root) if root is not None else default_data_root()
    key = (name, root.expanduser().resolve(), download)
    data = _load_cached(*key)
    record_data_read(name, lambda: _digest(*key))
    return data


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, root: Path, download: bool) -> TensorData:
    return DATASETS.get(name).factory(root, download)


@functools.lru_cache(maxsize=8)
def _digest(name: str, root: Path, download: bool) -> str:
    data = _load_cached(name, root, download)
    return tensors_digest(data.train_x, data.train_y, data.test_x, data.test_y)


def tensors_digest(*tensors: torch.Tensor) -> str:
    """``blake2b:<16 hex>`` of the tensors' shapes, dtypes and bytes: equal exactly when the data is."""
    h = hashlib.blake2b(digest_size=8)
    for t in tensors:
        array = t.detach().cpu().contiguous().numpy()
        h.update(f"{array.dtype}{array.shape}".encode())
        h.update(array.data.cast("B"))
    return f"blake2b:{h.hexdigest()}"


_READS: dict[str, str] | None = None


def record_data_read(name: str, digest: Callable[[], str]) -> None:
    """Note that ``name`` was read, with its digest (computed only while a run is recording: see below)."""
    if _READS is not None:
        _READS[name] = digest()


@contextmanager
def recording_data_reads() -> Iterator[dict[str, str]]:
    """Collect ``dataset name -> digest`` of every dataset loaded inside the block (a run's data, for its
    fingerprint: two runs that read different files, or files that changed, get different digests)."""
    global _READS
    outer, _READS = _READS, {}
    try:
        yield _READS
    finally:
        reads, _READS = _READS, outer
        if outer is not None:
            outer.update(reads)


def check_available(name: str, root: Path | str | None, download: bool) -> None:
    """Raise :class:`DataMissingError` if ``name`` cannot be loaded offline from ``root``.

    Cheap: looks for files, loads nothing. Datasets generated offline always pass.
    """
    root = Path(root) if root is not None else default_data_root()
    extra = DATASETS.get(name).extra
    folder = extra.get("folder", name)  # a variant reads another dataset's files (mnist32: mnist/)
    # `files`: every one is needed; `layouts`: the dataset comes in several published layouts, one of which is needed
    layouts: list[list[str]] = extra.get("layouts") or [extra.get("files", [])]
    missing_per_layout = [[f"{folder}/{f}" for f in files if not _present(root / folder, f)] for files in layouts]
    if all(missing_per_layout) and not download:
        raise DataMissingError(
            _missing_message(name, root, [" + ".join(m) for m in missing_per_layout], extra.get("layout_hint"))
        )


def _present(folder: Path, pattern: str) -> bool:
    """``pattern`` (a path, possibly with a glob such as ``data/train-*.parquet``) names a file under ``folder``."""
    if any(c in pattern for c in "*?["):
        return any(folder.glob(pattern))
    return (folder / pattern).exists()


def _missing_message(name: str, root: Path, missing: list[str], layout: str | None = None) -> str:
    return (
        f"dataset {name!r} not found under data root {root}: missing "
        f"{' or '.join(missing)}. Put the files under {root / name}/ in {layout or 'torchvision' + chr(39) + 's layout'} "
        f"(or pass --data-root / set FORGETBENCH_DATA), or set `download: true` in the "
        f"scenario params to let forgetbench download them."
    )


def _standardise(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel standardisation with the training set's statistics."""
    dims = [0] + list(range(2, train.dim()))
    mean = train.mean(dim=dims, keepdim=True)
    std = train.std(dim=dims, keepdim=True).clamp_min(1e-8)
    return ((train - mean) / std).contiguous(), ((test - mean) / std).contiguous()


@DATASETS.register("digits", num_classes=10, input_shape=(1, 8, 8), files=[])
def load_digits_dataset(root: Path, download: bool) -> TensorData:
    """scikit-learn's 8x8 handwritten digits (1,797 images, offline); fixed stratified 75/25 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = bunch.images.astype(np.float32)[:, None] / 16.0
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, stratify=y, random_state=0)
    train_x, test_x = _standardise(torch.from_numpy(x_tr), torch.from_numpy(x_te))
    return TensorData("digits", train_x, torch.from_numpy(y_tr), test_x, torch.from_numpy(y_te), 10)


@DATASETS.register("mnist1d", num_classes=10, input_shape=(1, 40), files=[])
def load_mnist1d_dataset(root: Path, download: bool) -> TensorData:
    """MNIST-1D (Greydanus 2020), generated offline by the mnist1d package (4,000 train / 1,000 test)."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    data = make_dataset(args)
    train_x = torch.as_tensor(data["x"], dtype=torch.float32)[:, None]
    test_x = torch.as_tensor(data["x_test"], dtype=torch.float32)[:, None]
    train_x, test_x = _standardise(train_x, test_x)
    return TensorData(
        "mnist1d",
        train_x,
        torch.as_tensor(data["y"], dtype=torch.int64),
        test_x,
        torch.as_tensor(data["y_test"], dtype=torch.int64),
        10,
    )


def _torchvision_loader(
    name: str, cls_name: str, folder_name: str | None = None, pad: int = 0, standardise: bool = True
) -> DatasetLoader:
    """Reads ``<root>/<folder_name or name>/``; ``pad`` zero-pads the images on every side (before any
    standardisation); ``standardise: False`` keeps pixels in [0, 1]."""

    def load(root: Path, download: bool) -> TensorData:
        import torchvision

        cls = getattr(torchvision.datasets, cls_name)
        folder = root / (folder_name or name)
        try:
            train = cls(root=str(folder), train=True, download=download)
            test = cls(root=str(folder), train=False, download=download)
        except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted"
            raise DataMissingError(_missing_message(name, root, [f"{name}/ ({exc})"])) from exc
        tensors = []
        for split in (train, test):
            data = torch.as_tensor(np.asarray(split.data), dtype=torch.float32) / 255.0
            if data.dim() == 3:  # (N, H, W) grey images
                data = data[:, None]
            else:  # CIFAR: (N, H, W, C)
                data = data.permute(0, 3, 1, 2)
            tensors.append((data, torch.as_tensor(np.asarray(split.targets), dtype=torch.int64)))
        (tr_x, tr_y), (te_x, te_y) = tensors
        if pad:
            tr_x, te_x = (torch.nn.functional.pad(x, (pad, pad, pad, pad)) for x in (tr_x, te_x))
        if standardise:
            tr_x, te_x = _standardise(tr_x, te_x)
        return TensorData(name, tr_x.contiguous(), tr_y, te_x.contiguous(), te_y, 10)

    load.__doc__ = f"torchvision {cls_name} read from the data root (download only if allowed)."
    return load


_MNIST_FILES = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]

MNIST_FILES = [f"MNIST/raw/{f}" for f in _MNIST_FILES]
# name, torchvision's class, input shape, files under the data root, description, the loader's options (a variant
# of MNIST reads the mnist folder's files)
TORCHVISION_DATASETS: list[tuple[str, str, tuple[int, ...], list[str], str, dict[str, Any]]] = [
    ("mnist", "MNIST", (1, 28, 28), MNIST_FILES,
     "MNIST (60,000 / 10,000 28x28 digits), torchvision layout under the data root", {}),
    ("mnist_01", "MNIST", (1, 28, 28), MNIST_FILES,
     "MNIST with pixels in [0, 1], not standardised (van de Ven & Tolias's split MNIST input); read from the mnist "
     "files", {"folder_name": "mnist", "standardise": False}),
    ("mnist32", "MNIST", (1, 32, 32), MNIST_FILES,
     "MNIST zero-padded to 32x32, pixels in [0, 1], not standardised (van de Ven & Tolias's permuted MNIST input); "
     "read from the mnist files", {"folder_name": "mnist", "pad": 2, "standardise": False}),
    ("fashion_mnist", "FashionMNIST", (1, 28, 28), [f"FashionMNIST/raw/{f}" for f in _MNIST_FILES],
     "Fashion-MNIST (60,000 / 10,000 28x28 clothing images), torchvision layout", {}),
    ("cifar10", "CIFAR10", (3, 32, 32), ["cifar-10-batches-py/data_batch_1", "cifar-10-batches-py/test_batch"],
     "CIFAR-10 (50,000 / 10,000 32x32 colour images), torchvision layout", {}),
]  # fmt: skip
for _name, _class, _shape, _files, _description, _options in TORCHVISION_DATASETS:
    _folder = {"folder": _options["folder_name"]} if "folder_name" in _options else {}
    DATASETS.register(_name, num_classes=10, input_shape=_shape, files=_files, description=_description, **_folder)(
        _torchvision_loader(_name, _class, **_options)
    )


# --- CIFAR-100 and Tiny ImageNet: the seeds' own benchmarks (SPG, SupSup, ExSSNeT), read in their published formats

CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINY_IMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"


def download_archive(url: str, md5: str | None, folder: Path, name: str) -> None:
    """Download ``url`` into ``folder`` and extract it there (torchvision's downloader, which checks ``md5``); a
    machine without internet gets a DataMissingError that says what to put where instead."""
    from torchvision.datasets.utils import download_and_extract_archive

    folder.mkdir(parents=True, exist_ok=True)
    try:
        download_and_extract_archive(url, download_root=str(folder), md5=md5)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a failed checksum is a RuntimeError
        raise DataMissingError(
            f"dataset {name!r}: could not download {url} into {folder} ({type(exc).__name__}: {exc}); on a machine "
            f"without internet, copy the archive's contents there yourself"
        ) from exc


def _cifar100_loader(coarse: bool) -> DatasetLoader:
    def load(root: Path, download: bool) -> TensorData:
        import pickle

        folder = root / "cifar100"
        name = "cifar100_coarse" if coarse else "cifar100"
        if download and not (folder / "cifar-100-python" / "train").exists():
            download_archive(CIFAR100_URL, CIFAR100_MD5, folder, name)
        splits = []
        for split in ("train", "test"):
            path = folder / "cifar-100-python" / split
            if not path.exists():
                raise DataMissingError(
                    _missing_message(name, root, [f"cifar100/cifar-100-python/{split}"], _CIFAR100_LAYOUT)
                )
            with open(path, "rb") as handle:  # the published pickle: data (N, 3072) uint8, fine/coarse labels
                entry = pickle.load(handle, encoding="latin1")
            pixels = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            labels = entry["coarse_labels" if coarse else "fine_labels"]
            splits.append((torch.from_numpy(pixels).float() / 255.0, torch.as_tensor(labels, dtype=torch.int64)))
        (tr_x, tr_y), (te_x, te_y) = splits
        tr_x, te_x = _standardise(tr_x, te_x)
        return TensorData(name, tr_x, tr_y, te_x, te_y, 20 if coarse else 100)

    load.__doc__ = f"CIFAR-100 ({'20 superclasses' if coarse else '100 classes'}) from its published Python pickles."
    return load


_CIFAR100_LAYOUT = (
    "the published Python layout (cifar-100-python/train, test, meta: the extracted cifar-100-python.tar.gz)"
)
DATASETS.register(
    "cifar100",
    num_classes=100,
    input_shape=(3, 32, 32),
    files=["cifar-100-python/train", "cifar-100-python/test"],
    layout_hint=_CIFAR100_LAYOUT,
    description="CIFAR-100 (50,000 / 10,000 32x32 colour images, 100 classes), the published Python pickles",
)(_cifar100_loader(coarse=False))
DATASETS.register(
    "cifar100_coarse",
    num_classes=20,
    input_shape=(3, 32, 32),
    files=["cifar-100-python/train", "cifar-100-python/test"],
    folder="cifar100",
    layout_hint=_CIFAR100_LAYOUT,
    description="CIFAR-100 labelled by its 20 superclasses (coarse labels); read from the cifar100 files",
)(_cifar100_loader(coarse=True))


_TINY_LAYOUT = (
    "the published zip's layout (tiny-imagenet-200/wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG, "
    "val/val_annotations.txt) or the Hugging Face copy's (data/train-*.parquet, data/valid-*.parquet)"
)


def _decode(images: Sequence[bytes | Path]) -> torch.Tensor:
    """JPEG files or bytes -> (N, 3, 64, 64) floats in [0, 1] (greyscale images made RGB, as every loader does)."""
    import io

    from PIL import Image

    out = np.empty((len(images), 64, 64, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        source: io.BytesIO | Path = io.BytesIO(image) if isinstance(image, bytes) else image
        with Image.open(source) as picture:
            out[i] = np.asarray(
                picture.convert("RGB").resize((64, 64)) if picture.size != (64, 64) else picture.convert("RGB")
            )
    return torch.from_numpy(out).permute(0, 3, 1, 2).float() / 255.0


def _tiny_imagenet_zip_layout(folder: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The published zip: class ``k`` is the k-th line of ``wnids.txt``; the labelled ``val`` split is the test
    split (the ``test`` split has no labels)."""
    base = folder / "tiny-imagenet-200"
    wnids = [line.strip() for line in (base / "wnids.txt").read_text().splitlines() if line.strip()]
    index = {wnid: k for k, wnid in enumerate(wnids)}
    train_files, train_labels = [], []
    for wnid in wnids:
        files = sorted((base / "train" / wnid / "images").glob("*.JPEG"))
        train_files += files
        train_labels += [index[wnid]] * len(files)
    val_files, val_labels = [], []
    for line in (base / "val" / "val_annotations.txt").read_text().splitlines():
        fields = line.split("\t")
        if len(fields) >= 2:
            val_files.append(base / "val" / "images" / fields[0])
            val_labels.append(index[fields[1]])
    return (
        _decode(train_files),
        torch.as_tensor(train_labels, dtype=torch.int64),
        _decode(val_files),
        torch.as_tensor(val_labels, dtype=torch.int64),
    )


def _tiny_imagenet_parquet_layout(folder: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The Hugging Face copy (zh-plus/tiny-imagenet): parquet files with an ``image`` column (``{bytes, path}``) and an
    integer ``label``; its ``valid`` split is the test split."""
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # a dependency of the `text` extra (Hugging Face datasets), not of the core
        raise DataMissingError(
            "dataset 'tiny_imagenet': reading the Hugging Face copy (parquet files) needs pyarrow: "
            "pip install 'forgetbench[text]' (or pyarrow), or use the published zip's layout"
        ) from exc

    splits = []
    for pattern in ("data/train-*.parquet", "data/valid-*.parquet"):
        files = sorted(folder.glob(pattern))
        table = pq.ParquetDataset(files).read() if len(files) > 1 else pq.read_table(files[0])
        images = [cell["bytes"] for cell in table.column("image").to_pylist()]
        splits += [_decode(images), torch.as_tensor(table.column("label").to_pylist(), dtype=torch.int64)]
    return tuple(splits)  # type: ignore[return-value]


def load_tiny_imagenet(root: Path, download: bool) -> TensorData:
    """Tiny ImageNet (200 classes, 64x64) from the published zip's layout or the Hugging Face copy."""
    folder = root / "tiny_imagenet"
    zipped = (folder / "tiny-imagenet-200" / "wnids.txt").exists()
    parquet = any(folder.glob("data/train-*.parquet")) and any(folder.glob("data/valid-*.parquet"))
    if not zipped and not parquet and download:
        download_archive(TINY_IMAGENET_URL, TINY_IMAGENET_MD5, folder, "tiny_imagenet")
        zipped = (folder / "tiny-imagenet-200" / "wnids.txt").exists()
    if zipped:
        tr_x, tr_y, te_x, te_y = _tiny_imagenet_zip_layout(folder)
    elif parquet:
        tr_x, tr_y, te_x, te_y = _tiny_imagenet_parquet_layout(folder)
    else:
        raise DataMissingError(
            _missing_message(
                "tiny_imagenet",
                root,
                ["tiny_imagenet/tiny-imagenet-200/wnids.txt", "tiny_imagenet/data/train-*.parquet"],
                _TINY_LAYOUT,
            )
        )
    tr_x, te_x = _standardise(tr_x, te_x)
    return TensorData("tiny_imagenet", tr_x, tr_y, te_x, te_y, 200)


DATASETS.register(
    "tiny_imagenet",
    num_classes=200,
    input_shape=(3, 64, 64),
    layouts=[
        ["tiny-imagenet-200/wnids.txt", "tiny-imagenet-200/val/val_annotations.txt"],
        ["data/train-*.parquet", "data/valid-*.parquet"],
    ],
    layout_hint=_TINY_LAYOUT,
    description="Tiny ImageNet (100,000 / 10,000 64x64 colour images, 200 classes; val as test), zip or HF layout",
)(load_tiny_imagenet)
