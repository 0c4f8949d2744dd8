"""Family functions: (Snapshot, params, state) -> `Rows`, long-form rows in blocks (see
observe.Snapshot and observables.rows).

`state` is a dict that persists across the chunks of one run, for measures that
compare a checkpoint with the initial or the previous one.
"""

from __future__ import annotations

import numpy as np
import torch

from ..packing import has_stacked_form
from . import dynamics as _dyn
from . import linreg as _linreg
from . import nonlinearity as _nl
from . import spectral as _sp
from .rows import Block, Rows

_rows = Rows.per_checkpoint


def nonlinearity(snap, params: dict, state: dict) -> Rows:
    """Active rates and nonlinear/dead/linear neuron counts of each hidden layer; the counts
    are refused for a layer whose activation is not of the ReLU family (see `nonlinearity`)."""
    if "activations" not in state:
        state["activations"] = _activations(snap)
    for layer, activation in state["activations"].items():
        _nl.check_relu_family(activation, "" if layer is None else f" (layer {layer})")
    blocks = []
    for layer, rate in snap.active_rates().items():
        blocks += [(name, layer, count(rate)) for name, count in _nl.count_from_rate.items()]
        blocks.append(("active_rate", layer, rate))
    return _rows(snap.steps, blocks)


def _activations(snap) -> dict[str, str]:
    """Layer -> the name of its activation: a built-in's ``activation`` parameter for all its
    layers (key None; ``relu`` where it has none), or the class of the module a layer map reads."""
    from ..models import Activation

    where = (snap.bundle or {}).get("layer_map")
    if where is None:
        from ..architectures import model_spec

        model = snap.bundle["model"]
        activation = model_spec(model["name"]).resolve(model).get("activation", "relu")
        return {None: activation}  # one activation for all its layers
    return {
        layer: module.name if isinstance(module, Activation) else type(module).__name__.lower()
        for layer, module in where.modules.items()
    }


def linreg(snap, params: dict, state: dict) -> Rows:
    blocks = []
    for layer, feats in snap.features.layers().items():
        # The same at every checkpoint (the inputs): fit once. Last against first settles
        # the usual case, a layer that changed, without comparing every checkpoint.
        if bool((feats[-1] == feats[0]).all()) and bool((feats == feats[:1]).all()):
            loss = _linreg.linreg_loss(feats[0], snap.target).expand(len(feats))
        else:
            loss = _linreg.linreg_loss(feats, snap.target, grams=snap.augmented_gram(layer))
        blocks.append(("linreg_loss", layer, loss))
    return _rows(snap.steps, blocks)


def _targets(snap):
    y = snap.target
    if y.dtype in (torch.int64, torch.int32):
        return _sp.one_hot(y, snap.output.shape[-1])
    return y


def spectral(snap, params: dict, state: dict) -> Rows:
    """Kernel eigen-measures of a layer's features (default: the readout's input) per checkpoint,
    plus eigenfunction drift of the top-`top` subspace against init and the previous checkpoint."""
    layer = params.get("layer") or snap.features.penultimate_layer
    landmarks, top = params.get("landmarks"), params.get("top", 10)
    target = _targets(snap)
    feats, output, steps = snap.features.layers()[layer], snap.output, snap.steps
    finite = (_finite(feats) & _finite(output)).numpy()
    if not finite.all():  # a diverged checkpoint has no spectrum
        feats, output, steps = feats[finite], output[finite], steps[finite]
    if not len(steps):
        return Rows()
    gram = snap.augmented_gram(layer) if landmarks is None else None
    if gram is not None and not finite.all():
        gram = gram[torch.from_numpy(finite)]
    eigen = _sp.batched_eigensystems(feats, landmarks, target=target, outputs=output, top=top, augmented_gram=gram)
    measured = _sp.batched_measures(feats, eigen, target, output)
    drift = _drifts(_sp.batched_top_subspaces(feats, eigen, top), state)
    return _spectral_frame(steps, layer, measured, drift)


def _drifts(bases: list, state: dict) -> dict:
    """Subspace drift of each checkpoint's top eigenfunctions against the run's first and
    the previous checkpoint (`state` carries both across chunks)."""
    state.setdefault("init", bases[0])
    previous = [state.get("prev", bases[0])] + bases[:-1]
    state["prev"] = bases[-1]
    if len({b.shape[1] for b in bases + [state["init"], previous[0]]}) == 1:  # the usual case: one width
        stack = np.stack(bases)
        return {
            "drift_init": _sp.batched_subspace_drift(state["init"][None], stack),
            "drift_prev": _sp.batched_subspace_drift(np.stack(previous), stack),
        }
    return {
        "drift_init": np.array([_sp.subspace_drift(state["init"], b) for b in bases]),
        "drift_prev": np.array([_sp.subspace_drift(p, b) for p, b in zip(previous, bases)]),
    }


