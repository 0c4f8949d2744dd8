"""Where an observe job's time goes, by stage.

    .venv/bin/python benchmarks/observe_split.py      # about 1 min on 2 CPU cores

The job is the one `run.py` times against its training job: 8 runs of the blog MLP
(seeds of one pack), their nonlinearity, linreg and spectral families as the default
config's nonlinearity study configures them, checkpoints read and Parquet written. The
runs are trained once; the job then runs REPEATS times in this process, one thread,
with the library's stage functions wrapped in timers, and the fastest job's split is
printed. Stages marked "of which" are part of the stage above them; "other" is the job
less its top-level stages. The timers cost a few microseconds a call, against stages
of milliseconds.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy and torch load their BLAS: as Snakemake runs a 1-thread job

import collections  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import BLOG, JOB_RUNS, study_families  # noqa: E402

from featscope import io, observe, stacked  # noqa: E402
from featscope.observables import families, linreg, nonlinearity, rows, spectral  # noqa: E402
from featscope.packed import iter_train_packed  # noqa: E402
from featscope.pipeline import observe_pack_job  # noqa: E402
from featscope.tasks import make_dataset, save_dataset  # noqa: E402

REPEATS = 5
# (module or class, attribute, label, nested): the stages, in the order they are printed.
STAGES = [
    (io, "load_torch", "read checkpoints", False),
    (stacked, "_layers", "forward passes (the 57 checkpoints of linreg and spectral)", False),
    (families, "nonlinearity", "nonlinearity family (all 230 checkpoints)", False),
    (nonlinearity, "active_rates_of_blocks", "of which the pre-activation pass (173 checkpoints)", True),
    (nonlinearity, "_counts", "of which counts of positive pre-activations (230)", True),
    (observe.Snapshot, "_select", "pick the 57 checkpoints of linreg and spectral", False),
    (linreg, "augmented_grams", "Grams [F, 1]ᵀ[F, 1] (linreg and spectral)", False),
    (linreg, "linreg_residual", "linreg fits", False),
    (spectral, "batched_eigensystems", "spectral eigensystems", False),
    (spectral, "_eigh_descending", "of which eigendecompositions", True),
    (spectral, "batched_measures", "spectral measures", False),
    (spectral, "batched_top_subspaces", "spectral top subspaces", False),
    (families, "_drifts", "spectral drifts", False),
    (rows, "table", "rows joined into tables", False),
    (io, "write_parquet", "Parquet written", False),
]


def timed(owner, name: str, totals: collections.Counter) -> None:
    function = getattr(owner, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals[name] += time.perf_counter() - start

    setattr(owner, name, wrapper)


def train(workdir: str) -> None:
    data = make_dataset(BLOG["task"])
    save_dataset(data, f"{workdir}/data.npz")
    runs = [(f"s{s}", dict(BLOG, seed=s)) for s in range(JOB_RUNS)]
    for result in iter_train_packed(runs, data):
        io.save_torch(result.checkpoints, f"{workdir}/{result.run_id}.pt")


def job_items(workdir: str, tag: str, runs: list[str]) -> list[dict]:
    return [
        {
            "run": run,
            "checkpoints": f"{workdir}/{run}.pt",
            "data": f"{workdir}/data.npz",
            "families": {
                name: (params, f"{workdir}/{tag}-{run}-{name}.parquet") for name, params in study_families().items()
            },
        }
        for run in runs
    ]


def main() -> None:
    torch.set_num_threads(1)
    totals = collections.Counter()
    for owner, name, _, _ in STAGES:
        timed(owner, name, totals)
    with tempfile.TemporaryDirectory() as workdir:
        train(workdir)
        runs = [f"s{s}" for s in range(JOB_RUNS)]
        observe_pack_job(job_items(workdir, "warm-up", runs[:1]), progress=False)
        best = None
        for _ in range(REPEATS):
            items = job_items(workdir, "job", runs)  # the config's YAML read here, not in the job's time
            totals.clear()
            start = time.perf_counter()
            observe_pack_job(items, progress=False)
            seconds = time.perf_counter() - start
            if best is None or seconds < best[0]:
                best = (seconds, dict(totals))
    seconds, split = best
    print(f"observe job of {JOB_RUNS} runs, fastest of {REPEATS}: {seconds:.3f} s")
    for _, name, label, nested in STAGES:
        part = split.get(name, 0.0)
        print(f"  {'  ' if nested else ''}{label:<52} {part:6.3f} s  {part / seconds:5.1%}")
    top = sum(split.get(name, 0.0) for _, name, _, nested in STAGES if not nested)
    print(f"  {'other':<52} {seconds - top:6.3f} s  {(seconds - top) / seconds:5.1%}")


if __name__ == "__main__":
    main()
