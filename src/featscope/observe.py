"""Observation: stacked checkpoints -> features -> long-form observable rows.

Checkpoints of one run are evaluated in chunks, batched over their stacked
parameters (the packed trainer's products, or ``torch.func.vmap`` for the
vision models), so a chunk of checkpoints costs one batched forward pass
instead of one pass per checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch.func import functional_call, vmap

from . import schedules
from ._allocator import keep_freed_memory, release_freed_memory
from ._subnormals import flush_subnormals
from .models import Features, build_model
from .observables import FAMILIES, rows
from .observables import linreg as _linreg
from .observables import nonlinearity as _nl
from .packing import STACKED_MODELS
from .stacked import stacked_features, stacked_pre_activations

COLUMNS = rows.COLUMNS


@dataclass
class Snapshot:
    """A chunk of T checkpoints of one run. Their outputs and features on the evaluation set
    are computed on first use, once for all families (weights-only families never use them)."""

    steps: np.ndarray  # (T,)
    params: dict  # name -> (T, ...)
    target: torch.Tensor  # (n, out) or (n,)
    forward: Callable = None  # params -> (outputs (T, n, out), Features (T, n, ...)), batched
    pre_activations: Callable = None  # params -> (layer, pre-activations) blocks, or None (`_pre_activation_stream`)
    bundle: dict = None  # the run's checkpoint bundle (model config, loss, all steps)
    data: dict = None
    split: str = "train"
    _model: torch.nn.Module = field(default=None, repr=False)
    _evaluated: tuple = field(default=None, repr=False)
    _grams: dict = field(default_factory=dict, repr=False)
    _selected: dict = field(default_factory=dict, repr=False)

    @property
    def features(self) -> Features:
        return self._evaluate()[1]

    @property
    def output(self) -> torch.Tensor:
        return self._evaluate()[0]

    def _evaluate(self) -> tuple:
        if self._evaluated is None:
            with torch.no_grad():
                self._evaluated = self.forward(self.params)
        return self._evaluated

    def active_rates(self) -> dict[str, torch.Tensor]:
        """Per hidden layer, each neuron's share of samples with a positive pre-activation
        (T, width): read off the features where this chunk, or a selection of it, has them;
        the other checkpoints from a pass that forms only pre-activations, a block of
        checkpoints at a time (`PRE_ACTIVATION_BLOCK_BYTES`), keeping none of them: about
        half the cost of forming the features (benchmarks/HISTORY.md)."""
        if self._evaluated is not None or self.pre_activations is None:
            return {layer: _nl.active_rate(pre) for layer, pre in self.features.pre.items()}
        pieces = [
            (np.frombuffer(key, dtype=bool).copy(), part.active_rates())
            for key, part in self._selected.items()
            if part._evaluated is not None
        ]
        rest = np.ones(len(self.steps), dtype=bool)
        for mask, _ in pieces:
            rest &= ~mask
        if rest.any():
            at = torch.from_numpy(np.flatnonzero(rest)).to(next(iter(self.params.values())).device)
            params = {k: v.index_select(0, at) for k, v in self.params.items()}
            pieces.append((rest, _nl.active_rates_of_blocks(self.pre_activations(params))))
        return {
            layer: _in_order(len(self.steps), [(mask, rates[layer]) for mask, rates in pieces])
            for layer in pieces[0][1]
        }

    def augmented_gram(self, layer: str) -> torch.Tensor | None:
        """[F, 1]ᵀ[F, 1] (T, p + 1, p + 1), float64, of a layer's features F: formed once for
        the families that factorise it (linreg's fits; spectral's ΦᵀΦ and Φᵀ1 are its
        blocks). None where it would be larger than the features themselves (more
        features than samples): those families then take their own routes."""
        if layer not in self._grams:
            feats = self.features.layers()[layer]
            n, p = feats.shape[-2:]
            small = (p + 1) ** 2 <= n * p
            self._grams[layer] = _linreg.augmented_grams(feats) if small else None
        return self._grams[layer]

    def model_type(self) -> type:
        """The class of the model, without loading a checkpoint into it."""
        return type(self._live_model())

    def model_at(self, i: int):
        """A live model holding the parameters of checkpoint i of this chunk (one module,
        reloaded: building a K = 2048 net afresh costs its random initialisation)."""
        self._live_model().load_state_dict({k: v[i] for k, v in self.params.items()})
        for p in self._model.parameters():
            p.grad = None
        return self._model.eval()

    def _live_model(self) -> torch.nn.Module:
        if self._model is None:
            self._model = build_model(self.bundle["model"], self.bundle["in_dim"], self.bundle["out_dim"])
        return self._model

    def select(self, keep: np.ndarray) -> Snapshot:
        """The checkpoints of this chunk where the boolean mask `keep` is true (their features
        picked from this chunk's if computed already, else computed for them alone on use).
        One selection per mask: families on the same schedule share its features and Grams."""
        keep = np.asarray(keep, dtype=bool)
        if keep.all():
            return self
        key = keep.tobytes()
        if key not in self._selected:
            self._selected[key] = self._select(keep)
        return self._selected[key]

    def _select(self, keep: np.ndarray) -> Snapshot:
        at = torch.as_tensor(np.flatnonzero(keep))

        def pick(t):  # inputs shared by every checkpoint stay one expanded view
            return t[: len(at)] if t.stride(0) == 0 else t.index_select(0, at)

        evaluated = None
        if self._evaluated is not None:
            out, feats = self._evaluated
            evaluated = (
                pick(out),
                Features(pick(feats.inputs), _Picked(feats.pre, pick), {k: pick(v) for k, v in feats.post.items()}),
            )
        return Snapshot(
            self.steps[keep],
            {k: pick(v) for k, v in self.params.items()},
            self.target,
            self.forward,
            self.pre_activations,
            self.bundle,
            self.data,
            self.split,
            _evaluated=evaluated,
        )


def _in_order(count: int, pieces: list) -> torch.Tensor:
    """Rows (count, ...) from (boolean mask, the rows where it is true) pieces that cover them all."""
    first = pieces[0][1]
    out = torch.empty((count, *first.shape[1:]), dtype=first.dtype, device=first.device)
    for mask, values in pieces:
        out[torch.from_numpy(mask).to(out.device)] = values
    return out


class _Picked(Mapping):
    """A selection's pre-activations, picked from the chunk's on first use: the families that
    run on schedules of their own (fits, spectra) read only post-activations, and for the
    blog MLP the pre-activations are two of the five feature tensors a selection copies."""

    def __init__(self, tensors: dict, pick: Callable):
        self._tensors, self._pick, self._picked = tensors, pick, {}

    def __getitem__(self, key):
        if key not in self._picked:
            self._picked[key] = self._pick(self._tensors[key])
        return self._picked[key]

    def __iter__(self):
        return iter(self._tensors)

    def __len__(self):
        return len(self._tensors)


class _FeaturesView(torch.nn.Module):
    """Routes ``functional_call`` to ``forward_features`` instead of ``forward``."""

    def __init__(self, model):
        super().__init__()
        self.m = model

    def forward(self, x):
        out, feats = self.m.forward_features(x)
        return out, feats.inputs, feats.pre, feats.post


# Checkpoints per batched forward pass: 128 was the fastest of 64, 128 and 256 for the
# nonlinearity study's observe job, with memory between the two (benchmarks/HISTORY.md).
MAX_CHUNK = 128
FEATURE_BUDGET = 256 * 2**20  # bytes of features (float32) per chunk; families add float64 copies


def snapshots(bundle: dict, data: dict, split: str = "train", chunk: int | None = None):
    """Yield `Snapshot`s over a checkpoint bundle, `chunk` checkpoints at a time (default:
    as many as keep a chunk's features within `FEATURE_BUDGET`, at most `MAX_CHUNK`)."""
    x = torch.as_tensor(data[f"x_{split}"])
    x = x.float() if x.is_floating_point() else x.long()
    target = torch.as_tensor(data[f"y_{split}"])
    forward, pre_activations = _batched_forward(bundle, x), _pre_activation_stream(bundle, x)
    steps = bundle["steps"].numpy()
    chunk = chunk or _chunk_size(forward, bundle["params"])
    count = -(-len(steps) // chunk)
    chunk = max(1, -(-len(steps) // max(count, 1)))  # as even as they go: 230 in 115 + 115, not 128 + 102
    for lo in range(0, len(steps), chunk):
        yield Snapshot(
            steps[lo : lo + chunk],
            _float_params(bundle["params"], lo, lo + chunk),
            target,
            forward,
            pre_activations,
            bundle,
            data,
            split,
        )


def _float_params(params: dict, lo: int, hi: int) -> dict:
    """Checkpoints lo..hi, in float32 whatever dtype they were stored in."""
    return {k: (v[lo:hi].float() if v.is_floating_point() else v[lo:hi]) for k, v in params.items()}


def _chunk_size(forward, params: dict) -> int:
    """Checkpoints per chunk from the size of one checkpoint's features: a wide net on many
    samples (the grokking study's K = 2048 net on 2,016 pairs: 35 MB per checkpoint) would
    otherwise hold gigabytes per chunk."""
    with torch.no_grad():
        out, feats = forward(_float_params(params, 0, 1))
    size = out.nbytes + sum(t.nbytes for t in [feats.inputs, *feats.pre.values(), *feats.post.values()])
    return max(1, min(MAX_CHUNK, FEATURE_BUDGET // max(size, 1)))


def _batched_forward(bundle: dict, x: torch.Tensor):
    """params stacked over checkpoints -> (outputs, Features): the packed trainer's batched
    products where the model has them, else vmap over the model's own forward."""
    if bundle["model"]["name"] in STACKED_MODELS:
        return lambda params: stacked_features(bundle["model"], params, x, shared=True)
    view = _FeaturesView(build_model(bundle["model"], bundle["in_dim"], bundle["out_dim"])).eval()
    batched = vmap(lambda p: functional_call(view, {f"m.{k}": v for k, v in p.items()}, (x,)))

    def forward(params):
        out, inputs, pre, post = batched(params)
        return out, Features(inputs, pre, post)

    return forward


# Bytes of one layer's pre-activations per block of the pre-activation pass: blocks small
# enough to be overwritten while in cache, big enough for efficient products; 8 MiB was the
# fastest of 2 to 16 for the blog MLP (benchmarks/HISTORY.md).
PRE_ACTIVATION_BLOCK_BYTES = 2**23


def _pre_activation_stream(bundle: dict, x: torch.Tensor):
    """params stacked over checkpoints -> the `stacked_pre_activations` blocks of their
    pre-activations, or None for models without batched products."""
    if bundle["model"]["name"] not in STACKED_MODELS:
        return None

    def stream(params):
        checkpoints = next(iter(params.values())).shape[0]
        widest = max(v.shape[1] for k, v in params.items() if k.startswith("hidden.") and k.endswith(".weight"))
        per_checkpoint = len(x) * widest * 4
        block = max(1, PRE_ACTIVATION_BLOCK_BYTES // per_checkpoint)
        block = -(-checkpoints // -(-checkpoints // block))  # as even as they go
        return stacked_pre_activations(bundle["model"], params, x, block)

    return stream


def observe_run(run_id: str, family: str, bundle: dict, data: dict, params: dict | None = None) -> pd.DataFrame:
    """All rows of one observable family over every checkpoint of one run."""
    return observe_families(run_id, {family: params or {}}, bundle, data)[family]


def observe_families(run_id: str, families: dict, bundle: dict, data: dict) -> dict[str, pd.DataFrame]:
    """Rows of several families (name -> params) of one run. Families that read the same
    split share each chunk's features: one batched forward pass serves them all."""
    return {name: table.to_pandas() for name, table in observe_tables(run_id, families, bundle, data).items()}


def observe_tables(run_id: str, families: dict, bundle: dict, data: dict) -> dict:
    """`observe_families` as Arrow tables in the contract's schema, as they are written to Parquet."""
    keep_freed_memory()
    flush_subnormals()
    by_split: dict[str, dict] = {}
    last = int(bundle["steps"][-1]) if len(bundle["steps"]) else 0
    wanted = {}  # family -> its own schedule (step -> bool) over the checkpoints, or None: all
    for name, params in families.items():
        params = {k: v for k, v in (params or {}).items() if k != "version"}
        own = params.pop("schedule", None)
        wanted[name] = schedules.from_config(own, last) if own else None
        by_split.setdefault(params.pop("split", "train"), {})[name] = params
    frames = {name: [] for name in families}
    for split, group in by_split.items():
        states = {name: {} for name in group}
        # Families that read features first: a chunk's active rates are then read off its
        # features where some family formed them, not from a pass of their own.
        order = sorted(group, key=lambda name: FAMILIES[name].reads == "active rates")
        for snap in snapshots(bundle, data, split):
            for name in order:
                params = group[name]
                part = snap
                if wanted[name] is not None:
                    part = snap.select(np.array([wanted[name](int(s)) for s in snap.steps], dtype=bool))
                if len(part.steps):
                    frames[name].append(FAMILIES[name].compute(part, params, states[name]))
            del snap, part  # the chunk's features, before the heap's free pages go back
            release_freed_memory()
    return {name: rows.table(run_id, parts) for name, parts in frames.items()}
