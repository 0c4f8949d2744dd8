"""Automatic segmentation of the four phases of Liu & Zheng (2026).

Inputs: one run's checkpoint steps, its training loss at those steps, and the
number N(t) of nonlinear neurons in the watched layer (h2 by default).

The rule (all on N smoothed by a running median over `window` checkpoints):

* N_min is the smallest smoothed count, reached first at t_min. A detection
  tolerance delta = max(min_delta, rel_delta * (N(0) - N_min)) ignores noise.
* t1, end of Phase I (features removed): the first step with N <= N_min + delta.
* t2, end of Phase II (plateau): neurons come back. Detect the first step after
  t_min with N > N_min + delta, then walk back to the last step at which N was
  still within min_delta of the plateau level P (median N from t1 to there);
  so t2 marks the onset of the rise, not the moment it became large. NaN if
  neurons never come back (then there is no Phase III or IV).
* t3, end of Phase III: the first step after t2 with N >= N_final - min_delta,
  N_final being the median count over the last `tail` share of checkpoints.
* Phase IV rate: -slope of a least-squares line through log(loss) from t3 until
  the loss first falls below `floor` x loss(t3) (past that, Adam's constant step
  size leaves a noise floor, not a decay); the loss decays like exp(-rate * step)
  and ``phase4_r2`` says how straight the line is.

Phase II's level is the median count and median loss between t1 and t2.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd


@dataclass
class Phases:
    t1: float  # end of Phase I (step)
    t2: float  # end of Phase II
    t3: float  # end of Phase III
    phase2_neurons: float
    phase2_loss: float
    phase4_rate: float  # per step
    phase4_r2: float
    final_neurons: float
    final_loss: float

    def as_dict(self) -> dict:
        return asdict(self)


def running_median(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1:
        return np.asarray(values, dtype=float)
    half = window // 2
    padded = np.pad(np.asarray(values, dtype=float), half, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1)
    return np.median(windows, axis=-1)


def _first(steps, mask, after: float = -np.inf) -> float:
    hits = np.flatnonzero(mask & (steps > after))
    return float(steps[hits[0]]) if len(hits) else np.nan


def exponential_rate(steps, loss) -> tuple[float, float]:
    """Rate r and R² of the fit log(loss) ≈ a - r * step."""
    steps, loss = np.asarray(steps, float), np.asarray(loss, float)
    ok = np.isfinite(loss) & (loss > 0)
    if ok.sum() < 3:
        return np.nan, np.nan
    t, logl = steps[ok], np.log(loss[ok])
    slope, intercept = np.polyfit(t, logl, 1)
    resid = logl - (slope * t + intercept)
    total = ((logl - logl.mean()) ** 2).sum()
    return float(-slope), float(1 - (resid**2).sum() / total) if total > 0 else np.nan


def segment_phases(
    steps,
    loss,
    neurons,
    window: int = 5,
    min_delta: float = 2.0,
    rel_delta: float = 0.1,
    tail: float = 0.1,
    floor: float = 1e-4,
) -> Phases:
    """Phase boundaries and Phase IV rate of one run (see the module docstring)."""
    steps = np.asarray(steps, dtype=float)
    loss = np.asarray(loss, dtype=float)
    n = running_median(np.asarray(neurons, dtype=float), window)
    i_min = int(np.argmin(n))
    n_min = n[i_min]
    delta = max(min_delta, rel_delta * (n[0] - n_min))
    t1 = _first(steps, n <= n_min + delta)
    t2 = t3 = np.nan
    crossing = _first(steps, n > n_min + delta, after=steps[i_min])
    n_final = float(np.median(n[-max(1, int(round(tail * len(n)))) :]))
    if np.isfinite(crossing):
        plateau_level = np.median(n[(steps >= t1) & (steps < crossing)])
        flat = np.flatnonzero((n <= plateau_level + min_delta) & (steps < crossing))
        t2 = float(steps[flat[-1]])
        t3 = _first(steps, n >= n_final - min_delta, after=t2)
    plateau = (steps >= t1) & (steps <= t2) if np.isfinite(t2) else steps >= t1
    rate, r2 = np.nan, np.nan
    if np.isfinite(t3):
        i3 = int(np.searchsorted(steps, t3))
        below = np.flatnonzero(loss[i3:] < floor * loss[i3])
        end = i3 + (below[0] + 1 if len(below) else len(loss) - i3)
        rate, r2 = exponential_rate(steps[i3:end], loss[i3:end])
    return Phases(
        t1, t2, t3, float(np.median(n[plateau])), float(np.median(loss[plateau])), rate, r2, n_final, float(loss[-1])
    )


def phase_table(metrics: pd.DataFrame, nonlinearity: pd.DataFrame, layer: str = "h2", **params) -> pd.DataFrame:
    """Phase boundaries per run (one row each, runs sorted) from its train loss (``metrics``:
    run, step, split, loss) and its count of nonlinear neurons in ``layer`` (``nonlinearity``:
    long-form rows); ``params`` go to `segment_phases`. Checkpoints whose loss is not finite
    (a diverged run) are left out."""
    counts = nonlinearity[(nonlinearity.observable == "nonlinear_neurons") & (nonlinearity.layer == layer)]
    loss = metrics[metrics.split == "train"].set_index(["run", "step"])["loss"]
    rows = []
    for run, curve in counts.groupby("run", sort=True):
        curve = curve.sort_values("step")
        steps = curve.step.to_numpy()
        run_loss = loss.loc[run].reindex(steps).to_numpy()
        ok = np.isfinite(run_loss)
        phases = segment_phases(steps[ok], run_loss[ok], curve.value.to_numpy()[ok], **params)
        rows.append({"run": run, "layer": layer, **phases.as_dict()})
    return pd.DataFrame(rows)
