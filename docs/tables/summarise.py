"""Per grid point, median [IQR] over seeds, from a study's Parquet outputs: the tables of
docs/results-nam.md and docs/results-liu.md.

    python docs/tables/summarise.py spectral RESULTS/STUDY OUT.csv     # Nam et al. measures
    python docs/tables/summarise.py correlations RESULTS/STUDY OUT.csv # measures vs test accuracy
    python docs/tables/summarise.py phases RESULTS/STUDY OUT.csv       # Liu & Zheng phases
    python docs/tables/summarise.py spread RESULTS/STUDY OUT.csv       # their spread: points vs seeds

`spectral` reads runs.parquet, regimes.parquet, metrics/ and observables/family=spectral/ and
reports the last checkpoint of each run: train / test accuracy, effective dimension (of ρ, Q*
and Q̂), Π*(C), Π̂(C) and their ratio (C = classes), D_LR, eigenfunction drift from init, and
how many seeds end in each regime. `phases` reads runs.parquet and phases.parquet.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd


def med_iqr(values) -> str:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return "nan"
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return f"{med:.3g} [{q1:.3g}, {q3:.3g}]"


def _grid(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[["run", "seed", "grid_point"]]


def spectral_per_run(study: Path) -> pd.DataFrame:
    runs = pd.read_parquet(study / "runs.parquet")
    regimes = pd.read_parquet(study / "regimes.parquet")
    metrics = pd.concat(pd.read_parquet(p) for p in sorted((study / "metrics").glob("*.parquet")))
    spec = pd.concat(pd.read_parquet(p) for p in sorted((study / "observables" / "family=spectral").glob("*.parquet")))
    last = spec[spec.step == spec.groupby("run").step.transform("max")]
    classes = runs.set_index("run").outputs.astype(int)
    rows = []
    for run, g in last.groupby("run"):
        c = classes[run]
        scalar = g[g.k.isna()].set_index("observable").value if g.k.isna().any() else pd.Series(dtype=float)
        cum = g[g.observable.isin(["cum_quality", "cum_utility"]) & (g.k == c)].set_index("observable").value
        fin = metrics[metrics.run == run]
        fin = fin[fin.step == fin.step.max()].set_index("split").acc
        steps = regimes[regimes.run == run].sort_values("step")
        reg, init = steps.iloc[-1], steps.iloc[0]
        rows.append(
            {
                "run": run,
                "train_acc": fin.get("train", np.nan),
                "test_acc": fin.get("test", np.nan),
                "effective_dim": reg.effective_dim,
                "effective_dim_quality": scalar.get("effective_dim_quality", np.nan),
                "effective_dim_utility": reg.effective_dim_utility,
                "pi_star_C": cum.get("cum_quality", np.nan),
                "pi_hat_C": cum.get("cum_utility", np.nan),
                "d_lr": reg.d_lr,
                "drift_init": reg.drift_init,
                "regime": reg.regime,
                "effective_dim_at_init": init.effective_dim,
                "d_lr_at_init": init.d_lr,
            }
        )
    per_run = pd.DataFrame(rows)
    per_run["pi_ratio_C"] = per_run.pi_star_C / per_run.pi_hat_C
    return _grid(runs).merge(per_run, on="run")


def spectral_table(study: Path) -> pd.DataFrame:
    per_run = spectral_per_run(study)
    cols = [
        "test_acc",
        "train_acc",
        "effective_dim",
        "effective_dim_quality",
        "effective_dim_utility",
        "pi_star_C",
        "pi_hat_C",
        "pi_ratio_C",
        "d_lr",
        "drift_init",
        "effective_dim_at_init",
        "d_lr_at_init",
    ]
    out = []
    for point, g in per_run.groupby("grid_point", sort=False):
        regimes = g.regime.value_counts()
        row = {"grid_point": point, "seeds": len(g)}
        row |= {c: med_iqr(g[c]) for c in cols}
        row["regimes"] = " ".join(f"{r}:{regimes[r]}" for r in ("coefficient", "MF", "EF") if r in regimes)
        out.append(row)
    return pd.DataFrame(out)


def spectral_correlations(study: Path) -> pd.DataFrame:
    """Across the runs of a study (random-label runs left out: their test accuracy is chance by
    construction): Spearman's rank correlation of test accuracy with each measure, and the
    median test accuracy of the runs ending MF against those ending EF."""
    from scipy import stats

    per_run = spectral_per_run(study)
    clean = per_run[~per_run.grid_point.str.contains("random_labels-true")]
    rows = []
    for col in ("pi_star_C", "pi_hat_C", "pi_ratio_C", "effective_dim", "effective_dim_utility", "d_lr", "drift_init"):
        rho, p = stats.spearmanr(clean.test_acc, clean[col], nan_policy="omit")
        rho, p = round(float(rho), 3), float(f"{p:.3g}")
        rows.append({"measure": col, "runs": len(clean), "spearman_vs_test_acc": rho, "p": p})
    for regime in ("MF", "EF", "coefficient"):
        acc = clean[clean.regime == regime].test_acc
        rows.append({"measure": f"test_acc of {regime} runs", "runs": len(acc), "median": med_iqr(acc)})
    return pd.DataFrame(rows)


def phases_table(study: Path) -> pd.DataFrame:
    runs = pd.read_parquet(study / "runs.parquet")
    phases = pd.read_parquet(study / "phases.parquet")
    per_run = _grid(runs).merge(phases, on="run")
    counts = pd.concat(
        pd.read_parquet(p, filters=[("observable", "==", "nonlinear_neurons")])
        for p in sorted((study / "observables" / "family=nonlinearity").glob("*.parquet"))
    )
    h1 = counts[counts.layer == "h1"].groupby("run").value.min().rename("h1_min_nonlinear")
    h2 = counts[(counts.layer == "h2") & (counts.step == 0)].set_index("run").value.rename("h2_nonlinear_at_init")
    per_run = per_run.merge(h1, on="run").merge(h2, on="run")
    cols = ["phase2_neurons", "t1", "t2", "t3", "phase2_loss", "phase4_rate", "final_neurons"]
    cols += ["h1_min_nonlinear", "h2_nonlinear_at_init"]
    out = []
    for point, g in per_run.groupby("grid_point", sort=False):
        row = {"grid_point": point, "runs": len(g), "seeds": g.seed.nunique()}
        row |= {c: med_iqr(g[c]) for c in cols}
        row["phase2_neurons_mean"] = round(float(g.phase2_neurons.mean()), 2)
        out.append(row)
    return pd.DataFrame(out)


def phases_spread(study: Path) -> pd.DataFrame:
    """How the Phase II count's spread splits between the grid points (e.g. data draws) and the
    seeds within them: one-way ANOVA (F, p), the share of variance between points (η²), and a
    Kruskal-Wallis p-value that assumes no normality."""
    from scipy import stats

    runs = pd.read_parquet(study / "runs.parquet")
    per_run = _grid(runs).merge(pd.read_parquet(study / "phases.parquet"), on="run")
    rows = []
    for col in ("phase2_neurons", "t2", "phase4_rate"):
        groups = [g[col].dropna().to_numpy() for _, g in per_run.groupby("grid_point")]
        groups = [g for g in groups if len(g)]
        values = np.concatenate(groups)
        between = sum(len(g) * (g.mean() - values.mean()) ** 2 for g in groups)
        total = ((values - values.mean()) ** 2).sum()
        f, p = stats.f_oneway(*groups)
        rows.append(
            {
                "measure": col,
                "points": len(groups),
                "runs": len(values),
                "eta2_between_points": round(between / total, 3),
                "anova_F": round(float(f), 3),
                "anova_p": float(f"{p:.3g}"),
                "kruskal_p": float(f"{stats.kruskal(*groups).pvalue:.3g}"),
                "sd_within_points": round(float(np.sqrt(np.mean([g.var(ddof=1) for g in groups]))), 4),
                "sd_of_point_means": round(float(np.std([g.mean() for g in groups], ddof=1)), 4),
            }
        )
    return pd.DataFrame(rows)


if __name__ == "__main__":
    kind, study, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    kinds = {
        "spectral": spectral_table,
        "correlations": spectral_correlations,
        "phases": phases_table,
        "spread": phases_spread,
    }
    table = kinds[kind](study)
    table.to_csv(out, index=False)
    print(table.to_string(index=False))
