"""Forward passes of S runs of one packable model over stacked parameters (S, ...).

The same maps as `models.MLP`, `models.ModularNet` and `models.OneHotNet`, written as
batched products. ``torch.func.vmap`` over ``functional_call`` gives the same values, but
its products and layouts cost more on a CPU (benchmarks/HISTORY.md; benchmarks/run.py
measures the trainer as a whole).

Inputs are either shared by all runs, (n, ...), or one batch per run, (S, n, ...).
Training goes through `TrainingPass`, whose backward is written out; the gradients
family's autograd and evaluation through `stacked_forward` / `stacked_features`.
"""

from __future__ import annotations

import torch
from torch.nn.functional import one_hot

from .models import ACTIVATIONS, Features


def stacked_forward(model_cfg: dict, params: dict[str, torch.Tensor], x: torch.Tensor, shared: bool) -> torch.Tensor:
    """Outputs (S, n, out) of the S runs whose parameters are stacked in `params`."""
    return _layers(model_cfg, params, x, shared, record=False)[0]


def stacked_features(
    model_cfg: dict, params: dict[str, torch.Tensor], x: torch.Tensor, shared: bool
) -> tuple[torch.Tensor, Features]:
    """Outputs (S, n, out) and `Features` (tensors (S, n, ...)), as `forward_features` gives
    one model; S are runs of a pack, or checkpoints of one run."""
    return _layers(model_cfg, params, x, shared, record=True)


@torch.no_grad()  # on a generator, torch sets and restores the mode around each step
def stacked_pre_activations(model_cfg: dict, params: dict[str, torch.Tensor], x: torch.Tensor, block: int):
    """Yield (layer, pre-activations (b, n, width)) for `block` runs (or checkpoints) at a
    time, layer by layer, inputs shared. A yielded tensor is overwritten by its activation
    as soon as the next one is asked for: read it, do not keep it. Nothing else is formed
    (no post-activations kept, no readout): what a family that reads only pre-activations
    needs, in the memory of one block."""
    name = _activation(model_cfg)
    layers = _hidden_names(params)
    runs = next(iter(params.values())).shape[0]
    for lo in range(0, runs, block):
        part = {k: v[lo : lo + block] for k, v in params.items()}
        h = _inputs(model_cfg, part, x, shared=True)
        for index, layer in enumerate(layers, start=1):
            # The products of `_layers`, so the same values bit for bit (tests/test_dynamics.py).
            z = _affine(h, part[f"{layer}.weight"], part.get(f"{layer}.bias"))
            yield f"h{index}", z
            if index < len(layers):
                h = _ACTIVATE[name](z)[0]


def _layers(model_cfg, params, x, shared, record):
    h = inputs = _inputs(model_cfg, params, x, shared)
    pre, post = {}, {}
    name = _activation(model_cfg)
    # Without a graph to keep and no pre-activations wanted, in place: a pack's activations
    # outgrow the cache, and a fresh `torch.relu` output costs many times the in-place op.
    in_place = not record and not torch.is_grad_enabled()
    act = (lambda z: _ACTIVATE[name](z)[0]) if in_place else ACTIVATIONS[name]
    for index, layer in enumerate(_hidden_names(params), start=1):
        z = _linear(h, params, layer)
        h = act(z)
        if record:
            pre[f"h{index}"], post[f"h{index}"] = z, h
    return _linear(h, params, "readout"), Features(inputs, pre, post)


def _inputs(model_cfg, params, x, shared) -> torch.Tensor:
    """The first hidden layer's inputs (S, n, in): the data as vectors (mlp) or the modular
    nets' codes, with autograd's graph when they depend on parameters (modnet's embeddings)."""
    runs = next(iter(params.values())).shape[0]
    if model_cfg["name"] == "mlp":
        h = x.flatten(1) if shared else x.flatten(2)  # images go in as vectors
    else:
        h = _encode(model_cfg["name"], params, x, shared)
    return h.expand(runs, *h.shape) if h.dim() == 2 else h


