"""The D_LR audit (issue 28, item 4): the transformer trained through grokking on (a + b) mod p,
and D_LR's definition variants side by side on the same runs.

    PYTHONPATH=src python benchmarks/dlr_audit.py train --out docs/data/dlr_runs.csv
    PYTHONPATH=src python benchmarks/dlr_audit.py table docs/data/dlr_runs.csv --write docs/data/dlr
    PYTHONPATH=src python benchmarks/dlr_audit.py collapse

``train`` trains each (weight decay, seed) run with a plain full-batch AdamW loop (the split
is drawn per seed, as Tian's reference code does) and, every ``--every`` steps, writes one
long-form row per (layer, samples, variant): the layer Φ is the final residual stream (the
unembedding's input) or the last MLP's hidden layer (its ReLU output, last position); the
samples are the training or the test pairs; the variants are

* ``cka_proj_c``: 1 − CKA(ΦΦᵀ, P), P the projection onto the span of the centred outputs
  (`featscope.observables.spectral.d_lr`'s default);
* ``cka_proj``: 1 − CKA(ΦΦᵀ, P_f̂), P_f̂ onto the span of the raw outputs (main's d_lr
  before this audit, without its a₂ = 0 → 1 rule);
* ``cka_out``: 1 − CKA(ΦΦᵀ, f̂f̂ᵀ), the output kernel;
* ``fit_proj`` / ``fit_out``: uncentred alignment with the non-negative fit a₁·11ᵀ/n + a₂·B,
  B = P_f̂ or f̂f̂ᵀ.

``table`` prints the audit's table: per variant, layer and samples, the median [IQR] over
seeds at memorisation (the first checkpoint with train accuracy ≥ 0.99), at grokking (the
first with test accuracy ≥ 0.95; runs that never reach it are reported at their last step,
and that stage is "end") and at the last step.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

VARIANTS = ("cka_proj_c", "cka_proj", "cka_out", "fit_proj", "fit_out")
FIELDS = [
    "p",
    "frac",
    "wd",
    "seed",
    "step",
    "train_loss",
    "train_acc",
    "test_acc",
    "layer",
    "samples",
    "variant",
    "d_lr",
]


def variants(phi: np.ndarray, out: np.ndarray) -> dict[str, float]:
    """Every D_LR variant of features ``phi`` (n, p) against outputs ``out`` (n, C)."""
    from featscope.observables import spectral as sp

    phi, out = np.asarray(phi, dtype=np.float64), np.asarray(out, dtype=np.float64)
    raw_basis = sp._orthonormal_basis(out)
    return {
        "cka_proj_c": sp.d_lr(phi, out),
        "cka_proj": sp._one_minus_cka(phi - phi.mean(0), raw_basis - raw_basis.mean(0)),
        "cka_out": sp.d_lr(phi, out, kernel="output"),
        "fit_proj": sp.d_lr(phi, out, centred=False),
        "fit_out": sp.d_lr(phi, out, centred=False, kernel="output"),
    }


def train_run(p, frac, wd, seed, steps, every, lr, model_params, writer) -> None:
    import torch

    from featscope.tasks import modadd
    from featscope.transformer import transformer

    data = modadd({"M": p, "train_fraction": frac, "seed": seed})
    x = {s: torch.as_tensor(data[f"x_{s}"]) for s in ("train", "test")}
    y = {s: torch.as_tensor(data[f"y_{s}"]) for s in ("train", "test")}
    torch.manual_seed(seed)
    model = transformer(2, p, **model_params)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd, betas=(0.9, 0.98))
    captured = {}
    hooks = [
        model.resid.register_forward_hook(lambda m, i, o: captured.__setitem__("resid", o.detach())),
        model.blocks[-1].mlp.act.register_forward_hook(lambda m, i, o: captured.__setitem__("mlp", o.detach())),
    ]
    start = time.time()
    for step in range(steps + 1):
        if step % every == 0:
            with torch.no_grad():
                seen = {}
                for s in ("train", "test"):
                    logits = model(x[s])
                    seen[s] = (logits, dict(captured))
                acc = {s: float((seen[s][0].argmax(1) == y[s]).float().mean()) for s in seen}
                loss = float(torch.nn.functional.cross_entropy(seen["train"][0], y["train"]))
            base = dict(p=p, frac=frac, wd=wd, seed=seed, step=step, train_loss=loss)
            base.update(train_acc=acc["train"], test_acc=acc["test"])
            for s, (logits, feats) in seen.items():
                for layer, phi in feats.items():
                    for name, value in variants(phi.numpy(), logits.numpy()).items():
                        writer.writerow({**base, "layer": layer, "samples": s, "variant": name, "d_lr": value})
            print(
                f"p={p} wd={wd} seed={seed} step={step} train={acc['train']:.3f} test={acc['test']:.3f}"
                f" {time.time() - start:.0f}s",
                flush=True,
            )
        if step == steps:
            break
        loss = torch.nn.functional.cross_entropy(model(x["train"]), y["train"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    for h in hooks:
        h.remove()


def stages(run) -> dict[str, int]:
    """Steps of the run's stages: memorised, grokked (or end), last."""
    acc = run.drop_duplicates("step").sort_values("step")
    memo = acc[acc.train_acc >= 0.99].step
    grok = acc[acc.test_acc >= 0.95].step
    last = int(acc.step.max())
    return {
        "memorised": int(memo.min()) if len(memo) else last,
        "grokked": int(grok.min()) if len(grok) else last,
        "last": last,
    }


