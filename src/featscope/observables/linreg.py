"""Linear-regression baselines (Liu & Zheng 2026).

For features F (post-activations of a layer, or the inputs x) the baseline is
the least-squares fit of y on A = [F, 1]; its value is the fit's mean squared
error. The fit must survive rank-deficient F: dead ReLU neurons give zero
columns and always-on neurons give collinear ones, and a float32 normal-
equation or QR solve silently returns garbage there. We therefore work in
float64 on the Gram matrix G = AᵀA with a rank-revealing (pivoted) Cholesky
factorisation, LAPACK's dpstrf: it takes columns greedily by how much of them
the columns already taken leave unexplained and stops when that falls below
`rcond` × the largest column's squared norm, so a column that is zero or
(nearly) a combination of others is dropped. The fit on the kept columns has the
same residual as the minimum-norm fit (only the residual is used), and one step
of iterative refinement recovers the accuracy that forming G costs. Dropped
columns have residual norms below √(p·eps) ≈ 1e-7 of the largest: below
float32 resolution, the precision the features come in. (An eigendecomposition
of G does the same job at about ten times the cost; benchmarks/HISTORY.md.)
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.linalg.lapack import dpotrs, dpstrf


def checked_target(target, classes: int | None, what: str):
    """`target` as given, or one-hot codes of integer class labels: integer labels without
    ``classes`` are refused (a least-squares fit on them as numbers fits their order, which
    class labels do not have)."""
    if isinstance(target, (np.ndarray, torch.Tensor)):
        integer = not (target.is_floating_point() if isinstance(target, torch.Tensor) else target.dtype.kind == "f")
    else:
        raise TypeError(f"{what}: target must be a numpy array or a torch tensor, not {type(target).__name__}")
    if classes is None:
        if integer:
            raise ValueError(
                f"{what}: integer targets look like class labels; pass classes= (their number) to use "
                "their one-hot codes, or float targets to fit them as numbers"
            )
        return target
    labels = np.asarray(target.detach().cpu() if isinstance(target, torch.Tensor) else target)
    if not integer or labels.ndim != 1 or labels.min() < 0 or labels.max() >= classes:
        raise ValueError(f"{what}: classes= needs one integer label in [0, {classes}) per sample")
    return np.eye(classes)[labels]


def linreg_residual(features, target, rcond: float | None = None, grams=None, classes: int | None = None):
    """Residual y - ŷ of the least-squares fit of y on [F, 1]; batched over leading dims.
    `grams`, if given, are the maps' [F, 1]ᵀ[F, 1] in float64 (see `augmented_grams`);
    integer class labels need ``classes`` (see `checked_target`)."""
    target = checked_target(target, classes, "linreg")
    if not isinstance(features, (np.ndarray, torch.Tensor)):
        raise TypeError(f"linreg: features must be a numpy array or a torch tensor, not {type(features).__name__}")
    f = _as_array(features)  # float32 features go to float64 one map at a time, in `_residual`
    y = _as_float64(target)
    if y.ndim == 1:  # (n,) -> (n, 1); (n, C) and batched targets broadcast as they are
        y = y[:, None]
    n, p = f.shape[-2:]
    batch = np.broadcast_shapes(f.shape[:-2], y.shape[:-2])
    flat_f = np.broadcast_to(f, (*batch, n, p)).reshape(-1, n, p)
    flat_y = np.broadcast_to(y, (*batch, *y.shape[-2:])).reshape(-1, *y.shape[-2:])
    if rcond is None:
        rcond = (p + 1) * np.finfo(np.float64).eps
    flat_g = [None] * len(flat_f) if grams is None else _as_float64(grams).reshape(-1, p + 1, p + 1)
    residual = (
        np.stack([_residual(a, b, rcond, g) for a, b, g in zip(flat_f, flat_y, flat_g)]) if len(flat_f) else flat_y
    )
    return torch.from_numpy(residual.reshape(*batch, *y.shape[-2:]))


def _as_array(a) -> np.ndarray:
    """A float32 or float64 array as it is (no copy); anything else as float64."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    return a if a.dtype in (np.float32, np.float64) else a.astype(np.float64)


def _as_float64(a) -> np.ndarray:
    return np.asarray(_as_array(a), dtype=np.float64)


def _residual(f: np.ndarray, y: np.ndarray, rcond: float, gram: np.ndarray | None = None) -> np.ndarray:
    a = np.empty((len(f), f.shape[1] + 1))
    a[:, :-1], a[:, -1] = f, 1.0
    if gram is None:
        with np.errstate(invalid="ignore"):  # infinities times zeros: checked below
            gram = a.T @ a  # one symmetric product (BLAS syrk), half a general one
    # The diagonal holds every value's square, so any NaN or infinity of the features
    # spoils its sum (float32 values cannot overflow it in float64): a diverged checkpoint
    # gets NaN, not a factorisation failure, and costs less than a check of every value.
    diagonal = gram.diagonal()
    if not np.isfinite(diagonal.sum()):
        return np.full(y.shape, np.nan)
    factor, pivots, rank, _ = dpstrf(gram, lower=0, tol=rcond * diagonal.max())
    kept = pivots[:rank] - 1
    r = np.asfortranarray(factor[:rank, :rank])  # once, not a copy in each LAPACK call

    def fitted(rhs):  # A_k (A_kᵀA_k)⁻¹ A_kᵀ rhs with A_kᵀA_k = RᵀR, A_k the kept columns
        beta = np.zeros((a.shape[1], rhs.shape[1]))
        beta[kept], _ = dpotrs(r, (a.T @ rhs)[kept], lower=0)  # cho_solve's LAPACK call, without its checks
        return a @ beta

    residual = y - fitted(y)
    return residual - fitted(residual)  # one refinement step


def augmented_grams(features) -> torch.Tensor:
    """[F, 1]ᵀ[F, 1] of each map of a stack (T, n, p), float64 (T, p + 1, p + 1): the Grams
    the fits factorise. Its top-left block is FᵀF and its last column F ᵀ1, so an observe
    pass that also takes the spectral measures of the layer forms it once for both."""
    maps = _as_array(features)
    out = np.empty((len(maps), maps.shape[2] + 1, maps.shape[2] + 1))
    a = np.empty((maps.shape[1], maps.shape[2] + 1))
    a[:, -1] = 1.0
    for f, o in zip(maps, out):
        a[:, :-1] = f
        with np.errstate(invalid="ignore"):  # a diverged map's infinities: the fits give it NaN
            np.matmul(a.T, a, out=o)  # BLAS syrk
    return torch.from_numpy(out)


def linreg_loss(features, target, rcond: float | None = None, grams=None, classes: int | None = None):
    """MSE of the least-squares fit of `target` on [features, 1].

    features: (..., n, p); target: (n,), (n, C) or batched alike, numpy arrays or torch
    tensors; integer class labels (n,) need ``classes`` (fitted as their one-hot codes)
    and are refused without. grams, if given, `augmented_grams(features)` (..., p + 1,
    p + 1), already formed by the caller. Returns a float64 tensor with the leading batch
    shape (a scalar for 2-D input).
    """
    res = linreg_residual(features, target, rcond, grams, classes)
    return res.pow(2).mean(dim=(-2, -1))
