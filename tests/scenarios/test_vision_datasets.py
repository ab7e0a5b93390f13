"""CIFAR-100 and Tiny ImageNet, read from files the tests write in the published formats (no network, no real data):
CIFAR-100's Python pickles, Tiny ImageNet's zip layout and its Hugging Face parquet copy; downloading is exercised
on a local archive (a file:// URL), and fails offline with a message that says what to put where."""

from __future__ import annotations

import io
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from forgetbench.benchmark.data import datasets
from forgetbench.benchmark.data.datasets import DataMissingError, check_available


def _write_cifar100(folder: Path, n_train: int = 12, n_test: int = 6) -> dict[str, np.ndarray]:
    """The published layout: cifar-100-python/{train,test,meta}, each a pickle of numpy arrays and lists."""
    rng = np.random.default_rng(0)
    base = folder / "cifar-100-python"
    base.mkdir(parents=True)
    written = {}
    for split, n in (("train", n_train), ("test", n_test)):
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        fine = [int(i % 100) for i in range(n)]
        entry = {
            "filenames": [f"img{i}.png" for i in range(n)],
            "batch_label": f"{split} batch",
            "data": data,
            "fine_labels": fine,
            "coarse_labels": [f // 5 for f in fine],
        }
        with open(base / split, "wb") as handle:
            pickle.dump(entry, handle)
        written[split] = data
    with open(base / "meta", "wb") as handle:
        pickle.dump(
            {"fine_label_names": [f"c{i}" for i in range(100)], "coarse_label_names": [f"s{i}" for i in range(20)]},
            handle,
        )
    return written


def _jpeg(seed: int, size: int = 64, mode: str = "RGB") -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    out = io.BytesIO()
    image.save(out, format="JPEG")
    return out.getvalue()


WNIDS = ["n01443537", "n01629819"]


def _write_tiny_zip_layout(folder: Path) -> None:
    """tiny-imagenet-200/: wnids.txt, train/<wnid>/images/<wnid>_<k>.JPEG, val/images + val_annotations.txt."""
    base = folder / "tiny-imagenet-200"
    (base / "val" / "images").mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    for c, wnid in enumerate(WNIDS):
        images = base / "train" / wnid / "images"
        images.mkdir(parents=True)
        for k in range(3):
            (images / f"{wnid}_{k}.JPEG").write_bytes(_jpeg(10 * c + k, mode="L" if k == 2 else "RGB"))
    lines = []
    for k, wnid in enumerate([WNIDS[1], WNIDS[0]]):
        (base / "val" / "images" / f"val_{k}.JPEG").write_bytes(_jpeg(100 + k))
        lines.append(f"val_{k}.JPEG\t{wnid}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")


def _write_tiny_parquet_layout(folder: Path) -> None:
    """The Hugging Face copy: data/train-*.parquet and data/valid-*.parquet, columns image {bytes, path} and label."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (folder / "data").mkdir(parents=True)
    # the train split in two shards, as the Hub stores larger splits
    for name, labels in (
        ("train-00000-of-00002-abc.parquet", [0, 1]),
        ("train-00001-of-00002-abd.parquet", [1, 0]),
        ("valid-00000-of-00001-def.parquet", [1, 0]),
    ):
        table = pa.table(
            {"image": [{"bytes": _jpeg(i), "path": f"{i}.jpg"} for i in range(len(labels))], "label": labels}
        )
        pq.write_table(table, folder / "data" / name)


def test_cifar100_reads_the_published_pickles_fine_and_coarse(tmp_path):
    written = _write_cifar100(tmp_path / "cifar100")
    check_available("cifar100", tmp_path, download=False)
    data = datasets.load_dataset("cifar100", tmp_path)
    assert data.num_classes == 100 and data.input_shape == (3, 32, 32)
    assert data.train_y.tolist() == list(range(12)) and len(data.test_y) == 6
    # the pixel layout: channel-major rows of 1024 (R, then G, then B), standardised per channel
    raw = torch.from_numpy(written["train"].reshape(-1, 3, 32, 32)).float() / 255.0
    standardised = (raw - raw.mean(dim=(0, 2, 3), keepdim=True)) / raw.std(dim=(0, 2, 3), keepdim=True)
    assert torch.allclose(data.train_x, standardised, atol=1e-5)
    coarse = datasets.load_dataset("cifar100_coarse", tmp_path)
    assert coarse.num_classes == 20 and coarse.train_y.tolist() == [f // 5 for f in range(12)]


@pytest.mark.parametrize("layout", ["zip", "parquet"])
def test_tiny_imagenet_reads_the_zip_layout_and_the_hugging_face_copy(tmp_path, layout):
    folder = tmp_path / "tiny_imagenet"
    (_write_tiny_zip_layout if layout == "zip" else _write_tiny_parquet_layout)(folder)
    check_available("tiny_imagenet", tmp_path, download=False)
    data = datasets.load_dataset("tiny_imagenet", tmp_path)
    assert data.num_classes == 200 and data.input_shape == (3, 64, 64)
    if layout == "zip":  # class k = the k-th wnid; val is the labelled test split
        assert data.train_y.tolist() == [0, 0, 0, 1, 1, 1] and data.test_y.tolist() == [1, 0]
    else:
        assert data.train_y.tolist() == [0, 1, 1, 0] and data.test_y.tolist() == [1, 0]
    assert torch.isfinite(data.train_x).all()


def test_missing_files_name_both_layouts_and_nothing_is_downloaded_unasked(tmp_path):
    with pytest.raises(DataMissingError, match=r"tiny-imagenet-200/wnids.txt.* or .*data/train-\*\.parquet"):
        check_available("tiny_imagenet", tmp_path, download=False)
    with pytest.raises(DataMissingError, match="cifar-100-python/train"):
        datasets.load_dataset("cifar100", tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()


@pytest.fixture
def http_folder(tmp_path):
    """A folder served over HTTP on the loopback interface: (folder, base URL)."""
    import functools
    import http.server
    import threading

    folder = tmp_path / "served"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_fetches_and_extracts_the_archive(tmp_path, monkeypatch, http_folder):
    """`download: true` runs the real downloader (torchvision's, over HTTP) on archives in the published layouts."""
    served, url = http_folder
    source = tmp_path / "source"
    _write_tiny_zip_layout(source)
    archive = served / "tiny-imagenet-200.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in sorted(source.rglob("*")):
            handle.write(path, path.relative_to(source))
    monkeypatch.setattr(datasets, "TINY_IMAGENET_URL", f"{url}/tiny-imagenet-200.zip")
    monkeypatch.setattr(datasets, "TINY_IMAGENET_MD5", None)
    root = tmp_path / "root"
    data = datasets.load_dataset("tiny_imagenet", root, download=True)
    assert data.train_y.tolist() == [0, 0, 0, 1, 1, 1]
    assert (root / "tiny_imagenet" / "tiny-imagenet-200" / "wnids.txt").exists()

    cifar_source = tmp_path / "cifar_source"
    _write_cifar100(cifar_source)
    tarball = served / "cifar-100-python.tar.gz"
    with tarfile.open(tarball, "w:gz") as handle:
        handle.add(cifar_source / "cifar-100-python", arcname="cifar-100-python")
    monkeypatch.setattr(datasets, "CIFAR100_URL", f"{url}/cifar-100-python.tar.gz")
    monkeypatch.setattr(datasets, "CIFAR100_MD5", None)
    assert datasets.load_dataset("cifar100", root, download=True).train_y.tolist() == list(range(12))


def test_download_offline_fails_with_what_to_put_where(tmp_path, monkeypatch):
    import socket

    with socket.socket() as probe:  # a port nothing listens on: the connection is refused, as offline
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(datasets, "TINY_IMAGENET_URL", f"http://127.0.0.1:{port}/tiny-imagenet-200.zip")
    with pytest.raises(DataMissingError, match="could not download .* copy the archive's contents there yourself"):
        datasets.load_dataset("tiny_imagenet", tmp_path / "root", download=True)


SEED_CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs" / "seeds").glob("*.yaml"))


@pytest.mark.parametrize("path", SEED_CONFIGS, ids=lambda p: p.name)
def test_the_seeds_settings_validate_without_their_data(path, capsys):
    """configs/seeds/: the seeds' own benchmarks (CIFAR-100, Tiny ImageNet) pass `validate --skip-data` here."""
    from forgetbench.benchmark.front.cli import main

    assert main(["validate", str(path), "--skip-data"]) == 0
    assert "valid suite" in capsys.readouterr().out


def test_the_seeds_settings_cover_spg_supsup_and_exssnet():
    names = {p.stem for p in SEED_CONFIGS}
    assert {
        "spg_cifar100_10",
        "spg_cifar100_20",
        "spg_tiny_imagenet_10",
        "supsup_split_cifar100",
        "exssnet_split_cifar100",
        "exssnet_tiny_imagenet",
    } <= names
