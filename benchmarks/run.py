"""featscope benchmarks: each number is a ratio against a baseline measured in the same run.

    .venv/bin/python benchmarks/run.py            # about 2 minutes on 2 CPU cores
    .venv/bin/python benchmarks/run.py --e2e      # + end-to-end default workflow (--cores 2), ~6 more

Prints a table; nothing here is a pass/fail assertion.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BLOG = {
    "task": {"name": "sin2", "d": 10, "f": 10, "n_train": 500, "n_test": 0, "seed": 0},
    "model": {"name": "mlp", "width": 100, "depth": 2, "activation": "relu"},
    "optim": {"name": "adam", "lr": 0.001, "weight_decay": 0.0, "warmup_steps": 0, "batch_size": None},
    "train": {"steps": 2000, "loss": "mse"},
    "schedule": {"every": 10, "log": 40},
    "seed": 0,
}


def child(code: str) -> dict:
    """Run `code` in a fresh process (as a job would), return the JSON it prints + peak RSS."""
    # One BLAS thread, as Snakemake gives a 1-thread job (it sets these for every job).
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return out


PRELUDE = f"""
import json, resource, time, torch
torch.set_num_threads(1)
from featscope.tasks import make_dataset
cfg = {BLOG!r}
data = make_dataset(cfg["task"])
"""


def plain_loop_seconds() -> dict:
    code = PRELUDE + """
