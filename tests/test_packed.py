"""Packed training against its twin: each run trained alone with `train_one`."""
import numpy as np
import pandas as pd
import pytest
import torch

from featscope import packed
from featscope.packed import pack_key, train_packed
from featscope.tasks import make_dataset
from featscope.training import train_one

SIN2 = {
    "task": {"name": "sin2", "d": 10, "f": 10, "n_train": 200, "n_test": 50, "seed": 0},
    "model": {"name": "mlp", "width": 32, "depth": 2, "activation": "relu"},
    "optim": {"name": "adam", "lr": 0.001, "warmup_steps": 10},
    "train": {"steps": 100, "loss": "mse", "eval_every": 7},
    "schedule": {"every": 20},
}
MODADD = {
    "task": {"name": "modadd", "M": 11, "train_fraction": 0.5, "seed": 0},
    "model": {"name": "modnet", "width": 24},
    "optim": {"name": "adamw", "lr": 0.003, "weight_decay": 1.0, "batch_size": 16},
    "train": {"steps": 60, "loss": "zero_mean_mse", "eval_every": 5},
    "schedule": {"every": 10},
}
READOUT = {**SIN2, "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "train": "readout"},
           "train": {"steps": 50, "loss": "mse"}}


def assert_same_as_alone(runs, data, got, rtol=1e-4, atol=1e-5):
    # Tolerance: float32 rounding of batched vs single matrix products, grown over ~100
    # optimiser steps; the metrics' row structure must match exactly.
    for (run_id, cfg), result in zip(runs, got):
        alone = train_one(run_id, cfg, data, progress=False)
        assert torch.equal(result.checkpoints["steps"], alone.checkpoints["steps"])
        assert result.checkpoints["params"].keys() == alone.checkpoints["params"].keys()
        for name, stack in alone.checkpoints["params"].items():
            assert torch.allclose(result.checkpoints["params"][name], stack, rtol=rtol, atol=atol), name
        cols = ["run", "step", "epoch", "split", "lr"]
        pd.testing.assert_frame_equal(result.metrics[cols], alone.metrics[cols])
        assert np.allclose(result.metrics.loss, alone.metrics.loss, rtol=rtol, atol=atol, equal_nan=True)
        assert np.allclose(result.metrics.acc, alone.metrics.acc, equal_nan=True, atol=0.02)
        for key in ("status", "steps_done", "diverged_at", "outputs"):
            assert result.info[key] == alone.info[key], key


# Per run: seed, then values of the optimiser that may differ within a pack.
VALUES = [(0, {}), (1, {"lr": 0.004}), (2, {"weight_decay": 0.1, "warmup_steps": 3})]


@pytest.mark.parametrize("cfg", [SIN2, MODADD, READOUT], ids=["adam+test", "adamw+minibatch+CE", "sgd+readout"])
def test_packed_matches_training_alone_to_float32_rounding(cfg):
    data = make_dataset(cfg["task"])
    runs = [(f"run-{s}", {**cfg, "seed": s, "optim": {**cfg["optim"], **values}}) for s, values in VALUES]
    assert_same_as_alone(runs, data, train_packed(runs, data))


def test_each_run_diverges_on_its_own():
    cfg = {**SIN2, "optim": {"name": "sgd", "lr": 3.0}, "train": {"steps": 40, "loss": "mse"}}
    data = make_dataset(cfg["task"])
    runs = [(f"seed-{s}", dict(cfg, seed=s)) for s in (0, 1, 2, 3)]
    got = train_packed(runs, data)
    assert {r.info["status"] for r in got} == {"diverged"}
    assert len({r.info["diverged_at"] for r in got}) > 1  # the pack did not stop at the first
    # The last checkpoint holds weights grown 1e5-fold in a few steps; rounding grows with them.
    assert_same_as_alone(runs, data, got, rtol=1e-2, atol=1e-3)


def test_killed_pack_resumes_to_the_same_result(tmp_path, monkeypatch):
    data = make_dataset(MODADD["task"])
    runs = [(f"seed-{s}", dict(MODADD, seed=s)) for s in (0, 1)]
    whole = train_packed(runs, data)
    state = tmp_path / "pack.pt"
    real, calls = packed._accuracies, {"n": 0}

    def killed_at_step_37(*args):
        calls["n"] += 1
        if calls["n"] > 37:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(packed, "_accuracies", killed_at_step_37)
    with pytest.raises(KeyboardInterrupt):
        train_packed(runs, data, resume_path=state, resume_every=0.0)
    assert state.exists()
    monkeypatch.setattr(packed, "_accuracies", real)
    resumed = train_packed(runs, data, resume_path=state, resume_every=0.0)
    for a, b in zip(whole, resumed):
        for name, stack in a.checkpoints["params"].items():
            assert torch.equal(b.checkpoints["params"][name], stack), name
        pd.testing.assert_frame_equal(a.metrics, b.metrics)


def test_pack_key_groups_runs_that_differ_only_in_seed_and_optimiser_values():
    assert pack_key(dict(SIN2, seed=0)) == pack_key(dict(SIN2, seed=5))
    assert pack_key(dict(SIN2, seed=0)) == pack_key({**SIN2, "seed": 1, "optim": {"name": "adam", "lr": 0.1}})
    assert pack_key(dict(SIN2, seed=0)) != pack_key({**SIN2, "seed": 0, "optim": {"name": "sgd", "lr": 0.001}})
    assert pack_key(dict(SIN2, seed=0)) != pack_key({**SIN2, "seed": 0, "model": {**SIN2["model"], "width": 8}})
    assert pack_key({**SIN2, "model": {"name": "cnn", "width": 8}, "seed": 0}) is None
    assert pack_key({**SIN2, "model": {**SIN2["model"], "batch_norm": True}, "seed": 0}) is None


def test_packing_refuses_runs_that_differ_beyond_seed_and_values():
    data = make_dataset(SIN2["task"])
    other = dict(SIN2, seed=1, train=dict(SIN2["train"], steps=50))
    with pytest.raises(ValueError, match="only in their seed"):
        train_packed([("a", dict(SIN2, seed=0)), ("b", other)], data)


@pytest.mark.parametrize("cfg", [SIN2, MODADD], ids=["full-batch", "minibatch"])
def test_a_runs_numbers_do_not_depend_on_its_pack(cfg):
    data = make_dataset(cfg["task"])
    runs = [(f"run-{s}", {**cfg, "seed": s, "optim": {**cfg["optim"], **values}})
            for s, values in VALUES + [(3, {"lr": 0.01}), (4, {})]]
    in_pack = train_packed(runs, data)
    for i in (0, 3):
        for result in (packed.train_alone_packed(*runs[i], data), train_packed([runs[i], runs[1]], data)[0]):
            for name, stack in in_pack[i].checkpoints["params"].items():
                assert torch.equal(result.checkpoints["params"][name], stack), name
            pd.testing.assert_frame_equal(result.metrics, in_pack[i].metrics)
