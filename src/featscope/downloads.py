"""Downloads of real datasets (MNIST, CIFAR-10) for users with a network.

Files are fetched once into the cache folder ($FEATSCOPE_DOWNLOADS, default
~/.cache/featscope/downloads), written under a temporary name, verified
against their MD5 checksum and only then renamed into place, so a partial or
wrong download is never used. Failures are retried with exponential back-off;
when offline, the error says so and names the file to place by hand.
Nothing is ever downloaded by the tests.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

# (url, file name, md5) — the checksums torchvision verifies for the same files.
SOURCES = {
    "mnist": [
        (
            "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz",
            "train-images-idx3-ubyte.gz",
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        ),
        (
            "https://ossci-datasets.s3.amazonaws.com/mnist/train-labels-idx1-ubyte.gz",
            "train-labels-idx1-ubyte.gz",
            "d53e105ee54ea40749a09fcbcd1e9432",
        ),
        (
            "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz",
            "t10k-images-idx3-ubyte.gz",
            "9fb629c4189551a2d022fa330f9573f3",
        ),
        (
            "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
            "ec29112dd5afa0611ce80d1b7f02629c",
        ),
    ],
    "cifar10": [
        (
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            "cifar-10-python.tar.gz",
            "c58f30108f718f92721af3b95e74349a",
        ),
    ],
}


class DownloadError(RuntimeError):
    pass


def cache_dir() -> Path:
    return Path(os.environ.get("FEATSCOPE_DOWNLOADS", Path.home() / ".cache" / "featscope" / "downloads"))


def md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(name: str, retries: int = 4, backoff: float = 2.0, timeout: float = 60.0) -> list[Path]:
    """Paths of the verified raw files of dataset `name`, downloading what is missing."""
    folder = cache_dir() / name
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for url, filename, checksum in SOURCES[name]:
        path = folder / filename
        if not (path.exists() and md5(path) == checksum):
            _download(url, path, checksum, retries, backoff, timeout)
        paths.append(path)
    return paths


def _download(url: str, path: Path, checksum: str, retries: int, backoff: float, timeout: float) -> None:
    partial = path.with_name(path.name + ".part")
    last = None
    for attempt in range(retries):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
                while block := response.read(1 << 20):
                    out.write(block)
            got = md5(partial)
            if got != checksum:
                raise DownloadError(f"checksum mismatch for {url}: got md5 {got}, expected {checksum}")
            os.replace(partial, path)
            return
        except (urllib.error.URLError, OSError, DownloadError) as err:
            last = err
            partial.unlink(missing_ok=True)
            if attempt + 1 < retries:
                time.sleep(backoff * 2**attempt)
    raise DownloadError(
        f"could not download {url} after {retries} attempts ({last}). If this machine is offline, "
        f"download it elsewhere and place it at {path} (md5 {checksum})."
    )


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format), gzip-compressed."""
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load_mnist() -> dict:
    train_x, train_y, test_x, test_y = (read_idx(p) for p in fetch("mnist"))
    scale = lambda a: (a.astype(np.float32)[:, None] / 255.0 - 0.1307) / 0.3081  # noqa: E731
    return {
        "x_train": scale(train_x),
        "y_train": train_y.astype(np.int64),
        "x_test": scale(test_x),
        "y_test": test_y.astype(np.int64),
    }


def load_cifar10() -> dict:
    (archive,) = fetch("cifar10")
    parts = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            base = os.path.basename(member.name)
            if base.startswith("data_batch") or base == "test_batch":
                parts[base] = pickle.load(tar.extractfile(member), encoding="bytes")
    train = [parts[k] for k in sorted(parts) if k.startswith("data_batch")]
    mean = np.array([0.4914, 0.4822, 0.4465], np.float32)[:, None, None]
    std = np.array([0.2470, 0.2435, 0.2616], np.float32)[:, None, None]

    def images(batches):
        flat = np.concatenate([b[b"data"] for b in batches]).reshape(-1, 3, 32, 32)
        return (flat.astype(np.float32) / 255.0 - mean) / std

    def labels(batches):
        return np.concatenate([b[b"labels"] for b in batches]).astype(np.int64)

    return {
        "x_train": images(train),
        "y_train": labels(train),
        "x_test": images([parts["test_batch"]]),
        "y_test": labels([parts["test_batch"]]),
    }
