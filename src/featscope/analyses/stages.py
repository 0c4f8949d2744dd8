"""The stages analysis (Tian): lazy / independent / interactive / converged per run and checkpoint."""

from __future__ import annotations

from ..registry import register_analysis
from ..stages import stage_table


@register_analysis("stages", families=["weights", "gradients"], params="stages")
def stages(inputs, **rules):
    """Grokking stage per run and checkpoint (`featscope.stages.stage`)."""
    metrics = inputs.metrics(columns=["run", "step", "split", "acc"])
    weights = inputs.observables("weights", filters={"k": None, "observable": "weight_delta_rel"})
    gradients = inputs.observables("gradients", filters={"k": None, "observable": "grad_norm"})
    return stage_table(metrics, weights, gradients, **rules)


@stages.figure(
    "stages",
    caption="""
    Train (blue) and test (red) accuracy against the training step for the first
    grid points of study **{study}** (one panel each; median over seeds, band the
    interquartile range). The background is the grokking stage of each interval
    between checkpoints, the most common over seeds: lazy (the hidden layer has
    barely moved), independent (hidden units learn features), interactive (test
    accuracy is high but the gradient is not yet small) and converged. The
    thresholds are the study's ``stages`` block.
    """,
)
def accuracy_with_stages(inputs):
    """Train and test accuracy with the stages shaded, per grid point."""
    from ..grokking_plots import accuracy_with_stages as draw

    metrics = inputs.metrics(columns=["run", "step", "split", "acc"])
    return draw(inputs.runs, metrics, inputs.table("stages"), inputs.study)
