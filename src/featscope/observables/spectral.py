"""Kernel eigen-measures of a feature map (after Nam et al., arXiv 2410.04264).

The paper's code is not public; these are featscope's stated definitions.

Φ (n × p) holds the penultimate features of n evaluation samples. With the
uncentred second-moment matrix Σ = ΦᵀΦ / n and its eigenpairs (ρ_k, u_k),
ρ_1 ≥ ρ_2 ≥ ..., the eigenfunctions on the sample are e_k = Φ u_k / √ρ_k, with
unit empirical norm ⟨e_k, e_k⟩ = 1 where ⟨a, b⟩ = mean_i a(x_i) b(x_i).
Eigenvalues below ``rtol`` × ρ_1 are dropped (their eigenfunctions are noise).

* quality   Q*_k = Σ_c ⟨e_k, f*_c⟩² / Σ_c ‖f*_c‖²   (f* the target, one-hot for classes)
* utility   Q̂_k  = the same with the network output f̂
* cum_quality Π*(k) = Σ_{j≤k} Q*_j, cum_utility Π̂(k) likewise: non-decreasing, ≤ 1
* effective_dim = exp(entropy of ρ/Σρ); effective_dim_quality and
  effective_dim_utility the same for Q*/ΣQ* and Q̂/ΣQ̂
* d_lr = 1 − CKA(ΦΦᵀ, P): the centred alignment ⟨HKH, P⟩ / (‖HKH‖‖P‖) of the
  kernel of the features (before the last layer) with the kernel after it, P the
  projection onto the span of the centred outputs Hf̂ (H the centring matrix). It is
  0 exactly when the centred features' kernel is a multiple of P — neural collapse
  (features equal to their class means, the means a simplex ETF) is the special
  case where the outputs span the class indicators — and grows towards 1 as the
  features spread beyond what the output uses. P is unchanged by any invertible
  affine map of the outputs (a readout bias included). The paper's text (v2/v3)
  describes D_LR as comparing the kernels before and after the last layer and
  recovering neural collapse; its code is not public, so the audit in
  docs/results.md, D_LR audit (benchmarks/dlr_audit.py) sets this choice beside the
  uncentred and output-kernel variants that `d_lr`'s options give.

Eigen index ``k`` starts at 1, so ``cum_quality`` at k = C is Π*(C).

With ``landmarks=m`` the eigenpairs come from the Nyström approximation on m
evenly spaced samples: Σ is estimated on the landmarks only, and the
eigenfunctions are extended to all n samples through Φ. For a linear kernel
this is exactly Nyström's extension e_k(x) = Σ_j k(x, x_j) e_k(x_j) / (m ρ_k).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch


def _as_matrix(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a, dtype=np.float64)
    return a[:, None] if a.ndim == 1 else a


def one_hot(labels, classes: int | None = None) -> np.ndarray:
    labels = np.asarray(labels.detach().cpu() if isinstance(labels, torch.Tensor) else labels).astype(int)
    return np.eye(classes or labels.max() + 1)[labels]


def eigensystem(features, landmarks: int | None = None, rtol: float = 1e-10):
    """Eigenvalues ρ (descending) and eigenfunctions E (n × r, columns e_k) of Φ."""
    phi = _as_matrix(features)
    n = len(phi)
    sub = phi
    if landmarks is not None and landmarks < n:
        sub = phi[np.linspace(0, n - 1, landmarks).round().astype(int)]
    if sub.shape[0] >= sub.shape[1]:  # p × p route: eigh of Σ
        rho, u = np.linalg.eigh(sub.T @ sub / len(sub))
        rho, u = rho[::-1], u[:, ::-1]
    else:  # n × n route via the SVD when features outnumber samples
        _, s, vt = np.linalg.svd(sub / np.sqrt(len(sub)), full_matrices=False)
        rho, u = s**2, vt.T
    keep = rho > rtol * max(rho[0], 0.0) if len(rho) else np.zeros(0, bool)
    rho, u = rho[keep], u[:, keep]
    return rho, phi @ u / np.sqrt(rho)


def _shares(funcs: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Q_k = Σ_c ⟨e_k, f_c⟩² / Σ_c ‖f_c‖² under the empirical inner product."""
    n = len(e)
    inner = e.T @ funcs / n  # (r, C)
    norm = (funcs**2).sum() / n
    return (inner**2).sum(axis=1) / norm if norm > 0 else np.zeros(e.shape[1])


