import numpy as np
import pandas as pd
import pytest
import torch

from featscope import eigen_drift, spectral
from featscope.observables.spectral import d_lr, one_hot


def values(frame, name):
    rows = frame[frame.observable == name].sort_values("k")
    return rows.value.to_numpy() if rows.k.notna().any() else rows.value.item()


def brute_force(phi, target):
    """Eigenfunctions from the n × n kernel K/n, quality by explicit inner products."""
    n = len(phi)
    lam, v = np.linalg.eigh(phi @ phi.T / n)
    lam, v = lam[::-1], v[:, ::-1]
    keep = lam > 1e-10 * lam[0]
    lam, e = lam[keep], np.sqrt(n) * v[:, keep]
    q = np.array(
        [sum(np.mean(e[:, k] * target[:, c]) ** 2 for c in range(target.shape[1])) for k in range(e.shape[1])]
    ) / np.mean((target**2).sum(1))
    return lam, q


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    phi = np.maximum(rng.standard_normal((120, 15)) @ rng.standard_normal((15, 15)), 0)
    labels = rng.integers(0, 4, 120)
    target = one_hot(labels, 4)
    output = target + 0.3 * rng.standard_normal((120, 4))
    return phi, target, output


def test_matches_brute_force_kernel_twin(problem):
    phi, target, output = problem
    frame = spectral(phi, target, output)
    lam, q = brute_force(phi, target)
    assert np.allclose(values(frame, "eigenvalue"), lam, rtol=1e-8)
    assert np.allclose(values(frame, "quality"), q, atol=1e-10)
    _, u = brute_force(phi, output)
    assert np.allclose(values(frame, "utility"), u, atol=1e-10)
    p = lam / lam.sum()
    assert values(frame, "effective_dim") == pytest.approx(np.exp(-(p * np.log(p)).sum()))


def test_one_hot_features_put_all_quality_on_first_classes():
    labels = np.repeat(np.arange(5), 20)  # balanced
    target = one_hot(labels)
    frame = spectral(target, target, target)
    cum = values(frame, "cum_quality")
    assert len(cum) == 5 and cum[4] == pytest.approx(1.0)
    assert values(frame, "effective_dim") == pytest.approx(5.0)
    assert values(frame, "effective_dim_quality") == pytest.approx(5.0)
    assert values(frame, "d_lr") == pytest.approx(0.0, abs=1e-12)


def test_invariant_to_rotation_and_scale(problem):
    phi, target, output = problem
    rot, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((15, 15)))
    base = spectral(phi, target, output)
    moved = spectral(3.0 * phi @ rot, torch.tensor(target), torch.tensor(output))
    for name in ("quality", "utility", "cum_quality", "cum_utility"):
        assert np.allclose(values(base, name), values(moved, name), atol=1e-9), name
    for name in ("effective_dim", "effective_dim_quality", "effective_dim_utility", "d_lr"):
        assert values(base, name) == pytest.approx(values(moved, name), rel=1e-9), name
    assert np.allclose(values(moved, "eigenvalue"), 9.0 * values(base, "eigenvalue"))
    assert eigen_drift(phi, 2.0 * phi @ rot, m=5) == pytest.approx(0.0, abs=1e-10)


def test_cumulative_curves_monotone_and_at_most_one(problem):
    phi, target, output = problem
    frame = spectral(phi, target, output)
    for name in ("cum_quality", "cum_utility"):
        cum = values(frame, name)
        assert np.all(np.diff(cum) >= -1e-12) and cum[-1] <= 1 + 1e-12


def test_nystrom_converges_to_exact():
    rng = np.random.default_rng(2)
    phi = rng.standard_normal((2000, 8)) * np.arange(1, 9)
    exact = np.sort(np.linalg.eigvalsh(phi.T @ phi / len(phi)))[::-1]
    errors = []
    for m in (50, 200, 800, 2000):
        approx = values(spectral(phi, phi[:, :1], phi[:, :1], landmarks=m), "eigenvalue")
        errors.append(np.abs(approx - exact).max() / exact[0])
    assert errors[-1] < 1e-12
    assert errors[0] > errors[2] and errors[2] < 0.05


