"""The dynamics figure (Tian): weight and gradient observables over training."""

from __future__ import annotations

import pandas as pd

from ..registry import register_figure


@register_figure(
    "dynamics",
    families=["weights", "gradients"],
    caption="""
    Weight and gradient observables over training in study **{study}**, one panel
    each (medians over seeds per grid point, bands the interquartile range): the norm
    of the h1 weights and their relative change between checkpoints; the full-batch
    gradient norm; the mean cosine between h1 neurons' weight gradients; the norm of
    the loss gradient with respect to h1's activations (‖G_F‖); feature diversity
    (1 − mean |cos| between neurons' incoming weights); the effective rank of the h1
    weights; the number of distinct Fourier frequencies among the neurons (modular
    models); and the cosine between successive updates of the weights.
    """,
)
def dynamics(inputs):
    """The weight and gradient observables of `grokking_plots.DYNAMICS` over training."""
    from ..grokking_plots import DYNAMICS
    from ..grokking_plots import dynamics as draw

    wanted = {"observable": [o for o, _ in DYNAMICS], "k": None}
    rows = pd.concat(
        [inputs.observables(family, filters=wanted) for family in ("weights", "gradients")], ignore_index=True
    )
    return draw(inputs.runs, rows, inputs.study)
