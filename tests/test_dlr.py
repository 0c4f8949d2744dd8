"""D_LR: its variants against explicit n × n twins, and the neural-collapse special case."""

import numpy as np
import pytest
import torch
from scipy.optimize import nnls

from featscope.observables.spectral import batched_eigensystems, batched_measures, d_lr, one_hot


# ----------------------------------------------------------------- brute-force twins (n × n)
def centring(n):
    return np.eye(n) - np.ones((n, n)) / n


def projection(a):
    u, s, _ = np.linalg.svd(a, full_matrices=False)
    u = u[:, s > 1e-10 * s[0]]
    return u @ u.T


def cka(a, b):
    h = centring(len(a))
    ha, hb = h @ a @ h, h @ b @ h
    return (ha * hb).sum() / (np.linalg.norm(ha) * np.linalg.norm(hb))


def brute(phi, out, centred=True, kernel="projection"):
    """The definitions written out with n × n kernels: B is the kernel after the last layer."""
    n = len(phi)
    k = phi @ phi.T
    h = centring(n)
    if centred:
        b = projection(h @ out) if kernel == "projection" else out @ out.T
        return 1 - cka(k, b)
    b = projection(out) if kernel == "projection" else out @ out.T
    basis = np.stack([np.ones((n, n)).ravel() / n, b.ravel()], 1)
    a, _ = nnls(basis, k.ravel())
    fit = (basis @ a).reshape(n, n)
    return 1 - (k * fit).sum() / (np.linalg.norm(k) * np.linalg.norm(fit))


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    phi = np.maximum(rng.standard_normal((60, 9)) @ rng.standard_normal((9, 9)) + 0.5, 0)  # ReLU-like
    out = phi @ rng.standard_normal((9, 4)) + rng.standard_normal(4)
    return phi, out


@pytest.mark.parametrize("centred", [True, False])
@pytest.mark.parametrize("kernel", ["projection", "output"])
def test_every_variant_matches_its_n_by_n_twin(problem, centred, kernel):
    phi, out = problem
    got = d_lr(phi, out, centred=centred, kernel=kernel)
    assert got == pytest.approx(brute(phi, out, centred, kernel), abs=1e-10)
    assert 0.0 < got < 1.0


def test_the_uncentred_fit_is_the_constrained_one():
    """Features whose kernel needs a negative constant (centred features on a projection that
    holds 1): the fit keeps a₁ = 0, as the explicit NNLS does."""
    rng = np.random.default_rng(1)
    n = 40
    out = np.hstack([np.ones((n, 1)), rng.standard_normal((n, 2))])
    phi = rng.standard_normal((n, 5))
    phi -= phi.mean(0)
    assert d_lr(phi, out, centred=False) == pytest.approx(brute(phi, out, centred=False), abs=1e-10)


def test_the_default_is_unchanged_by_affine_maps_of_the_outputs(problem):
    """P of the centred outputs: an invertible map of the logits plus a bias changes nothing."""
    phi, out = problem
    rng = np.random.default_rng(2)
    moved = out @ rng.standard_normal((4, 4)) + rng.standard_normal(4) * 10
    assert d_lr(phi, moved) == pytest.approx(d_lr(phi, out), abs=1e-10)
    # The projection of the raw outputs is not: a bias tilts its span towards the constant.
    raw = 1 - cka(phi @ phi.T, projection(out))
    assert abs(raw - (1 - cka(phi @ phi.T, projection(moved)))) > 1e-3


