"""The phases analysis (Liu & Zheng): phase boundaries and Phase IV decay rate per run."""

from __future__ import annotations

from ..phases import phase_table
from ..registry import register_analysis


@register_analysis("phases", families=["nonlinearity"], params="phases")
def phases(inputs, layer: str = "h2", **rules):
    """Phase boundaries and Phase IV decay rate per run (`featscope.phases.segment_phases`)."""
    metrics = inputs.metrics(columns=["run", "step", "split", "loss"])
    counts = inputs.observables("nonlinearity", filters={"observable": "nonlinear_neurons"})
    return phase_table(metrics, counts, layer, **rules)
