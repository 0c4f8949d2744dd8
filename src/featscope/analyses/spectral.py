"""Figures of the kernel eigen-measures (Nam et al.): they read the ``spectral`` family only."""

from __future__ import annotations

from ..registry import register_figure

EFFECTIVE_DIMS = ["effective_dim", "effective_dim_quality", "effective_dim_utility", "d_lr", "drift_init", "drift_prev"]


@register_figure(
    "spectrum",
    families=["spectral"],
    caption="""
    Eigenvalues ρ_k of the features' second-moment matrix (the layer the
    ``spectral`` family measures, the penultimate one by default) against the eigen
    index k, on log-log axes, at up to six log-spaced checkpoints of the first run of
    study **{study}** (colour: training step). A spectrum that steepens during
    training concentrates the features on fewer directions.
    """,
)
def spectrum(inputs):
    """Eigenvalue spectra of the first run's features at a range of checkpoints."""
    from ..plots import spectrum as draw

    rows = inputs.observables("spectral", filters={"observable": "eigenvalue"})
    return draw(inputs.runs, rows, None, inputs.study)


@register_figure(
    "cumulative",
    families=["spectral"],
    caption="""
    Cumulative quality Π*(k) (left: the share of the target captured by the top k
    eigenfunctions of the feature kernel) and cumulative utility Π̂(k) (right: the
    same for the network's output) at four log-spaced checkpoints of the first run
    of study **{study}** (colour: training step). Curves that reach 1 at small k mean
    few eigenfunctions carry the function.
    """,
)
def cumulative(inputs):
    """Π*(k) (target) and Π̂(k) (network output) at chosen checkpoints of the first run."""
    from ..plots import cumulative as draw

    rows = inputs.observables("spectral", filters={"observable": ["cum_quality", "cum_utility"]})
    return draw(inputs.runs, rows, None, inputs.study)


@register_figure(
    "effective_dim",
    families=["spectral"],
    caption="""
    Kernel eigen-measures over training in study **{study}**, one panel each: the
    effective dimension exp(entropy) of the normalised eigenvalues, of the quality
    shares (target) and of the utility shares (network output); D_LR = 1 − CKA
    between the feature kernel and the output projection (0 when the features have
    collapsed onto what the output uses); and the drift of the top eigenfunctions
    from initialisation and from the previous checkpoint. Lines are medians over
    seeds per grid point, bands the interquartile range.
    """,
)
def effective_dim(inputs):
    """Effective dimensions, D_LR and eigenfunction drift over training, per grid point."""
    from ..plots import effective_dim as draw

    rows = inputs.observables("spectral", filters={"observable": EFFECTIVE_DIMS})
    return draw(inputs.runs, rows, None, inputs.study)
