"""Models with named internal activations.

Every model returns ``(output, Features)`` from ``forward_features``, so every
observable works on every model: ``pre[layer]`` and ``post[layer]`` are the
pre- and post-activations of hidden layer ``h1``, ``h2``, ..., and
``penultimate`` is the input to the last linear map.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "square": torch.square}


@dataclass
class Features:
    inputs: torch.Tensor
    pre: dict[str, torch.Tensor]
    post: dict[str, torch.Tensor]

    @property
    def penultimate(self) -> torch.Tensor:
        return self.post[list(self.post)[-1]] if self.post else self.inputs

    def layers(self) -> dict[str, torch.Tensor]:
        """Inputs and post-activations by layer name: {'x': ..., 'h1': ..., ...}."""
        return {"x": self.inputs, **self.post}


class MLP(nn.Module):
    """Fully connected net [in, width x depth, out] with one activation."""

    def __init__(self, in_dim: int, out_dim: int, width: int, depth: int, activation: str = "relu", bias: bool = True):
        super().__init__()
        dims = [in_dim] + [width] * depth
        self.hidden = nn.ModuleList(nn.Linear(a, b, bias=bias) for a, b in zip(dims, dims[1:]))
        self.readout = nn.Linear(dims[-1], out_dim, bias=bias)
        self.activation = activation

    @property
    def hidden_names(self) -> list[str]:
        return [f"h{i + 1}" for i in range(len(self.hidden))]

    def forward_features(self, x: torch.Tensor):
        act = ACTIVATIONS[self.activation]
        x = x.flatten(1)  # images go in as vectors
        pre, post, h = {}, {}, x
        for name, layer in zip(self.hidden_names, self.hidden):
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
        self.activation = activation

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.embed(x[:, 0]), self.embed(x[:, 1])], dim=1)

    def forward_features(self, x):
        inputs = self.encode(x)
        pre = self.hidden[0](inputs)
        post = ACTIVATIONS[self.activation](pre)
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
    """The model `cfg` names, initialised by its ``init`` / ``init_scale`` (featscope.init)."""
    from .init import init_from_config

    return init_from_config(_build(cfg, in_dim, out_dim), cfg)


def _build(cfg: dict, in_dim: int, out_dim: int) -> nn.Module:
    if cfg["name"] == "mlp":
        return MLP(in_dim, out_dim, cfg["width"], cfg["depth"], cfg.get("activation", "relu"), cfg.get("bias", True))
    if cfg["name"] == "modnet":
        return ModularNet(out_dim, cfg["width"], cfg.get("activation", "relu"), cfg.get("bias", True))
    if cfg["name"] == "onehot":
        return OneHotNet(out_dim, cfg["width"], cfg.get("activation", "square"), cfg.get("bias", False))
    if cfg["name"] in ("cnn", "vgg16", "resnet18"):
        from . import vision

        channels, bn = in_dim, cfg.get("batch_norm", False)
        if cfg["name"] == "cnn":
            return vision.SmallCNN(channels, out_dim, cfg["width"], bn)
        if cfg["name"] == "vgg16":
            return vision.VGG(channels, out_dim, cfg["width"], bn)
        return vision.ResNet18(channels, out_dim, bn)
    raise ValueError(f"unknown model '{cfg['name']}'")


def layer_of_parameter(name: str) -> str:
    """'hidden.0.weight' -> 'h1', 'readout.weight' -> 'out', 'body.3.weight' -> 'body.3'."""
    parts = name.split(".")
    if parts[0] == "hidden":
        return f"h{int(parts[1]) + 1}"
    if parts[0] == "readout":
        return "out"
    return ".".join(parts[:-1])
