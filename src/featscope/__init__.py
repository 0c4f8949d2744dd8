"""featscope: watch features form inside neural networks.

The public surface is small; everything else is an implementation detail.
"""
__version__ = "0.1.0"

from .observables.nonlinearity import active_rate, dead_neurons, linear_neurons, nonlinear_neurons
from .observables.linreg import linreg_loss
from .observables.spectral import eigen_drift, spectral
from .phases import segment_phases
from .models import MLP, build_model
from .tasks import make_dataset
from .training import train_runs
from .packed import pack_key, train_packed
from .config import expand_runs

__all__ = [
    "spectral", "eigen_drift", "active_rate", "nonlinear_neurons", "dead_neurons", "linear_neurons", "linreg_loss",
    "segment_phases", "MLP", "build_model", "make_dataset", "train_runs", "train_packed", "pack_key", "expand_runs",
]