def test_drift_is_zero_for_frozen_and_one_for_orthogonal():
    rng = np.random.default_rng(3)
    phi = rng.standard_normal((50, 6))
    assert eigen_drift(phi, phi, m=3) == pytest.approx(0.0, abs=1e-12)
    a = np.zeros((4, 2))
    a[0, 0] = 2
    a[1, 1] = 1
    b = np.zeros((4, 2))
    b[2, 0] = 2
    b[3, 1] = 1
    assert eigen_drift(a, b, m=2) == pytest.approx(1.0)


def brute_d_lr(phi, out):
    """1 − CKA(ΦΦᵀ, P), P the projection onto the centred outputs' span, with n × n matrices
    (tests/test_dlr.py has the variants and the neural-collapse special case)."""
    n = len(phi)
    h = np.eye(n) - 1 / n
    q, s, _ = np.linalg.svd(h @ out, full_matrices=False)
    q = q[:, s > 1e-10 * s[0]]
    hk, p = h @ phi @ phi.T @ h, q @ q.T
    return 1 - (hk * p).sum() / (np.linalg.norm(hk) * np.linalg.norm(p))


def test_d_lr_matches_explicit_n_by_n_twin(problem):
    phi, _, output = problem
    assert d_lr(phi, output) == pytest.approx(brute_d_lr(phi, output), abs=1e-10)
    # Features that span the centred outputs isotropically (HKH = c·P) are fully collapsed: d_lr = 0.
    q, _ = np.linalg.qr(output - output.mean(0))
    rot, _ = np.linalg.qr(np.random.default_rng(4).standard_normal((9, 9)))
    collapsed = 2.5 * np.hstack([q, np.zeros((len(q), 5))]) @ rot
    assert d_lr(collapsed, output) == pytest.approx(0.0, abs=1e-10)
    assert d_lr(phi, output) > 0.1


@pytest.mark.parametrize("mkl", [False, True], ids=["numpy-lapack", "torch-mkl"])
@pytest.mark.parametrize("named", [False, True], ids=["all-eigenvectors", "named-functions"])
@pytest.mark.parametrize(
    "landmarks,features,rank",
    [(None, 12, 10), (60, 12, 10), (None, 150, 120), (8, 12, 8)],
    ids=["exact", "nystrom", "wider-than-samples", "fewer-landmarks-than-features"],
)
def test_batched_over_checkpoints_matches_one_map_at_a_time(landmarks, features, rank, named, mkl, monkeypatch):
    """The observe path's batched measures against the per-map reference (eigh of ΦᵀΦ, or
    the SVD of Φ when samples are fewer), on a stack of maps with a dead and a duplicated
    feature (rank-deficient) and a rank-1 output. Named up front, the target and outputs
    let the kernel route (wider than samples) skip forming all eigenvectors. Both LAPACKs
    the batched path may take its eigendecompositions from (chosen per machine)."""
    from featscope.observables import spectral as sp

    if mkl and not torch.backends.mkl.is_available():
        pytest.skip("this torch has no MKL")
    monkeypatch.setattr(sp, "_mkl_lapack_is_faster", lambda: mkl)
    gen = torch.Generator().manual_seed(1)
    phi = torch.relu(torch.randn(6, 120, 12, generator=gen) @ torch.randn(12, features, generator=gen))
    phi[:, :, 3] = 0
    phi[:, :, 4] = 2 * phi[:, :, 5]
    outputs = torch.randn(6, 120, 3, generator=gen)
    outputs[2] = outputs[2, :, :1].expand(-1, 3)  # rank 1
    target = one_hot(np.arange(120) % 3, 3)
    named_args = {"target": target, "outputs": outputs, "top": 4} if named else {}
    eigen = sp.batched_eigensystems(phi, landmarks, **named_args)
    assert (eigen.v_inner is not None) == (named and features > 120 and landmarks is None)
    got = sp.batched_measure_arrays(phi, eigen, target, outputs)
    bases = sp.batched_top_subspaces(phi, eigen, m=4)
    for t in range(len(phi)):
        ref_eigen = sp.eigensystem(phi[t].double().numpy(), landmarks)
        ref = sp.measure_arrays(phi[t].double().numpy(), *ref_eigen, target, outputs[t])
        assert [name for name, _, _ in got[t]] == [name for name, _, _ in ref]
        for (name, k, v), (_, k_ref, v_ref) in zip(got[t], ref):
            assert np.array_equal(k, k_ref), name
            assert np.allclose(v, v_ref, rtol=1e-9, atol=1e-12), name
        assert len(got[t][0][1]) == rank  # a dead and a duplicated feature: 10 of 12
        ref_basis = sp.top_subspace(phi[t].double().numpy(), 4, landmarks)
        assert bases[t].shape == ref_basis.shape
        assert sp.subspace_drift(bases[t], ref_basis) == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize("width", [8, 64], ids=["batched", "wider-than-samples"])