def table(paths: list[str], write: str | None = None) -> None:
    import pandas as pd

    key = ["wd", "seed", "step", "layer", "samples", "variant"]
    df = pd.concat([pd.read_csv(p) for p in paths if Path(p).stat().st_size]).drop_duplicates(key)
    # A run stopped mid-checkpoint leaves a partial one: keep whole checkpoints only.
    size = df.groupby(["wd", "seed", "step"]).d_lr.transform("size")
    df = df[size == size.max()]
    rows = []
    for (wd, seed), run in df.groupby(["wd", "seed"]):
        st = stages(run)
        for stage, step in st.items():
            at = run[run.step == step]
            for key, g in at.groupby(["variant", "layer", "samples"]):
                rows.append(
                    dict(
                        zip(["variant", "layer", "samples"], key),
                        wd=wd,
                        seed=seed,
                        stage=stage,
                        step=step,
                        test_acc=g.test_acc.iloc[0],
                        d_lr=g.d_lr.iloc[0],
                    )
                )
    long = pd.DataFrame(rows)

    def fmt(v):
        q = np.percentile(v, [25, 50, 75])
        return f"{q[1]:.3f} [{q[0]:.3f}, {q[2]:.3f}]"

    steps = long.groupby(["wd", "stage"]).agg(step=("step", fmt), test_acc=("test_acc", fmt))
    print("stage steps and test accuracy, median [IQR] over seeds")
    print(steps.to_markdown())
    wide = long.groupby(["variant", "layer", "samples", "wd", "stage"]).d_lr.apply(fmt).unstack(["wd", "stage"])
    print()
    print(wide.to_markdown())
    acc = df.drop_duplicates(["wd", "seed", "step"])[
        ["p", "frac", "wd", "seed", "step", "train_loss", "train_acc", "test_acc"]
    ]
    grid = acc[acc.step % 250 == 0].groupby(["wd", "step"])[["train_acc", "test_acc"]].agg(fmt).unstack("wd")
    print()
    print("accuracy over steps, median [IQR] over seeds")
    print(grid.to_markdown())
    if write:
        out = Path(write)
        out.mkdir(parents=True, exist_ok=True)
        acc.to_csv(out / "accuracy.csv", index=False, float_format="%.6g")
        long.to_csv(out / "stages.csv", index=False, float_format="%.6g")
        # The variants' trajectories every 250 steps (the full table is every 50 steps).
        df[df.step % 250 == 0].drop(columns=["p", "frac"]).to_csv(
            out / "trajectories.csv", index=False, float_format="%.6g"
        )


