"""Observable families: name -> (version, tasks it applies to, function).

A family function maps a `Snapshot` (stacked checkpoints and their features
on the evaluation set) and its parameters to long-form rows
(step, observable, layer, k, value). Bump a family's ``version`` whenever its
numbers change: the workflow re-runs exactly that family's observe jobs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import families


@dataclass(frozen=True)
class Family:
    name: str
    version: int
    applies_to: frozenset
    compute: Callable
    description: str = ""
    params: frozenset = frozenset()  # its own parameters, besides COMMON_PARAMS


COMMON_PARAMS = frozenset({"split", "schedule"})  # every family takes these


FAMILIES = {
    "nonlinearity": Family("nonlinearity", 1, frozenset({"regression", "classification"}),
                           families.nonlinearity, "active rate and nonlinear/dead/linear neuron counts"),
    "linreg": Family("linreg", 2, frozenset({"regression"}), families.linreg,
                     "least-squares baselines of y on each layer's features"),
    "spectral": Family("spectral", 1, frozenset({"regression", "classification"}), families.spectral,
                       "kernel eigen-measures of the penultimate features (Nam et al.)",
                       frozenset({"layer", "landmarks", "top"})),
    "weights": Family("weights", 1, frozenset({"regression", "classification"}), families.weights,
                      "weight norms, changes, update cosine, diversity, rank, Fourier purity (Tian)",
                      frozenset({"min_purity"})),
    "gradients": Family("gradients", 1, frozenset({"regression", "classification"}), families.gradients,
                        "full-batch gradient norms and cosines, ‖G_F‖, Gram statistics (Tian)"),
}


def applicability() -> dict[str, set]:
    return {name: set(f.applies_to) for name, f in FAMILIES.items()}


def parameters() -> dict[str, set]:
    """Family name -> the parameters it takes."""
    return {name: set(COMMON_PARAMS | f.params) for name, f in FAMILIES.items()}
