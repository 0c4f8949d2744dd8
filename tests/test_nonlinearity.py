import numpy as np
import torch

from featscope import active_rate, dead_neurons, linear_neurons, nonlinear_neurons


def brute_force_rates(pre):
    n, width = pre.shape
    return [sum(1 for i in range(n) if pre[i, j] > 0) / n for j in range(width)]


def test_active_rate_matches_loop():
    pre = torch.randn(37, 11)
    assert np.allclose(active_rate(pre).numpy(), brute_force_rates(pre.numpy()))


def test_counts_on_constructed_layer():
    n = 50
    pre = torch.randn(n, 10)
    pre[:, 0] = -torch.rand(n) - 0.1  # dead
    pre[:, 1] = 0.0  # exactly zero is inactive for ReLU: dead
    pre[:, 2] = torch.rand(n) + 0.1  # always on: linear
    pre[:, 3] = torch.linspace(-1, 1, n)  # bends on the data: nonlinear
    rates = brute_force_rates(pre.numpy())
    expect_dead = sum(r == 0 for r in rates)
    expect_linear = sum(r == 1 for r in rates)
    assert dead_neurons(pre).item() == expect_dead >= 2
    assert linear_neurons(pre).item() == expect_linear >= 1
    assert nonlinear_neurons(pre).item() == 10 - expect_dead - expect_linear


def test_batched_over_checkpoints_equals_one_by_one():
    pre = torch.randn(4, 30, 7)
    pre[1, :, 2] = -1.0
    batched = nonlinear_neurons(pre)
    single = torch.stack([nonlinear_neurons(p) for p in pre])
    assert torch.equal(batched, single)
    assert batched[1] <= 6


def test_active_rate_batched_over_checkpoints_and_nan_inactive():
    pre = torch.randn(4, 37, 11)
    pre[2, 5, 3] = float("nan")  # a diverged checkpoint's NaN is not a positive pre-activation
    got = active_rate(pre).numpy()
    assert got.shape == (4, 11)
    for t in range(4):
        assert np.allclose(got[t], brute_force_rates(pre[t].numpy()))


def test_active_rate_counts_do_not_wrap_on_many_samples():
    # 16-bit counters serve fewer than 2**16 samples; past that the counts must still be exact.
    for n in (2**16 - 1, 2**16 + 3):
        pre = torch.ones(n, 3)
        pre[:5, 1] = -1.0
        pre[:, 2] = -1.0
        pre[-1, 2] = 2.0
        assert active_rate(pre).tolist() == [1.0, (n - 5) / n, 1 / n]


def test_active_rate_in_blocks_of_maps_with_a_remainder(monkeypatch):
    from featscope.observables import nonlinearity

    pre = torch.randn(2, 5, 37, 11)  # 10 maps
    monkeypatch.setattr(nonlinearity, "_BLOCK_BYTES", 3 * 37 * 11)  # blocks of 3: 3 + 3 + 3 + 1
    got = active_rate(pre).numpy()
    assert got.shape == (2, 5, 11)
    for i in range(2):
        for t in range(5):
            assert np.allclose(got[i, t], brute_force_rates(pre[i, t].numpy()))
