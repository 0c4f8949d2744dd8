"""featscope: watch features form inside neural networks.

The public surface is small; everything else is an implementation detail. Its names are
imported on first use (PEP 562), so that ``import featscope.config`` and the workflow's
other planning imports do not pull in torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_PUBLIC = {  # name -> the module that defines it
    "spectral": ".observables.spectral",
    "eigen_drift": ".observables.spectral",
    "active_rate": ".observables.nonlinearity",
    "nonlinear_neurons": ".observables.nonlinearity",
    "dead_neurons": ".observables.nonlinearity",
    "linear_neurons": ".observables.nonlinearity",
    "linreg_loss": ".observables.linreg",
    "segment_phases": ".phases",
    "MLP": ".models",
    "build_model": ".models",
    "make_dataset": ".tasks",
    "train_runs": ".training",
    "train_packed": ".packed",
    "pack_key": ".packing",
    "expand_runs": ".config",
    "observe_model": ".observe",
    "register_model": ".registry",
    "register_family": ".registry",
    "register_analysis": ".registry",
    "register_figure": ".registry",
    "register_task": ".registry",
    "register_loss": ".registry",
}
__all__ = list(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'featscope' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
