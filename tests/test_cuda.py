"""On a GPU: both training engines and observation agree with the CPU, and checkpoints
written there load on the CPU. Skipped where CUDA is absent (development and CI have no
GPU); this is what a GPU machine runs.

Tolerance: rtol 1e-3, atol 1e-4 on parameters and losses after the runs' 60-100 steps.
CUDA's float32 products sum in other orders than the CPU's (and cuBLAS may pick other
kernels); TF32 is switched off here, so what differs is float32 rounding grown over the
optimiser's steps, as between a pack and a run alone (tests/test_packed.py: 1e-4, 1e-5).
"""

import numpy as np
import pandas as pd
import pytest
import torch

from featscope.io import load_torch, save_torch
from featscope.observe import observe_families
from featscope.packed import train_packed
from featscope.tasks import make_dataset
from featscope.training import train_one

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

RTOL, ATOL = 1e-3, 1e-4
SIN2 = {
    "task": {"name": "sin2", "d": 5, "f": 3, "n_train": 128, "n_test": 32, "seed": 0},
    "model": {"name": "mlp", "width": 32, "depth": 2, "activation": "relu"},
    "optim": {"name": "adam", "lr": 0.003},
    "train": {"steps": 100, "loss": "mse"},
    "schedule": {"every": 20},
}
MODADD = {
    "task": {"name": "modadd", "M": 11, "train_fraction": 0.5, "seed": 0},
    "model": {"name": "modnet", "width": 24},
    "optim": {"name": "adamw", "lr": 0.003, "weight_decay": 1.0, "batch_size": 16},
    "train": {"steps": 60, "loss": "cross_entropy", "eval_every": 5},
    "schedule": {"every": 10},
}
GELU = {**SIN2, "model": {**SIN2["model"], "activation": "gelu"}}  # the torch.func engine


@pytest.fixture(autouse=True)
def no_tf32():
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _runs(cfg):
    return [
        (f"run-{s}", {**cfg, "seed": s, "optim": {**cfg["optim"], "lr": cfg["optim"]["lr"] * (1 + s)}}) for s in (0, 1)
    ]


def _assert_close(a, b):
    assert torch.equal(a.checkpoints["steps"], b.checkpoints["steps"])
    for name, stack in a.checkpoints["params"].items():
        other = b.checkpoints["params"][name]
        assert stack.device.type == other.device.type == "cpu"  # checkpoints always go to the CPU
        assert torch.allclose(stack, other, rtol=RTOL, atol=ATOL), name
    assert np.allclose(a.metrics.loss, b.metrics.loss, rtol=RTOL, atol=ATOL, equal_nan=True)


@pytest.mark.parametrize("cfg", [SIN2, MODADD, GELU], ids=["stacked-mlp", "stacked-modnet", "torch.func-gelu"])
def test_packed_engines_on_cuda_agree_with_the_cpu(cfg):
    data = make_dataset(cfg["task"])
    on_gpu = train_packed(_runs(cfg), data, device="cuda")
    on_cpu = train_packed(_runs(cfg), data, device="cpu")
    for a, b in zip(on_gpu, on_cpu):
        assert a.info["device"].startswith("cuda")
        _assert_close(a, b)


@pytest.mark.parametrize("cfg", [SIN2, MODADD], ids=["mlp", "modnet"])
def test_training_alone_on_cuda_agrees_with_the_cpu(cfg):
    data = make_dataset(cfg["task"])
    run_id, run_cfg = _runs(cfg)[0]
    _assert_close(
        train_one(run_id, run_cfg, data, "cuda", progress=False),
        train_one(run_id, run_cfg, data, "cpu", progress=False),
    )


def test_checkpoints_from_cuda_load_and_are_observed_on_the_cpu(tmp_path):
    data = make_dataset(SIN2["task"])
    run_id, cfg = _runs(SIN2)[0]
    gpu = train_one(run_id, cfg, data, "cuda", progress=False)
    save_torch(gpu.checkpoints, tmp_path / "gpu.pt")
    loaded = load_torch(tmp_path / "gpu.pt")
    assert all(v.device.type == "cpu" for v in loaded["params"].values())
    families = {"nonlinearity": {}, "linreg": {}, "spectral": {"top": 4}, "weights": {}}
    cpu = train_one(run_id, cfg, data, "cpu", progress=False)
    got = pd.concat(observe_families(run_id, families, loaded, data).values(), ignore_index=True)
    want = pd.concat(observe_families(run_id, families, cpu.checkpoints, data).values(), ignore_index=True)
    keys = ["run", "step", "observable", "layer", "k"]
    pd.testing.assert_frame_equal(got[keys], want[keys])
    # Neuron counts may differ where a pre-activation sits within rounding of 0: compare the rest.
    smooth = ~got.observable.isin(["nonlinear_neurons", "dead_neurons", "linear_neurons", "active_rate"])
    assert np.allclose(got.value[smooth], want.value[smooth], rtol=1e-2, atol=1e-3, equal_nan=True)
