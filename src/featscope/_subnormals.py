"""Process-wide floating-point setting for featscope's training and observing."""

from __future__ import annotations

import torch


def flush_subnormals() -> bool:
    """Treat subnormal floats (below 1.2e-38 in float32) as zero on the CPU (FTZ/DAZ).

    Over a long run Adam's second moments and the weight-decayed weights of unused units
    sink into that range, and on Intel CPUs every operation on such a value takes a slow
    path (grokking-fig3's K = 2048 net trained several times slower with them;
    benchmarks/HISTORY.md).
    Values that small never move a loss or an observable above float32 resolution.

    The setting holds for the calling thread and the threads it starts afterwards, so it
    is made before a job's first parallel operation creates torch's thread pool (at the
    entry of `train_one`, `train_packed` and `observe_families`). Returns whether the
    CPU supports it."""
    return torch.set_flush_denormal(True)
