"""Models with named internal activations.

Every built-in model returns ``(output, Features)`` from ``forward_features``:
``pre[layer]`` and ``post[layer]`` are the pre- and post-activations of hidden layer
``h1``, ``h2``, ..., and ``penultimate`` is the input to the last linear map. Each
activation is a module of its own (``acts.i``), so a forward hook on it sees the same
pair: the layer mapping each architecture registers (`featscope.architectures`) and
`featscope.observe` read any model that way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

ACTIVATIONS = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "square": torch.square,
    "gelu": torch.nn.functional.gelu,
}
PENULTIMATE = "penultimate"  # the layer name of a readout input that is no mapped layer's output


class Activation(nn.Module):
    """An activation by name, as a module: a forward hook on it sees (pre, post)."""

    def __init__(self, name: str):
        super().__init__()
        if name not in ACTIVATIONS:
            raise ValueError(f"unknown activation '{name}'; known: {sorted(ACTIVATIONS)}")
        self.name = name
        self.fn = ACTIVATIONS[name]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fn(z)

    def extra_repr(self) -> str:
        return self.name


@dataclass
class Features:
    """A model's features on a batch: ``inputs`` (the ``x`` layer), per-layer pre- and
    post-activations, and, where the readout's input is not the last layer's output,
    ``readout_input`` (read as the layer ``penultimate``)."""

    inputs: torch.Tensor
    pre: dict[str, torch.Tensor]
    post: dict[str, torch.Tensor]
    readout_input: torch.Tensor | None = None

    @property
    def penultimate(self) -> torch.Tensor:
        """The readout's input."""
        return self.layers()[self.penultimate_layer]

    @property
    def penultimate_layer(self) -> str:
        """The name of the layer that feeds the readout."""
        if self.readout_input is not None:
            return PENULTIMATE
        return list(self.post)[-1] if self.post else "x"

    def layers(self) -> dict[str, torch.Tensor]:
        """Inputs and post-activations by layer name: {'x': ..., 'h1': ..., ...}."""
        extra = {} if self.readout_input is None else {PENULTIMATE: self.readout_input}
        return {"x": self.inputs, **self.post, **extra}


class MLP(nn.Module):
    """Fully connected net [in, width x depth, out] with one activation."""

    def __init__(self, in_dim: int, out_dim: int, width: int, depth: int, activation: str = "relu", bias: bool = True):
        super().__init__()
        dims = [in_dim] + [width] * depth
        self.hidden = nn.ModuleList(nn.Linear(a, b, bias=bias) for a, b in zip(dims, dims[1:]))
        self.readout = nn.Linear(dims[-1], out_dim, bias=bias)
        self.acts = nn.ModuleList(Activation(activation) for _ in range(depth))
        self.activation = activation

    @property
    def hidden_names(self) -> list[str]:
        return [f"h{i + 1}" for i in range(len(self.hidden))]

    def forward_features(self, x: torch.Tensor):
        x = x.flatten(1)  # images go in as vectors
        pre, post, h = {}, {}, x
        for name, layer, act in zip(self.hidden_names, self.hidden, self.acts):
            pre[name] = layer(h)
            h = post[name] = act(pre[name])
        return self.readout(h), Features(x, pre, post)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]


class ModularNet(nn.Module):
    """The grokking notes' net: shared embedding of a and b, concatenated, Linear, ReLU, Linear."""

    hidden_names = ["h1"]

    def __init__(self, classes: int, width: int, activation: str = "relu", bias: bool = True):
        super().__init__()
        self.embed = nn.Embedding(classes, width)
        self.hidden = nn.ModuleList([nn.Linear(2 * width, width, bias=bias)])
        self.readout = nn.Linear(width, classes, bias=bias)
        self.acts = nn.ModuleList([Activation(activation)])
        self.activation = activation

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.embed(x[:, 0]), self.embed(x[:, 1])], dim=1)

    def forward_features(self, x):
        inputs = self.encode(x)
        pre = self.hidden[0](inputs)
        post = self.acts[0](pre)
        return self.readout(post), Features(inputs, {"h1": pre}, {"h1": post})

    def forward(self, x):
        return self.forward_features(x)[0]

    def input_weights(self) -> torch.Tensor:
        """Each hidden neuron's effective weights on one-hot a and b: (K, 2, M)."""
        w = self.hidden[0].weight  # (K, 2·width)
        width = self.embed.weight.shape[1]
        e = self.embed.weight.T  # (width, M)
        return torch.stack([w[:, :width] @ e, w[:, width:] @ e], dim=1)


class OneHotNet(nn.Module):
    """Tian (2025)'s net: one-hot a ⊕ one-hot b (2M inputs), K hidden units, σ(x) = x², no biases."""

    hidden_names = ["h1"]

    def __init__(self, classes: int, width: int, activation: str = "square", bias: bool = False):
        super().__init__()
        self.classes = classes
        self.hidden = nn.ModuleList([nn.Linear(2 * classes, width, bias=bias)])
        self.readout = nn.Linear(width, classes, bias=bias)
        self.acts = nn.ModuleList([Activation(activation)])
        self.activation = activation

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        m = self.classes
        codes = torch.cat([nn.functional.one_hot(x[:, 0], m), nn.functional.one_hot(x[:, 1], m)], 1)
        return codes.to(self.hidden[0].weight.dtype)

    forward_features = ModularNet.forward_features
    forward = ModularNet.forward

    def input_weights(self) -> torch.Tensor:
        w = self.hidden[0].weight
        return torch.stack([w[:, : self.classes], w[:, self.classes :]], dim=1)


def build_model(cfg: dict, in_dim: int, out_dim: int) -> nn.Module:
    """The model of a config's ``model`` block (``name``, the architecture's parameters, whose
    defaults its factory fills, and the ``init`` / ``init_scale`` every model takes), built by
    its registered factory and initialised (featscope.init): the workflow and the library
    build the same net from the same block."""
    from .architectures import model_spec
    from .init import init_from_config

    return init_from_config(model_spec(cfg["name"]).build(in_dim, out_dim, cfg), cfg)


def layer_of_parameter(name: str) -> str:
    """'hidden.0.weight' -> 'h1', 'readout.weight' -> 'out', 'body.3.weight' -> 'body.3', and a
    parameter of the model itself ('pos_embed') -> its own name (never an empty layer name)."""
    parts = name.split(".")
    if parts[0] == "hidden":
        return f"h{int(parts[1]) + 1}"
    if parts[0] == "readout":
        return "out"
    return ".".join(parts[:-1]) or name