def entropy_dim(weights: np.ndarray) -> float:
    """exp(Shannon entropy) of weights/Σweights: the effective number of components."""
    return float(_batched_entropy_dim(np.asarray(weights, dtype=float)[None])[0])


def _orthonormal_basis(a: np.ndarray, rtol: float = 1e-10) -> np.ndarray:
    u, s, _ = np.linalg.svd(a, full_matrices=False)
    return u[:, s > rtol * s[0]] if len(s) and s[0] > 0 else u[:, :0]


D_LR_KERNELS = ("projection", "output")


def d_lr(features, output, *, centred: bool = True, kernel: str = "projection") -> float:
    """1 − alignment of the feature kernel K = ΦΦᵀ with the kernel after the last layer,
    computed in feature space (no n × n matrices).

    ``kernel``: ``"projection"`` (P onto the span of the outputs f̂: the kernel of the
    whitened outputs, unchanged by any invertible map of the outputs) or ``"output"``
    (f̂f̂ᵀ). ``centred``: CKA, the alignment of HKH with HBH (H the centring matrix);
    the projection is then onto the span of the centred outputs Hf̂, which is what
    survives centring. Uncentred: the alignment ⟨K, K̂⟩ / (‖K‖‖K̂‖) with the non-negative
    least-squares fit K̂ = a₁·11ᵀ/n + a₂·B of K (B the projection onto the outputs' span,
    or f̂f̂ᵀ). Centring removes the a₁ term and CKA ignores a₂'s scale, so the fit only
    matters uncentred. Returns a value in [0, 1]: 0 when the features' kernel is the
    after-last-layer kernel (up to scale, and the constant when uncentred)."""
    if kernel not in D_LR_KERNELS:
        raise ValueError(f"d_lr: kernel must be one of {D_LR_KERNELS}, not {kernel!r}")
    phi, out = _as_matrix(features), _as_matrix(output)
    if len(phi) != len(out):
        raise ValueError(f"d_lr: {len(phi)} feature rows but {len(out)} output rows")
    if centred:
        phi, out = phi - phi.mean(axis=0), out - out.mean(axis=0)
    r = _orthonormal_basis(out) if kernel == "projection" else out  # B = r·rᵀ
    if centred:
        return _one_minus_cka(phi, r)
    return _one_minus_fitted_alignment(phi, r)


def _one_minus_cka(phi: np.ndarray, r: np.ndarray) -> float:
    """1 − ⟨K, B⟩ / (‖K‖‖B‖) for K = ΦΦᵀ and B = r·rᵀ with Φ and r already centred."""
    norm_k, norm_b = np.linalg.norm(phi.T @ phi), np.linalg.norm(r.T @ r)
    if norm_k == 0 or norm_b == 0:
        return 1.0
    return float(min(1.0, max(0.0, 1.0 - ((phi.T @ r) ** 2).sum() / (norm_k * norm_b))))


def _one_minus_fitted_alignment(phi: np.ndarray, r: np.ndarray) -> float:
    """1 − ⟨K, K̂⟩ / (‖K‖‖K̂‖), K̂ = a₁·J + a₂·B the non-negative least-squares fit of
    K = ΦΦᵀ by J = 11ᵀ/n and B = r·rᵀ, from their 2 × 2 Frobenius inner products."""
    n = len(phi)
    ones = np.ones((n, 1)) / np.sqrt(n)
    k_j, k_b = float(((phi.T @ ones) ** 2).sum()), float(((phi.T @ r) ** 2).sum())
    j_b, b_b = float(((r.T @ ones) ** 2).sum()), float(((r.T @ r) ** 2).sum())
    gram = np.array([[1.0, j_b], [j_b, b_b]])
    a = np.array(_nnls2(gram, np.array([k_j, k_b])))
    norm_k, norm_fit = np.linalg.norm(phi.T @ phi), math.sqrt(max(float(a @ gram @ a), 0.0))
    if norm_k == 0 or norm_fit == 0:
        return 1.0
    return float(min(1.0, max(0.0, 1.0 - (a[0] * k_j + a[1] * k_b) / (norm_k * norm_fit))))


