"""The built-in architectures, registered as a plugin's model is (``featscope.register_model``).

One decorated factory per architecture: its defaults are the factory's keyword defaults
(the config schema's ``model`` block copies them; tests/test_architectures.py checks they
agree), its layer mapping names the modules whose forward hooks give each layer's pre- and
post-activations, and ``stacked`` names its hand-written batched form (`featscope.stacked`),
where it has one.

This module imports no torch: the workflow reads layer names and packability while
Snakemake starts. The factories import the model classes when they are called.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

from .registry import MODELS, ModelSpec, RegistryError, register_model

# Modules of the package that register further models (imported on the first lookup of a
# name not yet registered, so that a torch-importing one costs nothing when unused).
BUILTIN_MODULES = ("featscope.transformer",)


def _hidden_layers(params: dict) -> dict[str, str]:
    return {f"h{i + 1}": f"acts.{i}" for i in range(params["depth"])}


@register_model("mlp", layers=_hidden_layers, readout="readout", stacked="mlp")
def mlp(in_dim: int, out_dim: int, width: int = 100, depth: int = 2, activation: str = "relu", bias: bool = True):
    """Fully connected net [in, width x depth, out], one activation (images go in as vectors)."""
    from .models import MLP

    return MLP(in_dim, out_dim, width, depth, activation, bias)


@register_model("modnet", layers={"h1": "acts.0"}, readout="readout", inputs="hidden.0", stacked="modnet")
def modnet(in_dim: int, out_dim: int, width: int = 100, activation: str = "relu", bias: bool = True):
    """The grokking notes' net: shared embedding of a and b, concatenated, Linear, activation, Linear."""
    from .models import ModularNet

    return ModularNet(out_dim, width, activation, bias)


@register_model("onehot", layers={"h1": "acts.0"}, readout="readout", inputs="hidden.0", stacked="onehot")
def onehot(in_dim: int, out_dim: int, width: int = 100, activation: str = "square", bias: bool = False):
    """Tian (2025)'s net: one-hot a ⊕ one-hot b, K hidden units, σ(x) = x², no biases."""
    from .models import OneHotNet

    return OneHotNet(out_dim, width, activation, bias)


@register_model("cnn", layers={"h1": "act"}, readout="readout", inputs="hidden.0", in_dim="channels")
def cnn(in_dim: int, out_dim: int, width: int = 100, batch_norm: bool = False):
    """Small CNN (MNIST family): two conv blocks and a hidden fully connected layer."""
    from .vision import SmallCNN

    return SmallCNN(in_dim, out_dim, width, batch_norm)


@register_model("vgg16", layers={"h1": "act"}, readout="readout", inputs="hidden.0", in_dim="channels")
def vgg16(in_dim: int, out_dim: int, width: int = 100, batch_norm: bool = False):
    """VGG-16 (CIFAR-10) with one hidden fully connected layer of ``width`` units."""
    from .vision import VGG

    return VGG(in_dim, out_dim, width, batch_norm)


@register_model("resnet18", layers={"h1": "act"}, readout="readout", inputs="act", in_dim="channels")
def resnet18(in_dim: int, out_dim: int, batch_norm: bool = False):
    """ResNet-18 (CIFAR-10); its one layer ``h1`` is the pooled body's output, the readout's input."""
    from .vision import ResNet18

    return ResNet18(in_dim, out_dim, batch_norm)


def model_spec(name: str) -> ModelSpec:
    """The registered architecture ``name``; an unknown name is refused, naming those known."""
    if name not in MODELS:
        for module in BUILTIN_MODULES:
            if module not in sys.modules and importlib.util.find_spec(module) is not None:
                importlib.import_module(module)
    if name not in MODELS:
        raise RegistryError(f"unknown model '{name}'; registered: {sorted(MODELS)}")
    return MODELS[name]


def in_dim_of(spec: ModelSpec, sample_shape: tuple) -> int:
    """The factory's ``in_dim`` for samples of ``sample_shape`` (one sample, no batch axis)."""
    size = 1
    for n in sample_shape:
        size *= int(n)
    if spec.in_dim == "channels" and len(sample_shape) > 1:
        return int(sample_shape[0])
    return size
