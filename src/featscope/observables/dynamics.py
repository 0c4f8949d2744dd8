"""Weight and gradient observables of learning dynamics (Tian 2025).

Pure functions of tensors; `families.weights` and `families.gradients` apply
them to every checkpoint of a run.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def mean_pairwise_cosine(rows: torch.Tensor, absolute: bool = False) -> float:
    """Mean cosine similarity over distinct pairs of rows (zero rows excluded)."""
    if not absolute:
        return float(batched_mean_pairwise_cosine(rows[None])[0])
    rows = rows.double()
    norms = rows.norm(dim=1)
    rows = rows[norms > 0] / norms[norms > 0, None]
    k = len(rows)
    if k < 2:
        return math.nan
    cos = (rows @ rows.T).abs()
    return float((cos.sum() - cos.diagonal().sum()) / (k * (k - 1)))


def batched_mean_pairwise_cosine(rows: torch.Tensor, block_bytes: int = 4 * 2**20) -> torch.Tensor:
    """`mean_pairwise_cosine` of each of a stack of row sets (T, k, d): (T,) float64.
    Σ_ij cos_ij = ‖Σ_i row_i/‖row_i‖‖²: no k × k matrix (2048 neurons: 4M entries). In
    float64 a few sets at a time (`_blocks`)."""
    return torch.cat([_mean_pairwise_cosine(block) for block in _blocks(rows, block_bytes)])


def _mean_pairwise_cosine(rows: torch.Tensor) -> torch.Tensor:
    rows = rows.double()
    norms = rows.norm(dim=-1, keepdim=True)
    nonzero = norms > 0
    unit = torch.where(nonzero, rows / torch.where(nonzero, norms, torch.ones_like(norms)), 0.0)
    k = nonzero.sum(dim=(1, 2)).double()
    pairs = k * (k - 1)
    mean = (unit.sum(dim=1).pow(2).sum(dim=-1) - k) / torch.where(pairs > 0, pairs, torch.ones_like(pairs))
    return torch.where(k >= 2, mean, math.nan)


def _blocks(stack: torch.Tensor, block_bytes: int) -> tuple:
    """`stack` (T, ...) split along T into blocks of at most `block_bytes` in float64 (at
    least one map each)."""
    per_map = max(1, stack[0].numel() * 8) if len(stack) else 1
    return stack.split(max(1, block_bytes // per_map))


def feature_diversity(weight: torch.Tensor) -> float:
    """1 − mean off-diagonal |cos| between neurons' incoming weight vectors (rows)."""
    return 1.0 - mean_pairwise_cosine(weight, absolute=True)


def effective_rank(weight: torch.Tensor) -> float:
    """exp(entropy of the normalised singular values) (Roy & Vetterli 2007)."""
    s = torch.linalg.svdvals(weight.double())
    if s.sum() <= 0:
        return 0.0
    p = s[s > 0] / s.sum()
    return float(torch.exp(-(p * p.log()).sum()))


def batched_effective_rank(weights: torch.Tensor) -> torch.Tensor:
    """`effective_rank` of each of a stack of matrices (T, k, d): (T,) float64."""
    s = torch.linalg.svdvals(weights.double())
    total = s.sum(dim=-1, keepdim=True)
    p = s / torch.where(total > 0, total, 1.0)
    plogp = torch.where(p > 0, p * p.log(), 0.0)
    return torch.where(total[:, 0] > 0, torch.exp(-plogp.sum(dim=-1)), 0.0)


