"""The tiny sin2 study the workflow tests run (seconds per job on a CPU)."""

import copy

SIN2 = {
    "task": {"name": "sin2", "d": 3, "f": 2, "n_train": 64},
    "model": {"name": "mlp", "width": 8, "depth": 2},
    "optim": {"name": "adam", "lr": 0.01},
    "train": {"steps": 30, "loss": "mse"},
    "schedule": {"every": 5},
    "observables": {"nonlinearity": {}, "linreg": {}},
    "analyses": ["phases"],
    "seeds": [0, 1],
}


def sin2_study(**changes) -> dict:
    return {**copy.deepcopy(SIN2), **changes}
