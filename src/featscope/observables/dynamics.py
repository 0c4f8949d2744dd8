"""Weight and gradient observables of learning dynamics (Tian 2025).

Pure functions of tensors; `families.weights` and `families.gradients` apply
them to every checkpoint of a run.
"""
from __future__ import annotations

import math

import torch


def mean_pairwise_cosine(rows: torch.Tensor, absolute: bool = False) -> float:
    """Mean cosine similarity over distinct pairs of rows (zero rows excluded)."""
    rows = rows.double()
    norms = rows.norm(dim=1)
    rows = rows[norms > 0] / norms[norms > 0, None]
    k = len(rows)
    if k < 2:
        return math.nan
    if not absolute:  # Σ_ij cos_ij = ‖Σ_i row_i‖²: no k × k matrix (2048 neurons: 4M entries)
        return float((rows.sum(dim=0).pow(2).sum() - k) / (k * (k - 1)))
    cos = (rows @ rows.T).abs()
    return float((cos.sum() - cos.diagonal().sum()) / (k * (k - 1)))


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
    energy = power[:, :half + 1].clone()
    mirrored = power[:, m - half:].flip(-1)  # frequencies M−half..M−1 reversed = half..1
    if m % 2 == 0:
        energy[:, 1:half] += mirrored[:, :half - 1]  # the Nyquist frequency M/2 pairs with itself
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
    purity, freq = fourier_purity(weights)
    return int(torch.unique(freq[purity >= min_purity]).numel())


def gram_statistics(features: torch.Tensor) -> tuple[float, float]:
    """Mean diagonal and mean off-diagonal entry of F̃ᵀF̃ / n, F̃ the sample-centred features.

    Without forming the k × k matrix: its trace is ‖F̃‖² / n and the sum of its entries
    ‖F̃·1‖² / n (the grokking study's K = 2048 layer on 2,016 samples: 17 GFLOP for the
    matrix, 8 MFLOP this way)."""
    f = features.double()
    f = f - f.mean(dim=0)
    n, k = f.shape
    trace = f.pow(2).sum() / n
    total = f.sum(dim=1).pow(2).sum() / n
    off = (total - trace) / (k * (k - 1)) if k > 1 else torch.tensor(math.nan)
    return float(trace / k), float(off)
