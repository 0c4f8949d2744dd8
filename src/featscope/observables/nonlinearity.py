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
    # Integer counts, exact. On the CPU numpy's sum of the comparison as bytes into 16-bit
    # counters took 0.7 ms where np.count_nonzero took 2.3 (64 checkpoints of 500 × 100, one
    # thread, AMD EPYC); on an Intel Xeon torch's int32 sum had taken 7.0 to numpy's 1.9.
    if pre.device.type == "cpu":
        positive = (pre.detach().numpy() > 0).view(np.uint8)
        wide = pre.shape[-2] >= 2 ** 16  # counts must not wrap
        counts = torch.from_numpy(positive.sum(axis=-2, dtype=np.int64 if wide else np.uint16).astype(np.int64))
    else:
        counts = (pre > 0).sum(dim=-2, dtype=torch.int32)
    return counts.double() / pre.shape[-2]


def nonlinear_neurons(pre: torch.Tensor) -> torch.Tensor:
    return count_from_rate["nonlinear_neurons"](active_rate(pre))


def dead_neurons(pre: torch.Tensor) -> torch.Tensor:
    return count_from_rate["dead_neurons"](active_rate(pre))


def linear_neurons(pre: torch.Tensor) -> torch.Tensor:
    return count_from_rate["linear_neurons"](active_rate(pre))


# The counts from a layer's active rates, so that several counts share one pass over `pre`.
count_from_rate = {"nonlinear_neurons": lambda rate: ((rate > 0) & (rate < 1)).sum(dim=-1),
                   "dead_neurons": lambda rate: (rate == 0).sum(dim=-1),
                   "linear_neurons": lambda rate: (rate == 1).sum(dim=-1)}
