"""The tables of docs/results.md (Tian), from a results folder made by

    snakemake --cores 1 --configfile config/grokking.yaml --config results=<R> <targets>

    python docs/tian/tables.py <R>        # writes docs/tian/*.csv, prints Markdown

Medians [interquartile range] are over seeds; a stage's signal is first averaged over the
run's checkpoints in that stage, then summarised over seeds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from featscope import stages

OUT = Path(__file__).resolve().parent
C_REFERENCE = 2.7482  # luckmatters cogo/config/dyn_madd.yaml: critical_ratio_multiplier
SCALING_STUDIES = ("grokking-scaling-71", "grokking-scaling-71-k128", "grokking-scaling-71-long")


def miqr(values) -> str:
    v = pd.Series(values, dtype=float).dropna()
    if not len(v):
        return "–"
    q1, q2, q3 = np.percentile(v, [25, 50, 75])
    fmt = (lambda x: f"{x:.3g}") if max(abs(q1), abs(q3)) < 1000 else (lambda x: f"{x:.0f}")
    return f"{fmt(q2)} [{fmt(q1)}, {fmt(q3)}]" + ("" if len(v) > 1 else " (1 run)")


def wd_of(runs: pd.DataFrame) -> dict:
    return dict(zip(runs.run, runs["optim.weight_decay"]))


def fig3_tables(study: Path) -> dict:
    runs = pd.read_parquet(study / "runs.parquet")
    wd = wd_of(runs)
    grok = pd.read_parquet(study / "grokking.parquet")
    grok["weight_decay"] = grok.run.map(wd)
    rows = []
    for w, g in grok.groupby("weight_decay", sort=False):
        rows.append(
            {
                "weight_decay": w,
                "seeds": len(g),
                "generalised": int(g.generalised.sum()),
                "step train acc >= 0.99": miqr(g.step_train_fit),
                "step test acc >= 0.95": miqr(g.step_test_fit),
                "delay (steps)": miqr(g.delay_steps),
                "final train acc": miqr(g.final_train_acc),
                "final test acc": miqr(g.final_test_acc),
            }
        )
    grokking = pd.DataFrame(rows)

    stages = pd.read_parquet(study / "stages.parquet")
    obs = []
    for family in ("weights", "gradients"):
        frame = pd.read_parquet(study / "observables" / f"family={family}")
        obs.append(frame[["run", "step", "observable", "layer", "value"]])
    obs = pd.concat(obs)
    obs["layer"] = obs.layer.astype(object).where(obs.layer.notna(), "all")
    wanted = {
        ("weight_norm", "h1"): "‖W‖ h1",
        ("grad_cosine_neurons", "h1"): "gradient cosine h1",
        ("update_cosine", "all"): "update cosine",
        ("hidden_grad_norm", "h1"): "‖G_F‖ h1",
        ("fourier_frequencies", "h1"): "frequencies h1",
    }
    obs = obs[[(o, layer) in wanted for o, layer in zip(obs.observable, obs.layer)]]
    obs = obs.assign(signal=[wanted[(o, layer)] for o, layer in zip(obs.observable, obs.layer)])
    wide = obs.pivot_table(index=["run", "step"], columns="signal", values="value").reset_index()
    table = stages.merge(wide, on=["run", "step"], how="left")
    table["weight_decay"] = table.run.map(wd)
    signals = [
        "h1_delta_rate",
        "‖W‖ h1",
        "gradient cosine h1",
        "update cosine",
        "‖G_F‖ h1",
        "grad_norm",
        "frequencies h1",
    ]
    per_run = table.groupby(["weight_decay", "stage", "run"], sort=False)[signals].mean().reset_index()
    first = table.groupby(["weight_decay", "stage", "run"], sort=False).step.min().rename("first step").reset_index()
    per_run = per_run.merge(first, on=["weight_decay", "stage", "run"])
    rows = []
    for (w, stage), g in per_run.groupby(["weight_decay", "stage"], sort=False):
        rows.append(
            {
                "weight_decay": w,
                "stage": stage,
                "runs": len(g),
                "checkpoints": int(((table.weight_decay == w) & (table.stage == stage)).sum()),
                "first step": miqr(g["first step"]),
                **{s: miqr(g[s]) for s in signals},
            }
        )
    stage_signals = pd.DataFrame(rows)
    # The lazy-stage signal on its own: each run's h1 change per step over its first steps.
    early = table[table.step <= 10].groupby(["weight_decay", "run"]).h1_delta_rate.max().reset_index()
    lazy = pd.DataFrame(
        [
            {"weight_decay": w, "max h1 Δ‖W‖/‖W‖ per step, steps ≤ 10": miqr(g.h1_delta_rate)}
            for w, g in early.groupby("weight_decay", sort=False)
        ]
    )
    return {"fig3_grokking": grokking, "fig3_stage_signals": stage_signals, "fig3_lazy": lazy}


def _outcomes(runs: pd.DataFrame, grok: pd.DataFrame) -> pd.DataFrame:
    """One row per run: M, ratio n / (M ln M), seed, and whether it generalised."""
    cols = {"task.M": "M", "task.train_ratio": "ratio"}
    return runs[["run", *cols, "seed"]].rename(columns=cols).merge(grok[["run", "generalised"]], on="run")


def _critical_ratios(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Per M: the generalisation rate per ratio, the critical size (`stages.critical_fraction`,
    the workflow's rule) as n_crit and as a ratio n_crit / (M ln M), and whether the grid brackets
    it ("below": the lowest ratio's rate already reaches 1/2, so the value is the grid's lowest
    ratio, an upper bound; "above": no ratio reaches 1/2)."""
    rows = []
    for m, g in outcomes.groupby("M"):
        rate = g.groupby("ratio").generalised.agg(["mean", "size"]).reset_index().sort_values("ratio")
        fractions = (rate.ratio * np.log(m) / m).clip(0, 1)
        fraction = stages.critical_fraction(fractions, rate["mean"])
        below = rate["mean"].iloc[0] >= 0.5
        bracket = "below" if below else "above" if not np.isfinite(fraction) else "yes"
        if below:  # the workflow leaves this M out (NaN); the table shows the bound
            fraction = fractions.iloc[0]
        reached = np.flatnonzero(rate["mean"].to_numpy() >= 0.5)
        rows.append(
            {
                "M": m,
                "seeds": int(rate["size"].min()),
                "ratio:rate": " ".join(f"{r:g}:{x:.1f}" for r, x in zip(rate.ratio, rate["mean"])),
                "n_crit": fraction * m * m,
                "critical ratio": fraction * m / np.log(m),
                # the grid ratios around it: the last below half and the first at or above
                "ratio low": rate.ratio.iloc[reached[0] - 1] if bracket == "yes" else np.nan,
                "ratio high": rate.ratio.iloc[reached[0]] if bracket == "yes" else np.nan,
                "bracketed": bracket,
            }
        )
    return pd.DataFrame(rows)


