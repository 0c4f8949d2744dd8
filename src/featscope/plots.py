"""Figures. Plotting only: every number drawn here was computed upstream.

Curves are medians over seeds with an interquartile band.
"""

from __future__ import annotations

import contextlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .io import atomic_path  # noqa: E402

BAND = ("pi", 50)  # interquartile range over seeds
PHASE_COLORS = ["#fde0dd", "#e0ecf4", "#e5f5e0", "#fff7bc"]


def save(fig, out) -> None:
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=130, bbox_inches="tight", format="png")
    plt.close(fig)


def reference_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs of the first grid point (the base config in one-at-a-time grids)."""
    return runs[runs.grid_point == runs.grid_point.iloc[0]]


def _describe(runs: pd.DataFrame) -> str:
    r = runs.iloc[0]
    arch = f"[{r.get('task.d', '?')}, " + ", ".join([str(r["model.width"])] * int(r["model.depth"])) + ", 1]"
    return (
        f"{arch} {r['model.activation']} MLP, {r['optim.name']} lr {r['optim.lr']:g}, "
        f"task {r['task.name']} f={r.get('task.f', '?')}, {len(runs)} seeds"
    )


def shade_phases(ax, phases: pd.DataFrame | None, label: bool = True) -> None:
    """Shade phases I-IV between the median boundaries over seeds."""
    if phases is None or phases.empty:
        return
    bounds = phases[["t1", "t2", "t3"]].median()
    if bounds.isna().any():
        return
    lo, hi = ax.get_xlim()
    edges = [lo, bounds.t1, bounds.t2, bounds.t3, hi]
    for i, name in enumerate(["I", "II", "III", "IV"]):
        ax.axvspan(edges[i], edges[i + 1], color=PHASE_COLORS[i], alpha=0.6, lw=0, zorder=0)
        if label:
            ax.text(
                (edges[i] + edges[i + 1]) / 2,
                0.97,
                name,
                transform=ax.get_xaxis_transform(),
                ha="center",
                va="top",
                fontsize=11,
                fontweight="bold",
                color="0.3",
            )
    ax.set_xlim(lo, hi)


def _phase_text(phases: pd.DataFrame) -> str:
    q = phases[["t1", "t2", "t3", "phase2_neurons", "phase4_rate"]].quantile([0.25, 0.5, 0.75])
    fmt = lambda c, f: f"{q[c][0.5]:{f}} [{q[c][0.25]:{f}}–{q[c][0.75]:{f}}]"  # noqa: E731
    return (
        f"median [IQR] over seeds — boundaries t1 {fmt('t1', '.0f')}, t2 {fmt('t2', '.0f')}, "
        f"t3 {fmt('t3', '.0f')}; Phase II neurons {fmt('phase2_neurons', '.0f')}; "
        f"Phase IV rate {fmt('phase4_rate', '.2e')}/step"
    )


def loss_and_neurons(runs, metrics, observables, phases, study, layer="h2"):
    ref = reference_runs(runs)
    ids = set(ref.run)
    train = metrics[(metrics.split == "train") & metrics.run.isin(ids)]
    counts = observables[(observables.observable == "nonlinear_neurons") & observables.run.isin(ids)]
    ref_phases = phases[phases.run.isin(ids)] if phases is not None else None
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True)
    sns.lineplot(train, x="step", y="loss", estimator="median", errorbar=BAND, ax=top, color="C0")
    top.set_yscale("log")
    top.set_ylabel("training loss (MSE)")
    sns.lineplot(
        counts,
        x="step",
        y="value",
        hue="layer",
        estimator="median",
        errorbar=BAND,
        ax=bottom,
        palette={"h1": "0.6", "h2": "C3"},
    )
    bottom.set_ylabel("nonlinear neurons\n(0 < active rate < 1)")
    bottom.legend(title="hidden layer", loc="center right")
    for ax in (top, bottom):
        shade_phases(ax, ref_phases, label=ax is top)
    title = f"{study}: loss and nonlinear neurons — {_describe(ref)}"
    if ref_phases is not None and not ref_phases.empty:
        title += "\n" + _phase_text(ref_phases)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def linreg_baselines(runs, metrics, observables, phases, study):
    ref = reference_runs(runs)
    ids = set(ref.run)
    train = metrics[(metrics.split == "train") & metrics.run.isin(ids)][["run", "step", "loss"]]
    train = train.assign(curve="training loss")
    lin = observables[(observables.observable == "linreg_loss") & observables.run.isin(ids)]
    lin = lin.assign(curve="lin. regression on " + lin.layer.astype(str), loss=lin.value)
    both = pd.concat([train, lin[["run", "step", "loss", "curve"]]], ignore_index=True)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    # Colours as in the blog: training loss blue, the h2 baseline orange.
    layers = sorted(set(lin.layer.astype(str)), key=lambda l: (l != "x", l))
    order = ["training loss"] + [f"lin. regression on {l}" for l in reversed(layers)]
    colors = ["C0", "C1", "C2", "C3", "C4", "C5"][: len(order)]
    sns.lineplot(
        both,
        x="step",
        y="loss",
        hue="curve",
        hue_order=order,
        palette=dict(zip(order, colors)),
        estimator="median",
        errorbar=BAND,
        ax=ax,
    )
    ax.set_yscale("log")
    ax.set_ylabel("MSE")
    shade_phases(ax, phases[phases.run.isin(ids)] if phases is not None else None)
    ax.set_title(f"{study}: training loss vs least-squares fits of y on x, h1, h2\n{_describe(ref)}", fontsize=9)
    fig.tight_layout()
    return fig


def axis_slice(runs: pd.DataFrame, axis: str, axes: list[str]) -> pd.DataFrame:
    """Runs that differ from the first grid point only along `axis`."""
    first = runs.iloc[0]
    keep = np.ones(len(runs), dtype=bool)
    for other in axes:
        if other != axis:
            keep &= (runs[other].astype(str) == str(first[other])).to_numpy()
    return runs[keep]


@contextlib.contextmanager
def _seeded_jitter(seed: int = 0):
    """Seaborn jitters strip plots with NumPy's global generator: seed it for the plot (and
    restore it after), so that a figure drawn twice is the same image."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def axis_summary(runs, observables, phases, axis, study, axes=None, layer="h2"):
    axes = axes or [axis]
    sel = axis_slice(runs, axis, axes)
    value_of = dict(zip(sel.run, sel[axis].astype(str)))
    order = list(dict.fromkeys(sel[axis].astype(str)))
    counts = observables[
        (observables.observable == "nonlinear_neurons") & (observables.layer == layer) & observables.run.isin(value_of)
    ]
    counts = counts.assign(**{axis: counts.run.map(value_of)})
    fig, (left, mid, right) = plt.subplots(1, 3, figsize=(14, 4))
    sns.lineplot(counts, x="step", y="value", hue=axis, hue_order=order, estimator="median", errorbar=BAND, ax=left)
    left.set_ylabel(f"nonlinear neurons in {layer}")
    if phases is not None and not phases.empty:
        ph = phases[phases.run.isin(value_of)].assign(**{axis: lambda d: d.run.map(value_of)})
        for ax, col, label in (
            (mid, "phase2_neurons", "Phase II nonlinear neurons"),
            (right, "phase4_rate", "Phase IV loss decay rate (/step)"),
        ):
            with _seeded_jitter():
                sns.stripplot(ph, x=axis, y=col, order=order, ax=ax, color="0.4", size=4)
            sns.pointplot(
                ph,
                x=axis,
                y=col,
                order=order,
                estimator="median",
                errorbar=None,
                ax=ax,
                color="C3",
                markers="D",
                linestyles="-",
            )
            ax.set_ylabel(label)
    fig.suptitle(
        f"{study}: effect of {axis} (other settings at the base point; dots = seeds, red = median)", fontsize=10
    )
    fig.tight_layout()
    return fig


