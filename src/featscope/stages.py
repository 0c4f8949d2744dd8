"""Grokking analyses (Tian 2025): stage labels, grokking delay, and the M log M scaling law.

Stage of each checkpoint, by these configurable rules (first match wins):

* ``converged``   — test accuracy >= ``acc_high`` and the full-batch gradient norm
  <= ``converged_grad``: generalised, and nothing left to learn;
* ``interactive`` — test accuracy >= ``acc_high`` but the gradient is still large:
  the hidden units cooperate to finish the missing features (Stage III);
* ``lazy``        — the hidden layer has barely moved yet: the relative change of
  the h1 weights per step between checkpoints has stayed < ``lazy_rate`` at every
  checkpoint so far (Stage I comes first; once features move, a run never
  returns to it — a slow late phase under a constant step size is not lazy);
* ``independent`` — otherwise: hidden units learn features, test accuracy is
  still below ``acc_high`` (Stage II).

These follow the notes on Tian's paper (W1 change < 1e-3 for lazy, accuracy
>= 95 % for interactive); thresholds depend on the model and loss, so they are
config keys (``stages:`` in a study).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

STAGES = ["lazy", "independent", "interactive", "converged"]
DEFAULTS = {"lazy_rate": 1e-3, "acc_high": 0.95, "converged_grad": 0.01}


def stage(
    test_acc: float,
    max_delta_rate: float,
    grad_norm: float,
    lazy_rate: float = 1e-3,
    acc_high: float = 0.95,
    converged_grad: float = 0.01,
) -> str:
    """Stage of one checkpoint; `max_delta_rate` is the largest h1 change rate so far."""
    if test_acc >= acc_high:
        return "converged" if grad_norm <= converged_grad else "interactive"
    if not np.isfinite(max_delta_rate) or max_delta_rate < lazy_rate:
        return "lazy"
    return "independent"


def stage_table(metrics: pd.DataFrame, weights: pd.DataFrame, gradients: pd.DataFrame, **rules) -> pd.DataFrame:
    """Per (run, checkpoint step): the quantities the rules read and the stage label."""
    rules = {**DEFAULTS, **rules}
    acc = (
        metrics[metrics.split.isin(["train", "test"])]
        .pivot_table(index=["run", "step"], columns="split", values="acc")
        .add_suffix("_acc")
    )
    delta = weights[(weights.observable == "weight_delta_rel") & (weights.layer == "h1")]
    delta = delta.set_index(["run", "step"]).value.rename("h1_delta_rel")
    grad = gradients[(gradients.observable == "grad_norm") & gradients.layer.isna()]
    grad = grad.set_index(["run", "step"]).value.rename("grad_norm")
    table = pd.concat([delta, grad], axis=1).join(acc, how="left").reset_index()
    table = table.sort_values(["run", "step"], ignore_index=True)
    gap = table.groupby("run").step.diff()
    table["h1_delta_rate"] = table.h1_delta_rel / gap
    running_max = table.h1_delta_rate.fillna(0).groupby(table.run).cummax()
    table["stage"] = [stage(t, d, g, **rules) for t, d, g in zip(table.test_acc, running_max, table.grad_norm)]
    return table


def _first_step(curve: pd.DataFrame, threshold: float) -> float:
    hit = curve[curve.acc >= threshold]
    return float(hit.step.iloc[0]) if len(hit) else np.nan


def grokking_table(metrics: pd.DataFrame, train_acc: float = 0.99, test_acc: float = 0.95) -> pd.DataFrame:
    """Per run: when train accuracy first reaches `train_acc`, test accuracy `test_acc`,
    the delay between them (steps and epochs) and whether the run generalised."""
    rows = []
    for run, m in metrics.groupby("run", sort=True):
        train = m[m.split == "train"].sort_values("step")
        test = m[m.split == "test"].sort_values("step")
        epochs = dict(zip(m.step, m.epoch))
        t_train, t_test = _first_step(train, train_acc), _first_step(test, test_acc)
        rows.append(
            {
                "run": run,
                "step_train_fit": t_train,
                "step_test_fit": t_test,
                "delay_steps": t_test - t_train,
                "delay_epochs": (epochs.get(t_test, np.nan) - epochs.get(t_train, np.nan)),
                "final_train_acc": float(train.acc.iloc[-1]),
                "final_test_acc": float(test.acc.iloc[-1]),
                "generalised": bool(test.acc.iloc[-1] >= test_acc),
            }
        )
    return pd.DataFrame(rows)


def critical_fraction(fractions, rates, level: float = 0.5) -> float:
    """The training fraction at which the generalisation rate first reaches `level`
    (linear interpolation between grid fractions). NaN unless the grid brackets it: if the
    rate never reaches `level`, and if the lowest fraction already exceeds it (the
    critical fraction is then only known to be at most that one; fitting the bound as a
    value would bias a scaling fit). Exactly `level` at the lowest fraction gives it."""
    f, r = np.asarray(fractions, float), np.asarray(rates, float)
    order = np.argsort(f)
    f, r = f[order], r[order]
    above = np.flatnonzero(r >= level)
    if not len(above):
        return np.nan
    i = above[0]
    if i == 0:
        return float(f[0]) if r[0] == level else np.nan
    return float(f[i - 1] + (level - r[i - 1]) * (f[i] - f[i - 1]) / (r[i] - r[i - 1]))


def fit_m_log_m(m, n_crit) -> tuple[float, float]:
    """Least-squares c in n_crit = c · M ln M (through the origin) and the fit's R²."""
    g = np.asarray(m, float) * np.log(np.asarray(m, float))
    n = np.asarray(n_crit, float)
    ok = np.isfinite(n)
    g, n = g[ok], n[ok]
    if len(n) < 2:
        return np.nan, np.nan
    c = float((g * n).sum() / (g * g).sum())
    total = ((n - n.mean()) ** 2).sum()
    return c, float(1 - ((n - c * g) ** 2).sum() / total) if total > 0 else np.nan


def scaling_table(runs: pd.DataFrame, grokking: pd.DataFrame, level: float = 0.5) -> pd.DataFrame:
    """Per (M, training fraction): the share of seeds that generalised; per M the critical
    fraction and n_crit = fraction · M²; and the fit n_crit = c · M ln M (columns c, r2)."""
    runs = runs.copy()
    if "task.train_ratio" in runs:  # n_train given as ratio · M ln M (Tian's critical_ratio_multiplier)
        from_ratio = runs["task.train_ratio"] * np.log(runs["task.M"]) / runs["task.M"]
        given = runs["task.train_fraction"] if "task.train_fraction" in runs else np.nan
        runs["task.train_fraction"] = from_ratio.clip(0, 1).where(runs["task.train_ratio"].notna(), given)
    table = runs[["run", "task.M", "task.train_fraction"]].merge(grokking, on="run")
    rate = table.groupby(["task.M", "task.train_fraction"]).generalised.agg(["mean", "size"]).reset_index()
    rate.columns = ["M", "train_fraction", "generalisation_rate", "seeds"]
    crit = {m: critical_fraction(g.train_fraction, g.generalisation_rate, level) for m, g in rate.groupby("M")}
    rate["critical_fraction"] = rate.M.map(crit)
    rate["n_crit"] = rate.critical_fraction * rate.M**2
    per_m = rate.drop_duplicates("M")
    c, r2 = fit_m_log_m(per_m.M, per_m.n_crit)
    return rate.assign(c=c, r2=r2)