def _nnls2(gram: np.ndarray, rhs: np.ndarray) -> tuple[float, float]:
    """Two-variable non-negative least squares by checking the active sets."""
    candidates = []
    try:
        sol = np.linalg.solve(gram, rhs)
        if (sol >= 0).all():
            candidates.append(sol)
    except np.linalg.LinAlgError:
        pass
    for i in range(2):
        x = np.zeros(2)
        x[i] = max(rhs[i] / gram[i, i], 0.0) if gram[i, i] > 0 else 0.0
        candidates.append(x)
    best = min(candidates, key=lambda x: x @ gram @ x - 2 * rhs @ x)
    return float(best[0]), float(best[1])


def spectral(features, target, output, landmarks: int | None = None, classes: int | None = None) -> pd.DataFrame:
    """All kernel eigen-measures of one feature map, in long form (observable, k, value).

    features: (n, p) penultimate features; target and output: (n, C) or (n,) numpy
    arrays or torch tensors. For classification give one-hot targets, or integer labels
    (n,) with ``classes``; integer labels without it are refused (as numbers they would
    be measured as a regression target). ``k`` is null for scalar measures.
    """
    from .linreg import checked_target

    for name, value in (("features", features), ("output", output)):
        if not isinstance(value, (np.ndarray, torch.Tensor)):
            raise TypeError(f"spectral: {name} must be a numpy array or a torch tensor, not {type(value).__name__}")
    target = checked_target(target, classes, "spectral")
    return measures(features, *eigensystem(features, landmarks), target, output)


def measures(features, rho: np.ndarray, e: np.ndarray, target, output) -> pd.DataFrame:
    """`spectral` from an already computed eigensystem (ρ, E) of `features`."""
    parts = measure_arrays(features, rho, e, target, output)
    k = np.concatenate([k for _, k, _ in parts])
    return pd.DataFrame(
        {
            "observable": np.concatenate([np.repeat(name, len(v)) for name, _, v in parts]),
            "k": pd.Series(k, dtype="Int64").mask(k == 0),
            "value": np.concatenate([v for _, _, v in parts]),
        }
    )


def measure_arrays(features, rho, e, target, output) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The measures as (observable, k, values) arrays; k = 0 marks a scalar (null k in rows).
    Plain arrays, so that a run's hundreds of checkpoints make one table, not hundreds."""
    f_star, f_hat = _as_matrix(target), _as_matrix(output)
    quality, utility = _shares(f_star, e), _shares(f_hat, e)
    per_k = {
        "eigenvalue": rho,
        "quality": quality,
        "utility": utility,
        "cum_quality": np.cumsum(quality),
        "cum_utility": np.cumsum(utility),
    }
    scalars = {
        "effective_dim": entropy_dim(rho),
        "effective_dim_quality": entropy_dim(quality),
        "effective_dim_utility": entropy_dim(utility),
        "d_lr": d_lr(features, output),
    }
    k = np.arange(1, len(rho) + 1)
    return [(name, k, np.asarray(values, dtype=float)) for name, values in per_k.items()] + [
        (name, np.zeros(1, int), np.array([value], dtype=float)) for name, value in scalars.items()
    ]


def top_subspace(features, m: int, landmarks: int | None = None, eigen=None) -> np.ndarray:
    """Orthonormal n × m basis of the top-m eigenfunctions on the sample."""
    _, e = eigen if eigen is not None else eigensystem(features, landmarks)
    return _orthonormal_basis(e[:, :m])


def eigen_drift(features_a, features_b, m: int, landmarks: int | None = None) -> float:
    """1 − mean squared overlap of the top-m eigenfunction subspaces of two feature maps.

    0 when both span the same top-m functions on the sample (e.g. frozen, rotated
    or rescaled features), 1 when the subspaces are orthogonal.
    """
    for name, value in (("features_a", features_a), ("features_b", features_b)):
        if not isinstance(value, (np.ndarray, torch.Tensor)):
            raise TypeError(f"eigen_drift: {name} must be a numpy array or a torch tensor, not {type(value).__name__}")
    return subspace_drift(top_subspace(features_a, m, landmarks), top_subspace(features_b, m, landmarks))


