"""Nonlinearity observables (Liu & Zheng 2026).

For a hidden ReLU layer with pre-activations z_j(x) over the evaluation
inputs, the active rate of neuron j is a_j = mean_x [z_j(x) > 0]. A neuron is
nonlinear if 0 < a_j < 1 (it bends somewhere on the data), dead if a_j = 0,
and linear (always on) if a_j = 1.

All functions take pre-activations shaped (..., n_samples, width) and reduce
over the sample axis, so a stack of checkpoints (T, n, width) works as is.
"""

from __future__ import annotations

import numpy as np
import torch


def active_rate(pre: torch.Tensor) -> torch.Tensor:
    """Per-neuron share of samples with positive pre-activation: (..., width)."""
    return _counts(pre).double() / pre.shape[-2]


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


def nonlinear_neurons(pre: torch.Tensor) -> torch.Tensor:
    return count_from_rate["nonlinear_neurons"](active_rate(pre))


def dead_neurons(pre: torch.Tensor) -> torch.Tensor:
    return count_from_rate["dead_neurons"](active_rate(pre))


def linear_neurons(pre: torch.Tensor) -> torch.Tensor:
    return count_from_rate["linear_neurons"](active_rate(pre))


# The counts from a layer's active rates, so that several counts share one pass over `pre`.
count_from_rate = {
    "nonlinear_neurons": lambda rate: ((rate > 0) & (rate < 1)).sum(dim=-1),
    "dead_neurons": lambda rate: (rate == 0).sum(dim=-1),
    "linear_neurons": lambda rate: (rate == 1).sum(dim=-1),
}
