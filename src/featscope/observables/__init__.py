"""Observable families, registered with `featscope.register_family` (see `featscope.registry`).

A family function maps a `Snapshot` (stacked checkpoints and their features
on the evaluation set) and its parameters to long-form rows
(step, observable, layer, k, value), as `rows.Rows`: blocks of one observable
and layer each, joined into one table per run (`rows.table`; `rows.frame` for
pandas). Bump a family's ``version`` whenever its numbers change: the workflow
re-runs exactly that family's observe jobs.

The registry itself imports no torch: the workflow reads it while Snakemake starts.
"""

from __future__ import annotations

from ..registry import COMMON_PARAMS, FAMILIES, register_family

__all__ = ["COMMON_PARAMS", "FAMILIES", "applicability", "parameters"]

_BUILT_IN = "featscope.observables.families"
register_family(
    "nonlinearity",
    version=1,
    reads="active rates",
    description="active rate and nonlinear/dead/linear neuron counts",
    fn=f"{_BUILT_IN}:nonlinearity",
)
register_family(
    "linreg",
    version=2,
    applies_to={"regression"},
    description="least-squares baselines of y on each layer's features",
    fn=f"{_BUILT_IN}:linreg",
)
register_family(
    "spectral",
    version=2,  # 2: d_lr projects onto the centred outputs' span (docs/results-dlr.md)
    params={"layer", "landmarks", "top"},
    description="kernel eigen-measures of the penultimate features (Nam et al.)",
    fn=f"{_BUILT_IN}:spectral",
)
register_family(
    "weights",
    version=1,
    params={"min_purity"},
    reads="parameters",
    description="weight norms, changes, update cosine, diversity, rank, Fourier purity (Tian)",
    fn=f"{_BUILT_IN}:weights",
)
register_family(
    "gradients",
    version=1,
    reads="parameters",  # with its own forward and backward pass
    description="full-batch gradient norms and cosines, ‖G_F‖, Gram statistics (Tian)",
    fn=f"{_BUILT_IN}:gradients",
)


def applicability() -> dict[str, set]:
    """Family name -> the task kinds it applies to."""
    return {name: set(f.applies_to) for name, f in FAMILIES.items()}


def parameters() -> dict[str, set]:
    """Family name -> the parameters it takes."""
    return {name: set(COMMON_PARAMS | f.params) for name, f in FAMILIES.items()}
