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

    def __init__(self, in_dim: int, out_dim: int, width: int, depth: int,
                 activation: str = "relu", bias: bool = True):
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
        pre, post, h = {}, {}, x
        for name, layer in zip(self.hidden_names, self.hidden):
            pre[name] = layer(h)
            h = post[name] = act(pre[name])
        return self.readout(h), Features(x, pre, post)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]


def build_model(cfg: dict, in_dim: int, out_dim: int) -> nn.Module:
    if cfg["name"] == "mlp":
        return MLP(in_dim, out_dim, cfg["width"], cfg["depth"], cfg.get("activation", "relu"),
                   cfg.get("bias", True))
    raise ValueError(f"unknown model '{cfg['name']}'")


def model_layer_names(cfg: dict) -> list[str]:
    """Names of the hidden layers a model config will have, without building it."""
    return [f"h{i + 1}" for i in range(cfg["depth"])]
