"""Training: a list of runs in, checkpoints and a dense metrics log out.

The unit of work is a list of runs (so that runs sharing shapes can later be
packed into one process); each run keeps its own checkpoints and metrics.

Step convention: step t is the model after t optimiser updates. The metrics
row for step t holds the loss of those parameters, and the checkpoint for
step t holds the same parameters, so metrics and observables line up.
"""
from __future__ import annotations

import math
import platform
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import schedules
from .models import build_model
from .tasks import task_kind

CHECKPOINT_FORMAT = "featscope.checkpoints/1"


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device '{name}' was requested but CUDA is not available")
    return device


def versions() -> dict:
    from . import __version__

    return {"featscope": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


@dataclass
class RunResult:
    run_id: str
    checkpoints: dict  # CHECKPOINT_FORMAT bundle: steps + stacked parameters
    metrics: pd.DataFrame
    info: dict = field(default_factory=dict)


def loss_fn(kind: str, name: str):
    if name == "mse":
        return lambda out, y: F.mse_loss(out, y)
    if name == "cross_entropy":
        return lambda out, y: F.cross_entropy(out, y)
    raise ValueError(f"unknown loss '{name}' for a {kind} task")


def _accuracy(out: torch.Tensor, y: torch.Tensor) -> float:
    return (out.argmax(dim=1) == y).float().mean().item()


def _optimizer(cfg: dict, params):
    name, lr, wd = cfg["name"], cfg["lr"], cfg.get("weight_decay", 0.0)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=cfg.get("momentum", 0.0))
    raise ValueError(f"unknown optimiser '{name}'")


def _trainable(model, which: str):
    """'all' trains every parameter; 'readout' freezes the features (coefficient learning)."""
    if which == "all":
        return list(model.parameters())
    if which == "readout":
        for p in model.parameters():
            p.requires_grad_(False)
        for p in model.readout.parameters():
            p.requires_grad_(True)
        return list(model.readout.parameters())
    raise ValueError(f"unknown optim.train '{which}'")


def _warmup(steps: int):
    return lambda t: min(1.0, (t + 1) / steps) if steps > 0 else 1.0


def _tensors(data: dict, device, kind: str):
    out = {}
    for key, arr in data.items():
        t = torch.as_tensor(arr)
        out[key] = t.long() if (kind == "classification" and key.startswith("y")) else t.float()
        out[key] = out[key].to(device)
    return out


def train_runs(runs: list[tuple[str, dict]], data: dict, device="cpu", progress: bool = True,
               log_file=None) -> list[RunResult]:
    """Train each (run_id, train_config) on `data`; return their results."""
    return [train_one(run_id, cfg, data, device, progress, log_file) for run_id, cfg in runs]


def train_one(run_id: str, cfg: dict, data: dict, device="cpu", progress=True, log_file=None) -> RunResult:
    device = resolve_device(device) if isinstance(device, str) else device
    kind = task_kind(cfg["task"]["name"])
    tensors = _tensors(data, device, kind)
    x, y = tensors["x_train"], tensors["y_train"]
    out_dim = y.shape[1] if kind == "regression" else int(cfg["task"].get("classes") or y.max() + 1)

    torch.manual_seed(cfg["seed"])
    model = build_model(cfg["model"], x.shape[1], out_dim).to(device)
    opt = _optimizer(cfg["optim"], _trainable(model, cfg["optim"].get("train", "all")))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _warmup(cfg["optim"].get("warmup_steps", 0)))
    criterion = loss_fn(kind, cfg["train"]["loss"])
    total = cfg["train"]["steps"]
    is_checkpoint = schedules.from_config(cfg["schedule"], total)
    batch = cfg["optim"].get("batch_size") or len(x)
    shuffle = torch.Generator().manual_seed(cfg["seed"])
    order = torch.arange(len(x))
    ckpt_dtype = getattr(torch, cfg.get("checkpoint_dtype", "float32"))

    saved_steps, saved = [], {name: [] for name, _ in model.named_parameters()}
    rows = []
    status, start = "ok", time.perf_counter()
    bar = tqdm(total=total, desc=run_id, file=log_file, mininterval=2.0, disable=not progress)
    for step in range(total + 1):
        pos = (step * batch) % len(x)
        if batch < len(x) and pos < batch:
            order = torch.randperm(len(x), generator=shuffle)
        idx = order[pos:pos + batch].to(device)
        xb, yb = (x, y) if batch >= len(x) else (x[idx], y[idx])
        out = model(xb)
        loss = criterion(out, yb)
        lr = opt.param_groups[0]["lr"]
        value = loss.item()
        rows.append((step, step * batch / len(x), "train", value,
                     _accuracy(out, yb) if kind == "classification" else math.nan, lr))
        if "x_test" in tensors:
            rows.append(_evaluate(model, tensors, criterion, kind, step, step * batch / len(x), lr))
        if is_checkpoint(step) or not math.isfinite(value):
            saved_steps.append(step)
            for name, p in model.named_parameters():
                saved[name].append(p.detach().to("cpu", ckpt_dtype, copy=True))
        if not math.isfinite(value):
            status = "diverged"
            break
        if step == total:
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.update(1)
    bar.close()

    metrics = pd.DataFrame(rows, columns=["step", "epoch", "split", "loss", "acc", "lr"])
    metrics.insert(0, "run", run_id)
    bundle = {
        "format": CHECKPOINT_FORMAT,
        "steps": torch.tensor(saved_steps, dtype=torch.int64),
        "params": {name: torch.stack(ts) for name, ts in saved.items()},
        "model": cfg["model"], "in_dim": int(x.shape[1]), "out_dim": int(out_dim),
    }
    info = {"run": run_id, "status": status, "steps_done": int(step), "outputs": int(out_dim),
            "wall_seconds": time.perf_counter() - start, "device": str(device), **versions()}
    return RunResult(run_id, bundle, metrics, info)


@torch.no_grad()
def _evaluate(model, tensors, criterion, kind, step, epoch, lr):
    out = model(tensors["x_test"])
    y = tensors["y_test"]
    acc = _accuracy(out, y) if kind == "classification" else math.nan
    return (step, epoch, "test", criterion(out, y).item(), acc, lr)
