import numpy as np
import torch

from featscope import linreg_loss


def numpy_baseline(features, y):
    a = np.hstack([features, np.ones((len(features), 1))])
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    return np.mean((a @ coef - y) ** 2)


def test_matches_numpy_lstsq_full_rank():
    rng = np.random.default_rng(0)
    f = rng.standard_normal((200, 12))
    y = f @ rng.standard_normal(12) + 0.3 * rng.standard_normal(200) + 2.0
    assert np.isclose(linreg_loss(f, y).item(), numpy_baseline(f, y), rtol=1e-10)


def test_exact_fit_gives_zero():
    rng = np.random.default_rng(1)
    f = rng.standard_normal((40, 5))
    y = f @ np.arange(1.0, 6.0) - 3.0
    assert linreg_loss(f, y).item() < 1e-20


def test_rank_deficient_equals_fit_on_distinct_columns():
    # Dead neurons (zero columns), duplicated and always-on (constant) neurons:
    # the fit must equal the fit on the distinct informative columns.
    rng = np.random.default_rng(2)
    base = np.maximum(rng.standard_normal((500, 6)), 0) * 1e3
    dead = np.zeros((500, 40))
    constant = np.full((500, 3), 7.5)
    f = np.hstack([base, dead, base[:, :3], constant, dead]).astype(np.float32)
    y = np.sin(base[:, 0] / 1e3) + base[:, 1] / 1e3 + 0.1 * rng.standard_normal(500)
    expected = numpy_baseline(base, y)
    got = linreg_loss(torch.from_numpy(f), torch.from_numpy(y.astype(np.float32))).item()
    assert np.isclose(got, expected, rtol=1e-5)
    # (torch's default float32 lstsq, gelsy on CPU, misses on this input by 2 % to 35x on
    # some calls and not on others; being nondeterministic, it is not asserted here.)


def test_batched_and_multi_output():
    rng = np.random.default_rng(3)
    f = rng.standard_normal((3, 60, 4))
    y = rng.standard_normal((60, 2))
    batched = linreg_loss(f, y).numpy()
    for i in range(3):
        per_output = np.mean([numpy_baseline(f[i], y[:, c]) for c in range(2)])
        assert np.isclose(batched[i], per_output, rtol=1e-10)


def test_ill_conditioned_features_match_lstsq():
    # Nearly collinear neurons (condition number ~1e5): forming AᵀA squares it to ~1e10,
    # which the refinement step must absorb.
    rng = np.random.default_rng(4)
    base = rng.standard_normal((300, 5))
    f = np.hstack([base, base[:, :2] + 1e-5 * rng.standard_normal((300, 2))])
    y = np.tanh(base @ rng.standard_normal(5)) + 0.05 * rng.standard_normal(300)
    assert np.isclose(linreg_loss(f, y).item(), numpy_baseline(f, y), rtol=1e-8)


def test_matches_lstsq_on_a_trained_networks_hidden_features():
    # The blog's MLP through its plateau: h2 has dead and always-on neurons, rank 91 of
    # 101 and a numerical condition number ~1e35 at some checkpoints. An eigendecomposition
    # of the Gram with a relative cutoff (this module's method before pivoted Cholesky)
    # missed numpy's SVD-based lstsq there by 2.5e-5 at step 530.
    from featscope.observe import snapshots
    from featscope.tasks import make_dataset
    from featscope.training import train_one

    cfg = {
        "task": {"name": "sin2", "d": 10, "f": 10, "n_train": 500, "n_test": 0, "seed": 0},
        "model": {"name": "mlp", "width": 100, "depth": 2, "activation": "relu"},
        "optim": {"name": "adam", "lr": 0.001},
        "train": {"steps": 560, "loss": "mse"},
        "schedule": {"every": 10},
        "seed": 0,
    }
    data = make_dataset(cfg["task"])
    bundle = train_one("r", cfg, data, progress=False).checkpoints
    for snap in snapshots(bundle, data):
        for layer in ("h1", "h2"):
            feats = snap.features.layers()[layer]
            got = linreg_loss(feats, snap.target).numpy()
            want = [numpy_baseline(f.double().numpy(), snap.target.double().numpy()) for f in feats]
            assert np.allclose(got, want, rtol=1e-10), (layer, snap.steps)


def test_precomputed_grams_give_the_same_fits():
    # An observe pass forms each layer's [F, 1]ᵀ[F, 1] once (Snapshot.augmented_gram) and
    # hands it to the fits: the Grams against a brute-force product, and the fits from them
    # against the fits that form their own, on rank-deficient maps and a diverged one.
    from featscope.observables.linreg import augmented_grams

    rng = np.random.default_rng(5)
    f = np.maximum(rng.standard_normal((6, 300, 20)), 0).astype(np.float32)
    f[1, :, 3] = 0  # a dead neuron
    f[2, :, 5] = f[2, :, 6]  # a duplicated one
    f[3, 0, 0] = np.nan  # diverged checkpoints
    f[4, 7, 2] = np.inf
    f[5, 9, 1] = np.finfo(np.float32).max  # finite: its square does not overflow float64
    y = rng.standard_normal(300)
    grams = augmented_grams(f).numpy()
    for fi, g in zip(f[[0, 1, 2, 5]], grams[[0, 1, 2, 5]]):
        a = np.hstack([fi.astype(np.float64), np.ones((300, 1))])
        assert np.allclose(g, a.T @ a, rtol=1e-13)
    own, shared = linreg_loss(f, y).numpy(), linreg_loss(f, y, grams=grams).numpy()
    assert np.allclose(shared[:3], own[:3], rtol=1e-12) and np.isnan(shared[3:5]).all() and np.isnan(own[3:5]).all()
    assert np.isfinite(own[5]) and np.isfinite(shared[5])
    assert np.allclose(shared[:3], [numpy_baseline(fi.astype(np.float64), y) for fi in f[:3]], rtol=1e-10)
