"""Figures of the grokking study: accuracy with stages, dynamics observables, scaling law."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pyarrow.dataset as pads
import seaborn as sns

from . import io
from .plots import BAND

STAGE_COLORS = {"lazy": "#d9d9d9", "independent": "#fdd49e", "interactive": "#9ecae1", "converged": "#c7e9c0"}
DYNAMICS = [
    ("weight_norm", "h1"),
    ("weight_delta_rel", "h1"),
    ("grad_norm", None),
    ("grad_cosine_neurons", "h1"),
    ("hidden_grad_norm", "h1"),
    ("feature_diversity", "h1"),
    ("weight_effective_rank", "h1"),
    ("fourier_frequencies", "h1"),
    ("update_cosine", None),
]


def figure(name: str, study: str, paths: dict, read_frames):
    runs = io.read_parquet(paths["runs"])
    if name == "stages":
        metrics = read_frames(paths["metrics"], columns=["run", "step", "split", "acc"])
        return accuracy_with_stages(runs, metrics, io.read_parquet(paths["stages"]), study)
    if name == "dynamics":
        wanted = [o for o, _ in DYNAMICS]
        obs = read_frames(
            [p for p in paths["observables"] if "family=weights" in str(p) or "family=gradients" in str(p)],
            filters=pads.field("observable").isin(wanted) & pads.field("k").is_null(),
        )
        return dynamics(runs, obs, study)
    return scaling(io.read_parquet(paths["scaling"]), study)


def _shade(ax, table: pd.DataFrame) -> None:
    """Shade each interval between checkpoints by the most common stage over seeds."""
    mode = table.groupby("step").stage.agg(lambda s: s.value_counts().idxmax()).sort_index()
    steps = mode.index.to_numpy()
    for lo, hi, label in zip(steps[:-1], steps[1:], mode.to_numpy()[1:]):
        ax.axvspan(lo, hi, color=STAGE_COLORS[label], lw=0, zorder=0)


def accuracy_with_stages(runs, metrics, stages, study):
    points = list(dict.fromkeys(runs.grid_point))[:4]
    fig, axes = plt.subplots(1, len(points), figsize=(5.5 * len(points), 4), sharey=True, squeeze=False)
    for ax, point in zip(axes[0], points):
        ids = set(runs.run[runs.grid_point == point])
        acc = metrics[metrics.run.isin(ids) & metrics.split.isin(["train", "test"])]
        _shade(ax, stages[stages.run.isin(ids)])
        sns.lineplot(
            acc,
            x="step",
            y="acc",
            hue="split",
            estimator="median",
            errorbar=BAND,
            ax=ax,
            palette={"train": "C0", "test": "C3"},
        )
        ax.set_title(point, fontsize=9)
        ax.set_ylabel("accuracy")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in STAGE_COLORS.values()]
    fig.legend(
        handles,
        list(STAGE_COLORS),
        loc="lower center",
        ncol=4,
        title="stage (most common over seeds)",
        bbox_to_anchor=(0.5, -0.12),
    )
    fig.suptitle(f"{study}: train and test accuracy (median over seeds) with grokking stages", fontsize=10)
    fig.tight_layout()
    return fig


def dynamics(runs, obs, study):
    obs = obs.merge(runs[["run", "grid_point"]], on="run")
    keep = np.zeros(len(obs), bool)
    layers = obs.layer.astype(object)
    for name, layer in DYNAMICS:
        same_layer = layers.isna() if layer is None else layers.eq(layer).fillna(False)
        keep |= (obs.observable == name).to_numpy(bool) & same_layer.to_numpy(bool)
    obs = obs[keep]
    order = [o for o, _ in DYNAMICS if o in set(obs.observable)]
    grid = sns.relplot(
        obs,
        x="step",
        y="value",
        hue="grid_point",
        col="observable",
        col_order=order,
        col_wrap=3,
        kind="line",
        estimator="median",
        errorbar=BAND,
        facet_kws={"sharey": False},
        height=2.8,
        aspect=1.4,
    )
    grid.set_titles("{col_name}")
    grid.figure.suptitle(
        f"{study}: weight and gradient observables over training (median over seeds)", fontsize=10, y=1.02
    )
    return grid.figure


def scaling(table, study):
    heat = table.pivot_table(index="M", columns="train_fraction", values="generalisation_rate")
    fig, ax = plt.subplots(figsize=(7.5, 1.6 + 0.55 * len(heat)))
    sns.heatmap(
        heat,
        cmap="viridis",
        vmin=0,
        vmax=1,
        annot=True,
        fmt=".2f",
        ax=ax,
        cbar_kws={"label": "share of seeds that generalise"},
    )
    fractions = heat.columns.to_numpy(float)
    per_m = table.drop_duplicates("M").set_index("M").loc[heat.index]
    # Axis positions: cell centres are 0.5, 1.5, ... ; interpolate fractions onto them.
    pos = lambda f: np.interp(f, fractions, np.arange(len(fractions)) + 0.5)  # noqa: E731
    rows = np.arange(len(heat)) + 0.5
    ax.plot(pos(per_m.critical_fraction), rows, "wo", ms=7, mec="k", label="measured critical fraction")
    c, r2 = table.c.iloc[0], table.r2.iloc[0]
    if np.isfinite(c):
        m = heat.index.to_numpy(float)
        ax.plot(pos(c * np.log(m) / m), rows, "r-", lw=2, label=f"fit n = c·M ln M, c = {c:.2f}, R² = {r2:.2f}")
    fig.legend(loc="upper center", bbox_to_anchor=(0.45, 0.0), fontsize=8, ncol=2)
    ax.set_title(f"{study}: generalisation over modulus M and training fraction", fontsize=10)
    fig.tight_layout()
    return fig
