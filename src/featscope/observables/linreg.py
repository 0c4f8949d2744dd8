"""Linear-regression baselines (Liu & Zheng 2026).

For features F (post-activations of a layer, or the inputs x) the baseline is
the least-squares fit of y on [F, 1]; its value is the fit's mean squared
error. The fit must survive rank-deficient F: dead ReLU neurons give zero
columns and always-on neurons give collinear ones, and a float32 normal-
equation or QR solve silently returns garbage there. We therefore work in
float64 and project y onto the column space of [F, 1] through an SVD with a
relative singular-value cutoff (the minimum-norm least-squares solution).
"""
from __future__ import annotations

import torch


def _design(features: torch.Tensor) -> torch.Tensor:
    f = torch.as_tensor(features).double()
    ones = torch.ones(*f.shape[:-1], 1, dtype=f.dtype, device=f.device)
    return torch.cat([f, ones], dim=-1)


def linreg_residual(features, target, rcond: float | None = None) -> torch.Tensor:
    """Residual y - ŷ of the least-squares fit of y on [F, 1]; batched over leading dims."""
    a = _design(features)
    y = torch.as_tensor(target).double()
    # A diverged checkpoint has non-finite features: give NaN, not an SVD failure.
    finite = torch.isfinite(a).all(dim=-1).all(dim=-1)
    a = torch.where(finite[..., None, None], a, torch.zeros_like(a))
    if y.dim() == 1:  # (n,) -> (n, 1); (n, C) and batched targets broadcast as they are
        y = y.unsqueeze(-1)
    u, s, _ = torch.linalg.svd(a, full_matrices=False)
    if rcond is None:
        rcond = max(a.shape[-2:]) * torch.finfo(torch.float64).eps
    keep = (s > rcond * s[..., :1]).unsqueeze(-2)  # (..., 1, r)
    u = u * keep
    residual = y - u @ (u.transpose(-1, -2) @ y)
    return torch.where(finite[..., None, None], residual, torch.full_like(residual, float("nan")))


def linreg_loss(features, target, rcond: float | None = None) -> torch.Tensor:
    """MSE of the least-squares fit of `target` on [features, 1].

    features: (..., n, p); target: (n,), (n, C) or batched alike.
    Returns a float64 tensor with the leading batch shape (a scalar for 2-D input).
    """
    res = linreg_residual(features, target, rcond)
    return res.pow(2).mean(dim=(-2, -1))
