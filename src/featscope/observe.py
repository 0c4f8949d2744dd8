"""Observation: stacked checkpoints -> features -> long-form observable rows.

Checkpoints of one run are evaluated in chunks with ``torch.func.vmap`` over
the stacked parameters, so a chunk of checkpoints costs one batched forward
pass instead of one pass per checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.func import functional_call, vmap

from .models import Features, build_model
from .observables import FAMILIES

COLUMNS = ["run", "step", "observable", "layer", "k", "value"]


@dataclass
class Snapshot:
    """A chunk of T checkpoints of one run, with their features on the evaluation set."""

    steps: np.ndarray  # (T,)
    params: dict  # name -> (T, ...)
    features: Features  # tensors (T, n, ...)
    output: torch.Tensor  # (T, n, out)
    target: torch.Tensor  # (n, out) or (n,)
    bundle: dict = None  # the run's checkpoint bundle (model config, loss, all steps)
    data: dict = None
    split: str = "train"

    def model_at(self, i: int):
        """A live model holding the parameters of checkpoint i of this chunk."""
        model = build_model(self.bundle["model"], self.bundle["in_dim"], self.bundle["out_dim"])
        model.load_state_dict({k: v[i] for k, v in self.params.items()})
        return model.eval()


def long_rows(steps, observable: str, values, layer: str | None = None) -> pd.DataFrame:
    """Long-form rows from per-checkpoint scalars (T,) or per-index values (T, K)."""
    values = torch.as_tensor(values).double().cpu().numpy()
    steps = np.asarray(steps, dtype=np.int64)
    if values.ndim == 1:
        k = pd.array([None] * len(steps), dtype="Int64")
        return pd.DataFrame({"step": steps, "observable": observable, "layer": layer, "k": k,
                             "value": values})
    t, kk = values.shape
    return pd.DataFrame({"step": np.repeat(steps, kk), "observable": observable, "layer": layer,
                         "k": pd.array(np.tile(np.arange(kk), t), dtype="Int64"),
                         "value": values.reshape(-1)})


class _FeaturesView(torch.nn.Module):
    """Routes ``functional_call`` to ``forward_features`` instead of ``forward``."""

    def __init__(self, model):
        super().__init__()
        self.m = model

    def forward(self, x):
        out, feats = self.m.forward_features(x)
        return out, feats.inputs, feats.pre, feats.post


def snapshots(bundle: dict, data: dict, split: str = "train", chunk: int = 64):
    """Yield `Snapshot`s over a checkpoint bundle, `chunk` checkpoints at a time."""
    view = _FeaturesView(build_model(bundle["model"], bundle["in_dim"], bundle["out_dim"])).eval()
    x = torch.as_tensor(data[f"x_{split}"])
    x = x.float() if x.is_floating_point() else x.long()
    target = torch.as_tensor(data[f"y_{split}"])
    batched = vmap(lambda p: functional_call(view, {f"m.{k}": v for k, v in p.items()}, (x,)))
    steps = bundle["steps"].numpy()
    for lo in range(0, len(steps), chunk):
        params = {k: (v[lo:lo + chunk].float() if v.is_floating_point() else v[lo:lo + chunk])
                  for k, v in bundle["params"].items()}
        with torch.no_grad():
            out, inputs, pre, post = batched(params)
        yield Snapshot(steps[lo:lo + chunk], params, Features(inputs, pre, post), out, target,
                       bundle, data, split)


def observe_run(run_id: str, family: str, bundle: dict, data: dict, params: dict | None = None) -> pd.DataFrame:
    """All rows of one observable family over every checkpoint of one run."""
    params = dict(params or {})
    fam = FAMILIES[family]
    split = params.pop("split", "train")
    state: dict = {}
    frames = [fam.compute(snap, params, state) for snap in snapshots(bundle, data, split)]
    frame = pd.concat(frames, ignore_index=True)
    frame.insert(0, "run", run_id)
    frame["k"] = frame["k"].astype("Int64")
    frame["layer"] = frame["layer"].astype("string")
    return frame[COLUMNS].sort_values(["observable", "layer", "step", "k"], kind="stable",
                                      ignore_index=True)