def test_spectral_family_matches_per_checkpoint_reference(width):
    """The observe family (batched, or one map at a time when p > n) against `spectral` and
    `eigen_drift` applied checkpoint by checkpoint."""
    from featscope.models import build_model
    from featscope.observe import observe_run
    from featscope.tasks import make_dataset
    from featscope.training import train_one

    cfg = {
        "task": {"name": "sin2", "d": 3, "f": 2, "n_train": 40, "n_test": 0, "seed": 0},
        "model": {"name": "mlp", "width": width, "depth": 1},
        "optim": {"name": "adam", "lr": 0.01},
        "train": {"steps": 30, "loss": "mse"},
        "schedule": {"every": 10},
        "seed": 0,
    }
    data = make_dataset(cfg["task"])
    bundle = train_one("r", cfg, data, progress=False).checkpoints
    frame = observe_run("r", "spectral", bundle, data, {"top": 3})
    x = torch.as_tensor(data["x_train"])
    maps = []
    for i, step in enumerate(bundle["steps"].tolist()):
        model = build_model(cfg["model"], 3, 1)
        model.load_state_dict({k: v[i] for k, v in bundle["params"].items()})
        with torch.no_grad():
            out, feats = model.forward_features(x)
        phi = feats.penultimate.double().numpy()
        maps.append(phi)
        ref = spectral(phi, data["y_train"], out)
        rows = frame[frame.step == step]
        # The observe path's float32 outputs round apart from nn.Linear's (1e-6 for the
        # measures that read them, shares of at most 1); the features themselves agree.
        for name, tol in [
            ("eigenvalue", 1e-10),
            ("quality", 1e-10),
            ("effective_dim", 1e-10),
            ("utility", 1e-6),
            ("d_lr", 1e-6),
        ]:
            assert np.allclose(values(rows, name), values(ref, name), rtol=tol, atol=tol), name
        assert values(rows, "drift_init") == pytest.approx(eigen_drift(maps[0], phi, m=3), abs=1e-9)
        assert values(rows, "drift_prev") == pytest.approx(eigen_drift(maps[max(i - 1, 0)], phi, m=3), abs=1e-9)


