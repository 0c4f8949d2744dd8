"""Modular addition's per-seed split against Tian's reference code (scikit-learn's
train_test_split with random_state = seed), and its path through config, packing and packs."""

import math

import numpy as np
import pytest
import torch
import yaml

import featscope.config as fsconfig
from featscope.packed import train_packed
from featscope.packing import pack_key
from featscope.tasks import make_dataset


def _reference_split(m, test_size, seed):
    """The reference's data and split (modular_addition_simple2.py): pairs from
    itertools.product, labels (a + b) mod M, train_test_split(X, y, test_size, random_state=seed)."""
    import itertools

    from sklearn.model_selection import train_test_split

    data = [(a, b, (a + b) % m) for a, b in itertools.product(range(m), range(m))]
    x = np.array([d[:2] for d in data])
    y = np.array([d[2] for d in data])
    return train_test_split(x, y, test_size=test_size, random_state=seed)


@pytest.mark.parametrize("m, seed", [(11, 0), (23, 5), (71, 14)])
def test_per_seed_split_is_the_references(m, seed):
    pytest.importorskip("sklearn")
    data = make_dataset({"name": "modadd", "M": m, "train_fraction": 0.4, "split": "per_seed", "seed": seed})
    x_train, x_test, y_train, y_test = _reference_split(m, 1 - 0.4, seed)
    np.testing.assert_array_equal(data["x_train"], x_train)
    np.testing.assert_array_equal(data["x_test"], x_test)
    np.testing.assert_array_equal(data["y_train"], y_train)
    np.testing.assert_array_equal(data["y_test"], y_test)


def test_train_ratio_is_the_references_critical_ratio():
    """use_critical_ratio: test_size = 1 − ratio · ln M / M, with the reference's 2.7482."""
    pytest.importorskip("sklearn")
    m, ratio = 41, 2.7482
    data = make_dataset({"name": "modadd", "M": m, "train_ratio": ratio, "split": "per_seed", "seed": 3})
    x_train, _, _, _ = _reference_split(m, 1 - math.log(m) / m * ratio, 3)
    np.testing.assert_array_equal(data["x_train"], x_train)
    assert abs(len(x_train) - ratio * m * math.log(m)) < 1


def test_splits_differ_per_seed_only_when_asked():
    task = {"name": "modadd", "M": 13, "train_fraction": 0.5, "seed": 0}
    study = {
        "task": {**task, "split": "per_seed"},
        "model": {"name": "onehot", "width": 8},
        "optim": {"name": "adam", "lr": 0.01},
        "train": {"steps": 5, "loss": "zero_mean_mse"},
        "seeds": [0, 1, 2],
    }
    runs = fsconfig.expand_runs("s", study)
    assert [r.config["task"]["seed"] for r in runs] == [0, 1, 2]
    assert len({r.dataset_id for r in runs}) == 3
    assert len({pack_key(r.train_config) for r in runs}) == 1  # still one pack
    fixed = fsconfig.expand_runs("s", {**study, "task": task})
    assert len({r.dataset_id for r in fixed}) == 1
    a, b = (make_dataset(r.config["task"]) for r in runs[:2])
    assert not np.array_equal(a["x_train"], b["x_train"])


def test_a_pack_of_per_seed_splits_trains_each_run_on_its_own_data():
    """Bitwise: each run of a pack given one dataset per run equals that run trained (beside
    a copy, as `train_alone_packed` does) on its dataset alone, full batch and minibatch."""
    torch.set_num_threads(1)
    for batch in (None, 16):
        runs = []
        for seed in (0, 1, 2):
            task = {"name": "modadd", "M": 11, "train_ratio": 3.0, "split": "per_seed", "seed": seed}
            optim = {"name": "adam", "lr": 0.01, "weight_decay": 2e-4, "batch_size": batch}
            cfg = {
                "task": task,
                "model": {"name": "onehot", "width": 16, "activation": "square", "bias": False},
                "optim": optim,
                "train": {"steps": 20, "loss": "zero_mean_mse", "eval_every": 5},
                "schedule": {"every": 10},
                "seed": seed,
            }
            runs.append((f"seed-{seed}", cfg))
        datasets = [make_dataset(c["task"]) for _, c in runs]
        packed = train_packed(runs, datasets)
        for (run_id, cfg), data, got in zip(runs, datasets, packed):
            alone = train_packed([(run_id, cfg), ("copy", cfg)], data)[0]
            for name, value in got.checkpoints["params"].items():
                assert torch.equal(value, alone.checkpoints["params"][name])
            assert got.metrics.equals(alone.metrics)


