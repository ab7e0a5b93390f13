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
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from forgetbench.benchmark.core.registries import DATASETS as _DATASETS
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
    return _load_cached(name, root.expanduser().resolve(), download)


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, root: Path, download: bool) -> TensorData:
    return DATASETS.get(name).factory(root, download)


def check_available(name: str, root: Path | str | None, download: bool) -> None:
    """Raise :class:`DataMissingError` if ``name`` cannot be loaded offline from ``root``.

    Cheap: looks for files, loads nothing. Datasets generated offline always pass.
    """
    root = Path(root) if root is not None else default_data_root()
    extra = DATASETS.get(name).extra
    files: list[str] = extra.get("files", [])
    folder = extra.get("folder", name)  # a variant reads another dataset's files (mnist32: mnist/)
    missing = [f"{folder}/{f}" for f in files if not (root / folder / f).exists()]
    if missing and not download:
        raise DataMissingError(_missing_message(name, root, missing))


def _missing_message(name: str, root: Path, missing: list[str]) -> str:
    return (
        f"dataset {name!r} not found under data root {root}: missing "
        f"{', '.join(missing)}. Put the files under {root / name}/ in torchvision's layout "
        f"(or pass --data-root / set FORGETBENCH_DATA), or set `download: true` in the "
        f"scenario params to let torchvision download them."
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


def _torchvision_loader(name: str, cls_name: str, folder_name: str | None = None, pad: int = 0,
                       standardise: bool = True) -> DatasetLoader:
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

DATASETS.register(
    "mnist",
    num_classes=10,
    input_shape=(1, 28, 28),
    files=[f"MNIST/raw/{f}" for f in _MNIST_FILES],
    description="MNIST (60,000 / 10,000 28x28 digits), torchvision layout under the data root",
)(_torchvision_loader("mnist", "MNIST"))
DATASETS.register(
    "mnist_01",
    num_classes=10,
    input_shape=(1, 28, 28),
    files=[f"MNIST/raw/{f}" for f in _MNIST_FILES],
    folder="mnist",
    description="MNIST with pixels in [0, 1], not standardised (van de Ven & Tolias's split MNIST input); "
                "read from the mnist files",
)(_torchvision_loader("mnist_01", "MNIST", folder_name="mnist", standardise=False))
DATASETS.register(
    "mnist32",
    num_classes=10,
    input_shape=(1, 32, 32),
    files=[f"MNIST/raw/{f}" for f in _MNIST_FILES],
    folder="mnist",
    description="MNIST zero-padded to 32x32, pixels in [0, 1], not standardised (van de Ven & Tolias's "
                "permuted MNIST input); read from the mnist files",
)(_torchvision_loader("mnist32", "MNIST", folder_name="mnist", pad=2, standardise=False))
DATASETS.register(
    "fashion_mnist",
    num_classes=10,
    input_shape=(1, 28, 28),
    files=[f"FashionMNIST/raw/{f}" for f in _MNIST_FILES],
    description="Fashion-MNIST (60,000 / 10,000 28x28 clothing images), torchvision layout",
)(_torchvision_loader("fashion_mnist", "FashionMNIST"))
DATASETS.register(
    "cifar10",
    num_classes=10,
    input_shape=(3, 32, 32),
    files=["cifar-10-batches-py/data_batch_1", "cifar-10-batches-py/test_batch"],
    description="CIFAR-10 (50,000 / 10,000 32x32 colour images), torchvision layout",
)(_torchvision_loader("cifar10", "CIFAR10"))
