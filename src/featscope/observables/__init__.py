"""Observable families: name -> (version, tasks it applies to, function).

A family function maps a `Snapshot` (stacked checkpoints and their features
on the evaluation set) and its parameters to long-form rows
(step, observable, layer, k, value), as `rows.Rows`: blocks of one observable
and layer each, joined into one table per run (`rows.table`; `rows.frame` for
pandas). Bump a family's ``version`` whenever its numbers change: the workflow
re-runs exactly that family's observe jobs.

The registry itself imports no torch: the workflow reads it while Snakemake starts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    name: str
    version: int
    applies_to: frozenset
    description: str = ""
    params: frozenset = frozenset()  # its own parameters, besides COMMON_PARAMS
    # What it reads of a chunk of checkpoints: "features" (outputs, pre- and post-activations),
    # "active rates" (which have a cheaper pass of their own) or "parameters".
    reads: str = "features"

    @property
    def compute(self) -> Callable:
        """The family function, `families.<name>` (imported on first use: it needs torch)."""
        from . import families

        return getattr(families, self.name)


COMMON_PARAMS = frozenset({"split", "schedule"})  # every family takes these


FAMILIES = {
    "nonlinearity": Family(
        "nonlinearity",
        1,
        frozenset({"regression", "classification"}),
        "active rate and nonlinear/dead/linear neuron counts",
        reads="active rates",
    ),
    "linreg": Family("linreg", 2, frozenset({"regression"}), "least-squares baselines of y on each layer's features"),
    "spectral": Family(
        "spectral",
        1,
        frozenset({"regression", "classification"}),
        "kernel eigen-measures of the penultimate features (Nam et al.)",
        frozenset({"layer", "landmarks", "top"}),
    ),
    "weights": Family(
        "weights",
        1,
        frozenset({"regression", "classification"}),
        "weight norms, changes, update cosine, diversity, rank, Fourier purity (Tian)",
        frozenset({"min_purity"}),
        reads="parameters",
    ),
    "gradients": Family(
        "gradients",
        1,
        frozenset({"regression", "classification"}),
        "full-batch gradient norms and cosines, ‖G_F‖, Gram statistics (Tian)",
        reads="parameters",
    ),  # with its own forward and backward pass
}


def applicability() -> dict[str, set]:
    return {name: set(f.applies_to) for name, f in FAMILIES.items()}


def parameters() -> dict[str, set]:
    """Family name -> the parameters it takes."""
    return {name: set(COMMON_PARAMS | f.params) for name, f in FAMILIES.items()}
