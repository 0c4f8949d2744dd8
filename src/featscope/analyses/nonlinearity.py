"""Figures of the nonlinearity study: they read the observables, and the phases table when
the study makes one (to shade the phases)."""

from __future__ import annotations

from ..registry import register_figure


def _curves(inputs, observable: str):
    metrics = inputs.metrics(columns=["run", "step", "split", "loss"])
    family = {"nonlinear_neurons": "nonlinearity", "linreg_loss": "linreg"}[observable]
    return metrics, inputs.observables(family, filters={"observable": observable})


@register_figure(
    "loss_neurons",
    families=["nonlinearity"],
    caption="""
    Training loss (log scale, top) and number of nonlinear neurons per hidden layer
    (bottom; a neuron is nonlinear when it is active on some inputs and inactive on
    others) against the training step, for the first grid point of study
    **{study}**. Lines are medians over seeds, bands the interquartile range.
    Shading marks the four phases (I: features removed, II: plateau, III: neurons
    return, IV: exponential loss decay) between the median automatically detected
    boundaries; the title gives their spread over seeds. Without the ``phases``
    analysis there is no shading.
    """,
)
def loss_neurons(inputs):
    """Training loss and nonlinear neurons per hidden layer, phases shaded."""
    from ..plots import loss_and_neurons

    metrics, counts = _curves(inputs, "nonlinear_neurons")
    return loss_and_neurons(inputs.runs, metrics, counts, inputs.table("phases", optional=True), inputs.study)


@register_figure(
    "linreg",
    families=["linreg"],
    caption="""
    Training loss of study **{study}** (first grid point; median over seeds, band the
    interquartile range) against least-squares baselines: the fit of y on the inputs
    x and on each hidden layer's features (h1, h2, ...), each refitted at every
    observed checkpoint. When the training loss meets the last layer's curve, the
    readout is at its instantaneous optimum. Shading marks the phases when the study
    makes the ``phases`` analysis.
    """,
)
def linreg(inputs):
    """Training loss against the least-squares baselines on x and each hidden layer."""
    from ..plots import linreg_baselines

    metrics, fits = _curves(inputs, "linreg_loss")
    return linreg_baselines(inputs.runs, metrics, fits, inputs.table("phases", optional=True), inputs.study)


@register_figure(
    "axes",
    families=["nonlinearity"],
    per_axis=True,
    caption="""
    Effect of the grid axis ``{axis}`` in study **{study}**, the other axes held at
    the base point: nonlinear neurons in h2 over training (median over seeds per
    value, left) and, when the study makes the ``phases`` analysis, the Phase II
    neuron count (middle) and the Phase IV loss decay rate (right) per seed (grey)
    and their median (red).
    """,
)
def axes(inputs):
    """One grid axis' effect on the nonlinear neurons and the phases (one figure per axis)."""
    from ..plots import axis_summary

    if inputs.axis is None:
        raise ValueError("figure 'axes' is drawn per grid axis: give the axis")
    counts = inputs.observables("nonlinearity", filters={"observable": "nonlinear_neurons"})
    phases = inputs.table("phases", optional=True)
    return axis_summary(inputs.runs, counts, phases, inputs.axis, inputs.study, _axes(inputs))


def _axes(inputs) -> list[str]:
    axes = inputs.axes
    if inputs.axis not in inputs.runs.columns:
        raise ValueError(f"figure 'axes': the runs of study '{inputs.study}' have no config key '{inputs.axis}'")
    return axes if inputs.axis in axes else [*axes, inputs.axis]
