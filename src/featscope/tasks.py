"""Tasks: deterministic datasets built from a task config and its seed.

Each task is a builder registered with `featscope.register_task` (the built-ins below
register exactly as a plugin's task does): ``builder(cfg) -> dict`` of numpy arrays
``x_train``, ``y_train`` and, when the task has a held-out split, ``x_test``, ``y_test``.
``cfg`` is the study's ``task`` block with its defaults filled in; the builder must be
deterministic in it (``cfg["seed"]`` draws the data). Inputs are float32, or int64 indices
(token ids, such as modadd's (a, b) pairs), shaped (n, ...); regression targets are
(n, outputs) float32; classification targets are (n,) int64 labels in [0, classes).
`make_dataset` checks what a builder returns against this contract (`check_dataset`), so
a wrong array is named in the data job, before any training.

This module imports numpy and no torch: the planner reads task kinds and parameters while
Snakemake starts. A builder imports what else it needs itself (scikit-learn, mnist1d).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .io import atomic_path, quarantine
from .registry import RegistryError, register_task, task

POSITIVE_INT = {"type": "integer", "minimum": 1}
N_TRAIN = "training samples"
N_TEST = "test samples (0: no test split)"
RANDOM_LABELS = {
    "type": "boolean",
    "default": False,
    "description": "replace the labels by uniformly random ones (memorisation control)",
}


@register_task(
    "sin2",
    kind="regression",
    params={
        "d": {**POSITIVE_INT, "default": 10, "description": "input dimension"},
        "f": {"type": "number", "default": 10, "description": "frequency f in sin²(f·xᵢ)"},
        "n_train": {**POSITIVE_INT, "default": 500, "description": N_TRAIN},
        "n_test": {"type": "integer", "minimum": 0, "default": 0, "description": N_TEST},
    },
)
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


@register_task(
    "fn1d",
    kind="regression",
    params={
        "freq": {"type": "number", "exclusiveMinimum": 0, "default": 2, "description": "frequency of the sine"},
        "noise": {
            "type": "number",
            "minimum": 0,
            "default": 0.0,
            "description": "standard deviation of Gaussian noise added to y",
        },
        "n_train": {**POSITIVE_INT, "default": 256, "description": N_TRAIN},
        "n_test": {"type": "integer", "minimum": 0, "default": 256, "description": N_TEST},
    },
)
def fn1d(cfg: dict) -> dict:
    """A 1-D regression function y = sin(2π·freq·x) (+ noise), x ~ U[-1, 1]."""
    rng = np.random.default_rng(cfg["seed"])
    n = cfg["n_train"] + cfg.get("n_test", 0)
    x = rng.uniform(-1, 1, (n, 1))
    y = np.sin(2 * np.pi * cfg["freq"] * x) + cfg.get("noise", 0.0) * rng.standard_normal((n, 1))
    return _split(x.astype(np.float32), y.astype(np.float32), cfg["n_train"])


@register_task(
    "mnist1d",
    kind="classification",
    outputs=10,
    params={
        "n_train": {**POSITIVE_INT, "default": 4000, "description": N_TRAIN},
        "n_test": {**POSITIVE_INT, "default": 1000, "description": N_TEST},
        "random_labels": RANDOM_LABELS,
    },
)
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


IMAGE_PARAMS = {
    "n_train": {**POSITIVE_INT, "default": 10000, "description": N_TRAIN},
    "n_test": {**POSITIVE_INT, "default": 2000, "description": N_TEST},
    "random_labels": RANDOM_LABELS,
}
IMAGES = "downloaded once by the data rule (checksums verified) into $FEATSCOPE_DOWNLOADS"


@register_task("cifar10", kind="classification", outputs=10, params=IMAGE_PARAMS, description=IMAGES)
@register_task("mnist", kind="classification", outputs=10, params=IMAGE_PARAMS, description=IMAGES)
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


def _digits_fit(cfg: dict) -> None:
    n_train, n_test = cfg["n_train"], cfg["n_test"]
    if n_train + n_test > DIGITS_SAMPLES:
        raise ValueError(f"n_train + n_test = {n_train + n_test} but the dataset has {DIGITS_SAMPLES} images")


@register_task(
    "digits",
    kind="classification",
    outputs=10,
    check=_digits_fit,
    params={
        "n_train": {**POSITIVE_INT, "default": 1200, "description": N_TRAIN},
        "n_test": {**POSITIVE_INT, "default": 597, "description": N_TEST},
        "random_labels": RANDOM_LABELS,
    },
    description="scikit-learn's bundled 8x8 digits (1797 images, no download); n_train + n_test <= 1797",
)
def digits(cfg: dict) -> dict:
    """scikit-learn's bundled 8×8 handwritten digits (1,797 images, 10 classes): real images, offline.

    Pixels (integers 0..16) are scaled to [0, 1] and shaped (n, 1, 8, 8), so the CNNs see one
    channel and an MLP the 64 pixels. A seeded permutation of all images gives disjoint train
    and test sets (the first ``n_train``, the next ``n_test``), each kept in the original order.
    """
    from sklearn.datasets import load_digits

    _digits_fit(cfg)
    n_train, n_test = cfg["n_train"], cfg["n_test"]
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


def _one_size(cfg: dict) -> None:
    modadd_train_fraction(cfg)


@register_task(
    "modadd",
    kind="classification",
    outputs=lambda cfg: cfg["M"],
    check=_one_size,
    optional=("train_fraction", "train_ratio", "split"),
    params={
        "M": {"type": "integer", "minimum": 2, "description": "modulus; classes = M"},
        "train_fraction": {
            "type": "number",
            "exclusiveMinimum": 0,
            "exclusiveMaximum": 1,
            "description": "share of the M² pairs used for training; the rest is the test set",
        },
        "train_ratio": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "instead of train_fraction: train on ratio · M ln M pairs (Tian's reference code's "
            "critical_ratio_multiplier; its n_crit constant is 2.7482)",
        },
        "split": {
            "enum": ["fixed", "per_seed"],
            "description": "fixed (when omitted) = one split from `seed` for every seed of a grid point; per_seed = "
            "each run draws its own split with the run's seed (replacing `seed`), as Tian's reference code does "
            "(scikit-learn's train_test_split with random_state = seed)",
        },
    },
)
def modadd(cfg: dict) -> dict:
    """(a + b) mod M over all M² pairs, split into a training and a test set.

    Inputs are integer pairs (n, 2), a-major as in Tian's reference code; the models embed or
    one-hot encode them. The training set's size is `train_fraction` of the M² pairs, or
    `train_ratio` · M ln M pairs (the reference's ``use_critical_ratio``: ``test_size = 1 −
    ratio · ln M / M``, so n_crit = c · M ln M reads directly as a ratio c).

    ``split: fixed`` (default): one seeded permutation from ``[seed, M]`` and the first
    round(fraction · M²) pairs train; every seed of a grid point sees the same split.
    ``split: per_seed``: the reference's draw, ``sklearn.model_selection.train_test_split(X, y,
    test_size, random_state=seed)`` reproduced with NumPy (tests/test_tian_split.py checks it
    against scikit-learn): test = the first ceil(test_size · M²) entries of
    ``RandomState(seed).permutation(M²)``, train = the rest, in that order. The workflow sets
    ``seed`` to the run's seed for such a task (`config.expand_runs`), so each seed draws its own
    split, as the reference's ``random_state=args.seed`` does.
    """
    m = cfg["M"]
    a, b = np.meshgrid(np.arange(m), np.arange(m), indexing="ij")
    x = np.stack([a.ravel(), b.ravel()], axis=1).astype(np.int64)
    y = (x.sum(axis=1) % m).astype(np.int64)
    split = cfg.get("split", "fixed")
    if split == "fixed":
        order = np.random.default_rng([cfg["seed"], m]).permutation(len(x))
        return _split(x[order], y[order], int(round(modadd_train_fraction(cfg) * len(x))))
    if split == "per_seed":
        test_size = 1.0 - modadd_train_fraction(cfg)
        n_test = int(np.ceil(test_size * len(x)))
        if n_test < 1 or n_test >= len(x):
            raise ValueError(f"task modadd: M = {m} leaves {len(x) - n_test} training and {n_test} test pairs")
        order = np.random.RandomState(cfg["seed"]).permutation(len(x))
        order = np.concatenate([order[n_test:], order[:n_test]])  # train first, as _split takes it
        return _split(x[order], y[order], len(x) - n_test)
    raise ValueError(f"task modadd: split must be 'fixed' or 'per_seed', not {split!r}")


def modadd_train_fraction(cfg: dict) -> float:
    """The share of the M² pairs a modadd task trains on: `train_fraction`, or
    `train_ratio` · ln M / M (clipped to [0, 1] as the reference clips its test size)."""
    if ("train_fraction" in cfg) == ("train_ratio" in cfg):
        raise ValueError("give exactly one of train_fraction and train_ratio")
    if "train_fraction" in cfg:
        return float(cfg["train_fraction"])
    m = cfg["M"]
    return min(max(cfg["train_ratio"] * np.log(m) / m, 0.0), 1.0)


def task_outputs(cfg: dict) -> int:
    """Output dimension a model needs: classes, or regression targets (the task's ``outputs``)."""
    return task(cfg["name"]).outputs_of(cfg)


def task_kind(name: str) -> str:
    """``"regression"`` or ``"classification"``: the registered task's kind."""
    return task(name).kind


class DatasetError(ValueError):
    """A task's builder returned data that breaks the dataset contract; the message names
    the task, the array and what is wrong."""


def make_dataset(cfg: dict) -> dict:
    """Build the dataset a task config describes (deterministic in ``cfg['seed']``).

    The config is resolved by the registered task first (defaults filled in, an unknown or
    missing key refused, naming it: the same as the workflow's config check), and what the
    builder returns is checked (`check_dataset`)."""
    full = resolve_task(cfg)
    data = task(full["name"]).build(full)
    check_dataset(data, full)
    return data


def resolve_task(cfg: dict) -> dict:
    """The task config with its defaults filled in, checked as the workflow's config check
    does: an unknown or missing key, a value of the wrong type or out of range, and what the
    task's own ``check`` refuses raise `featscope.registry.RegistryError` (a ``ValueError``)
    naming the task and the key."""
    import jsonschema

    spec = task(cfg["name"])
    full = spec.resolve(cfg)
    for error in jsonschema.Draft202012Validator(spec.schema()).iter_errors(full):
        where = ".".join(map(str, error.absolute_path))
        raise RegistryError(f"task '{spec.name}', parameter {where!r}: {error.message}")
    if spec.check is not None:
        try:
            spec.check(full)
        except ValueError as err:
            raise RegistryError(f"task '{spec.name}': {err}") from None
    return full


def check_dataset(data, cfg: dict) -> None:
    """Refuse data that breaks the contract of task ``cfg['name']`` (module docstring):
    wrong keys, non-arrays, wrong dtypes or shapes, train and test that disagree, labels
    outside [0, classes), non-finite values. The message names the task and the array."""
    spec = task(cfg["name"])
    where = f"task '{spec.name}' ({_origin_of(spec)})"

    def fail(message: str):
        raise DatasetError(f"{where}: {message}")

    if not isinstance(data, dict):
        fail(f"the builder returned {type(data).__name__}, not a dict of numpy arrays")
    keys = set(data)
    unknown = sorted(keys - {"x_train", "y_train", "x_test", "y_test"})
    if unknown:
        fail(f"unknown key {unknown[0]!r}; a dataset has x_train, y_train and optionally x_test, y_test")
    for key in ("x_train", "y_train"):
        if key not in keys:
            fail(f"no {key!r}")
    if ("x_test" in keys) != ("y_test" in keys):
        fail("x_test and y_test come together: one is missing")
    outputs = spec.outputs_of(cfg)
    for split in ("train", "test"):
        if f"x_{split}" not in keys:
            continue
        x, y = data[f"x_{split}"], data[f"y_{split}"]
        for key, array in ((f"x_{split}", x), (f"y_{split}", y)):
            if not isinstance(array, np.ndarray):
                fail(f"{key} is a {type(array).__name__}, not a numpy array")
        if x.dtype not in (np.float32, np.int64):
            fail(f"x_{split} has dtype {x.dtype}; inputs are float32 (or int64 indices)")
        if x.ndim < 2:
            fail(f"x_{split} has shape {x.shape}; inputs are (n, ...) with at least one feature axis")
        if len(y) != len(x):
            fail(f"x_{split} has {len(x)} samples but y_{split} has {len(y)}")
        if split == "train" and len(x) == 0:
            fail("x_train is empty")
        if spec.kind == "regression":
            if y.dtype != np.float32 or y.shape[1:] != (outputs,):
                fail(
                    f"y_{split} has dtype {y.dtype} and shape {y.shape}; regression targets are float32 "
                    f"(n, {outputs}) (the task's outputs={outputs})"
                )
        else:
            if y.dtype != np.int64 or y.ndim != 1:
                fail(f"y_{split} has dtype {y.dtype} and shape {y.shape}; class labels are int64 (n,)")
            if len(y) and (y.min() < 0 or y.max() >= outputs):
                fail(
                    f"y_{split} has labels in [{y.min()}, {y.max()}]; the task has {outputs} classes (0..{outputs - 1})"
                )
        for key, array in ((f"x_{split}", x), (f"y_{split}", y)):
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                fail(f"{key} holds NaN or infinite values")
    if "x_test" in keys:
        train, test = data["x_train"], data["x_test"]
        if train.shape[1:] != test.shape[1:] or train.dtype != test.dtype:
            fail(f"x_train is {train.dtype} {train.shape[1:]} per sample but x_test is {test.dtype} {test.shape[1:]}")


def _origin_of(spec) -> str:
    fn = spec.fn
    return fn if isinstance(fn, str) else f"{fn.__module__}.{fn.__qualname__}"


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
