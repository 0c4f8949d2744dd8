"""Tasks: deterministic datasets built from a task config and its seed.

A dataset is a dict of numpy arrays: ``x_train``, ``y_train`` and, when the
task has a held-out split, ``x_test``, ``y_test``. Regression targets are
(n, outputs) float arrays; classification targets are (n,) integer labels.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .io import CorruptFileError, atomic_path


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


TASKS = {"sin2": (sin2, "regression")}


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
    try:
        with np.load(Path(path)) as npz:
            return {k: npz[k] for k in npz.files}
    except Exception as err:
        raise CorruptFileError(f"cannot read dataset file {path}: {err}") from err
