"""Reading any model's layers by forward hooks.

A layer named in a mapping ``{featscope layer: module path}`` is read from its module:
the module's input is the layer's pre-activation, its output the post-activation (so a
mapping that points at an activation module gives both). The readout module's input is
the penultimate feature; the ``inputs`` module's input, if one is named, is the ``x``
layer (else the data as vectors). The built-in models register such mappings
(`featscope.architectures`) and their ``forward_features`` give the same tensors
(tests/test_observe.py).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.func import functional_call

from .models import PENULTIMATE, Features

_X, _READOUT = "\0x", "\0readout"  # keys no layer name can take


class LayerMap:
    """Where a model's layers live: featscope layer name -> module path, the readout's
    path, and optionally the module whose input is the ``x`` layer. Paths are checked
    against the model: a missing module is named, with the model's modules."""

    def __init__(self, model: nn.Module, layers: Mapping[str, str], readout: str, inputs: str | None = None):
        if not isinstance(layers, Mapping) or not all(isinstance(k, str) and k for k in layers):
            raise ValueError(f"layers must map non-empty layer names to module paths, not {layers!r}")
        for bad in {"x", PENULTIMATE} & set(layers):
            raise ValueError(f"layer name '{bad}' is reserved (the inputs and the readout's input)")
        known = dict(model.named_modules())
        for what, path in [*((f"layer '{k}'", v) for k, v in layers.items()), ("readout", readout), ("inputs", inputs)]:
            if path is not None and path not in known:
                names = [n for n in known if n]
                raise ValueError(f"{what}: the model has no module '{path}' (it has {names[:20]})")
        self.layers, self.readout, self.inputs = dict(layers), readout, inputs
        self.modules = {name: known[path] for name, path in self.layers.items()}
        self.readout_module = known[readout]
        self.inputs_module = known[inputs] if inputs is not None else None
        self.model = model
        self.parameter_layers: dict[str, str] = {readout: "out"}

    def name_parameters(self, x: torch.Tensor) -> None:
        """Name each parameterised module's weights by the layer they feed: a module whose
        output is a mapped layer's pre-activation gets that layer's name (``h1`` for the
        ``Linear`` before the activation ``h1`` points at), the readout ``out``; one
        forward pass on ``x`` finds them. Other modules keep their path."""
        made: dict[str, torch.Tensor] = {}
        fed: dict[str, torch.Tensor] = {}
        owners = [(path, m) for path, m in self.model.named_modules() if any(True for _ in m.parameters(False))]
        # The tensors themselves, kept alive for the pass, are compared (ids could be reused).
        handles = [m.register_forward_hook(_keeping(made, path, lambda a, out: out)) for path, m in owners]
        handles += [
            module.register_forward_pre_hook(_keeping(fed, name, lambda args: args[0]))
            for name, module in self.modules.items()
        ]
        try:
            with torch.no_grad():
                self.model(x)
        finally:
            for handle in handles:
                handle.remove()
        for name, tensor in fed.items():
            path = next((p for p, out in made.items() if out is tensor), None)
            if path is not None and path != self.readout:
                self.parameter_layers.setdefault(path, name)

    def layer_of_parameter(self, name: str) -> str:
        """The layer a parameter (state-dict name) belongs to: see `name_parameters`;
        a parameter of the model itself keeps its own name (never an empty layer name)."""
        module = name.rpartition(".")[0]
        return self.parameter_layers.get(module, module or name)


def hooked(model: nn.Module, where: LayerMap):
    """``f(x, params=None) -> (output, inputs, pre, post, extra)``: one forward pass of
    ``model`` (with ``params``, a state dict, in place of its own, through
    ``functional_call``) with the layers of ``where`` captured (``extra`` holds
    ``penultimate`` where the readout's input is not the last mapped layer's output).
    Plain tensors and dicts out: ``vmap`` can wrap it."""

    def forward(x: torch.Tensor, params: dict | None = None):
        seen: dict = {}
        handles = [
            module.register_forward_hook(_keeping(seen, name, lambda args, out: (args[0], out)))
            for name, module in where.modules.items()
        ]
        handles.append(where.readout_module.register_forward_pre_hook(_keeping(seen, _READOUT, lambda args: args[0])))
        if where.inputs_module is not None:
            handles.append(where.inputs_module.register_forward_pre_hook(_keeping(seen, _X, lambda args: args[0])))
        try:
            output = model(x) if params is None else functional_call(model, params, (x,))
        finally:
            for handle in handles:
                handle.remove()
        missing = [name for name in [*where.layers, _READOUT] if name not in seen]
        if missing:
            name = "the readout" if missing[0] == _READOUT else f"layer '{missing[0]}'"
            raise ValueError(f"{name}: its module was not called in the forward pass")
        pre = {name: seen[name][0] for name in where.layers}
        post = {name: seen[name][1] for name in where.layers}
        inputs = seen[_X] if _X in seen else x.flatten(1)
        if not inputs.is_floating_point():
            inputs = inputs.to(output.dtype)
        last = post[list(post)[-1]] if post else None
        extra = {} if seen[_READOUT] is last else {PENULTIMATE: seen[_READOUT]}
        return output, inputs, pre, post, extra

    return forward


def _keeping(store: dict, key, value):
    """A hook that keeps ``value(*hook args)`` under ``key`` (the first call's: a module
    called twice keeps its first) and returns None, so it changes nothing it sees."""

    def hook(module, *args):
        if key not in store:
            store[key] = value(*args)

    return hook


def features(model: nn.Module, x: torch.Tensor, where: LayerMap) -> tuple[torch.Tensor, Features]:
    """``(output, Features)`` of one forward pass, read by hooks."""
    output, inputs, pre, post, extra = hooked(model, where)(x)
    return output, Features(inputs, pre, post, extra.get(PENULTIMATE))


def to_features(inputs, pre, post, extra) -> Features:
    return Features(inputs, pre, post, extra.get(PENULTIMATE))


def layer_map(model: nn.Module, model_cfg: dict) -> LayerMap:
    """The registered mapping of a built (or plugin) architecture's model."""
    from .architectures import model_spec

    spec = model_spec(model_cfg["name"])
    return LayerMap(model, spec.layer_map(model_cfg), spec.readout, spec.inputs)
