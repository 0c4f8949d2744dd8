"""The tables of docs/results-tian.md, from a results folder made by

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

OUT = Path(__file__).resolve().parent
C_REFERENCE = 2.7482  # luckmatters cogo/config/dyn_madd.yaml: critical_ratio_multiplier


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


def scaling_tables(studies: dict) -> dict:
    rows, fits = [], []
    for width, study in studies.items():
        sc = pd.read_parquet(study / "scaling.parquet")
        for m, g in sc.groupby("M"):
            rates = " ".join(f"{f:.3f}:{r:.1f}" for f, r in zip(g.train_fraction, g.generalisation_rate))
            n = g.n_crit.iloc[0]
            rows.append(
                {
                    "K": width,
                    "M": m,
                    "seeds": int(g.seeds.iloc[0]),
                    "fraction:generalisation rate": rates,
                    "critical fraction": round(g.critical_fraction.iloc[0], 4),
                    "n_crit": round(n, 1),
                    "n_crit / (M ln M)": round(n / (m * np.log(m)), 3),
                }
            )
        fit = {"K": width, "c": round(sc.c.iloc[0], 3), "R²": round(sc.r2.iloc[0], 3)}
        fits.append({**fit, "reference c": C_REFERENCE})
    return {"scaling_per_M": pd.DataFrame(rows), "scaling_fit": pd.DataFrame(fits)}


def main(results: str) -> None:
    root = Path(results)
    tables = {}
    if (root / "grokking-fig3" / "stages.parquet").exists():
        tables.update(fig3_tables(root / "grokking-fig3"))
    studies = {}
    for name in ("grokking-scaling-full", "grokking-scaling-k128"):
        path = root / name
        if (path / "scaling.parquet").exists():
            studies[int(pd.read_parquet(path / "runs.parquet")["model.width"].iloc[0])] = path
    if studies:
        tables.update(scaling_tables(studies))
    for name, table in tables.items():
        table.to_csv(OUT / f"{name}.csv", index=False)
        print(f"\n### {name}\n")
        print(table.to_markdown(index=False))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results")