def subspace_drift(ua: np.ndarray, ub: np.ndarray) -> float:
    """1 − ‖UaᵀUb‖²_F / m for orthonormal bases Ua, Ub (m = the smaller width).

    Computed as ‖N − W WᵀN‖²_F / m, N the narrower basis and W the other (the same for
    orthonormal bases), which needs no cancellation: a drift of 1e-20 (lazy training)
    is resolved, and equal subspaces give ~1e-32 where 1 − ‖UaᵀUb‖²/m gave ±1e-16."""
    narrow, wide = (ua, ub) if ua.shape[1] <= ub.shape[1] else (ub, ua)
    width = narrow.shape[1]
    if width == 0:
        return float("nan")
    residual = narrow - wide @ (wide.T @ narrow)
    return float(min(1.0, (residual**2).sum() / width))


def batched_subspace_drift(ua: np.ndarray, ub: np.ndarray) -> np.ndarray:
    """`subspace_drift(ua[t], ub[t])` for stacks of bases of one width (T, n, m); ua may be
    a single basis (1, n, m) for all."""
    width = ub.shape[2]
    if width == 0:
        return np.full(len(ub), np.nan)
    residual = ua - ub @ (ub.transpose(0, 2, 1) @ ua)
    return np.minimum(1.0, (residual**2).sum(axis=(1, 2)) / width)


# ---- Batched over checkpoints: the same measures for a stack of feature maps (T, n, p). ----
# One eigendecomposition per checkpoint is unavoidable: of the p × p Gram ΦᵀΦ, or of the
# m × m kernel ΦΦᵀ when there are fewer (landmark) samples m than features (as an SVD of Φ
# would give, at under half its cost; benchmarks/HISTORY.md).
# Everything else is computed from p × C products, so no n × r eigenfunction matrix is
# formed except the top `m` columns the drift needs. `spectral` above is the per-map
# reference, the tests' twin.


@dataclass
class Eigensystems:
    """Eigensystems of T feature maps: ρ (T, r) descending and the kept mask (T, r); the
    eigenfunctions either through feature-space directions ``u`` (T, p, r), e_k = Φu_k/√ρ_k,
    or, when they came from the kernel of all n samples, as its eigenvectors ``v`` (T, n, r),
    e_k = √n·v_k. When the target and outputs were named up front, the kernel route keeps
    only what the measures use of v: ``v_inner`` = (vᵀf*, vᵀf̂), each (T, r, C), and
    ``v_top``, its first columns (T, n, w). ``centred_norm`` is ‖ΦcᵀΦc‖_F (T,) if it came
    for free, else None."""

    rho: torch.Tensor
    keep: torch.Tensor
    u: torch.Tensor | None = None
    v: torch.Tensor | None = None
    centred_norm: torch.Tensor | None = None
    v_inner: tuple | None = None
    v_top: torch.Tensor | None = None


