import numpy as np
import pytest

from featscope import segment_phases
from featscope.phases import exponential_rate, running_median


def four_phase_curves(t1=50, t2=500, t3=1500, total=3000, n2=14, n_final=60, rate=0.004, seed=0):
    """Constructed curves with known boundaries, like the blog's Figure 1."""
    rng = np.random.default_rng(seed)
    steps = np.arange(0, total + 1, 5)
    neurons = np.select(
        [steps <= t1, steps <= t2, steps <= t3],
        [100 - (100 - n2) * steps / t1, np.full(len(steps), n2), n2 + (n_final - n2) * (steps - t2) / (t3 - t2)],
        n_final,
    )
    neurons = np.round(neurons + rng.integers(-1, 2, len(steps)))
    loss = np.select(
        [steps <= t1, steps <= t2, steps <= t3],
        [25 * np.exp(-steps * np.log(25) / t1), np.ones(len(steps)), np.exp(-(steps - t2) * np.log(10) / (t3 - t2))],
        0.1 * np.exp(-rate * (steps - t3)),
    )
    return steps, loss * np.exp(0.01 * rng.standard_normal(len(steps))), neurons


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_constructed_boundaries(seed):
    steps, loss, neurons = four_phase_curves(seed=seed)
    ph = segment_phases(steps, loss, neurons)
    assert ph.t1 == pytest.approx(50, abs=15)
    assert ph.t2 == pytest.approx(500, abs=60)
    assert ph.t3 == pytest.approx(1500, abs=80)
    assert ph.phase2_neurons == pytest.approx(14, abs=1)
    assert ph.phase4_rate == pytest.approx(0.004, rel=0.05)
    assert ph.phase4_r2 > 0.99


def test_no_return_of_neurons_means_no_phase_three():
    steps, loss, neurons = four_phase_curves()
    neurons = np.where(steps > 50, 14, neurons)
    ph = segment_phases(steps, loss, neurons)
    assert np.isfinite(ph.t1) and np.isnan(ph.t2) and np.isnan(ph.t3) and np.isnan(ph.phase4_rate)


def test_exponential_rate_exact():
    t = np.arange(100.0)
    rate, r2 = exponential_rate(t, 3 * np.exp(-0.02 * t))
    assert rate == pytest.approx(0.02, rel=1e-9) and r2 == pytest.approx(1.0)


def test_running_median_removes_single_spikes():
    x = np.array([5, 5, 5, 50, 5, 5, 5], dtype=float)
    assert np.all(running_median(x, 3) == 5)
