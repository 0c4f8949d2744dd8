"""Family functions: Snapshot + params -> long-form rows (see observe.Snapshot)."""
from __future__ import annotations

import pandas as pd

from . import linreg as _linreg
from . import nonlinearity as _nl


def _rows(*args, **kwargs):
    from ..observe import long_rows  # local import: observe imports this package

    return long_rows(*args, **kwargs)


def nonlinearity(snap, params: dict) -> pd.DataFrame:
    frames = []
    for layer, pre in snap.features.pre.items():
        for name, count in _nl.COUNTS.items():
            frames.append(_rows(snap.steps, name, count(pre), layer))
        frames.append(_rows(snap.steps, "active_rate", _nl.active_rate(pre), layer))
    return pd.concat(frames, ignore_index=True)


def linreg(snap, params: dict) -> pd.DataFrame:
    frames = []
    for layer, feats in snap.features.layers().items():
        frames.append(_rows(snap.steps, "linreg_loss", _linreg.linreg_loss(feats, snap.target), layer))
    return pd.concat(frames, ignore_index=True)
