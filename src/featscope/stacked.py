"""Forward passes of S runs of one packable model over stacked parameters (S, ...).

The same maps as `models.MLP`, `models.ModularNet` and `models.OneHotNet`, written as
batched products. ``torch.func.vmap`` over ``functional_call`` gives the same values, but
its products and layouts cost more on a CPU: a 16-run training step of the blog MLP took
13.3 ms through vmap and about 12 ms this way before `_StackedLinear`'s backward (one
thread; benchmarks/run.py measures the trainer as a whole).

Inputs are either shared by all runs, (n, ...), or one batch per run, (S, n, ...).
"""
from __future__ import annotations

import torch
from torch.nn.functional import one_hot

from .models import ACTIVATIONS, Features

STACKED_MODELS = ("mlp", "modnet", "onehot")


def stacked_forward(model_cfg: dict, params: dict[str, torch.Tensor], x: torch.Tensor,
                    shared: bool) -> torch.Tensor:
    """Outputs (S, n, out) of the S runs whose parameters are stacked in `params`."""
    return _layers(model_cfg, params, x, shared, record=False)[0]


def stacked_features(model_cfg: dict, params: dict[str, torch.Tensor], x: torch.Tensor,
                     shared: bool) -> tuple[torch.Tensor, Features]:
    """Outputs (S, n, out) and `Features` (tensors (S, n, ...)), as `forward_features` gives
    one model; S are runs of a pack, or checkpoints of one run."""
    return _layers(model_cfg, params, x, shared, record=True)


class _ReluInPlace(torch.autograd.Function):
    """ReLU that overwrites its input, and whose backward overwrites the incoming gradient.
    A 16-run pack of the blog MLP is memory-bound in its activations (3.2 MB each, more
    than the cache keeps): in place, ReLU took 46 µs a call where `torch.relu` took 950
    and its backward 80 µs where 187 (torch.profiler in the pack; alone, one thread)."""

    @staticmethod
    def forward(ctx, z):
        ctx.mark_dirty(z)
        out = z.relu_()
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        if not grad.is_contiguous():  # an expanded or shared-looking buffer: leave it be
            return torch.ops.aten.threshold_backward(grad, out, 0)
        return torch.ops.aten.threshold_backward.grad_input(grad, out, 0, grad_input=grad)


# For training, where the pre-activations are not wanted.
_IN_PLACE = {"relu": _ReluInPlace.apply}


def _layers(model_cfg, params, x, shared, record):
    runs = next(iter(params.values())).shape[0]
    if model_cfg["name"] == "mlp":
        h = x.flatten(1) if shared else x.flatten(2)  # images go in as vectors
    else:
        h = _encode(model_cfg["name"], params, x, shared)
    if h.dim() == 2:
        h = h.expand(runs, *h.shape)
    inputs, pre, post = h, {}, {}
    name = model_cfg.get("activation", "square" if model_cfg["name"] == "onehot" else "relu")
    act = ACTIVATIONS[name] if record else _IN_PLACE.get(name, ACTIVATIONS[name])
    layer = 0
    while f"hidden.{layer}.weight" in params:
        z = _linear(h, params, f"hidden.{layer}")
        h = act(z)
        if record:
            pre[f"h{layer + 1}"], post[f"h{layer + 1}"] = z, h
        layer += 1
    return _linear(h, params, "readout"), Features(inputs, pre, post)


def _linear(h: torch.Tensor, params: dict, name: str) -> torch.Tensor:
    return _StackedLinear.apply(h, params[f"{name}.weight"], params.get(f"{name}.bias"))


class _StackedLinear(torch.autograd.Function):
    """h (S, n, in) @ Wᵀ + b per run, with a backward that picks the fast orientation of each
    product. Autograd's own bmm backward forms the weight gradient as hᵀ·g, an (in × out)
    product: for a one-unit readout that is 16 matrix-vector products, 1.2 ms where gᵀ·h
    takes 0.08 ms (16 runs of the blog MLP). Both orientations give the same sums.

    `forward` takes `ctx` itself: with a separate `setup_context`, every `apply` binds its
    arguments through `inspect.signature`: 19 µs an `apply` against 7 (a trivial Function, one thread)."""

    @staticmethod
    def forward(ctx, h, weight, bias):
        ctx.save_for_backward(h, weight)
        ctx.has_bias = bias is not None
        if weight.shape[1] == 1:
            # One output unit as a row vector times hᵀ: the other orientation's batch-of-one
            # product takes another path and rounds differently from the same run in a pack
            # of two or more, this one does not (tests/test_packed.py); and it is faster
            # (74 against 105 µs, 16 runs of the blog MLP's readout, one thread).
            out = torch.bmm(weight, h.transpose(1, 2)).transpose(1, 2)
            return out if bias is None else out.add_(bias.unsqueeze(1))
        out = torch.bmm(h, weight.transpose(1, 2))
        # In place, and not baddbmm: that took 3.1 ms where bmm and add_ take 2.4 (16 runs, 100 x 100).
        return out if bias is None else out.add_(bias.unsqueeze(1))

    @staticmethod
    def backward(ctx, grad):
        h, weight = ctx.saved_tensors
        grad_h = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            # An outer product when there is one output unit: a broadcast product, not a bmm.
            grad_h = grad * weight if weight.shape[1] == 1 else torch.bmm(grad, weight)
        if ctx.needs_input_grad[1]:
            out_dim, in_dim = weight.shape[1:]
            if out_dim <= in_dim:
                grad_w = torch.bmm(grad.transpose(1, 2), h)
            else:
                grad_w = torch.bmm(h.transpose(1, 2), grad).transpose(1, 2)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum(dim=1)
        return grad_h, grad_w, grad_b


def _encode(name: str, params: dict, x: torch.Tensor, shared: bool) -> torch.Tensor:
    """The modular nets' inputs: embeddings (modnet) or one-hot codes (onehot) of a and b."""
    a, b = x[..., 0], x[..., 1]
    if name == "onehot":
        classes = params["readout.weight"].shape[1]
        return torch.cat([one_hot(a, classes), one_hot(b, classes)], dim=-1).float()
    table = params["embed.weight"]  # (S, classes, width)
    if shared:
        return torch.cat([table[:, a], table[:, b]], dim=-1)
    rows = torch.arange(len(table), device=table.device).unsqueeze(1)
    return torch.cat([table[rows, a], table[rows, b]], dim=-1)
