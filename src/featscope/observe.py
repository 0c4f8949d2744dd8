"""Observation: stacked checkpoints -> features -> long-form observable rows.

Checkpoints of one run are evaluated in chunks, batched over their stacked
parameters (the packed trainer's products where the model has a stacked form, else
``torch.func.vmap`` over the model with its layers read by forward hooks,
`featscope.capture`), so a chunk of checkpoints costs one batched forward pass
instead of one pass per checkpoint. `observe_model` does the same for any ``nn.Module``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch.func import vmap

from . import schedules
from ._allocator import keep_freed_memory, release_freed_memory
from ._subnormals import flush_subnormals
from .models import Features, build_model
from .observables import FAMILIES, rows
from .observables import linreg as _linreg
from .observables import nonlinearity as _nl
from .packing import has_stacked_form
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

    def layer_map(self):
        """Where the model's layers live (`capture.LayerMap`)."""
        from .capture import layer_map

        if self.bundle.get("layer_map") is not None:
            return self.bundle["layer_map"]
        return layer_map(self._live_model(), self.bundle["model"])

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
                Features(
                    pick(feats.inputs),
                    _Picked(feats.pre, pick),
                    {k: pick(v) for k, v in feats.post.items()},
                    None if feats.readout_input is None else pick(feats.readout_input),
                ),
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
            _model=self._model,
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


# Checkpoints per batched forward pass: 128 was the fastest of 64, 128 and 256 for the
# nonlinearity study's observe job, with memory between the two (benchmarks/HISTORY.md).
MAX_CHUNK = 128
FEATURE_BUDGET = 256 * 2**20  # bytes of features (float32) per chunk; families add float64 copies


def snapshots(bundle: dict, data: dict, split: str = "train", chunk: int | None = None, model=None):
    """Yield `Snapshot`s over a checkpoint bundle, `chunk` checkpoints at a time (default:
    as many as keep a chunk's features within `FEATURE_BUDGET`, at most `MAX_CHUNK`).
    ``model``: a module to load the checkpoints into, for a model that is no registered
    architecture (its bundle then holds a ``layer_map``)."""
    x = torch.as_tensor(data[f"x_{split}"])
    x = x.float() if x.is_floating_point() else x.long()
    target = torch.as_tensor(data[f"y_{split}"])
    forward, pre_activations = _batched_forward(bundle, x, model), _pre_activation_stream(bundle, x)
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
            _model=model,
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


def _batched_forward(bundle: dict, x: torch.Tensor, model: torch.nn.Module | None = None):
    """params stacked over checkpoints -> (outputs, Features): the packed trainer's batched
    products where the model has them, else vmap over the model's forward with its layers
    read by hooks (`capture`); ``model`` and the bundle's ``layer_map`` for a model that
    is no registered architecture."""
    from .capture import hooked, layer_map, to_features

    if model is None:
        if has_stacked_form(bundle["model"]):
            return lambda params: stacked_features(bundle["model"], params, x, shared=True)
        model = build_model(bundle["model"], bundle["in_dim"], bundle["out_dim"])
    where = bundle.get("layer_map") or layer_map(model, bundle["model"])
    call = hooked(model.eval(), where)
    batched = vmap(lambda p: call(x, p))

    def forward(params):
        out, inputs, pre, post, extra = batched(params)
        return out, to_features(inputs, pre, post, extra)

    return forward


# Bytes of one layer's pre-activations per block of the pre-activation pass: blocks small
# enough to be overwritten while in cache, big enough for efficient products; 8 MiB was the
# fastest of 2 to 16 for the blog MLP (benchmarks/HISTORY.md).
PRE_ACTIVATION_BLOCK_BYTES = 2**23


def _pre_activation_stream(bundle: dict, x: torch.Tensor):
    """params stacked over checkpoints -> the `stacked_pre_activations` blocks of their
    pre-activations, or None for models without batched products."""
    if bundle.get("layer_map") is not None or not has_stacked_form(bundle["model"]):
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


def observe_tables(run_id: str, families: dict, bundle: dict, data: dict, model=None) -> dict:
    """`observe_families` as Arrow tables in the contract's schema, as they are written to
    Parquet (``model``: see `snapshots`)."""
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
        for snap in snapshots(bundle, data, split, model=model):
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