def _spectral_frame(steps, layer: str, measured, drift: dict) -> Rows:
    """One block per observable: per-index measures where kept (k from 1), then scalars."""
    steps = np.asarray(steps, dtype=np.int64)
    at_t, at_k = np.nonzero(measured.keep)
    blocks = [
        Block(name, layer, steps[at_t], at_k.astype(np.int64) + 1, values[at_t, at_k].astype(np.float64))
        for name, values in measured.per_k.items()
    ]
    scalars = {**measured.scalars, **drift}
    return Rows(blocks) + _rows(steps, [(name, layer, values) for name, values in scalars.items()])


def _finite(stack: torch.Tensor) -> torch.Tensor:
    """Per checkpoint, whether all its values are finite: a sum, which any NaN or infinity
    spoils (far cheaper than isfinite over every value). Where a float32 sum is not finite
    it may have overflowed: those checkpoints
    are summed again in float64, which values that came from float32 cannot overflow."""
    flat = stack.flatten(1)
    finite = torch.isfinite(flat.sum(dim=1))
    if not finite.all():
        again = ~finite
        finite[again] = torch.isfinite(flat[again].sum(dim=1, dtype=torch.float64))
    return finite


def weights(snap, params: dict, state: dict) -> Rows:
    """Per weight matrix: norm, change since the previous checkpoint and since init (absolute,
    relative); update cosine between consecutive checkpoint deltas; for h1: feature diversity,
    effective rank and, on modular models, Fourier purity per neuron and distinct frequencies.
    Arrays over the chunk's checkpoints, not one checkpoint at a time; `state` carries the
    run's first and previous checkpoint."""
    layer_of_parameter = _parameter_layers(snap, state)
    names = [n for n, v in snap.params.items() if v.dim() >= 3]  # (T, out, in): weight matrices
    current = {n: snap.params[n].double() for n in names}
    first = {n: w[0] for n, w in current.items()}
    init, prev_last = state.setdefault("init", first), state.get("prev", first)
    blocks = []
    for name, w in current.items():
        prev = torch.cat([prev_last[name][None], w[:-1]])
        norm, norm_prev = _dyn.batched_norms(w), _dyn.batched_norms(prev)
        delta, dist = _dyn.batched_norms(w - prev), _dyn.batched_norms(w - init[name])
        norm_init = init[name].norm()
        blocks += [
            (name_, layer_of_parameter(name), values)
            for name_, values in {
                "weight_norm": norm,
                "weight_delta_norm": delta,
                "weight_delta_rel": torch.where(norm_prev > 0, delta / norm_prev, torch.nan),
                "weight_init_distance": dist,
                "weight_init_rel": dist / norm_init if norm_init > 0 else torch.full_like(dist, torch.nan),
            }.items()
        ]
    state["prev"] = {n: w[-1] for n, w in current.items()}
    rows = _rows(snap.steps, blocks) + _update_cosine_rows(snap.steps, current, state)
    if "hidden.0.weight" in snap.params:  # a hidden fully connected layer (not ResNet)
        rows += _neuron_rows(snap, params)
    return rows


def _parameter_layers(snap, state: dict):
    """Parameter name -> layer name, by the model's layer map (`capture.LayerMap.
    name_parameters`: the weights that feed layer ``h1`` are ``h1``'s, the readout's
    ``out``, others keep their module's path); found once a run, on one sample."""
    if "layer_of_parameter" not in state:
        where = snap.layer_map()
        if len(where.parameter_layers) == 1:  # only the readout's: not yet named
            x = torch.as_tensor(snap.data[f"x_{snap.split}"][:1])
            where.name_parameters(x.float() if x.is_floating_point() else x.long())
        state["layer_of_parameter"] = where.layer_of_parameter
    return state["layer_of_parameter"]


def _update_cosine_rows(steps, current: dict, state: dict) -> Rows:
    """Cosine between each checkpoint's update (its change since the previous checkpoint)
    and the update before it; the first two checkpoints of a run have none."""
    flat = torch.cat([w.flatten(1) for w in current.values()], dim=1)
    lead = state["prev_flat"][None] if "prev_flat" in state else flat[:0]
    updates = torch.diff(torch.cat([lead, flat]), dim=0)  # of the chunk's last len(updates) checkpoints
    chain = torch.cat([state["prev_update"][None], updates]) if "prev_update" in state else updates
    state["prev_flat"] = flat[-1]
    if len(chain):
        state["prev_update"] = chain[-1]
    a, b = chain[1:], chain[:-1]
    denom = a.norm(dim=1) * b.norm(dim=1)
    cosine = torch.where(denom > 0, (a * b).sum(dim=1) / torch.where(denom > 0, denom, 1.0), torch.nan)
    return _rows(steps[len(steps) - len(cosine) :], [("update_cosine", None, cosine)])


