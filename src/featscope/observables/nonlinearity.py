"""Nonlinearity observables (Liu & Zheng 2026).

For a hidden ReLU layer with pre-activations z_j(x) over the evaluation
inputs, the active rate of neuron j is a_j = mean_x [z_j(x) > 0]. A neuron is
nonlinear if 0 < a_j < 1 (it bends somewhere on the data), dead if a_j = 0,
and linear (always on) if a_j = 1.

All functions take pre-activations shaped (..., n_samples, width), as a numpy array
or a torch tensor, and reduce over the sample axis, so a stack of checkpoints
(T, n, width) works as is.

The counts are defined for the ReLU family (`RELU_FAMILY`), whose neurons are exactly
linear where on and constant where off. A smooth activation (tanh, GELU, x²) has no such
regions: asking for counts of one is refused. The active rate is the share of positive
pre-activations whatever the activation.
"""

from __future__ import annotations

import numpy as np
import torch

RELU_FAMILY = ("relu",)  # activations piecewise linear with one kink at 0: the counts' definition


def active_rate(pre) -> torch.Tensor:
    """Per-neuron share of samples with positive pre-activation: (..., width), float64."""
    pre = _as_tensor(pre)
    return _counts(pre).double() / pre.shape[-2]


def _as_tensor(pre) -> torch.Tensor:
    if isinstance(pre, np.ndarray):
        return torch.from_numpy(pre)
    if not isinstance(pre, torch.Tensor):
        raise TypeError(f"pre-activations must be a numpy array or a torch tensor, not {type(pre).__name__}")
    if pre.dim() < 2:
        raise ValueError(f"pre-activations must be (..., n_samples, width), not of shape {tuple(pre.shape)}")
    return pre


def check_relu_family(activation: str, where: str = "") -> None:
    """Refuse neuron counts for an activation outside `RELU_FAMILY`, saying why."""
    if activation not in RELU_FAMILY:
        raise ValueError(
            f"nonlinear/dead/linear neuron counts are defined for ReLU layers{where}, not '{activation}': "
            "a ReLU neuron is linear where it is on and constant where it is off, a smooth activation "
            "has no such regions (active_rate, the share of positive pre-activations, is defined for any)"
        )


def active_rates_of_blocks(pre_blocks) -> dict[str, torch.Tensor]:
    """{layer: active rates (T, width)} from (layer, pre-activations (b, n, width)) pairs that
    come a block of checkpoints at a time, in order (`stacked.stacked_pre_activations`)."""
    parts: dict[str, list] = {}
    samples = {}
    for layer, pre in pre_blocks:
        parts.setdefault(layer, []).append(_counts(pre))
        samples[layer] = pre.shape[-2]
    return {layer: torch.cat(counts).double() / samples[layer] for layer, counts in parts.items()}


def _counts(pre: torch.Tensor) -> torch.Tensor:
    """Per-neuron count of samples with positive pre-activation (..., width), int64 or int32."""
    if pre.device.type == "cpu":
        return torch.from_numpy(_positive_counts(pre.detach().numpy()))
    return (pre > 0).sum(dim=-2, dtype=torch.int32)


_BLOCK_BYTES = 2**20  # the comparison's bytes per block: it stays in cache for the sum


def _positive_counts(pre: np.ndarray) -> np.ndarray:
    """Integer counts of positive entries over axis −2, exact: the comparison as bytes summed
    into 16-bit counters, a block of maps at a time: faster than np.count_nonzero or
    torch's int32 sum, and faster in cache-sized blocks (benchmarks/HISTORY.md)."""
    n, width = pre.shape[-2:]
    maps = pre.reshape(-1, n, width)
    wide = n >= 2**16  # 16-bit counts would wrap
    counts = np.empty((len(maps), width), dtype=np.int64 if wide else np.uint16)
    step = max(1, _BLOCK_BYTES // max(n * width, 1))
    positive = np.empty((min(step, len(maps)), n, width), dtype=bool)
    for lo in range(0, len(maps), step):
        block = maps[lo : lo + step]
        positive_block = np.greater(block, 0, out=positive[: len(block)])
        positive_block.view(np.uint8).sum(axis=-2, dtype=counts.dtype, out=counts[lo : lo + step])
    return counts.astype(np.int64).reshape(*pre.shape[:-2], width)


def nonlinear_neurons(pre, activation: str = "relu") -> torch.Tensor:
    """Number of neurons (..., ) whose pre-activation is positive on some samples and not on
    others: they bend somewhere on the data (ReLU family only, see the module docstring)."""
    check_relu_family(activation)
    return count_from_rate["nonlinear_neurons"](active_rate(pre))


def dead_neurons(pre, activation: str = "relu") -> torch.Tensor:
    """Number of neurons (..., ) never active on the samples: constant zero (ReLU family only)."""
    check_relu_family(activation)
    return count_from_rate["dead_neurons"](active_rate(pre))


def linear_neurons(pre, activation: str = "relu") -> torch.Tensor:
    """Number of neurons (..., ) active on every sample: linear there (ReLU family only)."""
    check_relu_family(activation)
    return count_from_rate["linear_neurons"](active_rate(pre))


# The counts from a layer's active rates, so that several counts share one pass over `pre`.
count_from_rate = {
    "nonlinear_neurons": lambda rate: ((rate > 0) & (rate < 1)).sum(dim=-1),
    "dead_neurons": lambda rate: (rate == 0).sum(dim=-1),
    "linear_neurons": lambda rate: (rate == 1).sum(dim=-1),
}