# ---------------------------------------------------------------- neural collapse, constructed
def collapsed(classes=5, per_class=8, width=12, noise=0.0, mean=3.0, etf=True, seed=0):
    """Features μ_y + within-class noise: the centred class means a simplex ETF (etf=True) or
    means of unequal spread, rotated into `width` dimensions, plus a global mean. Returns the
    features, labels and the outputs of a random readout with a bias (not aligned with the
    means: no NC3)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), per_class)
    centred_means = np.eye(classes) - 1 / classes  # simplex ETF (rows), rank C − 1
    if not etf:
        centred_means = centred_means * np.linspace(0.5, 2.0, classes)[:, None]
        centred_means -= centred_means.mean(0)
    rot, _ = np.linalg.qr(rng.standard_normal((width, width)))
    means = np.hstack([centred_means, np.zeros((classes, width - classes))]) @ rot
    means += mean * rng.standard_normal(width)
    within = rng.standard_normal((len(labels), width))
    within -= one_hot(labels) @ (one_hot(labels).T @ within) / per_class  # zero class means exactly
    phi = means[labels] + noise * within
    out = phi @ rng.standard_normal((width, classes)) + rng.standard_normal(classes)
    return phi, labels, out


@pytest.mark.parametrize("mean", [0.0, 3.0])
def test_neural_collapse_gives_zero(mean):
    """Collapsed features (NC1: on their class means; NC2: the means a simplex ETF) under a
    readout that fits the classes: the kernel before the last layer is, after centring, a
    multiple of the projection onto the centred class indicators, which the centred outputs
    span. D_LR = 0 for any global mean, readout or bias."""
    phi, labels, out = collapsed(mean=mean)
    assert d_lr(phi, out) == pytest.approx(0.0, abs=1e-12)
    assert brute(phi, out) == pytest.approx(0.0, abs=1e-12)
    # Off the special case D_LR is not 0: spread within the classes, or means of unequal spread.
    assert d_lr(collapsed(mean=mean, noise=0.3)[0], out) > 0.01
    assert d_lr(collapsed(mean=mean, etf=False)[0], out) > 0.01


def test_the_variants_that_miss_the_special_case():
    """Neural collapse without NC3 (a random readout): the output kernel weighs the means by the
    readout and misses it; the uncentred fit misses it when the ETF sits at the origin (K needs
    a negative constant), and is dominated by the global mean otherwise."""
    phi, _, out = collapsed(mean=0.0)
    assert d_lr(phi, out, kernel="output") > 0.05
    assert brute(phi, out, kernel="output") == pytest.approx(d_lr(phi, out, kernel="output"), abs=1e-10)
    assert d_lr(phi, out, centred=False) > 0.05
    # NC3 (self-duality: the readout is the class means) brings the output kernel to zero too.
    labels = np.repeat(np.arange(5), 8)
    means = one_hot(labels).T @ phi / 8
    assert d_lr(phi, phi @ means.T, kernel="output") == pytest.approx(0.0, abs=1e-12)
    # Full collapse off the origin with the self-dual readout (the centred means, no bias): the
    # outputs' span holds neither 1 nor only centred functions. The projection onto the
    # centred outputs gives 0; centring the projection onto the raw outputs (main's d_lr
    # before spectral v2) does not.
    phi, _, _ = collapsed(mean=3.0)
    means = one_hot(labels).T @ phi / 8
    out = phi @ (means - means.mean(0)).T
    assert d_lr(phi, out) == pytest.approx(0.0, abs=1e-12)
    assert 1 - cka(phi @ phi.T, projection(out)) > 0.01


@pytest.mark.parametrize("etf", [True, False])
@pytest.mark.parametrize("noise", [0.0, 0.3, 1.0])
def test_within_class_spread_gives_the_closed_form(etf, noise):
    """With within-class scatter Σ_W and between-class scatter Σ_B (sample covariances), and
    outputs spanning the class indicators, D_LR = 1 − tr Σ_B / (√(C−1)·‖Σ_B + Σ_W‖_F): 0
    only for NC1 and NC2 together, growing with the spread (NC1's ratio, bounded)."""
    phi, labels, _ = collapsed(noise=noise, etf=etf)
    n, classes = len(phi), 5
    y = one_hot(labels)
    out = y @ np.random.default_rng(5).standard_normal((classes, classes)) + 1.0  # a perfect fit's span
    means = y.T @ phi / 8
    centred = phi - phi.mean(0)
    between = (y @ means - phi.mean(0)).T @ (y @ means - phi.mean(0)) / n
    total = centred.T @ centred / n
    want = 1 - np.trace(between) / (np.sqrt(classes - 1) * np.linalg.norm(total))
    assert d_lr(phi, out) == pytest.approx(want, abs=1e-10)
    assert (want < 1e-12) == (etf and noise == 0.0)


def test_batched_measures_give_the_same_d_lr(problem):
    """The workflow's batched path (Gram and kernel routes) against `d_lr`."""
    phi, out = problem
    rng = np.random.default_rng(3)
    maps = torch.from_numpy(np.stack([phi, phi + rng.standard_normal(phi.shape), np.sqrt(phi[:, ::-1])], 0))
    outs = torch.from_numpy(np.stack([out, out * 2 + 1, rng.standard_normal(out.shape)], 0))
    target = one_hot(np.arange(len(phi)) % 4)
    for features in (maps, torch.cat([maps, maps**2] * 5, dim=2)):  # p < n (Gram route), p > n (kernel route)
        eigen = batched_eigensystems(features, target=target, outputs=outs, top=2)
        got = batched_measures(features, eigen, target, outs).scalars["d_lr"]
        want = [d_lr(f.numpy(), o.numpy()) for f, o in zip(features, outs)]
        assert np.allclose(got, want, atol=1e-10)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="kernel must be one of"):
        d_lr(np.ones((3, 2)), np.ones((3, 2)), kernel="ntk")
    with pytest.raises(ValueError, match="3 feature rows but 4 output rows"):
        d_lr(np.ones((3, 2)), np.ones((4, 2)))