def _neuron_rows(snap, params: dict) -> Rows:
    """h1's feature diversity and effective rank per checkpoint; on modular models also each
    neuron's Fourier purity and the number of distinct frequencies."""
    w1 = snap.params["hidden.0.weight"]
    blocks = [
        ("feature_diversity", "h1", 1.0 - _dyn.batched_mean_abs_pairwise_cosine(w1)),
        ("weight_effective_rank", "h1", _dyn.batched_effective_rank(w1)),
    ]
    rows = _rows(snap.steps, blocks)
    if not hasattr(snap.model_type(), "input_weights"):  # loading a checkpoint is not free
        return rows
    purities, distinct = [], []
    for i in range(len(snap.steps)):
        with torch.no_grad():
            w_in = snap.model_at(i).input_weights()
        purity, freq = _dyn.fourier_purity(w_in)  # once: the FFTs were a quarter of the family's time
        purities.append(purity)
        distinct.append(_dyn.distinct_of(purity, freq, params.get("min_purity", 0.5)))
    return rows + _rows(
        snap.steps,
        [("fourier_purity", "h1", torch.stack(purities)), ("fourier_frequencies", "h1", torch.tensor(distinct))],
    )


def gradients(snap, params: dict, state: dict) -> Rows:
    """Full-batch gradient observables on the evaluation split, per checkpoint (loss without
    weight decay): total and per-layer gradient norm, mean pairwise cosine of h1 neurons'
    gradient rows, ‖G_F‖ per hidden layer, and the Gram statistics of the centred features."""
    from ..tasks import task_kind
    from ..training import loss_fn, per_run_loss_and_gradient

    bundle = snap.bundle
    kind = bundle.get("kind") or task_kind(bundle["task"])
    x = torch.as_tensor(snap.data[f"x_{snap.split}"])
    x = x.float() if x.is_floating_point() else x.long()
    y = torch.as_tensor(snap.data[f"y_{snap.split}"])
    y = y.float() if y.is_floating_point() else y.long()
    if bundle.get("layer_map") is None and has_stacked_form(bundle["model"]):
        found = _stacked_gradients(snap, x, y, per_run_loss_and_gradient(kind, bundle["loss"]))
    else:
        found = _one_by_one_gradients(snap, x, y, loss_fn(kind, bundle["loss"]))
    return _gradient_frame(snap.steps, *found, _parameter_layers(snap, state))


def _stacked_gradients(snap, x, y, loss_and_gradient):
    """Parameter gradients {name: (T, ...)} and {layer: (activations, their gradient)},
    each (T, n, k), of a chunk's T checkpoints from one batched pass with the packs'
    written-out backward (`stacked.TrainingPass`, no autograd graph for the layers): each
    checkpoint's loss reaches only its own slice of the stacked parameters."""
    from ..stacked import TrainingPass

    stack = {k: v.detach().clone().requires_grad_(v.is_floating_point()) for k, v in snap.params.items()}
    forward = TrainingPass(snap.bundle["model"], stack, x, shared=True)
    _, grad_output = loss_and_gradient(forward.output, y.expand(len(snap.steps), *y.shape))
    forward.backward(grad_output, keep_layer_grads=True)
    grads = {n: p.grad for n, p in stack.items() if p.grad is not None}
    return grads, {f"h{i}": (forward.layer_inputs[i], forward.layer_grads[i]) for i in range(1, len(forward.layers))}


def _one_by_one_gradients(snap, x, y, criterion):
    """As `_stacked_gradients`, one model per checkpoint (models without a stacked form),
    its layers read by hooks (`featscope.capture`)."""
    from ..capture import features

    grads, post = [], []
    where = snap.layer_map()
    for i in range(len(snap.steps)):
        model = snap.model_at(i)  # gradients reset: each backward makes new ones
        out, feats = features(model, x, where)
        for h in feats.post.values():
            if h.requires_grad:
                h.retain_grad()
        criterion(out, y).backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
        post.append({layer: (h.detach(), h.grad) for layer, h in feats.post.items()})
    stacked = lambda ts: None if any(t is None for t in ts) else torch.stack(ts)  # noqa: E731
    return (
        {n: torch.stack([g[n] for g in grads]) for n in grads[0]},
        {layer: (torch.stack([p[layer][0] for p in post]), stacked([p[layer][1] for p in post])) for layer in post[0]},
    )


def _gradient_frame(steps, grads: dict, post: dict, layer_of_parameter=None) -> Rows:
    """Rows of the gradient observables from gradients and activations stacked over the
    checkpoints `steps`: arrays over checkpoints, no Python per checkpoint."""
    if layer_of_parameter is None:
        from ..models import layer_of_parameter

    norms = {name: _dyn.batched_norms(g) for name, g in grads.items()}
    columns = [(None, "grad_norm", torch.stack(list(norms.values())).pow(2).sum(dim=0).sqrt())]
    columns += [
        (layer_of_parameter(name), "grad_norm", norm) for name, norm in norms.items() if grads[name].dim() >= 3
    ]  # (T, out, in): weight matrices
    if "hidden.0.weight" in grads:
        columns.append(("h1", "grad_cosine_neurons", _dyn.batched_mean_pairwise_cosine(grads["hidden.0.weight"])))
    for layer, (h, grad) in post.items():
        diag, off = _dyn.batched_gram_statistics(h)
        grad_f = _dyn.batched_norms(grad) if grad is not None else torch.full((len(steps),), float("nan"))
        columns += [(layer, "hidden_grad_norm", grad_f), (layer, "gram_diag", diag), (layer, "gram_offdiag", off)]
    return _rows(steps, [(name, layer, values) for layer, name, values in columns])
