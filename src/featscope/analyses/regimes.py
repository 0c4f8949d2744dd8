"""The regimes analysis (Nam et al.): coefficient / MF / EF label per run and checkpoint."""

from __future__ import annotations

from ..regimes import regime_table
from ..registry import register_analysis


@register_analysis("regimes", families=["spectral"], params="regimes")
def regimes(inputs, **rules):
    """Coefficient / MF / EF label per run and checkpoint (`featscope.regimes.label`)."""
    runs = inputs.runs
    spectral = inputs.observables("spectral", columns=["run", "step", "observable", "value"], filters={"k": None})
    return regime_table(spectral, dict(zip(runs.run, runs.outputs)), **rules)


@regimes.figure(
    "regimes",
    caption="""
    Feature-learning regime of each grid point of study **{study}** at each
    checkpoint, the most common label over seeds: coefficient learning (grey; the
    top eigenfunctions have not moved from initialisation), minimal feature (green;
    the output needs about as many eigenfunctions as there are outputs) or extended
    feature (purple; it spreads over many more). The thresholds are the study's
    ``regimes`` block.
    """,
)
def regime_map(inputs):
    """Regime of each grid point over training (most common label over seeds)."""
    from ..plots import regime_map as draw

    return draw(inputs.runs, None, inputs.table("regimes"), inputs.study)
