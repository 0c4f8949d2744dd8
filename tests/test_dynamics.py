import math

import numpy as np
import pandas as pd
import pytest
import torch

from featscope.models import OneHotNet, ModularNet
from featscope.observables import dynamics as dyn
from featscope.training import zero_mean_mse


def test_pairwise_cosine_matches_loop():
    rows = torch.randn(6, 9)
    rows[2] = 0  # a zero row has no direction and is skipped
    live = [r for r in rows.double() if r.norm() > 0]
    cos = [float(a @ b / (a.norm() * b.norm())) for i, a in enumerate(live) for j, b in enumerate(live) if i != j]
    assert dyn.mean_pairwise_cosine(rows) == pytest.approx(np.mean(cos))
    assert dyn.feature_diversity(rows) == pytest.approx(1 - np.mean(np.abs(cos)))


def test_diversity_extremes():
    same = torch.ones(5, 3)
    assert dyn.feature_diversity(same) == pytest.approx(0.0)
    assert dyn.feature_diversity(torch.eye(4)) == pytest.approx(1.0)


def test_effective_rank_of_isotropic_and_rank_one():
    assert dyn.effective_rank(torch.eye(7)) == pytest.approx(7.0)
    assert dyn.effective_rank(torch.outer(torch.randn(5), torch.randn(4))) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("m", [11, 12])
def test_fourier_purity_of_pure_and_mixed_neurons(m):
    z = torch.arange(m, dtype=torch.float64)
    pure = torch.stack([torch.cos(2 * math.pi * 3 * z / m), torch.sin(2 * math.pi * 3 * z / m + 1.0)])
    mixed = torch.stack([torch.cos(2 * math.pi * 1 * z / m) + torch.cos(2 * math.pi * 2 * z / m),
                         torch.zeros(m)])
    purity, freq = dyn.fourier_purity(torch.stack([pure, mixed]))
    assert purity[0] == pytest.approx(1.0) and freq[0] == 3
    assert purity[1] == pytest.approx(0.5) and freq[1] in (1, 2)
    # Brute-force twin: DFT energy by explicit sums, f and M-f together.
    w = mixed[0].numpy()
    energy = [abs(sum(w[t] * np.exp(-2j * np.pi * f * t / m) for t in range(m))) ** 2 for f in range(m)]
    share1 = (energy[1] + energy[m - 1]) / sum(energy)
    assert dyn.fourier_energy(mixed[None])[0, 1] / dyn.fourier_energy(mixed[None])[0].sum() == pytest.approx(share1)
    assert dyn.distinct_frequencies(torch.stack([pure, pure, mixed]), min_purity=0.9) == 1


def test_gram_statistics_match_numpy():
    f = torch.randn(40, 5)
    c = f.double().numpy() - f.double().numpy().mean(0)
    g = c.T @ c / 40
    diag, off = dyn.gram_statistics(f)
    assert diag == pytest.approx(np.diag(g).mean())
    assert off == pytest.approx((g.sum() - np.trace(g)) / 20)


def test_zero_mean_mse_matches_definition():
    out = torch.randn(6, 5)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    y = torch.nn.functional.one_hot(labels, 5).double()
    proj = torch.eye(5, dtype=torch.float64) - 1 / 5  # P⊥1
    expected = 0.5 * ((y - out.double()) @ proj).pow(2).sum(1).mean()
    assert zero_mean_mse(out, labels).item() == pytest.approx(expected.item(), rel=1e-6)
    assert zero_mean_mse(out + 3.0, labels).item() == pytest.approx(zero_mean_mse(out, labels).item(), rel=1e-5)


def test_input_weights_are_the_effective_one_hot_weights():
    for model in (ModularNet(7, 4), OneHotNet(7, 4)):
        x = torch.tensor([[2, 5]])
        pre = model.forward_features(x)[1].pre["h1"][0]
        w = model.input_weights()
        bias = model.hidden[0].bias if model.hidden[0].bias is not None else 0
        assert torch.allclose(pre, w[:, 0, 2] + w[:, 1, 5] + bias, atol=1e-6)


def _small_mlp_run(steps: int, every: int):
    """The checkpoints and data of a [3, 16, 16, 1] MLP trained on sin² for `steps` steps."""
    from featscope.tasks import make_dataset
    from featscope.training import train_one

    cfg = {"task": {"name": "sin2", "d": 3, "f": 2, "n_train": 50, "n_test": 0, "seed": 0},
           "model": {"name": "mlp", "width": 16, "depth": 2}, "optim": {"name": "adam", "lr": 0.01},
           "train": {"steps": steps, "loss": "mse"}, "schedule": {"every": every}, "seed": 0}
    data = make_dataset(cfg["task"])
    return train_one("r", cfg, data, progress=False).checkpoints, data


