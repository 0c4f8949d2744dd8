import numpy as np
import pytest
import torch

from featscope.packed import train_packed
from featscope.tasks import make_dataset
from featscope.training import train_one

CFG = {
    "task": {"name": "sin2", "d": 10, "f": 10, "n_train": 200, "n_test": 0, "seed": 0},
    "model": {"name": "mlp", "width": 32, "depth": 2, "activation": "relu"},
    "optim": {"name": "adam", "lr": 0.001, "warmup_steps": 10},
    "train": {"steps": 100, "loss": "mse"},
    "schedule": {"every": 20},
}


def test_packed_matches_training_alone_to_float32_rounding():
    data = make_dataset(CFG["task"])
    runs = [(f"seed-{s}", dict(CFG, seed=s)) for s in (0, 1, 2)]
    packed = train_packed(runs, data)
    for (run_id, cfg), got in zip(runs, packed):
        alone = train_one(run_id, cfg, data, progress=False)
        assert torch.equal(got.checkpoints["steps"], alone.checkpoints["steps"])
        for name, stack in alone.checkpoints["params"].items():
            # Tolerance: 100 Adam steps of float32 rounding differences between batched and
            # single matrix products.
            assert torch.allclose(got.checkpoints["params"][name], stack, rtol=1e-4, atol=1e-5), name
        assert np.allclose(got.metrics.loss, alone.metrics.loss, rtol=1e-4)
        assert list(got.metrics.step) == list(alone.metrics.step)


def test_packing_refuses_runs_that_differ_beyond_the_seed():
    data = make_dataset(CFG["task"])
    other = dict(CFG, seed=1, optim=dict(CFG["optim"], lr=0.01))
    with pytest.raises(ValueError, match="only in their seed"):
        train_packed([("a", dict(CFG, seed=0)), ("b", other)], data)