# ------------------------------------------------------------ kernel eigen-measures
def _pick_steps(steps, count=4) -> list:
    steps = np.sort(np.unique(steps))
    picks = np.unique(np.geomspace(1, len(steps), count).round().astype(int) - 1)
    return [int(steps[i]) for i in picks]


def spectrum(runs, spectral, regimes, study):
    """Eigenvalue spectra of the first run's features at a range of checkpoints."""
    run = reference_runs(runs).run.iloc[0]
    eig = spectral[(spectral.run == run) & (spectral.observable == "eigenvalue")]
    steps = _pick_steps(eig.step, 6)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    sns.lineplot(
        eig[eig.step.isin(steps)],
        x="k",
        y="value",
        hue="step",
        palette="viridis",
        marker="o",
        markersize=3,
        ax=ax,
        legend="full",
    )
    ax.set(xscale="log", yscale="log", xlabel="eigen index k", ylabel="eigenvalue ρ_k")
    ax.set_title(f"{study}: spectrum of the {eig.layer.iloc[0]} feature kernel over training\nrun {run}", fontsize=9)
    fig.tight_layout()
    return fig


def cumulative(runs, spectral, regimes, study):
    """Π*(k) (target) and Π̂(k) (network output) at chosen checkpoints of the first run."""
    run = reference_runs(runs).run.iloc[0]
    cum = spectral[(spectral.run == run) & spectral.observable.isin(["cum_quality", "cum_utility"])]
    steps = _pick_steps(cum.step, 4)
    cum = cum[cum.step.isin(steps)].assign(
        curve=lambda d: d.observable.map({"cum_quality": "Π*(k): target", "cum_utility": "Π̂(k): output"})
    )
    grid = sns.relplot(
        cum,
        x="k",
        y="value",
        hue="step",
        col="curve",
        kind="line",
        palette="viridis",
        height=3.8,
        aspect=1.1,
        legend="full",
    )
    grid.set(xscale="log", ylim=(0, 1.02), xlabel="number of eigenfunctions k", ylabel="cumulative share")
    grid.figure.suptitle(f"{study}: cumulative quality and utility, run {run}", fontsize=10, y=1.03)
    return grid.figure