def test_observe_chunks_shrink_for_wide_features_and_give_the_same_rows(monkeypatch):
    """Checkpoints are observed in chunks sized to a feature budget; the rows do not depend
    on the chunking (families that compare checkpoints carry state across chunks)."""
    from featscope import observe
    bundle, data = _small_mlp_run(steps=40, every=4)
    families = {"nonlinearity": {}, "linreg": {}, "spectral": {"top": 3}, "weights": {}, "gradients": {}}
    whole = observe.observe_families("r", families, bundle, data)
    assert [len(s.steps) for s in observe.snapshots(bundle, data)] == [11]
    per_checkpoint = 50 * (3 + 4 * 16 + 1) * 4  # inputs, pre and post of two layers, output
    monkeypatch.setattr(observe, "FEATURE_BUDGET", 3 * per_checkpoint)
    assert [len(s.steps) for s in observe.snapshots(bundle, data)] == [3, 3, 3, 2]
    chunked = observe.observe_families("r", families, bundle, data)
    for name in families:
        pd.testing.assert_frame_equal(whole[name], chunked[name], check_exact=False, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("model,task,loss", [
    ({"name": "mlp", "width": 16, "depth": 2}, {"name": "sin2", "d": 3, "f": 2, "n_train": 50, "n_test": 0}, "mse"),
    ({"name": "modnet", "width": 12}, {"name": "modadd", "M": 7, "train_fraction": 0.6}, "cross_entropy"),
    ({"name": "onehot", "width": 12}, {"name": "modadd", "M": 7, "train_fraction": 0.6}, "zero_mean_mse"),
], ids=["mlp", "modnet", "onehot"])
def test_gradients_batched_over_checkpoints_match_one_model_at_a_time(model, task, loss):
    from featscope.observables import families
    from featscope.observe import snapshots
    from featscope.tasks import make_dataset
    from featscope.training import loss_fn, task_kind, train_one

    cfg = {"task": {**task, "seed": 0}, "model": model, "optim": {"name": "adam", "lr": 0.01},
           "train": {"steps": 20, "loss": loss}, "schedule": {"every": 5}, "seed": 0}
    data = make_dataset(cfg["task"])
    bundle = train_one("r", cfg, data, progress=False).checkpoints
    [snap] = list(snapshots(bundle, data))
    x = torch.as_tensor(data["x_train"])
    x = x.float() if x.is_floating_point() else x.long()
    y = torch.as_tensor(data["y_train"])
    y = y.float() if y.is_floating_point() else y.long()
    criterion = loss_fn(task_kind(task["name"]), loss)
    batched = [families._gradient_rows(*r) for r in families._stacked_gradients(snap, x, y, criterion)]
    alone = [families._gradient_rows(*r) for r in families._one_by_one_gradients(snap, x, y, criterion)]
    assert len(batched) == len(alone) == 5
    for got, want in zip(batched, alone):
        assert [r[:4] for r in got] == [r[:4] for r in want]  # step, observable, layer, k
        # float32 products summed in another order (batched vs per-model)
        assert np.allclose([r[4] for r in got], [r[4] for r in want], rtol=1e-4, atol=1e-7)


def test_features_are_computed_once_per_chunk_and_only_for_families_that_use_them(monkeypatch):
    from featscope import observe
    bundle, data = _small_mlp_run(steps=20, every=5)
    sizes = []
    batched_forward = observe._batched_forward

    def counted(*args):
        forward = batched_forward(*args)
        return lambda params: (sizes.append(len(next(iter(params.values())))), forward(params))[1]

    monkeypatch.setattr(observe, "_batched_forward", counted)
    observe.observe_families("r", {"weights": {}}, bundle, data)
    assert sizes == [1]  # sizing the chunks only: weights read parameters, not features
    sizes.clear()
    observe.observe_families("r", {"nonlinearity": {}, "linreg": {}, "spectral": {"top": 3}}, bundle, data)
    assert sizes == [1, 5]  # one forward pass of the chunk's 5 checkpoints for three families


@pytest.mark.parametrize("first", ["nonlinearity", "linreg"],
                         ids=["subsets-picked-from-the-chunk", "subsets-evaluated-alone"])
def test_a_family_observes_only_the_checkpoints_its_own_schedule_names(first):
    from featscope import observe
    bundle, data = _small_mlp_run(steps=45, every=5)
    every = observe.observe_families("r", {"linreg": {}, "spectral": {"top": 3}, "nonlinearity": {}}, bundle, data)
    sparse_families = {"linreg": {"schedule": {"every": 20}}, "spectral": {"top": 3, "schedule": {"every": 15}},
                       "nonlinearity": {}}
    # The first family decides whether the chunk's features exist when the others pick theirs.
    sparse_families = {first: sparse_families[first], **sparse_families}
    sparse = observe.observe_families("r", sparse_families, bundle, data)
    assert sorted(set(sparse["linreg"].step)) == [0, 20, 40, 45]  # multiples of 20, and the ends
    assert sorted(set(sparse["spectral"].step)) == [0, 15, 30, 45]
    assert sparse["nonlinearity"].equals(every["nonlinearity"])
    for name in ("linreg", "spectral"):
        steps = set(sparse[name].step)
        want = every[name][every[name].step.isin(steps)]
        if name == "spectral":  # drift_prev compares with the previous observed checkpoint
            want = want[want.observable != "drift_prev"]
            got = sparse[name][sparse[name].observable != "drift_prev"]
        else:
            got = sparse[name]
        pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True),
                                      check_exact=False, rtol=1e-9, atol=1e-12)