def _activation(model_cfg) -> str:
    if "activation" in model_cfg:
        return model_cfg["activation"]
    from .architectures import model_spec  # the factory's default where the block has none

    return model_spec(model_cfg["name"]).defaults["activation"]


def _hidden_names(params) -> list[str]:
    names, layer = [], 0
    while f"hidden.{layer}.weight" in params:
        names.append(f"hidden.{layer}")
        layer += 1
    return names


def _linear(h: torch.Tensor, params: dict, name: str) -> torch.Tensor:
    return _StackedLinear.apply(h, params[f"{name}.weight"], params.get(f"{name}.bias"))


class _StackedLinear(torch.autograd.Function):
    """h (S, n, in) @ Wᵀ + b per run, with a backward that picks the fast orientation of each
    product. Autograd's own bmm backward forms the weight gradient as hᵀ·g, an (in × out)
    product: for a one-unit readout that is S matrix-vector products, an order of magnitude
    slower than gᵀ·h. Both orientations give the same sums.

    `forward` takes `ctx` itself: with a separate `setup_context`, every `apply` binds its
    arguments through `inspect.signature`, which costs more than the call itself."""

    @staticmethod
    def forward(ctx, h, weight, bias):
        ctx.save_for_backward(h, weight)
        ctx.has_bias = bias is not None
        return _affine(h, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        h, weight = ctx.saved_tensors
        needs = ctx.needs_input_grad
        return _affine_backward(grad, h, weight, needs[0], needs[1], ctx.has_bias and needs[2])


def _affine(h, weight, bias):
    if weight.shape[1] == 1:
        # One output unit as a row vector times hᵀ: the other orientation's batch-of-one
        # product takes another path and rounds differently from the same run in a pack
        # of two or more, this one does not (tests/test_packed.py); and it is faster.
        out = torch.bmm(weight, h.transpose(1, 2)).transpose(1, 2)
        return out if bias is None else out.add_(bias.unsqueeze(1))
    out = torch.bmm(h, weight.transpose(1, 2))
    # In place, and not baddbmm, which was slower on the CPU (benchmarks/HISTORY.md).
    return out if bias is None else out.add_(bias.unsqueeze(1))


def _affine_backward(grad, h, weight, for_input: bool, for_weight: bool, for_bias: bool):
    grad_h = grad_w = grad_b = None
    if for_input:
        # An outer product when there is one output unit: a broadcast product, not a bmm.
        grad_h = grad * weight if weight.shape[1] == 1 else torch.bmm(grad, weight)
    if for_weight:
        out_dim, in_dim = weight.shape[1:]
        if out_dim <= in_dim:
            grad_w = torch.bmm(grad.transpose(1, 2), h)
        else:
            grad_w = torch.bmm(h.transpose(1, 2), grad).transpose(1, 2)
    if for_bias:
        grad_b = grad.sum(dim=1)
    return grad_h, grad_w, grad_b


class TrainingPass:
    """A training step's forward through S stacked runs, keeping what its backward needs,
    and that backward written out: no autograd graph for the layers. Autograd's engine,
    nodes and the loss's graph cost a pack of the blog MLP about a tenth of its step
    (benchmarks/HISTORY.md). The same products in the same orientations as autograd
    through `_StackedLinear`: for an MLP with mean squared error, bit for bit the numbers of
    autograd's pack (checked on 300 steps of the blog MLP). Activations are overwritten in place,
    as are the gradients flowing down. The inputs keep autograd's graph when they depend on
    parameters (modnet's embeddings), whose gradients autograd then forms from the inputs'.

    `output` (S, n, out); `backward(grad_output)` sets `.grad` of each parameter that
    requires one (sets, not adds: call it after zeroing). `layer_inputs[i]` is layer i's
    input (i ≥ 1: hidden layer i's activations); with `keep_layer_grads`, `layer_grads[i]`
    is the gradient that reaches it."""

    def __init__(self, model_cfg: dict, params: dict[str, torch.Tensor], x: torch.Tensor, shared: bool):
        self.params, self.activation = params, _activation(model_cfg)
        if self.activation not in _DERIVATIVES:
            raise ValueError(f"no hand-written backward for activation '{self.activation}'")
        self.inputs = _inputs(model_cfg, params, x, shared)
        self.layers = _hidden_names(params) + ["readout"]
        self.layer_inputs, self.kept = [], []  # per layer; kept: what the activation's derivative reads
        with torch.no_grad():
            h = self.inputs.detach()
            for layer in self.layers[:-1]:
                self.layer_inputs.append(h)
                h, kept = _ACTIVATE[self.activation](_affine(h, *self._weights(layer)))
                self.kept.append(kept)
            self.layer_inputs.append(h)
            self.output = _affine(h, *self._weights("readout"))

    def _weights(self, layer: str):
        return self.params[f"{layer}.weight"], self.params.get(f"{layer}.bias")

    def backward(self, grad_output: torch.Tensor, keep_layer_grads: bool = False) -> None:
        self.layer_grads = {}
        trains = [any(p is not None and p.requires_grad for p in self._weights(layer)) for layer in self.layers]
        into_inputs = self.inputs.requires_grad
        lowest = 0 if into_inputs else next((i for i, t in enumerate(trains) if t), len(trains))
        grad = grad_output
        with torch.no_grad():
            for i in range(len(self.layers) - 1, lowest - 1, -1):
                weight, bias = self._weights(self.layers[i])
                down = i > lowest or into_inputs  # whether a layer below, or the inputs, want a gradient
                grads = _affine_backward(
                    grad,
                    self.layer_inputs[i],
                    weight,
                    down,
                    weight.requires_grad,
                    bias is not None and bias.requires_grad,
                )
                for param, param_grad in zip((weight, bias), grads[1:]):
                    if param_grad is not None:
                        param.grad = param_grad
                if down:
                    if keep_layer_grads and i > 0:  # before the activation's derivative overwrites it
                        self.layer_grads[i] = grads[0].clone()
                    grad = grads[0] if i == 0 else _DERIVATIVES[self.activation](grads[0], self.kept[i - 1])
        if into_inputs:
            self.inputs.backward(grad)


def _relu_forward(z):
    h = z.relu_()
    return h, h


def _tanh_forward(z):
    h = z.tanh_()
    return h, h


_ACTIVATE = {"relu": _relu_forward, "tanh": _tanh_forward, "square": lambda z: (z.square(), z)}

# Each overwrites the incoming gradient with the gradient at the pre-activation, from
# what its forward kept: relu and tanh their output, square its input.
_DERIVATIVES = {
    "relu": lambda grad, h: torch.ops.aten.threshold_backward.grad_input(grad, h, 0, grad_input=grad),
    "tanh": lambda grad, h: torch.ops.aten.tanh_backward.grad_input(grad, h, grad_input=grad),
    "square": lambda grad, z: grad.mul_(z).mul_(2),
}


def _encode(name: str, params: dict, x: torch.Tensor, shared: bool) -> torch.Tensor:
    """The modular nets' inputs: embeddings (modnet) or one-hot codes (onehot) of a and b."""
    a, b = x[..., 0], x[..., 1]
    if name == "onehot":
        classes = params["readout.weight"].shape[1]
        return torch.cat([one_hot(a, classes), one_hot(b, classes)], dim=-1).to(params["readout.weight"].dtype)
    table = params["embed.weight"]  # (S, classes, width)
    if shared:
        return torch.cat([table[:, a], table[:, b]], dim=-1)
    rows = torch.arange(len(table), device=table.device).unsqueeze(1)
    return torch.cat([table[rows, a], table[rows, b]], dim=-1)