x = torch.tensor(data["x_train"]); y = torch.tensor(data["y_train"])
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(10, 100), torch.nn.ReLU(), torch.nn.Linear(100, 100),
                          torch.nn.ReLU(), torch.nn.Linear(100, 1))
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
for step in range(5):  # warm-up: lazy imports and first-call costs are not training
    loss = torch.nn.functional.mse_loss(net(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(10, 100), torch.nn.ReLU(), torch.nn.Linear(100, 100),
                          torch.nn.ReLU(), torch.nn.Linear(100, 1))
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
t = time.perf_counter()
for step in range(cfg["train"]["steps"]):
    loss = torch.nn.functional.mse_loss(net(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
print(json.dumps({"seconds": time.perf_counter() - t,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
    return child(code)


def featscope_train_seconds(path: str) -> dict:
    code = PRELUDE + f"""
from featscope.training import train_one
from featscope.io import save_torch
train_one("warm-up", dict(cfg, train=dict(cfg["train"], steps=5)), data, progress=False)
t = time.perf_counter()
r = train_one("bench", cfg, data, progress=False)
seconds = time.perf_counter() - t
save_torch(r.checkpoints, {path!r})
print(json.dumps({{"seconds": seconds, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
    return child(code)


def packed_seconds(seeds: int) -> dict:
    code = PRELUDE + f"""
from featscope.packed import train_packed
runs = [(f"s{{s}}", dict(cfg, seed=s)) for s in range({seeds})]
train_packed(runs[:2], data)  # warm-up
t = time.perf_counter()
train_packed(runs, data)
print(json.dumps({{"seconds": time.perf_counter() - t}}))
"""
    return child(code)


# FLOPs of one training step of the blog MLP: forward 2·n·(10·100 + 100·100 + 100·1), backward ≈ 2×.
STEP_FLOP = 3 * 2 * 500 * (10 * 100 + 100 * 100 + 100 * 1)


def observe_seconds(family: str, path: str) -> dict:
    code = PRELUDE + f"""
from featscope.observe import observe_run
from featscope.io import load_torch
bundle = load_torch({path!r})
short = dict(bundle, steps=bundle["steps"][:2], params={{k: v[:2] for k, v in bundle["params"].items()}})
observe_run("warm-up", {family!r}, short, data, {{}})
t = time.perf_counter()
frame = observe_run("bench", {family!r}, bundle, data, {{}})
print(json.dumps({{"seconds": time.perf_counter() - t, "rows": len(frame),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
    return child(code)


def dry_run_seconds(runs: int, workdir: Path) -> tuple[float, int]:
    seeds = runs // 100
    config = {"studies": {"big": {
        "task": {"name": "sin2", "d": 3, "f": 2, "n_train": 32},
        "model": {"name": "mlp", "width": 4, "depth": 2},
        "optim": {"name": "adam", "lr": 0.01},
        "train": {"steps": 10, "loss": "mse"},
        "schedule": {"every": 5},
        "observables": {"nonlinearity": {}},
        "grid": {"optim.lr": [round(0.001 * (i + 1), 6) for i in range(100)]},
        "seeds": list(range(seeds)),
    }}}
    (workdir / "config.yaml").write_text(json.dumps(config))
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
                           "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"),
                           "-n", "--quiet", "rules", "--cores", "1"], capture_output=True, text=True)
    seconds = time.perf_counter() - t
    jobs = [line for line in done.stdout.splitlines() if line.startswith("total")]
    return seconds, int(jobs[0].split()[-1]) if jobs else -1


def read_seconds(study_dir: Path) -> tuple[float, int, float]:
    import pandas as pd

    t = time.perf_counter()
    frame = pd.read_parquet(study_dir / "observables")
    seconds = time.perf_counter() - t
    t = time.perf_counter()
    pd.read_parquet(study_dir / "runs.parquet")
    return seconds, len(frame), time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--e2e", action="store_true", help="also time the default workflow end to end")
    parser.add_argument("--study", default="results/nonlinearity", help="study folder to read back")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = str(Path(tmp) / "bench.pt")
        plain = plain_loop_seconds()
        ours = featscope_train_seconds(ckpt)
        steps = BLOG["train"]["steps"]
        rows.append(("training, blog MLP, 1 seed: featscope / plain PyTorch loop (time)",
                     ours["seconds"] / plain["seconds"],
                     f"{steps / ours['seconds']:.0f} vs {steps / plain['seconds']:.0f} steps/s"))
        packed = packed_seconds(16)
        rows.append(("training 16 seeds: packed aggregate steps/s / plain loop steps/s", 16 * plain["seconds"] / packed["seconds"],
                     f"{16 * steps / packed['seconds']:.0f} vs {steps / plain['seconds']:.0f} steps/s; "
                     f"{16 * steps * STEP_FLOP / packed['seconds'] / 1e9:.1f} GFLOP/s"))
        for family in ("nonlinearity", "linreg", "spectral", "weights", "gradients"):
            obs = observe_seconds(family, ckpt)
            rows.append((f"observe {family} / train (time, default schedule)", obs["seconds"] / ours["seconds"],
                         f"{obs['rows']} rows, peak RSS {obs['rss_mb']:.0f} MB"))
        rows.append(("peak RSS of a training job / plain loop", ours["rss_mb"] / plain["rss_mb"],
                     f"{ours['rss_mb']:.0f} MB vs {plain['rss_mb']:.0f} MB"))
        small_dir = Path(tmp) / "dry100"
        small_dir.mkdir()
        big_dir = Path(tmp) / "dry10k"
        big_dir.mkdir()
        small, small_jobs = dry_run_seconds(100, small_dir)
        big, big_jobs = dry_run_seconds(10_000, big_dir)
        rows.append(("snakemake dry run, 10,000 runs / 100 runs (time)", big / small,
                     f"{big:.1f} s vs {small:.1f} s; {big_jobs} vs {small_jobs} jobs"))
    study = REPO / args.study
    if (study / "observables").exists():
        seconds, n, runs_seconds = read_seconds(study)
        rows.append((f"read all observables of {args.study} / read runs.parquet (time)", seconds / runs_seconds,
                     f"{n} rows in {seconds:.2f} s"))
    if args.e2e:
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copytree(REPO / "config", Path(tmp) / "config")
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
                            "--directory", tmp, "--cores", "2", "--quiet"], check=True, capture_output=True)
            e2e = time.perf_counter() - t
        rows.append(("default workflow end to end, --cores 2 / one plain-loop training (time)",
                     e2e / plain["seconds"], f"{e2e:.0f} s"))
    width = max(len(r[0]) for r in rows)
    print(f"{'measure'.ljust(width)}  {'ratio':>8}  detail")
    for name, ratio, detail in rows:
        print(f"{name.ljust(width)}  {ratio:8.2f}  {detail}")
    print(f"\nmachine: {os.cpu_count()} CPUs, torch threads 1 per job, python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