def batched_eigensystems(
    features: torch.Tensor,
    landmarks: int | None = None,
    rtol: float = 1e-10,
    target=None,
    outputs: torch.Tensor | None = None,
    top: int = 0,
    augmented_gram: torch.Tensor | None = None,
) -> Eigensystems:
    """`eigensystem` for each of a stack of feature maps (T, n, p). Given the `target` and
    `outputs` that `batched_measure_arrays` and the `top` width that `batched_top_subspaces`
    will be asked for, the kernel route forms only those parts of the eigenvectors.
    Float32 features go to float64 one map at a time (see `_float64_maps`). An
    `augmented_gram` [Φ, 1]ᵀ[Φ, 1] already formed (by `linreg.augmented_grams`) serves the
    Gram route without landmarks: ΦᵀΦ and Φᵀ1 are its blocks."""
    phi = features
    sub = phi
    if landmarks is not None and landmarks < phi.shape[1]:
        sub = phi[:, np.linspace(0, phi.shape[1] - 1, landmarks).round().astype(int)]
    m, p = sub.shape[1:]
    if m >= p:
        if augmented_gram is not None and sub is phi:
            gram, colsum = augmented_gram[:, :p, :p], augmented_gram[:, :p, p]
        else:
            gram = _symmetric_products(sub, features_side=True)
            colsum = _map_products(phi, torch.ones(len(phi), phi.shape[1], 1), transpose=True).squeeze(-1)
        rho, u = _eigh_descending(gram, m)
        keep = rho > rtol * rho[:, :1].clamp(min=0.0)
        norm = _centred_norm(gram, colsum, phi.shape[1]) if sub is phi else None
        return Eigensystems(rho, keep, u=u.mul_(keep.unsqueeze(1)), centred_norm=norm)
    kernel = _symmetric_products(sub, features_side=False)
    if sub is phi and target is not None and m > 1:
        f_star, f_hat = _measured_functions(target, outputs, len(phi), m)
        rho, inner, v_top = _kernel_eigen_parts(kernel, torch.cat([f_star, f_hat], dim=-1), min(top, m))
        rho /= m
        keep = rho > rtol * rho[:, :1].clamp(min=0.0)
        inner.mul_(keep.unsqueeze(-1))
        v_top.mul_(keep[:, : v_top.shape[-1]].unsqueeze(1))
        return Eigensystems(
            rho,
            keep,
            centred_norm=_centred_kernel_norm(kernel),
            v_top=v_top,
            v_inner=inner.split([f_star.shape[-1], f_hat.shape[-1]], dim=-1),
        )
    rho, v = _eigh_descending(kernel, m)
    keep = rho > rtol * rho[:, :1].clamp(min=0.0)
    if sub is phi:
        return Eigensystems(rho, keep, v=v.mul_(keep.unsqueeze(1)), centred_norm=_centred_kernel_norm(kernel))
    safe = torch.where(keep, rho, torch.ones_like(rho))
    u = _map_products(sub, v, transpose=True) / (m * safe).sqrt().unsqueeze(1) * keep.unsqueeze(1)  # Φᵀv_k / ‖Φᵀv_k‖
    return Eigensystems(rho, keep, u=u)


def _symmetric_products(phi: torch.Tensor, features_side: bool) -> torch.Tensor:
    """ΦᵀΦ (p × p, features_side) or ΦΦᵀ (n × n) of each map in float64, by numpy's
    symmetric product (BLAS syrk: half the work of a general product, and faster than
    torch's batched one)."""
    size = phi.shape[2] if features_side else phi.shape[1]
    out = np.empty((len(phi), size, size))
    for a, o in zip(_float64_maps(phi), out):
        if features_side:
            np.matmul(a.T, a, out=o)
        else:
            np.matmul(a, a.T, out=o)
    return torch.from_numpy(out)


def _map_products(phi: torch.Tensor, right: torch.Tensor, transpose: bool) -> torch.Tensor:
    """Φᵀ·right (transpose) or Φ·right of each map and its own right-hand side, in float64."""
    right = right.double().numpy()
    out = np.empty((len(phi), phi.shape[2] if transpose else phi.shape[1], right.shape[-1]))
    for a, r, o in zip(_float64_maps(phi), right, out):
        np.matmul(a.T if transpose else a, r, out=o)
    return torch.from_numpy(out)


def _float64_maps(phi: torch.Tensor):
    """The maps of a stack (T, n, p) as float64 arrays, converted one at a time into one
    buffer (each is used before the next arrives): a chunk's float64 copy (64 maps of
    500 × 100: 26 MB) outgrows the cache and costs page faults in a fresh process."""
    maps = phi.detach().cpu().numpy()
    if maps.dtype == np.float64:
        yield from maps
        return
    buffer = np.empty(maps.shape[1:])
    for a in maps:
        buffer[...] = a
        yield buffer