def batched_mean_abs_pairwise_cosine(rows: torch.Tensor, block_bytes: int = 32 * 2**20) -> torch.Tensor:
    """`mean_pairwise_cosine(absolute=True)` of each of a stack of row sets (T, k, d): (T,)
    float64. |cos| has no sum trick: the k × k matrices, as few at a time as fit `block_bytes`."""
    k = rows.shape[1]
    per_set = max(1, k * k * 8)
    return torch.cat([_mean_abs_pairwise_cosine(block) for block in rows.split(max(1, block_bytes // per_set))])


def _mean_abs_pairwise_cosine(rows: torch.Tensor) -> torch.Tensor:
    rows = rows.double()
    norms = rows.norm(dim=-1, keepdim=True)
    nonzero = norms > 0
    unit = torch.where(nonzero, rows / torch.where(nonzero, norms, torch.ones_like(norms)), 0.0)
    cos = (unit @ unit.mT).abs_()  # in place: no second n × n buffer, the same bits
    k = nonzero.sum(dim=(1, 2)).double()
    pairs = k * (k - 1)
    off = cos.sum(dim=(1, 2)) - cos.diagonal(dim1=1, dim2=2).sum(dim=-1)
    return torch.where(k >= 2, off / torch.where(pairs > 0, pairs, torch.ones_like(pairs)), math.nan)


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    denom = a.norm() * b.norm()
    return float(a @ b / denom) if denom > 0 else math.nan


def fourier_energy(weights: torch.Tensor) -> torch.Tensor:
    """Energy per frequency f = 0..M//2 of each neuron's input weights over Z_M.

    weights: (K, parts, M) — e.g. parts = (a, b). Frequencies f and M − f are one
    real frequency and are added; the parts are added too. Returns (K, M//2 + 1).
    """
    power = torch.fft.fft(weights.double(), dim=-1).abs().pow(2).sum(dim=1)  # (K, M)
    m = power.shape[-1]
    half = m // 2
    energy = power[:, : half + 1].clone()
    mirrored = power[:, m - half :].flip(-1)  # frequencies M−half..M−1 reversed = half..1
    if m % 2 == 0:
        energy[:, 1:half] += mirrored[:, : half - 1]  # the Nyquist frequency M/2 pairs with itself
    else:
        energy[:, 1:] += mirrored
    return energy


def fourier_purity(weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per neuron: share of input-weight energy in its top non-constant frequency, and that frequency."""
    energy = fourier_energy(weights)
    total = energy.sum(dim=1)
    top, freq = energy[:, 1:].max(dim=1)
    purity = torch.where(total > 0, top / total, torch.zeros_like(top))
    return purity, freq + 1


def distinct_frequencies(weights: torch.Tensor, min_purity: float = 0.5) -> int:
    """Number of distinct dominant frequencies among neurons at least `min_purity` pure."""
    return distinct_of(*fourier_purity(weights), min_purity)


def distinct_of(purity: torch.Tensor, freq: torch.Tensor, min_purity: float = 0.5) -> int:
    """`distinct_frequencies` from `fourier_purity`'s output, for a caller that has it."""
    return int(torch.unique(freq[purity >= min_purity]).numel())


def gram_statistics(features: torch.Tensor) -> tuple[float, float]:
    """Mean diagonal and mean off-diagonal entry of F̃ᵀF̃ / n, F̃ the sample-centred features."""
    diag, off = batched_gram_statistics(features[None])
    return float(diag[0]), float(off[0])


def batched_gram_statistics(features: torch.Tensor) -> tuple:
    """`gram_statistics` of each of a stack of feature maps (T, n, k): two (T,) float64.

    Without forming the k × k matrices: the trace is ‖F̃‖² / n and the sum of the entries
    ‖F̃·1‖² / n (the grokking study's K = 2048 layer on 2,016 samples: 17 GFLOP for the
    matrix, 8 MFLOP this way). Centred in float64 one map at a time, in one buffer that
    stays in the cache (faster than blocks of maps or all at once; benchmarks/HISTORY.md)."""
    t, n, k = features.shape
    trace, total = np.empty(t), np.empty(t)
    centred = np.empty((n, k))
    for i, f in enumerate(features.detach().cpu().numpy()):
        centred[...] = f
        centred -= centred.mean(axis=0)
        flat, row_sums = centred.reshape(-1), centred.sum(axis=1)
        trace[i], total[i] = flat @ flat / n, row_sums @ row_sums / n
    off = (total - trace) / (k * (k - 1)) if k > 1 else np.full_like(trace, math.nan)
    return torch.from_numpy(trace / k), torch.from_numpy(off)


def batched_norms(stack: torch.Tensor, block_bytes: int = 4 * 2**20) -> torch.Tensor:
    """The float64 Frobenius norm of each of a stack of tensors (T, ...): (T,)."""
    return torch.cat([block.double().flatten(1).norm(dim=1) for block in _blocks(stack, block_bytes)])