def collapse(classes: int = 10, per_class: int = 20, width: int = 64) -> None:
    """The variants on constructed features: neural collapse (features on their class means,
    the centred means a simplex ETF) with the ETF at the origin or off it, then within-class
    spread, means of unequal spread, and NC3 (the readout equal to the class means). The
    readout is random with a bias unless NC3; rows are printed as a markdown table."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(classes), per_class)
    onehot = np.eye(classes)[labels]
    rot, _ = np.linalg.qr(rng.standard_normal((width, width)))
    etf = np.hstack([np.eye(classes) - 1 / classes, np.zeros((classes, width - classes))]) @ rot
    unequal = etf * np.linspace(0.5, 2.0, classes)[:, None]
    unequal -= unequal.mean(0)
    within = rng.standard_normal((len(labels), width))
    within -= onehot @ (onehot.T @ within) / per_class
    within *= np.linalg.norm(etf[labels]) / np.linalg.norm(within)  # spread 1 = as large as the means'
    offset = 3 * rng.standard_normal(width) / np.sqrt(width)
    readout, bias = rng.standard_normal((width, classes)), rng.standard_normal(classes)
    cases = {
        "NC1+NC2, ETF at the origin": etf[labels],
        "NC1+NC2, ETF off the origin": etf[labels] + offset,
        "NC1+NC2, off the origin, within-class spread 0.1": etf[labels] + offset + 0.1 * within,
        "NC1+NC2, off the origin, within-class spread 1": etf[labels] + offset + within,
        "NC1 only (means of unequal spread)": unequal[labels] + offset,
    }
    print("| features | readout | " + " | ".join(VARIANTS) + " |")
    print("|---|---|" + "---|" * len(VARIANTS))
    for name, phi in cases.items():
        values = variants(phi, phi @ readout + bias)
        print(f"| {name} | random, bias | " + " | ".join(f"{values[v]:.4f}" for v in VARIANTS) + " |")
    phi = etf[labels] + offset
    means = onehot.T @ phi / per_class
    values = variants(phi, phi @ (means - means.mean(0)).T)
    print(
        "| NC1+NC2, off the origin | NC3: the centred class means | "
        + " | ".join(f"{values[v]:.4f}" for v in VARIANTS)
        + " |"
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--out", required=True)
    t.add_argument("--p", type=int, default=31)
    t.add_argument("--frac", type=float, default=0.4)
    t.add_argument("--wd", type=float, nargs="+", default=[1.0, 0.0])
    t.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    t.add_argument("--steps", type=int, default=5000)
    t.add_argument("--every", type=int, default=100)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--d-model", type=int, default=128)
    t.add_argument("--d-mlp", type=int, default=512)
    t.add_argument("--heads", type=int, default=4)
    t.add_argument("--layers", type=int, default=1)
    sub.add_parser("collapse")
    s = sub.add_parser("table")
    s.add_argument("csv", nargs="+", help="the train command's CSVs (runs split over processes)")
    s.add_argument("--write", help="a folder for the small CSVs: accuracy, stages and trajectories")
    args = parser.parse_args(argv)
    if args.command == "collapse":
        collapse()
        return
    if args.command == "table":
        table(args.csv, args.write)
        return
    import torch

    torch.set_num_threads(1)
    params = dict(d_model=args.d_model, d_mlp=args.d_mlp, n_heads=args.heads, n_layers=args.layers)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, FIELDS)
        writer.writeheader()
        for wd in args.wd:
            for seed in args.seeds:
                train_run(args.p, args.frac, wd, seed, args.steps, args.every, args.lr, params, writer)
                fh.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