def _fit(per_m: pd.DataFrame) -> tuple[float, float, list]:
    """c and R² of n_crit = c · M ln M over the M whose critical size the grid brackets."""
    ok = per_m[per_m.bracketed == "yes"]
    c, r2 = stages.fit_m_log_m(ok.M, ok.n_crit)
    return c, r2, [int(m) for m in ok.M]


def _grid_bounds(per_m: pd.DataFrame) -> tuple[float, float]:
    """c fitted on each bracketed M's neighbouring grid ratios below and above its critical
    size: the range the ratio grid alone allows, whatever the interpolation."""
    ok = per_m[per_m.bracketed == "yes"]
    g = ok.M * np.log(ok.M)
    return tuple(stages.fit_m_log_m(ok.M, ok[col] * g)[0] for col in ("ratio low", "ratio high"))


def _exponent(per_m: pd.DataFrame) -> float:
    """b in n_crit ∝ (M ln M)^b, least squares on logs over the bracketed M (1 if the law holds)."""
    ok = per_m[per_m.bracketed == "yes"]
    if len(ok) < 2:
        return np.nan
    return float(np.polyfit(np.log(ok.M * np.log(ok.M)), np.log(ok.n_crit), 1)[0])


def _bootstrap_c(outcomes: pd.DataFrame, draws: int, seed: int = 0) -> np.ndarray:
    """c refitted on seeds drawn with replacement within each M (one draw of seeds per M, shared
    by its ratios: a seed's runs at one M differ only in the training-set size)."""
    rng = np.random.default_rng(seed)
    groups = {key: g for key, g in outcomes.groupby(["M", "seed"])}
    moduli, seeds = sorted(outcomes.M.unique()), sorted(outcomes.seed.unique())
    cs = []
    for _ in range(draws):
        sample = pd.concat(groups[(m, s)] for m in moduli for s in rng.choice(seeds, len(seeds)))
        cs.append(_fit(_critical_ratios(sample))[0])
    return np.asarray(cs)


