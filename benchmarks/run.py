"""featscope benchmarks: each number is a ratio against a baseline measured in the same run.

    .venv/bin/python benchmarks/run.py            # training, observing, dry runs and reading back
    .venv/bin/python benchmarks/run.py --e2e      # + end-to-end default workflow (--cores 2)
    .venv/bin/python benchmarks/run.py --wide     # + observing a wide grokking net; both: 9 min 43 s (Intel Xeon,
                                                  # AVX-512, `time`, version 833a066)
    .venv/bin/python benchmarks/run.py --fig3     # only: one grokking-fig3 run at full length, observed two ways
    .venv/bin/python benchmarks/run.py --tian     # only: Tian at paper scale (benchmarks/tian_scale.py)

Prints a table; nothing here is a pass/fail assertion. Training and observe times are the
fastest of three fresh processes each (plain loop and featscope alike): this machine's
timings swing from one process to the next. The observe job against its training job is
the median of JOB_PAIRS alternating pairs (see `job_rows`).
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


def study_families() -> dict:
    """The observable families of the default config's nonlinearity study (the BLOG run above),
    with the schedules it gives them."""
    return yaml_config("config.yaml")["studies"]["nonlinearity"]["observables"]


EVERY_CHECKPOINT = {"nonlinearity": {}, "linreg": {}, "spectral": {"top": 10}}  # no family schedules

REPEATS = 3  # training and observe timings: the fastest of this many fresh processes (see `fastest`)


def fastest(measure, *args) -> dict:
    """The fastest of REPEATS runs of `measure`. The plain loop at two threads ran either at
    about 850 or about 1,200 steps/s from one process to the next on this machine; one
    sample of each side made the packed ratio swing with it (2.3 vs 3.1 in two runs)."""
    return min((measure(*args) for _ in range(REPEATS)), key=lambda out: out["seconds"])


def child(code: str, threads: int = 1) -> dict:
    """Run `code` in a fresh process (as a job would), return the JSON it prints."""
    # One BLAS thread, as Snakemake gives a 1-thread job (it sets these for every job).
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(threads),
        OPENBLAS_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        BENCH_THREADS=str(threads),
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def side_by_side(codes: list[str]) -> dict:
    """Run each of `codes` in a fresh 1-thread process, all at once, as `snakemake --cores 2`
    runs two 1-thread jobs; each waits at `ready()` until all are warmed up, so they train
    together. Returns the slowest one's output."""
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        BENCH_THREADS="1",
        BENCH_SIDE_BY_SIDE="1",
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        for code in codes
    ]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready"
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outs = [json.loads(proc.communicate()[0].strip().splitlines()[-1]) for proc in procs]
    if any(proc.returncode for proc in procs):
        raise RuntimeError("a side-by-side benchmark process failed")
    return max(outs, key=lambda out: out["seconds"])


PRELUDE = f"""
import json, os, resource, sys, time, torch
torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
from featscope.tasks import make_dataset
cfg = {BLOG!r}
data = make_dataset(cfg["task"])
def ready():  # side by side: start timing only when every process is warmed up
    if os.environ.get("BENCH_SIDE_BY_SIDE"):
        print("ready", flush=True)
        sys.stdin.readline()
"""


