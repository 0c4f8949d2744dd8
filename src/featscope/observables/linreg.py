"""Linear-regression baselines (Liu & Zheng 2026).

For features F (post-activations of a layer, or the inputs x) the baseline is
the least-squares fit of y on [F, 1]; its value is the fit's mean squared
error. The fit must survive rank-deficient F: dead ReLU neurons give zero
columns and always-on neurons give collinear ones, and a float32 normal-
equation or QR solve silently returns garbage there. We therefore work in
float64 with the pseudo-inverse of the Gram matrix G = AᵀA, A = [F, 1]: its
eigendecomposition (p × p, cheap next to an SVD of the n × p A when n ≫ p)
with a relative eigenvalue cutoff gives the minimum-norm least-squares fit,
and one step of iterative refinement recovers the accuracy that forming G
costs. Directions cut off have singular values below √(p·eps) ≈ 1e-7 of the
largest: below float32 resolution, the precision the features come in.
"""
from __future__ import annotations

import torch


def linreg_residual(features, target, rcond: float | None = None) -> torch.Tensor:
    """Residual y - ŷ of the least-squares fit of y on [F, 1]; batched over leading dims."""
    f = torch.as_tensor(features).double()
    y = torch.as_tensor(target).double()
    if y.dim() == 1:  # (n,) -> (n, 1); (n, C) and batched targets broadcast as they are
        y = y.unsqueeze(-1)
    n, p = f.shape[-2:]
    batch = torch.broadcast_shapes(f.shape[:-2], y.shape[:-2])
    f, y = f.expand(*batch, n, p), y.expand(*batch, *y.shape[-2:])
    # G = AᵀA for A = [F, 1] from its blocks, without forming A.
    ft = f.transpose(-1, -2)
    colsum = f.sum(dim=-2).unsqueeze(-1)  # (..., p, 1)
    top = torch.cat([ft @ f, colsum], dim=-1)
    bottom = torch.cat([colsum.transpose(-1, -2), torch.full_like(colsum[..., :1, :], n)], dim=-1)
    gram = torch.cat([top, bottom], dim=-2)
    # A diverged checkpoint has non-finite features: give NaN, not an eigensolver failure.
    finite = torch.isfinite(gram).all(dim=-1).all(dim=-1)
    gram = torch.where(finite[..., None, None], gram, torch.eye(p + 1, dtype=gram.dtype))
    lam, v = torch.linalg.eigh(gram)
    if rcond is None:
        rcond = (p + 1) * torch.finfo(torch.float64).eps
    keep = lam > rcond * lam[..., -1:]
    inv = torch.where(keep, 1.0 / torch.where(keep, lam, torch.ones_like(lam)), torch.zeros_like(lam))

    def fitted(rhs):  # A G⁺ Aᵀ rhs
        at_rhs = torch.cat([ft @ rhs, rhs.sum(dim=-2, keepdim=True)], dim=-2)
        beta = v @ (inv.unsqueeze(-1) * (v.transpose(-1, -2) @ at_rhs))
        return f @ beta[..., :p, :] + beta[..., p:, :]

    residual = y - fitted(y)
    residual = residual - fitted(residual)  # one refinement step
    return torch.where(finite[..., None, None], residual, torch.full_like(residual, float("nan")))


def linreg_loss(features, target, rcond: float | None = None) -> torch.Tensor:
    """MSE of the least-squares fit of `target` on [features, 1].

    features: (..., n, p); target: (n,), (n, C) or batched alike.
    Returns a float64 tensor with the leading batch shape (a scalar for 2-D input).
    """
    res = linreg_residual(features, target, rcond)
    return res.pow(2).mean(dim=(-2, -1))