def scaling_tables(studies: dict, reads: int = 4, draws: int = 200) -> dict:
    """Per study (name: folder) and training length t (`reads` evenly spaced lengths up to the
    study's): each M's critical ratio and the fit of n_crit = c · M ln M, read from the same
    runs' test accuracy at step t (full batch, constant lr: a run's first t steps are the t-step
    run). At the last t the fit is checked against the workflow's own scaling.parquet (which,
    like this table, leaves out an M the grid does not bracket)."""
    per_m, fits, times = [], [], []
    for name, study in studies.items():
        runs = pd.read_parquet(study / "runs.parquet")
        width = int(runs["model.width"].iloc[0])
        metrics = pd.concat(pd.read_parquet(f) for f in sorted((study / "metrics").glob("*.parquet")))
        metrics = metrics[metrics.run.isin(runs.run)]
        steps = int(runs["train.steps"].max())
        times.append(_grokking_steps(runs, stages.grokking_table(metrics)).assign(study=name, K=width))
        for t in [steps * (i + 1) // reads for i in range(reads)]:
            outcomes = _outcomes(runs, stages.grokking_table(metrics[metrics.step <= t]))
            table = _critical_ratios(outcomes)
            c, r2, used = _fit(table)
            if t == steps and np.isfinite(c):
                flow = pd.read_parquet(study / "scaling.parquet")
                if not np.isclose(flow.c.iloc[0], c):
                    raise RuntimeError(f"{study}: c = {c} here, {flow.c.iloc[0]} in scaling.parquet")
            boot = _bootstrap_c(outcomes, draws) if np.isfinite(c) else np.array([])
            per_m.append(table.assign(study=name, K=width, steps=t))
            if len(used) < 2:  # one M (the long study): no fit
                continue
            fits.append(
                {
                    "study": name,
                    "K": width,
                    "steps": t,
                    "M fitted": " ".join(map(str, used)),
                    "c": round(c, 3),
                    "c, seeds resampled": miqr(boot[np.isfinite(boot)]),
                    "c from the grid ratios around each critical one": "–".join(
                        f"{b:.3g}" for b in _grid_bounds(table)
                    ),
                    "R²": round(r2, 3),
                    "b in n_crit ∝ (M ln M)^b": round(_exponent(table), 3),
                    "reference c": C_REFERENCE,
                    "c / reference": round(c / C_REFERENCE, 3),
                }
            )
    columns = ["study", "K", "steps", "M", "seeds", "ratio:rate", "critical ratio", "ratio low", "ratio high"]
    per_m = pd.concat(per_m)[[*columns, "bracketed", "n_crit"]]
    per_m["critical ratio"] = per_m["critical ratio"].round(3)
    per_m["n_crit"] = per_m.n_crit.round(1)
    top = per_m["ratio:rate"].str.split().str[-1].str.split(":").str[0]
    per_m["shown"] = [
        f"{x:.3g}" if b == "yes" else f"≤ {x:.3g}" if b == "below" else f"> {t}"
        for x, b, t in zip(per_m["critical ratio"], per_m.bracketed, top)
    ]
    wide = per_m.pivot(index=["study", "K", "M"], columns="steps", values="shown")
    per_m = per_m.drop(columns="shown")
    wide.columns = [f"{c} steps" for c in wide.columns]
    times = pd.concat(times)
    times = times[["study", "K", *[c for c in times.columns if c not in ("study", "K")]]]
    return {
        "scaling_per_M": per_m,
        "scaling_fit": pd.DataFrame(fits),
        "scaling_critical_ratio": wide.reset_index(),
        "scaling_grokking_step": times,
    }


def _grokking_steps(runs: pd.DataFrame, grok: pd.DataFrame) -> pd.DataFrame:
    """Per M and ratio: the step at which test accuracy first reaches 0.95, median [IQR] over
    the seeds that reach it within the run, and how many of them do."""
    table = runs[["run", "task.M", "task.train_ratio"]].merge(grok, on="run")
    cell = {
        (m, r): f"{miqr(g.step_test_fit)} {int(g.step_test_fit.notna().sum())}/{len(g)}"
        for (m, r), g in table.groupby(["task.M", "task.train_ratio"])
    }
    frame = pd.Series(cell).unstack()
    frame.index.name = "M"
    frame.columns = [f"ratio {r:g}" for r in frame.columns]
    return frame.reset_index()


def main(results: str) -> None:
    root = Path(results)
    tables = {}
    if (root / "grokking-fig3" / "stages.parquet").exists():
        tables.update(fig3_tables(root / "grokking-fig3"))
    studies = {}
    for name in SCALING_STUDIES:
        path = root / name
        if (path / "scaling.parquet").exists():
            studies[name] = path
    if studies:
        tables.update(scaling_tables(studies))
    for name, table in tables.items():
        table.to_csv(OUT / f"{name}.csv", index=False)
        print(f"\n### {name}\n")
        print(table.to_markdown(index=False))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results")