def test_subspace_drift_resolves_tiny_rotations():
    # Turning one of m = 3 directions by an angle ε gives drift sin²ε / m: at ε = 1e-10 that
    # is 3.3e-21, far below the ±1e-16 rounding of 1 − ‖UaᵀUb‖²/m (lazy training lives here).
    from featscope.observables.spectral import subspace_drift

    rng = np.random.default_rng(0)
    basis, _ = np.linalg.qr(rng.standard_normal((200, 4)))
    u, other = basis[:, :3], basis[:, 3]
    for eps in (1e-10, 1e-4, 0.3):
        turned = u.copy()
        turned[:, 0] = np.cos(eps) * u[:, 0] + np.sin(eps) * other
        assert subspace_drift(u, turned) == pytest.approx(np.sin(eps) ** 2 / 3, rel=1e-6)
        assert subspace_drift(turned, u) == pytest.approx(np.sin(eps) ** 2 / 3, rel=1e-6)
    assert subspace_drift(u, u) < 1e-30
    assert subspace_drift(u, basis) == pytest.approx(0.0, abs=1e-30)  # u inside the wider basis


def test_kernel_route_falls_back_to_full_eigh_when_mrrr_refuses(monkeypatch):
    """If the tridiagonal solver raises, the matrix goes through a full eigh instead: the
    same measures and subspaces."""
    import scipy.linalg

    from featscope.observables import spectral as sp

    gen = torch.Generator().manual_seed(2)
    phi = torch.relu(torch.randn(3, 40, 12, generator=gen) @ torch.randn(12, 60, generator=gen))
    outputs, target = torch.randn(3, 40, 2, generator=gen), one_hot(np.arange(40) % 2, 2)

    def measured():
        eigen = sp.batched_eigensystems(phi, target=target, outputs=outputs, top=3)
        return sp.batched_measure_arrays(phi, eigen, target, outputs), sp.batched_top_subspaces(phi, eigen, 3)

    rows, bases = measured()

    def refuse(*args, **kwargs):
        raise scipy.linalg.LinAlgError("refused")

    monkeypatch.setattr(scipy.linalg, "eigh_tridiagonal", refuse)
    rows_full, bases_full = measured()
    for got, ref in zip(rows, rows_full):
        for (name, _, v), (_, _, v_ref) in zip(got, ref):
            assert np.allclose(v, v_ref, rtol=1e-9, atol=1e-12), name
    for b, b_ref in zip(bases, bases_full):
        assert sp.subspace_drift(b, b_ref) == pytest.approx(0.0, abs=1e-12)


def test_spectral_family_skips_a_diverged_checkpoint():
    """A checkpoint with non-finite weights gets no spectral rows; the others are what they
    would be without it (drift_prev of the next one then compares with the last finite one)."""
    from featscope.observe import observe_run
    from featscope.tasks import make_dataset
    from featscope.training import train_one

    cfg = {
        "task": {"name": "sin2", "d": 3, "f": 2, "n_train": 40, "n_test": 0, "seed": 0},
        "model": {"name": "mlp", "width": 8, "depth": 1},
        "optim": {"name": "adam", "lr": 0.01},
        "train": {"steps": 40, "loss": "mse"},
        "schedule": {"every": 10},
        "seed": 0,
    }
    data = make_dataset(cfg["task"])
    bundle = train_one("r", cfg, data, progress=False).checkpoints
    clean = observe_run("r", "spectral", bundle, data, {"top": 3})
    broken = dict(bundle, params={k: v.clone() for k, v in bundle["params"].items()})
    broken["params"]["hidden.0.weight"][2, 0, 0] = float("nan")
    bad_step, next_step = (int(s) for s in bundle["steps"][2:4])
    got = observe_run("r", "spectral", broken, data, {"top": 3})
    assert bad_step not in set(got.step) and set(got.step) == set(clean.step) - {bad_step}
    same = ~got.step.eq(next_step) | got.observable.ne("drift_prev")
    expected = clean[clean.step != bad_step].reset_index(drop=True)
    pd.testing.assert_frame_equal(got[same].reset_index(drop=True), expected[same.to_numpy()].reset_index(drop=True))
    prev = got[(got.step == next_step) & (got.observable == "drift_prev")].value.item()
    assert prev > 0