def effective_dim(runs, spectral, regimes, study):
    """Effective dimensions, D_LR and eigenfunction drift over training, per grid point."""
    names = ["effective_dim", "effective_dim_quality", "effective_dim_utility", "d_lr", "drift_init", "drift_prev"]
    rows = spectral[spectral.observable.isin(names)].merge(runs[["run", "grid_point"]], on="run")
    grid = sns.relplot(
        rows,
        x="step",
        y="value",
        hue="grid_point",
        col="observable",
        col_wrap=3,
        col_order=names,
        kind="line",
        estimator="median",
        errorbar=BAND,
        facet_kws={"sharey": False},
        height=3,
        aspect=1.3,
    )
    grid.set_titles("{col_name}")
    grid.figure.suptitle(f"{study}: kernel eigen-measures over training (median over seeds)", fontsize=10, y=1.02)
    return grid.figure


def regime_map(runs, spectral, regimes, study):
    """Regime of each grid point over training (most common label over seeds)."""
    table = regimes.merge(runs[["run", "grid_point"]], on="run")
    # Unlabelled checkpoints (non-finite measures) stay blank unless no seed has a label.
    mode = table.groupby(["grid_point", "step"]).regime.agg(
        lambda r: r.value_counts().idxmax() if r.notna().any() else None
    )
    codes = mode.map({"coefficient": 0, "MF": 1, "EF": 2}).unstack("step")
    fig, ax = plt.subplots(figsize=(9, 0.5 + 0.45 * len(codes)))
    cmap = matplotlib.colors.ListedColormap(["#bdbdbd", "#4daf4a", "#984ea3"])
    sns.heatmap(
        codes,
        cmap=cmap,
        vmin=-0.5,
        vmax=2.5,
        ax=ax,
        cbar_kws={"ticks": [0, 1, 2]},
        xticklabels=max(1, codes.shape[1] // 10),
    )
    ax.collections[0].colorbar.set_ticklabels(["coefficient", "MF", "EF"])
    ax.set(xlabel="step", ylabel="grid point")
    ax.set_title(f"{study}: feature-learning regime per checkpoint (most common over seeds)", fontsize=10)
    fig.tight_layout()
    return fig