def observe_model(
    model: torch.nn.Module,
    inputs,
    *,
    layers: Mapping[str, str],
    readout: str,
    targets=None,
    classes: int | None = None,
    families=("linreg", "spectral", "weights"),
    checkpoints=None,
    steps=None,
    input_layer: str | None = None,
    loss: str | None = None,
    run: str = "model",
) -> pd.DataFrame:
    """Observable rows of any ``torch.nn.Module``: the long form the workflow writes
    (columns ``run, step, observable, layer, k, value``), for any registered family.

    ``layers`` maps featscope layer names to module paths (``{"h1": "net.1"}``): a forward
    hook on each module reads the layer, the module's input as its pre-activation and its
    output as its post-activation (point at an activation module for both). ``readout``
    is the path of the last linear map; its input is the penultimate feature (the layer
    ``spectral`` reads by default; named ``penultimate`` unless it is a mapped layer's
    output). ``input_layer``: the module whose input is the ``x`` layer (default: the
    inputs as vectors).

    ``inputs`` (n, ...) and ``targets`` are numpy arrays or torch tensors. Class labels
    (n,) need ``classes=`` (their number, which the model's outputs must have); float
    targets (n,) or (n, out), one-hot codes included, are regression targets. ``families``
    is a list of names or a dict name -> parameters (``featscope.registry.FAMILIES``,
    plugins' included). ``checkpoints`` is a list of state dicts of ``model`` (default: its
    current state), at ``steps`` (default 0, 1, ...). ``loss`` (for ``gradients``) defaults
    to cross-entropy for classes, else mean squared error. The model is copied, not
    changed; observation runs on the CPU.
    """
    from copy import deepcopy

    from .capture import LayerMap

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    x = _as_tensor(inputs, "inputs")
    x = x.float() if x.is_floating_point() else x.long()
    target, kind = _checked_targets(targets, classes, len(x))
    families = {name: {} for name in families} if not isinstance(families, Mapping) else dict(families)
    for name in families:
        if name not in FAMILIES:
            raise ValueError(f"unknown observable family '{name}'; registered: {sorted(FAMILIES)}")
        if kind not in FAMILIES[name].applies_to:
            raise ValueError(f"family '{name}' does not apply to {kind} targets")
    live = deepcopy(model).to("cpu").eval()
    where = LayerMap(live, layers, readout, input_layer)
    where.name_parameters(x[:1])
    states = [live.state_dict()] if checkpoints is None else list(checkpoints)
    if not states:
        raise ValueError("checkpoints is empty")
    names = list(live.state_dict())
    for i, state in enumerate(states):
        if set(state) != set(names):
            odd = sorted(set(state) ^ set(names))
            raise ValueError(f"checkpoint {i} does not hold the model's state (differs in {odd[:5]})")
    steps = np.arange(len(states)) if steps is None else np.asarray(steps, dtype=np.int64)
    if len(steps) != len(states) or (np.diff(steps) <= 0).any():
        raise ValueError(f"steps must be {len(states)} increasing integers, one per checkpoint")
    params = {k: torch.stack([torch.as_tensor(s[k]).detach().to("cpu") for s in states]) for k in names}
    if classes is not None:
        with torch.no_grad():
            width = live(x[:1]).shape[-1]
        if width != classes:
            raise ValueError(f"classes={classes}, but the model has {width} outputs")
    bundle = {
        "model": None,
        "layer_map": where,
        "kind": kind,
        "loss": loss or ("cross_entropy" if kind == "classification" else "mse"),
        "steps": torch.as_tensor(steps),
        "params": params,
    }
    data = {"x_train": x, "y_train": target}
    tables = observe_tables(run, families, bundle, data, model=live)
    return pd.concat([tables[name].to_pandas() for name in families], ignore_index=True)


def _as_tensor(value, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu")
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    raise TypeError(f"{what} must be a numpy array or a torch tensor, not {type(value).__name__}")


def _checked_targets(targets, classes, n: int):
    """(target tensor, task kind): labels (n,) with `classes`, or float regression targets."""
    if targets is None:
        raise ValueError("targets are needed: class labels (n,) with classes=, or regression targets (n, out)")
    y = _as_tensor(targets, "targets")
    if len(y) != n:
        raise ValueError(f"targets has {len(y)} rows but inputs has {n}")
    if not y.is_floating_point():
        if classes is None:
            raise ValueError(
                "integer targets look like class labels: pass classes= (their number), "
                "or float targets (one-hot codes, or values) for regression"
            )
        if y.dim() != 1 or y.min() < 0 or y.max() >= classes:
            raise ValueError(f"class labels must be one integer in [0, {classes}) per sample")
        return y.long(), "classification"
    if classes is not None:
        raise ValueError("classes= is for integer class labels; these targets are floats (regression)")
    return (y.float().unsqueeze(1) if y.dim() == 1 else y.float()), "regression"
