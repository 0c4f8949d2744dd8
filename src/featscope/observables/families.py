"""Family functions: (Snapshot, params, state) -> long-form rows (see observe.Snapshot).

`state` is a dict that persists across the chunks of one run, for measures that
compare a checkpoint with the initial or the previous one.
"""
from __future__ import annotations

import pandas as pd
import torch

from . import linreg as _linreg
from . import nonlinearity as _nl
from . import spectral as _sp


def _rows(*args, **kwargs):
    from ..observe import long_rows  # local import: observe imports this package

    return long_rows(*args, **kwargs)


def nonlinearity(snap, params: dict, state: dict) -> pd.DataFrame:
    frames = []
    for layer, pre in snap.features.pre.items():
        for name, count in _nl.COUNTS.items():
            frames.append(_rows(snap.steps, name, count(pre), layer))
        frames.append(_rows(snap.steps, "active_rate", _nl.active_rate(pre), layer))
    return pd.concat(frames, ignore_index=True)


def linreg(snap, params: dict, state: dict) -> pd.DataFrame:
    frames = []
    for layer, feats in snap.features.layers().items():
        frames.append(_rows(snap.steps, "linreg_loss", _linreg.linreg_loss(feats, snap.target), layer))
    return pd.concat(frames, ignore_index=True)


def _targets(snap):
    y = snap.target
    if y.dtype in (torch.int64, torch.int32):
        return _sp.one_hot(y, snap.output.shape[-1])
    return y


def spectral(snap, params: dict, state: dict) -> pd.DataFrame:
    """Kernel eigen-measures of a layer's features (default: the penultimate) per checkpoint,
    plus eigenfunction drift of the top-`top` subspace against init and the previous checkpoint."""
    layer = params.get("layer") or list(snap.features.post)[-1]
    landmarks, top = params.get("landmarks"), params.get("top", 10)
    target = _targets(snap)
    frames = []
    for i, step in enumerate(snap.steps):
        feats = snap.features.layers()[layer][i]
        if not (torch.isfinite(feats).all() and torch.isfinite(snap.output[i]).all()):
            continue  # a diverged checkpoint has no spectrum
        frame = _sp.spectral(feats, target, snap.output[i], landmarks)
        basis = _sp.top_subspace(feats, top, landmarks)
        state.setdefault("init", basis)
        drift = {"drift_init": _sp.subspace_drift(state["init"], basis),
                 "drift_prev": _sp.subspace_drift(state.get("prev", basis), basis)}
        state["prev"] = basis
        extra = pd.DataFrame({"observable": list(drift), "k": None, "value": list(drift.values())})
        frame = pd.concat([frame, extra], ignore_index=True)
        frames.append(frame.assign(step=int(step), layer=layer))
    columns = ["step", "observable", "layer", "k", "value"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)

