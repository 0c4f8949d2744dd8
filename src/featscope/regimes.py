"""Feature-learning regimes of Nam et al. from the kernel eigen-measures.

Each checkpoint of a run is labelled, in this order:

* ``coefficient`` — coefficient learning: the top eigenfunctions have not moved,
  drift_init < ``coefficient_drift`` (features frozen or in the lazy regime);
* ``MF`` — minimal feature: the learned function needs about as many
  eigenfunctions as there are outputs, effective_dim_utility <= ``mf_factor`` × C
  (C = classes, or output dimensions for regression);
* ``EF`` — extended feature: it spreads over many more.

A checkpoint whose measures are not finite (a diverging run's features) gets no label
(None), rather than one the numbers cannot support. The run's regime is the label of its
last checkpoint.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

REGIMES = ["coefficient", "MF", "EF"]


def label(
    drift_init: float,
    effective_dim_utility: float,
    classes: int,
    coefficient_drift: float = 0.01,
    mf_factor: float = 2.0,
) -> str | None:
    if not (np.isfinite(drift_init) and np.isfinite(effective_dim_utility)):
        return None
    if drift_init < coefficient_drift:
        return "coefficient"
    return "MF" if effective_dim_utility <= mf_factor * classes else "EF"


def regime_table(spectral: pd.DataFrame, classes: dict, **rules) -> pd.DataFrame:
    """Per (run, step): the measures the rules read and the regime label."""
    wide = spectral[spectral.observable.isin(["drift_init", "effective_dim_utility", "effective_dim", "d_lr"])]
    wide = wide.pivot_table(index=["run", "step"], columns="observable", values="value").reset_index()
    wide.columns.name = None
    wide["classes"] = wide.run.map(classes).astype(int)
    wide["regime"] = [
        label(d, e, c, **rules) for d, e, c in zip(wide.drift_init, wide.effective_dim_utility, wide.classes)
    ]
    return wide.sort_values(["run", "step"], ignore_index=True)