def plain_loop_code(fused: bool = False) -> str:
    """torch.optim.Adam as a plain loop has it (on a CPU, one update per tensor), or fused."""
    return (
        PRELUDE
        + f"FUSED = {fused or None!r}"
        + """
x = torch.tensor(data["x_train"]); y = torch.tensor(data["y_train"])
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(10, 100), torch.nn.ReLU(), torch.nn.Linear(100, 100),
                          torch.nn.ReLU(), torch.nn.Linear(100, 1))
opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=FUSED)
for step in range(5):  # warm-up: lazy imports and first-call costs are not training
    loss = torch.nn.functional.mse_loss(net(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(10, 100), torch.nn.ReLU(), torch.nn.Linear(100, 100),
                          torch.nn.ReLU(), torch.nn.Linear(100, 1))
opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=FUSED)
ready()
t = time.perf_counter()
for step in range(cfg["train"]["steps"]):
    loss = torch.nn.functional.mse_loss(net(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
print(json.dumps({"seconds": time.perf_counter() - t,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
    )


def plain_loop_seconds(threads: int = 1, fused: bool = False) -> dict:
    return child(plain_loop_code(fused), threads)


def featscope_train_seconds(path: str) -> dict:
    code = (
        PRELUDE
        + f"""
from featscope.training import train_one
from featscope.io import save_torch
train_one("warm-up", dict(cfg, train=dict(cfg["train"], steps=5)), data, progress=False)
t = time.perf_counter()
r = train_one("bench", cfg, data, progress=False)
seconds = time.perf_counter() - t
save_torch(r.checkpoints, {path!r})
print(json.dumps({{"seconds": seconds, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
    )
    return child(code)


def packed_code(seeds: int) -> str:
    return (
        PRELUDE
        + f"""
from featscope.packed import iter_train_packed, train_packed
runs = [(f"s{{s}}", dict(cfg, seed=s)) for s in range({seeds})]
train_packed([(r, dict(c, train=dict(c["train"], steps=5))) for r, c in runs], data)  # warm-up
ready()
t = time.perf_counter()
for result in iter_train_packed(runs, data):  # as a training job: one run in memory at a time
    del result
print(json.dumps({{"seconds": time.perf_counter() - t,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
    )


def packed_seconds(seeds: int, threads: int = 1) -> dict:
    return child(packed_code(seeds), threads)


def lone_run_seconds() -> dict:
    """A single packable run as the workflow's `train` rule trains it (one thread: a pack of one)."""
    code = (
        PRELUDE
        + """
from featscope.packed import train_alone_packed
train_alone_packed("warm-up", dict(cfg, train=dict(cfg["train"], steps=5)), data)
t = time.perf_counter()
train_alone_packed("bench", cfg, data)
print(json.dumps({"seconds": time.perf_counter() - t}))
"""
    )
    return child(code)


def matmul_rates(threads: int) -> dict:
    """GFLOP/s of float32 products: a large square one (the machine's peak) and the
    batched product of a 16-run pack's hidden layer (500 x 100 @ 100 x 100 per run)."""
    code = (
        PRELUDE
        + """
def rate(f, flop, k=50):
    for _ in range(5): f()
    t = time.perf_counter()
    for _ in range(k): f()
    return flop * k / (time.perf_counter() - t) / 1e9
a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
h, w = torch.randn(16, 500, 100), torch.randn(16, 100, 100)
# The eight products of one plain-loop step (forward 3, backward 5: no gradient for x).
shapes = [((500, 10), (10, 100)), ((500, 100), (100, 100)), ((500, 100), (100, 1)),
          ((1, 500), (500, 100)), ((500, 1), (1, 100)), ((100, 500), (500, 100)),
          ((500, 100), (100, 100)), ((100, 500), (500, 10))]
pairs = [(torch.randn(*s), torch.randn(*t)) for s, t in shapes]
def step_products():
    for p, q in pairs:
        p @ q
for _ in range(20): step_products()
t = time.perf_counter()
for _ in range(500): step_products()
step_products_s = (time.perf_counter() - t) / 500
print(json.dumps({"peak": rate(lambda: a @ b, 2 * 1024 ** 3),
                  "pack": rate(lambda: torch.bmm(h, w), 2 * 16 * 500 * 100 * 100, 400),
                  "step_products_s": step_products_s}))
"""
    )
    return child(code, threads)


# FLOPs of one training step of the blog MLP: forward 2·n·(10·100 + 100·100 + 100·1), backward ≈ 2×.
STEP_FLOP = 3 * 2 * 500 * (10 * 100 + 100 * 100 + 100 * 1)


def observe_seconds(families, path: str) -> dict:
    """All `families` (names, or name -> params) of one run in one pass (shared features),
    as an observe job does."""
    families = families if isinstance(families, dict) else {f: {} for f in families}
    code = (
        PRELUDE
        + f"""
from featscope.observe import observe_families
from featscope.io import load_torch
bundle = load_torch({path!r})
families = {families!r}
short = dict(bundle, steps=bundle["steps"][:2], params={{k: v[:2] for k, v in bundle["params"].items()}})
observe_families("warm-up", families, short, data)
t = time.perf_counter()
frames = observe_families("bench", families, bundle, data)
print(json.dumps({{"seconds": time.perf_counter() - t, "rows": sum(map(len, frames.values())),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
    )
    return child(code)


def dry_run_seconds(runs: int, workdir: Path) -> tuple[float, int]:
    seeds = runs // 100
    config = {
        "studies": {
            "big": {
                "task": {"name": "sin2", "d": 3, "f": 2, "n_train": 32},
                "model": {"name": "mlp", "width": 4, "depth": 2},
                "optim": {"name": "adam", "lr": 0.01},
                "train": {"steps": 10, "loss": "mse"},
                "schedule": {"every": 5},
                "observables": {"nonlinearity": {}},
                "grid": {"optim.lr": [round(0.001 * (i + 1), 6) for i in range(100)]},
                "seeds": list(range(seeds)),
            }
        }
    }
    (workdir / "config.yaml").write_text(json.dumps(config))
    t = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(workdir),
            "--configfile",
            str(workdir / "config.yaml"),
            "-n",
            "--quiet",
            "rules",
            "--cores",
            "1",
        ],
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - t
    if done.returncode != 0:
        raise RuntimeError(f"dry run failed:\n{done.stderr[-3000:]}")
    jobs = [line for line in done.stdout.splitlines() if line.startswith("total")]
    return seconds, int(jobs[0].split()[-1]) if jobs else -1


def mark_done(workdir: Path) -> None:
    """Make every output of the dry-run study exist, each newer than its inputs, as after a
    finished run (the planning dry run left the stamps that name the runs and datasets)."""
    results = workdir / "results"
    study = results / "big"
    now = time.time()

    def touch(path: Path, age: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        os.utime(path, (now - age, now - age))

    for stamp in [*(study / ".plan").glob("*.json"), *(results / "data" / ".plan").glob("*.json")]:
        os.utime(stamp, (now - 100, now - 100))
    for stamp in (results / "data" / ".plan").glob("*.json"):
        touch(results / "data" / f"{stamp.stem}.npz", 80)
    for stamp in (study / ".plan").glob("*.json"):
        if stamp.name.startswith("family="):
            continue
        run = stamp.stem
        for path in (
            study / "checkpoints" / f"{run}.pt",
            study / "checkpoints" / f"{run}.json",
            study / "metrics" / f"{run}.parquet",
        ):
            touch(path, 60)
        touch(study / "observables" / "family=nonlinearity" / f"{run}.parquet", 40)
    touch(study / "runs.parquet", 20)


def read_seconds(study_dir: Path) -> tuple[float, int, float]:
    import pandas as pd

    t = time.perf_counter()
    frame = pd.read_parquet(study_dir / "observables")
    seconds = time.perf_counter() - t
    t = time.perf_counter()
    pd.read_parquet(study_dir / "runs.parquet")
    return seconds, len(frame), time.perf_counter() - t


def training_rows(ckpt: str) -> tuple[list, dict]:
    steps = BLOG["train"]["steps"]
    plain = fastest(plain_loop_seconds)
    ours = fastest(featscope_train_seconds, ckpt)
    lone = fastest(lone_run_seconds)
    plain_fused = fastest(plain_loop_seconds, 1, True)
    rows = [
        (
            "training, blog MLP, 1 seed: train_one / plain PyTorch loop (time)",
            ours["seconds"] / plain["seconds"],
            f"{steps / ours['seconds']:.0f} vs {steps / plain['seconds']:.0f} steps/s",
        ),
        (
            "  the plain loop with torch.optim.Adam(fused=True), as featscope's optimisers / plain loop (time)",
            plain_fused["seconds"] / plain["seconds"],
            f"{steps / plain_fused['seconds']:.0f} steps/s",
        ),
        (
            "training, a lone run as the workflow trains it (a pack of one) / plain loop (time)",
            lone["seconds"] / plain["seconds"],
            "only runs that find no pack-mate",
        ),
    ]
    bases, packs = {}, {}
    for threads in (1, 2):
        base = bases[threads] = plain if threads == 1 else fastest(plain_loop_seconds, threads)
        packed = packs[threads] = fastest(packed_seconds, 16, threads)
        rates = matmul_rates(threads)
        flops = 16 * steps * STEP_FLOP / packed["seconds"] / 1e9
        rows.append(
            (
                f"training 16 seeds packed, {threads} thread(s): aggregate steps/s / plain loop's",
                16 * base["seconds"] / packed["seconds"],
                f"{16 * steps / packed['seconds']:.0f} vs {steps / base['seconds']:.0f} steps/s; "
                f"{flops:.1f} GFLOP/s = {flops / rates['peak']:.0%} of a 1024² matmul's "
                f"{rates['peak']:.0f}, {flops / rates['pack']:.0%} of the pack's own bmm "
                f"({rates['pack']:.0f})",
            )
        )
        step_s = base["seconds"] / steps
        rows.append(
            (
                f"  matrix products in a plain-loop step, {threads} thread(s) / the step (time)",
                rates["step_products_s"] / step_s,
                f"{rates['step_products_s'] * 1e6:.0f} of {step_s * 1e6:.0f} µs; packing removes the "
                f"rest: at most {step_s / rates['step_products_s']:.1f}× if batched products ran no faster",
            )
        )
        if threads == 1:
            rows.append(
                (
                    "peak RSS of a 16-run training job / plain loop",
                    packed["rss_mb"] / plain["rss_mb"],
                    f"{packed['rss_mb']:.0f} MB vs {plain['rss_mb']:.0f} MB",
                )
            )
            share = packed["seconds"] / 16
    rows += side_by_side_rows(bases[2], packs, rates["peak"])
    return rows, {"plain": plain, "ours": ours, "pack_share_seconds": share}


def side_by_side_rows(plain2: dict, packs: dict, peak2: float) -> list:
    """16 seeds as a local `snakemake --cores 2` trains them: in the parts the workflow's plan
    cuts the study's pack into (`featscope.plan.spread`), one 1-thread job each, side by side."""
    from featscope.plan import Pack, spread

    steps = BLOG["train"]["steps"]
    parts = [len(p.members) for p in spread([Pack("bench", "bench", [f"s{i}" for i in range(16)])], 2)]
    pair = fastest(side_by_side, [packed_code(n) for n in parts])
    plain_pair = fastest(side_by_side, [plain_loop_code()] * 2)
    flops = 16 * steps * STEP_FLOP / pair["seconds"] / 1e9
    return [
        (
            f"training 16 seeds as snakemake --cores 2 does: packs of {' + '.join(map(str, parts))} runs side by "
            "side, 1 thread each / plain loop on 2 threads (aggregate steps/s)",
            16 * plain2["seconds"] / pair["seconds"],
            f"{16 * steps / pair['seconds']:.0f} vs {steps / plain2['seconds']:.0f} steps/s; {flops:.1f} GFLOP/s "
            f"= {flops / peak2:.0%} of a 2-thread 1024² matmul; one 16-run pack took {packs[1]['seconds']:.1f} s "
            f"on 1 thread, {packs[2]['seconds']:.1f} s on 2, side by side {pair['seconds']:.1f} s",
        ),
        (
            "  the same / two plain loops side by side, 1 thread each (aggregate steps/s)",
            8 * plain_pair["seconds"] / pair["seconds"],
            f"{2 * steps / plain_pair['seconds']:.0f} steps/s for the two plain loops",
        ),
    ]


JOB_RUNS = 8  # a pack of the nonlinearity study's size on 2 cores (16 seeds cut in two)


def pack_job_seconds(workdir: str) -> dict:
    """A training job of JOB_RUNS seeds as the workflow's does it: train the pack, write each
    run's checkpoints."""
    code = (
        PRELUDE
        + f"""
from featscope import io
from featscope.packed import iter_train_packed, train_packed
from featscope.tasks import save_dataset
save_dataset(data, {workdir!r} + "/data.npz")
runs = [(f"s{{s}}", dict(cfg, seed=s)) for s in range({JOB_RUNS})]
train_packed([(r, dict(c, train=dict(c["train"], steps=5))) for r, c in runs[:2]], data)  # warm-up
t = time.perf_counter()
for result in iter_train_packed(runs, data):
    io.save_torch(result.checkpoints, {workdir!r} + f"/{{result.run_id}}.pt")
seconds = time.perf_counter() - t
bundle = io.load_torch({workdir!r} + "/s0.pt")  # two checkpoints: the observe job's warm-up
io.save_torch(dict(bundle, steps=bundle["steps"][:2], params={{k: v[:2] for k, v in bundle["params"].items()}}),
              {workdir!r} + "/short.pt")
print(json.dumps({{"seconds": seconds}}))
"""
    )
    return child(code)


def observe_job_seconds(workdir: str, families: dict) -> dict:
    """The observe job of those runs (`featscope.pipeline.observe_pack_job`: load, observe
    the nonlinearity study's three families in one pass per run, write Parquet)."""
    code = (
        PRELUDE
        + f"""
from featscope.pipeline import observe_pack_job
def items(tag, runs):
    return [{{"run": f"s{{s}}", "checkpoints": {workdir!r} + f"/{{s}}.pt", "data": {workdir!r} + "/data.npz",
              "families": {{f: (p, {workdir!r} + f"/{{tag}}-{{s}}-{{f}}.parquet")
                           for f, p in {families!r}.items()}}}} for s in runs]
observe_pack_job(items("warm-up", ["short"]), progress=False)  # imports, first calls: 2 checkpoints
t = time.perf_counter()
observe_pack_job(items("job", [f"s{{s}}" for s in range({JOB_RUNS})]), progress=False)
print(json.dumps({{"seconds": time.perf_counter() - t,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
    )
    return child(code)


JOB_PAIRS = 5  # training job, then its observe jobs: this many times, alternating


def job_rows() -> list:
    """Observe ÷ train as the workflow's jobs pay them: an observe job of JOB_RUNS runs ÷
    their training job (both 1 thread, fresh processes, files read and written). The two
    sides alternate, JOB_PAIRS times, and the ratio is the median of each pair's own
    ratio, its range beside it: this machine's speed drifts by 10-15 % within the hour,
    which moved a ratio of the two sides' fastest times (a training job took 8.2 s in one
    run and 7.1 s in the next while the observe job took 1.7 s in both), and a pair,
    measured within seconds, shares the drift."""
    sets = (("as the study configures them", study_families()), ("every family at every checkpoint", EVERY_CHECKPOINT))
    trains, observes = [], {label: [] for label, _ in sets}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(JOB_PAIRS):
            trains.append(pack_job_seconds(tmp))
            for label, families in sets:
                observes[label].append(observe_job_seconds(tmp, families))
    train = min(out["seconds"] for out in trains)
    rows = []
    for label, _ in sets:
        paired = sorted(o["seconds"] / t["seconds"] for o, t in zip(observes[label], trains))
        observe = min(out["seconds"] for out in observes[label])
        rss = max(out["rss_mb"] for out in observes[label])
        rows.append(
            (
                f"observe job of {JOB_RUNS} runs (nonlinearity + linreg + spectral, {label}) "
                f"/ their {JOB_RUNS}-run training job (time, median of {JOB_PAIRS} pairs)",
                paired[len(paired) // 2],
                f"median {paired[len(paired) // 2]:.3f}, pairs {paired[0]:.3f}-{paired[-1]:.3f}; "
                f"fastest {observe:.2f} s vs {train:.2f} s; "
                f"peak RSS {rss:.0f} MB",
            )
        )
    return rows


def observe_rows(ckpt: str, train_seconds: float, pack_share_seconds: float) -> list:
    """Observe ÷ train_one (a run trained alone); the one pass also ÷ a run's share of a
    16-run pack at one thread, which trains faster, as packed runs do in the workflow."""
    rows = []
    sets = [[f] for f in ("nonlinearity", "linreg", "spectral", "weights", "gradients")]
    sets += [["nonlinearity", "linreg", "spectral"], ["weights", "gradients"]]
    for families in sets:
        obs = fastest(observe_seconds, families, ckpt)
        label = families[0] if len(families) == 1 else " + ".join(families) + " (one pass)"
        rows.append(
            (
                f"observe {label} / train (time, every one of the 230 checkpoints)",
                obs["seconds"] / train_seconds,
                f"{obs['seconds']:.2f} s vs {train_seconds:.2f} s; {obs['rows']} rows, peak RSS {obs['rss_mb']:.0f} MB",
            )
        )
        if families == ["nonlinearity", "linreg", "spectral"]:
            rows.append(
                (
                    "  the same / a run's share of a 16-run pack's training (time)",
                    obs["seconds"] / pack_share_seconds,
                    f"{obs['seconds']:.2f} s vs {pack_share_seconds:.2f} s",
                )
            )
    obs = fastest(observe_seconds, study_families(), ckpt)
    rows.append(
        (
            "observe nonlinearity + linreg + spectral as the study configures them (linreg and spectral "
            "on their own schedule) / train",
            obs["seconds"] / train_seconds,
            f"{obs['seconds']:.2f} s; {obs['rows']} rows (nonlinearity at all 230 checkpoints)",
        )
    )
    rows.append(
        (
            "  the same / a run's share of a 16-run pack's training (time)",
            obs["seconds"] / pack_share_seconds,
            f"{obs['seconds']:.2f} s vs {pack_share_seconds:.2f} s",
        )
    )
    floor = eigh_seconds()
    rows.append(
        (
            "  of which spectral's float64 eigendecompositions alone, 100² per checkpoint / train (time)",
            floor / train_seconds,
            f"{floor:.2f} s: ΦᵀΦ of h2 at 230 checkpoints, what the one-pass row cannot shed",
        )
    )
    return rows


def eigh_seconds(checkpoints: int = 230) -> float:
    """The eigendecompositions an observe pass of the nonlinearity study cannot avoid: ΦᵀΦ
    of h2 per checkpoint for the spectral family (linreg factorises its Grams by pivoted
    Cholesky, a tenth of the cost), from the LAPACK the library picks on this machine."""
    code = (
        PRELUDE
        + f"""
from featscope.observables.spectral import _eigh_descending
f = torch.relu(torch.randn({checkpoints}, 500, 100, dtype=torch.float64))
gram = f.mT @ f
_eigh_descending(gram[:2], 1.0)
t = time.perf_counter()
_eigh_descending(gram, 1.0)
print(json.dumps({{"seconds": time.perf_counter() - t}}))
"""
    )
    return child(code)["seconds"]


def fig3_run(steps: int | None = None) -> dict:
    """config/grokking.yaml's grokking-fig3 run, seed 0, optionally shortened to `steps`."""
    study = fig3_study()
    cfg = {k: study[k] for k in ("task", "model", "optim", "train", "schedule")}
    if steps is not None:
        cfg["train"] = dict(cfg["train"], steps=steps)
    cfg["task"] = dict(cfg["task"], seed=0)  # split: per_seed draws with the run's seed
    return dict(cfg, seed=0)


def wide_observe_rows() -> list:
    """A wide net on many samples (K = 2048 features > 2,016 samples): the spectral family
    takes the kernel route; gradients and weights see 2048-neuron layers."""
    code = f"""
import json, os, resource, time, torch
torch.set_num_threads(1)
from featscope.tasks import make_dataset
from featscope.training import train_one
from featscope.observe import observe_families
cfg = {fig3_run(steps=300)!r}
data = make_dataset(cfg["task"])
t = time.perf_counter()
bundle = train_one("fig3", cfg, data, progress=False).checkpoints
train = time.perf_counter() - t
t = time.perf_counter()
frames = observe_families("fig3", {{"weights": {{}}, "gradients": {{}}, "spectral": {{"top": 71}}}}, bundle, data)
print(json.dumps({{"train": train, "observe": time.perf_counter() - t, "checkpoints": len(bundle["steps"]),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
    out = child(code)
    return [
        (
            "observe weights + gradients + spectral (one pass), grokking-fig3 net K = 2048, 300 steps / train",
            out["observe"] / out["train"],
            f"{out['checkpoints']} checkpoints (one per 6.5 steps; the study's 2000 steps: one per 15), "
            f"{out['observe']:.0f} s vs {out['train']:.0f} s, peak RSS {out['rss_mb']:.0f} MB",
        )
    ]


def fig3_study() -> dict:
    return yaml_config("grokking.yaml")["studies"]["grokking-fig3"]


def yaml_config(name: str) -> dict:
    import yaml

    return yaml.safe_load((REPO / "config" / name).read_text())


def fig3_rows() -> list:
    """The grokking-fig3 run at its study's full length and schedule (132 checkpoints), its
    families as the study configures them and at every checkpoint, ÷ its `train_one`."""
    study = fig3_study()
    with tempfile.TemporaryDirectory() as tmp:
        prelude = f"""
import json, resource, time, torch
torch.set_num_threads(1)
from featscope import io
from featscope.tasks import make_dataset
cfg = {fig3_run()!r}
data = make_dataset(cfg["task"])
path = {tmp!r} + "/fig3.pt"
"""
        train = child(
            prelude
            + """
from featscope.training import train_one
train_one("warm-up", dict(cfg, train=dict(cfg["train"], steps=5)), data, progress=False)
t = time.perf_counter()
result = train_one("fig3", cfg, data, progress=False)
seconds = time.perf_counter() - t
io.save_torch(result.checkpoints, path)
print(json.dumps({"seconds": seconds, "checkpoints": len(result.checkpoints["steps"])}))
"""
        )
        rows = []
        every = {name: {k: v for k, v in p.items() if k != "schedule"} for name, p in study["observables"].items()}
        for label, families in (
            ("as the study configures them", study["observables"]),
            ("every family at every checkpoint", every),
        ):
            obs = child(
                prelude
                + f"""
from featscope.observe import observe_families
bundle = io.load_torch(path)
families = {families!r}
short = dict(bundle, steps=bundle["steps"][:2], params={{k: v[:2] for k, v in bundle["params"].items()}})
observe_families("warm-up", families, short, data)
t = time.perf_counter()
observe_families("fig3", families, bundle, data)
print(json.dumps({{"seconds": time.perf_counter() - t,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
            )
            rows.append(
                (
                    f"observe grokking-fig3 (K = 2048), its full {study['train']['steps']} steps, {label} / train",
                    obs["seconds"] / train["seconds"],
                    f"{obs['seconds']:.0f} s vs {train['seconds']:.0f} s; {train['checkpoints']} checkpoints, "
                    f"peak RSS {obs['rss_mb']:.0f} MB",
                )
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--e2e", action="store_true", help="also time the default workflow end to end")
    parser.add_argument("--wide", action="store_true", help="also observe a grokking-fig3 net (K = 2048)")
    parser.add_argument(
        "--fig3",
        action="store_true",
        help="instead: train and observe one grokking-fig3 run at its full length (about 9 min)",
    )
    parser.add_argument("--study", default="results/nonlinearity", help="study folder to read back")
    parser.add_argument("--tian", action="store_true", help="instead: benchmarks/tian_scale.py's two ratios")
    args = parser.parse_args()
    if args.fig3:
        return print_rows(fig3_rows())
    if args.tian:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import tian_scale

        return tian_scale.main([])
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = str(Path(tmp) / "bench.pt")
        rows, base = training_rows(ckpt)
        rows += observe_rows(ckpt, base["ours"]["seconds"], base["pack_share_seconds"])
        rows += job_rows()
        if args.wide:
            rows += wide_observe_rows()
        dirs = {n: Path(tmp) / f"dry{n}" for n in (100, 10_000)}
        for d in dirs.values():
            d.mkdir()
        small, small_jobs = dry_run_seconds(100, dirs[100])
        big, big_jobs = dry_run_seconds(10_000, dirs[10_000])
        rows.append(
            (
                "snakemake dry run, 10,000 new runs / 100 new runs (time)",
                big / small,
                f"{big:.1f} s vs {small:.1f} s; {big_jobs} vs {small_jobs} jobs",
            )
        )
        mark_done(dirs[10_000])
        done, done_jobs = dry_run_seconds(10_000, dirs[10_000])
        rows.append(
            (
                "snakemake dry run, 10,000 finished runs / 10,000 new runs (time)",
                done / big,
                f"{done:.1f} s; {'nothing to do' if done_jobs == -1 else f'{done_jobs} jobs'}",
            )
        )
    study = REPO / args.study
    if (study / "observables").exists():
        seconds, n, runs_seconds = read_seconds(study)
        rows.append(
            (
                f"read all observables of {args.study} / read runs.parquet (time)",
                seconds / runs_seconds,
                f"{n} rows in {seconds:.2f} s",
            )
        )
    if args.e2e:
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copytree(REPO / "config", Path(tmp) / "config")
            t = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "snakemake",
                    "--snakefile",
                    str(REPO / "Snakefile"),
                    "--directory",
                    tmp,
                    "--cores",
                    "2",
                    "--quiet",
                ],
                check=True,
                capture_output=True,
            )
            e2e = time.perf_counter() - t
        rows.append(
            (
                "default workflow end to end, --cores 2 / one plain-loop training (time)",
                e2e / base["plain"]["seconds"],
                f"{e2e:.0f} s",
            )
        )
    print_rows(rows)
    warning = slurm_plugin_warning()
    if warning:
        print(warning)


def slurm_plugin_warning() -> str | None:
    """Snakemake's Slurm executor plugin runs `scontrol show config` (timeout 10 s) on every
    Snakemake start wherever Slurm's client tools are installed. With no controller answering,
    each start waits out that timeout: `snakemake --version` took 10.0 s against 1.1 s with
    the controller up (Intel Xeon, `time`), and a 100-run dry run 10.5 against 1.4 s. The
    warning says which rows carry it; None where they do not."""
    if not shutil.which("scontrol") or not (shutil.which("sacct") or shutil.which("squeue")):
        return None
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=60)
        if ping.returncode == 0 and "UP" in ping.stdout:
            return None
    except subprocess.TimeoutExpired:
        pass
    return (
        "warning: Slurm's client tools are installed but no controller answers, so every Snakemake start "
        "waited about 10 s in the Slurm plugin's `scontrol show config`: the dry-run and end-to-end rows "
        "include it. Start the controller (profiles/slurm/local-cluster.sh start) or measure where no "
        "Slurm tools are installed."
    )


def print_rows(rows: list) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"{'measure'.ljust(width)}  {'ratio':>8}  detail")
    for name, ratio, detail in rows:
        print(f"{name.ljust(width)}  {ratio:8.2f}  {detail}")
    print(f"\nmachine: {os.cpu_count()} CPUs, torch threads 1 per job unless stated, python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
