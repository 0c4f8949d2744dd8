"""Real-format MNIST and CIFAR-10 files written by the test; nothing is downloaded."""

import gzip
import hashlib
import io as _io
import pickle
import tarfile

import numpy as np
import pytest
import torch

from featscope import downloads
from featscope.models import build_model
from featscope.observe import observe_run
from featscope.tasks import make_dataset
from featscope.training import train_one


def idx_bytes(array: np.ndarray) -> bytes:
    code = 0x08  # unsigned byte
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write(path, blob: bytes) -> str:
    path.write_bytes(blob)
    return hashlib.md5(blob).hexdigest()


@pytest.fixture
def offline_sources(tmp_path, monkeypatch):
    """Small files in the real formats, served from file:// URLs with their own checksums."""
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    mnist = []
    for name, array in [
        ("train-images-idx3-ubyte.gz", rng.integers(0, 256, (60, 28, 28))),
        ("train-labels-idx1-ubyte.gz", np.arange(60) % 10),
        ("t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (20, 28, 28))),
        ("t10k-labels-idx1-ubyte.gz", np.arange(20) % 10),
    ]:
        checksum = write(src / name, gzip.compress(idx_bytes(array)))
        mnist.append(((src / name).as_uri(), name, checksum))
    buffer = _io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, n in [("data_batch_1", 30), ("data_batch_2", 30), ("test_batch", 20)]:
            blob = pickle.dumps(
                {b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8), b"labels": list(np.arange(n) % 10)}
            )
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, _io.BytesIO(blob))
    checksum = write(src / "cifar-10-python.tar.gz", buffer.getvalue())
    cifar = [((src / "cifar-10-python.tar.gz").as_uri(), "cifar-10-python.tar.gz", checksum)]
    monkeypatch.setattr(downloads, "SOURCES", {"mnist": mnist, "cifar10": cifar})
    monkeypatch.setenv("FEATSCOPE_DOWNLOADS", str(tmp_path / "cache"))
    return tmp_path


def test_mnist_fetched_verified_and_subset(offline_sources):
    data = make_dataset({"name": "mnist", "n_train": 40, "n_test": 10, "seed": 1})
    assert data["x_train"].shape == (40, 1, 28, 28) and data["y_test"].shape == (10,)
    raw = downloads.read_idx(offline_sources / "cache" / "mnist" / "train-labels-idx1-ubyte.gz")
    assert list(raw[:12]) == list(np.arange(12) % 10)
    again = make_dataset({"name": "mnist", "n_train": 40, "n_test": 10, "seed": 1})
    assert np.array_equal(again["x_train"], data["x_train"])  # deterministic subset


def test_cifar10_and_the_cifar_models(offline_sources):
    data = make_dataset({"name": "cifar10", "n_train": 50, "n_test": 20, "seed": 0, "random_labels": True})
    assert data["x_train"].shape == (50, 3, 32, 32)
    for name in ("resnet18", "vgg16"):
        for bn in (True, False):
            model = build_model({"name": name, "batch_norm": bn, **({"width": 64} if name == "vgg16" else {})}, 3, 10)
            out, feats = model.forward_features(torch.from_numpy(data["x_train"][:4]))
            assert out.shape == (4, 10) and feats.penultimate.shape[0] == 4


def test_cnn_trains_and_is_observed(offline_sources):
    task = {"name": "mnist", "n_train": 40, "n_test": 10, "seed": 0}
    data = make_dataset(task)
    cfg = {
        "task": task,
        "model": {"name": "cnn", "width": 16, "batch_norm": True},
        "optim": {"name": "adam", "lr": 0.01, "batch_size": 20, "train": "readout"},
        "train": {"steps": 4, "loss": "cross_entropy"},
        "schedule": {"every": 2},
        "seed": 0,
    }
    result = train_one("cnn", cfg, data, progress=False)
    frame = observe_run("cnn", "spectral", result.checkpoints, data, {"top": 3})
    drift = frame[frame.observable == "drift_init"].value
    assert len(drift) == 3 and np.allclose(drift, 0.0, atol=1e-6)  # frozen features do not drift


def test_checksum_mismatch_leaves_nothing(offline_sources, monkeypatch):
    url, name, _ = downloads.SOURCES["mnist"][0]
    monkeypatch.setattr(downloads, "SOURCES", {"mnist": [(url, name, "0" * 32)]})
    with pytest.raises(downloads.DownloadError, match="checksum mismatch"):
        downloads.fetch("mnist", retries=2, backoff=0)
    assert list((offline_sources / "cache" / "mnist").iterdir()) == []


def test_offline_is_a_clear_error(offline_sources, monkeypatch):
    monkeypatch.setattr(downloads, "SOURCES", {"mnist": [("http://127.0.0.1:9/none.gz", "none.gz", "0" * 32)]})
    with pytest.raises(downloads.DownloadError, match="offline") as err:
        downloads.fetch("mnist", retries=2, backoff=0, timeout=2)
    assert "none.gz" in str(err.value) and "2 attempts" in str(err.value)
