"""Packed training: several runs that share shapes trained in one process, with batched
parameters (``torch.func.vmap`` over stacked weights).

For the tiny networks of these studies a CPU is bound by per-step overhead, not arithmetic,
so S seeds in one batched step cost little more than one. Each run keeps its own parameters,
optimiser state (Adam is elementwise, so one Adam over the stacked tensors is S independent
Adams), metrics and checkpoints. Supported: full-batch training of models without batch norm
whose runs differ only in their seed; results match `train_one` to float32 rounding (batched
matrix products round differently; see tests/test_packed.py for the tolerance).
"""
from __future__ import annotations

import copy
import math
import time

import pandas as pd
import torch
from torch.func import functional_call, stack_module_state, vmap

from . import schedules
from .models import build_model
from .tasks import task_kind, task_outputs
from .training import (CHECKPOINT_FORMAT, RunResult, _in_dim, _optimizer, _tensors, _warmup, loss_fn,
                       resolve_device, versions)


def _same_but_seed(configs: list[dict]) -> bool:
    strip = [{k: v for k, v in c.items() if k != "seed"} for c in configs]
    return all(s == strip[0] for s in strip)


def train_packed(runs: list[tuple[str, dict]], data: dict, device="cpu") -> list[RunResult]:
    """Train runs that differ only in their seed together; one RunResult per run."""
    configs = [cfg for _, cfg in runs]
    if not _same_but_seed(configs):
        raise ValueError("packed runs must differ only in their seed")
    cfg = configs[0]
    if cfg["optim"].get("batch_size") or cfg["optim"].get("train", "all") != "all":
        raise ValueError("packed training supports full-batch training of all parameters")
    device = resolve_device(device) if isinstance(device, str) else device
    kind = task_kind(cfg["task"]["name"])
    tensors = _tensors(data, device, kind)
    x, y = tensors["x_train"], tensors["y_train"]
    out_dim = y.shape[1] if kind == "regression" else task_outputs(cfg["task"])

    models = []
    for c in configs:  # the same initialisation as train_one, seed by seed
        torch.manual_seed(c["seed"])
        models.append(build_model(c["model"], _in_dim(x, c["model"]["name"]), out_dim).to(device))
    params, buffers = stack_module_state(models)
    if any(b.numel() for b in buffers.values()):
        raise ValueError("packed training does not support models with buffers (batch norm)")
    base = copy.deepcopy(models[0]).to("meta")
    forward = vmap(lambda p: functional_call(base, p, (x,)))
    opt = _optimizer(cfg["optim"], list(params.values()))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _warmup(cfg["optim"].get("warmup_steps", 0)))
    criterion = loss_fn(kind, cfg["train"]["loss"])
    per_run = vmap(criterion, in_dims=(0, None))
    total = cfg["train"]["steps"]
    is_checkpoint = schedules.from_config(cfg["schedule"], total)
    ckpt_dtype = getattr(torch, cfg.get("checkpoint_dtype", "float32"))

    n = len(runs)
    saved_steps, saved = [], {k: [] for k in params}
    losses, lrs = [], []
    start = time.perf_counter()
    for step in range(total + 1):
        out = forward(params)
        loss = per_run(out, y)  # (S,)
        losses.append(loss.detach().cpu())
        lrs.append(opt.param_groups[0]["lr"])
        if is_checkpoint(step):
            saved_steps.append(step)
            for k, v in params.items():
                saved[k].append(v.detach().to("cpu", ckpt_dtype, copy=True))
        if step == total or not torch.isfinite(loss).all():
            break
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()  # each run's parameters only see their own loss
        opt.step()
        sched.step()
    wall = time.perf_counter() - start
    losses = torch.stack(losses).double().numpy()
    results = []
    for i, (run_id, c) in enumerate(runs):
        metrics = pd.DataFrame({"run": run_id, "step": range(len(losses)), "epoch": [float(s) for s in range(len(losses))],
                                "split": "train", "loss": losses[:, i], "acc": math.nan, "lr": lrs})
        bundle = {"format": CHECKPOINT_FORMAT, "steps": torch.tensor(saved_steps, dtype=torch.int64),
                  "params": {k: torch.stack([s[i] for s in v]) for k, v in saved.items()},
                  "model": c["model"], "in_dim": _in_dim(x, c["model"]["name"]), "out_dim": int(out_dim),
                  "loss": c["train"]["loss"], "task": c["task"]["name"]}
        info = {"run": run_id, "status": "ok", "steps_done": int(step), "outputs": int(out_dim),
                "diverged_at": None, "wall_seconds": wall / n, "device": str(device), "packed": n,
                **versions()}
        results.append(RunResult(run_id, bundle, metrics, info))
    return results
