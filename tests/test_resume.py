"""A training process killed with SIGKILL resumes to the identical result."""

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import torch

from featscope.io import load_torch
from featscope.packed import train_alone_packed
from featscope.tasks import make_dataset, save_dataset

CFG = {
    "task": {"name": "sin2", "d": 5, "f": 3, "n_train": 200, "n_test": 50, "seed": 0},
    "model": {"name": "mlp", "width": 64, "depth": 2, "activation": "relu"},
    "optim": {"name": "adam", "lr": 0.001, "batch_size": 64, "warmup_steps": 100},
    "train": {"steps": 4000, "loss": "mse"},
    "schedule": {"every": 20, "log": 30},
    "seed": 3,
}


def launch(tmp_path):
    code = (
        "from featscope.pipeline import train_job\n"
        f"train_job('r', {CFG!r}, {str(tmp_path / 'data.npz')!r}, {str(tmp_path / 'ck.pt')!r},"
        f" {str(tmp_path / 'm.parquet')!r}, {str(tmp_path / 'info.json')!r}, device='cpu', threads=1,"
        f" log={str(tmp_path / 'log')!r}, resume_dir={str(tmp_path / 'partial')!r}, resume_every=0.05)\n"
    )
    return subprocess.Popen([sys.executable, "-c", code])


def test_killed_training_resumes_identically(tmp_path):
    data = make_dataset(CFG["task"])
    save_dataset(data, tmp_path / "data.npz")
    partial = tmp_path / "partial" / "r.pt"

    proc = launch(tmp_path)
    deadline = time.time() + 120
    while time.time() < deadline:
        if partial.exists() and torch.load(partial, weights_only=False)["step"] > 200:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(partial, weights_only=False)["step"]
    assert 0 < killed_at < CFG["train"]["steps"], "the kill must land mid-run"
    assert not (tmp_path / "ck.pt").exists()

    assert launch(tmp_path).wait(timeout=300) == 0
    assert not partial.exists()  # cleaned up once the outputs are written

    reference = train_alone_packed("r", CFG, data)  # how train_job trains a lone MLP run
    resumed = load_torch(tmp_path / "ck.pt")
    assert torch.equal(resumed["steps"], reference.checkpoints["steps"])
    for name, stack in reference.checkpoints["params"].items():
        assert torch.equal(resumed["params"][name], stack), name
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "m.parquet"), reference.metrics)


def test_killed_train_block_resumes_identically_and_fills_the_cache(tmp_path):
    """The workflow's train job: a block of two runs, killed, started again."""
    from featscope.packed import train_packed

    data = make_dataset(CFG["task"])
    save_dataset(data, tmp_path / "data.npz")
    runs = [("r", CFG), ("q", {**CFG, "seed": 4})]
    outs = [{k: str(tmp_path / f"{run}.{k}") for k in ("checkpoints", "metrics", "info")} for run, _ in runs]
    code = (
        "from featscope.pipeline import train_block_job\n"
        f"train_block_job({runs!r}, {str(tmp_path / 'data.npz')!r}, {outs!r}, cache_dir={str(tmp_path / 'cache')!r},"
        f" device='cpu', log={str(tmp_path / 'log')!r}, resume_dir={str(tmp_path / 'partial')!r}, resume_every=0.05)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 120
    state = None
    while time.time() < deadline and state is None:
        for path in (tmp_path / "partial").glob("pack-*.pt"):
            try:
                if torch.load(path, weights_only=False)["step"] > 200:
                    state = path
            except Exception:  # being written
                pass
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert state is not None and 0 < torch.load(state, weights_only=False)["step"] < CFG["train"]["steps"]
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    assert not state.exists()

    reference = train_packed(runs, data)
    for (run, _), out, ref in zip(runs, outs, reference):
        resumed = load_torch(out["checkpoints"])
        for name, stack in ref.checkpoints["params"].items():
            assert torch.equal(resumed["params"][name], stack), (run, name)
        pd.testing.assert_frame_equal(pd.read_parquet(out["metrics"]), ref.metrics)
    assert len(list((tmp_path / "cache").iterdir())) == 2  # both runs cached for a later block
