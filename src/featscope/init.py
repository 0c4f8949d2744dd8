"""Weight initialisation schemes, applied after a model is built (the `model.init` config axis).

Every ``nn.Linear`` and ``nn.Conv*`` layer is (re)initialised; with fan_in = inputs per output
unit (in_features, or in_channels × kernel size):

* ``torch`` — PyTorch's default, left as built: weights and biases ~ U(−b, b), b = 1/√fan_in
  (weight variance 1/(3·fan_in));
* ``gaussian`` — He normal: weights ~ N(0, 2/fan_in), biases 0 (variance-preserving for ReLU).

``scale`` multiplies the initial weights and biases of those layers (standard deviations scale
by ``scale``). Embeddings and batch-norm affine parameters keep their own defaults.

``torch`` at scale 1 touches nothing, so it draws no random numbers and changes no result
made before this axis existed; ``torch`` at another scale multiplies the very weights the
default would have drawn (same seed, same directions).
"""

from __future__ import annotations

import math

import torch
from torch import nn

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _torch(module: nn.Module, fan_in: int) -> None:
    """PyTorch's own draw is already in place."""


def _gaussian(module: nn.Module, fan_in: int) -> None:
    nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_in))
    if module.bias is not None:
        nn.init.zeros_(module.bias)


SCHEMES = {"torch": _torch, "gaussian": _gaussian}


def fan_in(module: nn.Module) -> int:
    """Inputs per output unit of a Linear or Conv layer."""
    return module.weight[0].numel()


@torch.no_grad()
def apply_init(model: nn.Module, scheme: str = "torch", scale: float = 1.0) -> nn.Module:
    """Initialise `model` in place by `scheme`, then multiply those layers' parameters by `scale`.

    Draws from torch's global generator in module order, so a seeded build is reproducible.
    Returns the model.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown model.init '{scheme}'; known: {sorted(SCHEMES)}")
    if not (isinstance(scale, int | float) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"model.init_scale must be a finite number > 0, got {scale!r}")
    if scheme == "torch" and scale == 1.0:
        return model
    for module in model.modules():
        if isinstance(module, _LAYERS):
            SCHEMES[scheme](module, fan_in(module))
            if scale != 1.0:
                module.weight.mul_(scale)
                if module.bias is not None:
                    module.bias.mul_(scale)
    return model


def init_from_config(model: nn.Module, cfg: dict) -> nn.Module:
    """`apply_init` with a model config's ``init`` and ``init_scale`` (absent: torch, 1)."""
    return apply_init(model, cfg.get("init", "torch"), cfg.get("init_scale", 1.0))
