"""Tasks: deterministic datasets built from a task config and its seed.

A dataset is a dict of numpy arrays: ``x_train``, ``y_train`` and, when the
task has a held-out split, ``x_test``, ``y_test``. Regression targets are
(n, outputs) float arrays; classification targets are (n,) integer labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .io import atomic_path, quarantine


def sin2(cfg: dict) -> dict:
    """Liu & Zheng's regression: y = sum_i sin^2(f x_i), x ~ N(0, I_d)."""
    rng = np.random.default_rng(cfg["seed"])
    n = cfg["n_train"] + cfg.get("n_test", 0)
    x = rng.standard_normal((n, cfg["d"])).astype(np.float32)
    y = np.sin(cfg["f"] * x.astype(np.float64)) ** 2
    y = y.sum(axis=1, keepdims=True).astype(np.float32)
    return _split(x, y, cfg["n_train"])


def _split(x, y, n_train: int) -> dict:
    data = {"x_train": x[:n_train], "y_train": y[:n_train]}
    if len(x) > n_train:
        data.update(x_test=x[n_train:], y_test=y[n_train:])
    return data


def fn1d(cfg: dict) -> dict:
    """A 1-D regression function y = sin(2π·freq·x) (+ noise), x ~ U[-1, 1]."""
    rng = np.random.default_rng(cfg["seed"])
    n = cfg["n_train"] + cfg.get("n_test", 0)
    x = rng.uniform(-1, 1, (n, 1))
    y = np.sin(2 * np.pi * cfg["freq"] * x) + cfg.get("noise", 0.0) * rng.standard_normal((n, 1))
    return _split(x.astype(np.float32), y.astype(np.float32), cfg["n_train"])


def mnist1d(cfg: dict) -> dict:
    """MNIST-1D (Greydanus & Kobak), generated procedurally by the `mnist1d` package: no download."""
    from mnist1d.data import get_dataset_args
    from mnist1d.data import make_dataset as make_mnist1d

    args = get_dataset_args()
    args.num_samples = cfg["n_train"] + cfg["n_test"]
    args.train_split = cfg["n_train"] / args.num_samples
    args.seed = cfg["seed"]
    raw = make_mnist1d(args)
    data = {
        "x_train": raw["x"].astype(np.float32),
        "y_train": raw["y"].astype(np.int64),
        "x_test": raw["x_test"].astype(np.float32),
        "y_test": raw["y_test"].astype(np.int64),
    }
    return _with_random_labels(data, cfg)


def images(cfg: dict) -> dict:
    """MNIST or CIFAR-10, downloaded once (checksums verified), then a seeded subset."""
    from .downloads import load_cifar10, load_mnist

    full = load_mnist() if cfg["name"] == "mnist" else load_cifar10()
    rng = np.random.default_rng(cfg["seed"])
    data = {}
    for split, n in (("train", cfg["n_train"]), ("test", cfg["n_test"])):
        x, y = full[f"x_{split}"], full[f"y_{split}"]
        if n > len(x):
            raise ValueError(f"task {cfg['name']}: n_{split} = {n} but the dataset has {len(x)} samples")
        pick = np.sort(rng.permutation(len(x))[:n])
        data[f"x_{split}"], data[f"y_{split}"] = x[pick], y[pick]
    return _with_random_labels(data, cfg)


DIGITS_SAMPLES = 1797  # scikit-learn's bundled copy of the UCI optical digits test set


def digits(cfg: dict) -> dict:
    """scikit-learn's bundled 8×8 handwritten digits (1,797 images, 10 classes): real images, offline.

    Pixels (integers 0..16) are scaled to [0, 1] and shaped (n, 1, 8, 8), so the CNNs see one
    channel and an MLP the 64 pixels. A seeded permutation of all images gives disjoint train
    and test sets (the first ``n_train``, the next ``n_test``), each kept in the original order.
    """
    from sklearn.datasets import load_digits

    n_train, n_test = cfg["n_train"], cfg["n_test"]
    if n_train + n_test > DIGITS_SAMPLES:
        raise ValueError(
            f"task digits: n_train + n_test = {n_train + n_test} but the dataset has {DIGITS_SAMPLES} images"
        )
    raw = load_digits()
    x = (raw.images / 16.0).astype(np.float32)[:, None]
    y = raw.target.astype(np.int64)
    order = np.random.default_rng(cfg["seed"]).permutation(len(x))
    train, test = np.sort(order[:n_train]), np.sort(order[n_train : n_train + n_test])
    data = {"x_train": x[train], "y_train": y[train], "x_test": x[test], "y_test": y[test]}
    return _with_random_labels(data, cfg)


def _with_random_labels(data: dict, cfg: dict) -> dict:
    """Replace the training labels by a seeded permutation of themselves (memorisation control)."""
    if cfg.get("random_labels"):
        rng = np.random.default_rng([cfg["seed"], 1])
        data["y_train"] = rng.permutation(data["y_train"])
    return data


def modadd(cfg: dict) -> dict:
    """(a + b) mod M over all M² pairs; a seeded split keeps `train_fraction` for training.

    Inputs are integer pairs (n, 2); the models embed or one-hot encode them.
    """
    m = cfg["M"]
    a, b = np.meshgrid(np.arange(m), np.arange(m), indexing="ij")
    x = np.stack([a.ravel(), b.ravel()], axis=1).astype(np.int64)
    y = (x.sum(axis=1) % m).astype(np.int64)
    order = np.random.default_rng([cfg["seed"], m]).permutation(len(x))
    n_train = int(round(cfg["train_fraction"] * len(x)))
    return _split(x[order], y[order], n_train)


TASKS = {
    "sin2": (sin2, "regression"),
    "fn1d": (fn1d, "regression"),
    "mnist1d": (mnist1d, "classification"),
    "modadd": (modadd, "classification"),
    "mnist": (images, "classification"),
    "cifar10": (images, "classification"),
    "digits": (digits, "classification"),
}


DOWNLOADED = ("mnist", "cifar10")  # fetched over the network; the rest are generated locally


def task_outputs(cfg: dict) -> int:
    """Output dimension a model needs: classes, or regression targets."""
    return {"mnist1d": 10, "mnist": 10, "cifar10": 10, "digits": 10, "modadd": cfg.get("M", 0)}.get(cfg["name"], 1)


def task_kind(name: str) -> str:
    return TASKS[name][1]


def make_dataset(cfg: dict) -> dict:
    """Build the dataset a task config describes (deterministic in ``cfg['seed']``)."""
    if cfg["name"] not in TASKS:
        raise ValueError(f"unknown task '{cfg['name']}'; known: {sorted(TASKS)}")
    builder, _ = TASKS[cfg["name"]]
    return builder(cfg)


def save_dataset(data: dict, path) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **data)


def load_dataset(path) -> dict:
    if not Path(path).exists():
        raise FileNotFoundError(path)
    try:
        with np.load(Path(path)) as npz:
            return {k: npz[k] for k in npz.files}
    except Exception as err:
        raise quarantine(path, err) from err
