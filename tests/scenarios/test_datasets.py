"""Dataset loaders: offline ones for real, torchvision ones on tiny files written here."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from forgetbench.benchmark.data.datasets import DataMissingError, check_available, load_dataset


def _write_idx(path, array: np.ndarray) -> None:
    dtype_code = {np.dtype(np.uint8): 0x08}[array.dtype]
    header = struct.pack(">HBB", 0, dtype_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())


def write_tiny_mnist(root, folder="MNIST", n_train=40, n_test=20, seed=0):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return raw


@pytest.mark.parametrize("name,shape", [("digits", (1, 8, 8)), ("mnist1d", (1, 40))])
def test_offline_datasets(name, shape, tmp_path):
    data = load_dataset(name, tmp_path)
    assert data.input_shape == shape
    assert data.train_x.dtype == torch.float32 and data.train_y.dtype == torch.int64
    assert set(data.train_y.unique().tolist()) == set(range(10))
    assert abs(float(data.train_x.mean())) < 1e-3  # standardised with training statistics
    assert len(data.test_y) > 0


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_torchvision_loader_reads_tiny_files(name, folder, tmp_path):
    write_tiny_mnist(tmp_path / name, folder)
    check_available(name, tmp_path, download=False)
    data = load_dataset(name, tmp_path)
    assert data.train_x.shape == (40, 1, 28, 28) and data.test_x.shape == (20, 1, 28, 28)
    assert data.train_y.tolist() == [i % 10 for i in range(40)]


def test_missing_files_offline_is_a_clear_error(tmp_path):
    with pytest.raises(DataMissingError) as info:
        check_available("mnist", tmp_path, download=False)
    assert "mnist/MNIST/raw/train-images-idx3-ubyte" in str(info.value)
    with pytest.raises(DataMissingError, match="download: true"):
        load_dataset("cifar10", tmp_path, download=False)


def test_download_allowed_skips_the_offline_check(tmp_path):
    check_available("mnist", tmp_path, download=True)  # torchvision would fetch them


def test_mnist32_is_the_mnist_files_zero_padded_in_unit_range(tmp_path):
    """van de Ven & Tolias's input: the same files as `mnist`, 2 zero pixels on every side, pixel/255."""
    raw = write_tiny_mnist(tmp_path / "mnist")
    check_available("mnist32", tmp_path, download=False)  # reads mnist/, has no folder of its own
    data = load_dataset("mnist32", tmp_path)
    assert data.train_x.shape == (40, 1, 32, 32) and data.test_x.shape == (20, 1, 32, 32)
    images = np.frombuffer((raw / "train-images-idx3-ubyte").read_bytes()[16:], dtype=np.uint8).reshape(40, 28, 28)
    torch.testing.assert_close(data.train_x[:, 0, 2:30, 2:30], torch.from_numpy(images.astype(np.float32) / 255.0))
    border = data.train_x.clone()
    border[:, :, 2:30, 2:30] = 0
    assert not border.any()
    with pytest.raises(DataMissingError, match="mnist/MNIST/raw/train-images-idx3-ubyte"):
        check_available("mnist32", tmp_path / "empty", download=False)
    unit = load_dataset("mnist_01", tmp_path)  # the same pixels, unpadded
    torch.testing.assert_close(unit.train_x[:, 0], data.train_x[:, 0, 2:30, 2:30])