def test_pack_refuses_datasets_of_other_shapes():
    cfg = {
        "task": {"name": "modadd", "M": 11, "train_fraction": 0.5},
        "model": {"name": "onehot", "width": 4, "activation": "square", "bias": False},
        "optim": {"name": "adam", "lr": 0.01},
        "train": {"steps": 2, "loss": "zero_mean_mse"},
        "schedule": {"every": 1},
    }
    a = make_dataset({"name": "modadd", "M": 11, "train_fraction": 0.5, "seed": 0})
    b = make_dataset({"name": "modadd", "M": 11, "train_fraction": 0.6, "seed": 0})
    with pytest.raises(ValueError, match="same splits and shapes"):
        train_packed([("a", {**cfg, "seed": 0}), ("b", {**cfg, "seed": 1})], [a, b])
    with pytest.raises(ValueError, match="one per run"):
        train_packed([("a", {**cfg, "seed": 0}), ("b", {**cfg, "seed": 1})], [a])


def test_modadd_needs_one_size_and_a_known_split():
    with pytest.raises(ValueError, match="exactly one of train_fraction and train_ratio"):
        make_dataset({"name": "modadd", "M": 7, "seed": 0})
    with pytest.raises(ValueError, match="'split'.*'random' is not one of"):
        make_dataset({"name": "modadd", "M": 7, "train_fraction": 0.5, "split": "random", "seed": 0})


def test_grokking_config_draws_its_splits_per_seed():
    from pathlib import Path

    config = yaml.safe_load((Path(__file__).parent.parent / "config" / "grokking.yaml").read_text())
    onehot = [s for s in config["studies"].values() if s["model"]["name"] == "onehot"]
    assert onehot and all(s["task"].get("split") == "per_seed" for s in onehot)


@pytest.mark.workflow
def test_workflow_trains_a_per_seed_study_as_one_pack_of_its_own_datasets(tmp_path, repo):
    """The real snakemake: three seeds, three datasets, one training pack, and each run's
    numbers those of its own split (recomputed here from the data files)."""
    from test_workflow import snakemake, write_config

    from featscope.io import read_parquet
    from featscope.tasks import load_dataset

    study = {
        "task": {"name": "modadd", "M": 7, "train_fraction": 0.6, "split": "per_seed"},
        "model": {"name": "onehot", "width": 8, "activation": "square", "bias": False},
        "optim": {"name": "adam", "lr": 0.01, "weight_decay": 0.0002},
        "train": {"steps": 20, "loss": "zero_mean_mse", "eval_every": 5},
        "schedule": {"every": 10},
        "observables": {"weights": {}, "gradients": {}},
        "analyses": ["grokking"],
        "seeds": [0, 1, 2],
    }
    write_config(tmp_path, {"studies": {"ps": study}})
    done = snakemake(tmp_path, repo, "--cores", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "train_ps__seed_0_2" in done.stderr  # one train block of the three seeds
    runs = read_parquet(tmp_path / "results" / "ps" / "runs.parquet").sort_values("seed")
    assert runs["task.seed"].tolist() == [0, 1, 2] and runs.packed.tolist() == [3, 3, 3]
    datasets = []
    for seed in (0, 1, 2):
        task = {**study["task"], "seed": seed}
        [path] = [p for p in (tmp_path / "results" / "data").glob("modadd-*.npz") if _same(load_dataset(p), task)]
        datasets.append(load_dataset(path))
    cfgs = [
        (
            f"seed-{s}",
            {
                **{k: study[k] for k in ("model", "optim", "train", "schedule")},
                "task": {**study["task"], "seed": s},
                "seed": s,
            },
        )
        for s in (0, 1, 2)
    ]
    for (run_id, _), want in zip(cfgs, train_packed(cfgs, datasets)):
        got = read_parquet(tmp_path / "results" / "ps" / "metrics" / f"{run_id}.parquet")
        assert got.loss.tolist() == want.metrics.loss.tolist()


def _same(data: dict, task: dict) -> bool:
    want = make_dataset(task)
    return all(np.array_equal(data[k], want[k]) for k in want)