def _eigh_descending(a: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenpairs of a / scale, descending; the scale goes on the eigenvalues only, not
    on a copy of the matrices (2,016² each for the grokking study's wide net)."""
    if _mkl_lapack_is_faster():
        rho, u = torch.linalg.eigh(a)
        return rho.flip(-1).div_(scale), u.flip(-1)
    rho, u = np.linalg.eigh(a.numpy())
    return torch.from_numpy(rho[:, ::-1] / scale), torch.from_numpy(u[:, :, ::-1].copy())


@functools.cache
def _mkl_lapack_is_faster() -> bool:
    """Whether to take eigendecompositions from torch's LAPACK (MKL) rather than numpy's
    (OpenBLAS's build of the reference LAPACK). Which is faster depends on the CPU, so the
    choice is made per machine, never per call (the numbers must not depend on timing).
    MKL was the faster on an Intel CPU with AVX-512 and the slower on an earlier AVX2
    machine (benchmarks/HISTORY.md); MKL is known to take slower code paths off Intel CPUs,
    so numpy's is kept there."""
    if not torch.backends.mkl.is_available():
        return False
    try:
        with open("/proc/cpuinfo") as info:
            return "GenuineIntel" in info.read(4096)
    except OSError:
        return False


def _kernel_eigen_parts(kernel: torch.Tensor, columns: torch.Tensor, width: int):
    """Per n × n kernel K: its eigenvalues (descending), Vᵀ·columns and the first `width`
    eigenvectors, without forming all n of them. K = Q T Qᵀ (Householder tridiagonalisation,
    LAPACK dsytrd) and T = S Λ Sᵀ (divide and conquer, dstevd; MRRR, dstemr, took as long),
    so Vᵀc = Sᵀ(Qᵀc) and V[:, :w] = Q·S[:, :w], Q
    applied by dormqr. A full eigh spends half its time forming Q·S for every column,
    which the measures never read; on small matrices the split gains nothing, so the Gram route
    keeps the full eigh (benchmarks/HISTORY.md has the timings)."""
    from scipy.linalg import LinAlgError, eigh_tridiagonal
    from scipy.linalg.lapack import dsytrd, dsytrd_lwork

    mats, cols = kernel.numpy(), columns.numpy()
    t, n, _ = mats.shape
    rho, inner, top = np.empty((t, n)), np.empty((t, n, cols.shape[-1])), np.empty((t, n, width))
    lwork = int(dsytrd_lwork(n, lower=1)[0])
    for i, a in enumerate(mats):
        c, d, e, tau, info = dsytrd(a, lower=1, lwork=lwork)
        try:
            lam, s = eigh_tridiagonal(d, e, check_finite=False, lapack_driver="stevd")
        except LinAlgError:  # if the tridiagonal solver fails to converge, the full eigh
            lam, v = np.linalg.eigh(a)
            rho[i], inner[i], top[i] = lam[::-1], (v.T @ cols[i])[::-1], v[:, ::-1][:, :width]
            continue
        s, reflectors = s[:, ::-1], np.asfortranarray(c[1:, :-1])
        rho[i] = lam[::-1]
        inner[i] = s.T @ _apply_q(reflectors, tau, cols[i], transpose=True)
        top[i] = _apply_q(reflectors, tau, s[:, :width], transpose=False)
    return torch.from_numpy(rho), torch.from_numpy(inner), torch.from_numpy(top)


def _apply_q(reflectors: np.ndarray, tau: np.ndarray, x: np.ndarray, transpose: bool) -> np.ndarray:
    """Q·x or Qᵀ·x for the Q of dsytrd(lower=1), Q = H(1)…H(n−1): on rows 2…n it is the Q
    of a QR factorisation whose reflectors sit below the diagonal of c[1:, :-1]."""
    from scipy.linalg.lapack import dormqr

    out = np.array(x, dtype=np.float64, order="F")
    if x.shape[1] == 0:
        return out
    trans = b"T" if transpose else b"N"
    lwork = int(dormqr(b"L", trans, reflectors, tau, out[1:], -1)[1][0])
    out[1:], _, info = dormqr(b"L", trans, reflectors, tau, out[1:], max(lwork, x.shape[1]), overwrite_c=1)
    if info != 0:
        raise RuntimeError(f"LAPACK dormqr failed (info={info})")
    return out


def _centred_norm(gram: torch.Tensor, colsum: torch.Tensor, n: int) -> torch.Tensor:
    """‖ΦcᵀΦc‖_F from ΦᵀΦ and Φᵀ1 over n samples: ΦcᵀΦc = ΦᵀΦ − n·μμᵀ."""
    mean = colsum / n
    return torch.linalg.matrix_norm(gram - n * mean.unsqueeze(-1) * mean.unsqueeze(-2))


def _centred_kernel_norm(kernel: torch.Tensor) -> torch.Tensor:
    """‖ΦcᵀΦc‖_F = ‖ΦcΦcᵀ‖_F = ‖HKH‖_F from K = ΦΦᵀ, H the centring matrix."""
    centred = kernel - kernel.mean(dim=-1, keepdim=True)
    return torch.linalg.matrix_norm(centred.sub_(centred.mean(dim=-2, keepdim=True)))


@dataclass
class BatchedMeasures:
    """The measures of T checkpoints as arrays: those per eigen-index (T, r), valid where
    ``keep`` (a prefix of each row: k = 1…r_t), and the scalars (T,)."""

    keep: np.ndarray
    per_k: dict
    scalars: dict

    def arrays(self, t: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """Checkpoint t's measures as `measure_arrays` gives one map's."""
        k = np.flatnonzero(self.keep[t]) + 1
        return [(name, k, v[t, k - 1]) for name, v in self.per_k.items()] + [
            (name, np.zeros(1, int), v[t : t + 1]) for name, v in self.scalars.items()
        ]


def batched_measure_arrays(features: torch.Tensor, eigen: Eigensystems, target, outputs: torch.Tensor) -> list[list]:
    """`measure_arrays` for each of T checkpoints: features (T, n, p), outputs (T, n, C),
    target (n, C) or (n,) shared by all."""
    measured = batched_measures(features, eigen, target, outputs)
    return [measured.arrays(t) for t in range(len(measured.keep))]


def batched_measures(features: torch.Tensor, eigen: Eigensystems, target, outputs: torch.Tensor) -> BatchedMeasures:
    """The measures of `measure_arrays` for a stack of maps, as arrays over checkpoints: no
    Python per checkpoint."""
    phi = features
    rho, keep = eigen.rho, eigen.keep
    t, n, _ = phi.shape
    f_star, f_hat = _measured_functions(target, outputs, t, n)
    q, q_rank = _output_bases(f_hat - f_hat.mean(dim=1, keepdim=True))  # d_lr's: the centred outputs'
    ones = torch.ones(t, n, 1, dtype=torch.float64)
    # d_lr needs Φ only through Φᵀ[q, 1]; the shares through Φᵀ[f*, f̂] unless the
    # eigenfunctions are at hand as kernel eigenvectors: one pass over the features.
    kernel_side = eigen.v is not None or eigen.v_inner is not None
    rhs = [q, ones] if kernel_side else [f_star, f_hat, q, ones]
    proj = _map_products(phi, torch.cat(rhs, dim=-1), transpose=True).split([r.shape[-1] for r in rhs], dim=-1)
    p_q, colsum = proj[-2], proj[-1].squeeze(-1)
    if eigen.v_inner is not None:
        inner_star, inner_hat = (vf / math.sqrt(n) for vf in eigen.v_inner)
    elif eigen.v is not None:  # ⟨e_k, f⟩ = v_kᵀf / √n
        inner_star, inner_hat = (eigen.v.mT @ f / math.sqrt(n) for f in (f_star, f_hat))
    else:  # ⟨e_k, f⟩ = u_kᵀΦᵀf / (n√ρ_k)
        scale = (torch.where(keep, rho, torch.ones_like(rho)).sqrt() * n).unsqueeze(-1)
        inner_star, inner_hat = (eigen.u.mT @ pf / scale for pf in proj[:2])
    kept = keep.numpy()
    quality, utility, ev = (
        np.where(kept, a.numpy(), 0.0)
        for a in (_batched_shares(inner_star, f_star), _batched_shares(inner_hat, f_hat), rho)
    )
    norm_k = eigen.centred_norm
    if norm_k is None:  # landmarks: no Gram or kernel of all n samples was formed
        norm_k = (
            _centred_norm(_symmetric_products(phi, True), colsum, n)
            if phi.shape[2] <= n
            else _centred_kernel_norm(_symmetric_products(phi, False))
        )
    per_k = {
        "eigenvalue": ev,
        "quality": quality,
        "utility": utility,
        "cum_quality": np.cumsum(quality, axis=1),
        "cum_utility": np.cumsum(utility, axis=1),
    }
    scalars = {
        "effective_dim": _batched_entropy_dim(ev),
        "effective_dim_quality": _batched_entropy_dim(quality),
        "effective_dim_utility": _batched_entropy_dim(utility),
        "d_lr": _batched_d_lr(norm_k, q_rank, p_q),
    }
    return BatchedMeasures(kept, per_k, scalars)


def _batched_entropy_dim(weights: np.ndarray) -> np.ndarray:
    """`entropy_dim` of each row of weights (T, r), dropped entries zero."""
    w = np.clip(weights, 0, None)
    total = w.sum(axis=1, keepdims=True)
    p = w / np.where(total > 0, total, 1.0)
    plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return np.where(total[:, 0] > 0, np.exp(-plogp.sum(axis=1)), np.nan)


def _measured_functions(target, outputs: torch.Tensor, t: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The target f* (T, n, C) and the outputs f̂ (T, n, C'), float64, whose shares the
    measures take."""
    return torch.as_tensor(_as_matrix(target)).expand(t, -1, -1), outputs.double().reshape(t, n, -1)


def _output_bases(outputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthonormal bases of the output columns (T, n, C), dropped directions as zero
    columns, and their ranks, as `_orthonormal_basis` gives one map."""
    q, s, _ = torch.linalg.svd(outputs, full_matrices=False)
    kept = (s > 1e-10 * s[:, :1]) & (s[:, :1] > 0)
    return q * kept.unsqueeze(1), kept.sum(-1)


def _batched_shares(inner, funcs) -> torch.Tensor:
    """Q_k = Σ_c ⟨e_k, f_c⟩² / Σ_c ‖f_c‖² from the inner products (T, r, C): (T, r)."""
    n = funcs.shape[1]
    norm = (funcs**2).sum(dim=(1, 2)) / n
    shares = (inner**2).sum(dim=-1) / torch.where(norm > 0, norm, torch.ones_like(norm)).unsqueeze(-1)
    return torch.where(norm.unsqueeze(-1) > 0, shares, torch.zeros_like(shares))


def _batched_d_lr(norm_k, q_rank, p_q) -> np.ndarray:
    """`d_lr` (centred, projection) for each checkpoint from ‖ΦcᵀΦc‖_F, the ranks of the
    centred outputs' orthonormal bases q and Φᵀq: q is centred, so Φcᵀq = Φᵀq and
    ‖qᵀq‖_F = √rank."""
    cross = (p_q**2).sum(dim=(1, 2)).double().numpy()
    nk, rank = norm_k.double().numpy(), q_rank.double().numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.clip(1.0 - cross / (nk * np.sqrt(rank)), 0.0, 1.0)
    return np.where((nk == 0) | (rank == 0), 1.0, value)


def batched_top_subspaces(features: torch.Tensor, eigen: Eigensystems, m: int) -> list[np.ndarray]:
    """`top_subspace` for each checkpoint: orthonormal n × m' bases (m' ≤ m)."""
    width = min(m, eigen.rho.shape[1])
    kept = eigen.keep[:, :width]
    if eigen.v_top is not None:
        if eigen.v_top.shape[-1] < width:
            raise ValueError(f"the eigensystems kept {eigen.v_top.shape[-1]} top eigenvectors, {width} asked for")
        e_top = eigen.v_top[:, :, :width]
    elif eigen.v is not None:
        e_top = eigen.v[:, :, :width]  # already orthonormal, dropped columns zero
    else:
        scale = torch.where(kept, eigen.rho[:, :width], torch.ones_like(eigen.rho[:, :width])).sqrt()
        e_top = _map_products(features, eigen.u[:, :, :width], transpose=False) / scale.unsqueeze(1) * kept.unsqueeze(1)
    basis, s, _ = torch.linalg.svd(e_top, full_matrices=False)
    ok = ((s > 1e-10 * s[:, :1]) & (s[:, :1] > 0)).numpy()
    return [b[:, keep] for b, keep in zip(basis.numpy(), ok)]
