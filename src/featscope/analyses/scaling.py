"""The scaling analysis (Tian): generalisation over M x training fraction and the n_crit = c M ln M fit."""

from __future__ import annotations

from ..registry import register_analysis
from ..stages import scaling_table


@register_analysis("scaling", analyses=["grokking"], tasks=["modadd"])
def scaling(inputs):
    """Generalisation rate per (M, training fraction), critical fractions, n_crit = c · M ln M fit.

    See `featscope.stages.scaling_table`."""
    return scaling_table(inputs.runs, inputs.table("grokking"))


@scaling.figure(
    "scaling",
    caption="""
    Share of seeds that generalise (test accuracy reaches its threshold) for each
    modulus M and training fraction of study **{study}** (heat map). White dots mark
    the measured critical fraction per M (where the share first reaches one half,
    interpolated between grid fractions); the red line is the least-squares fit
    n_crit = c · M ln M of the critical number of training pairs, with its c and R².
    """,
)
def scaling_map(inputs):
    """Generalisation rate over M and training fraction, with the critical fractions and the fit."""
    from ..grokking_plots import scaling as draw

    return draw(inputs.table("scaling"), inputs.study)
