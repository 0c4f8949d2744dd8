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
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import schedules
from ._allocator import keep_freed_memory
from ._subnormals import flush_subnormals
from .config import fingerprint
from .models import build_model
from .tasks import task_kind, task_outputs

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

    return {
        "version.featscope": __version__,
        "version.torch": torch.__version__,
        "version.numpy": np.__version__,
        "version.python": platform.python_version(),
    }


@dataclass
class RunResult:
    run_id: str
    checkpoints: dict  # CHECKPOINT_FORMAT bundle: steps + stacked parameters
    metrics: pd.DataFrame
    info: dict = field(default_factory=dict)


def zero_mean_mse(out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Tian (2025)'s loss ‖P⊥₁(Y − Ŷ)‖², summed over classes and averaged over samples: the
    residual's mean over classes is projected out, so only the logits' differences matter.
    Equal to the reference code's ``compute_loss(outputs, labels, "mse")`` (luckmatters,
    ssl/real-dataset/cogo/modular_addition_simple2.py), value and gradient, to float32
    rounding (tests/test_tian_loss.py); no factor ½, so Adam's eps and an L2-coupled weight
    decay act as in the paper's runs."""
    resid = nn.functional.one_hot(labels, out.shape[-1]).to(out.dtype) - out
    resid = resid - resid.mean(dim=-1, keepdim=True)
    return resid.pow(2).sum(dim=-1).mean(dim=-1)  # over a pack's (S, n, C): one per run


def loss_fn(kind: str, name: str):
    if name == "mse":
        return lambda out, y: F.mse_loss(out, y)
    if name == "cross_entropy":
        return lambda out, y: F.cross_entropy(out, y)
    if name == "zero_mean_mse":
        return zero_mean_mse
    raise ValueError(f"unknown loss '{name}' for a {kind} task")


def per_run_loss(kind: str, name: str):
    """`loss_fn` over a pack: outputs (S, n, ...) and targets (S, n, ...) give S losses, equal
    bit for bit, with their gradients, to ``vmap(loss_fn(kind, name))`` (tests/test_packed.py)
    without vmap's cost per call."""
    loss_fn(kind, name)  # one place that names the losses (and rejects unknown ones)
    if name == "mse":
        return lambda out, y: F.mse_loss(out, y, reduction="none").flatten(1).mean(1)
    if name == "cross_entropy":
        return lambda out, y: (
            F.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none").view(len(out), -1).mean(1)
        )
    if name == "zero_mean_mse":
        return zero_mean_mse  # written for both shapes
    raise NotImplementedError(f"loss '{name}' has no per-run form for packed training")


def per_run_loss_and_gradient(kind: str, name: str):
    """`per_run_loss` with its gradient written out: (outputs (S, n, C), targets) give the
    S losses, as `per_run_loss` does, and the gradient of their sum with respect to the
    outputs (S, n, C), for a pack's hand-written backward (`stacked.TrainingPass`). The
    gradients agree with autograd's to float32 rounding (tests/test_packed.py: mse's
    exactly, the others within a few roundings of their largest entry)."""
    per_run_loss(kind, name)  # the same names, the same errors
    return _LOSS_AND_GRADIENT[name]


def _mse_and_gradient(out, y):
    diff = out - y
    losses = diff.square().flatten(1).mean(1)
    return losses, diff.mul_(2.0 / diff[0].numel())


def _cross_entropy_and_gradient(out, labels):
    log_p = out.log_softmax(-1)
    at_label = labels.unsqueeze(-1)
    losses = log_p.gather(-1, at_label).squeeze(-1).mean(-1).neg_()
    share = 1.0 / labels.shape[-1]  # d mean / d sample
    grad = log_p.exp_().mul_(share)  # softmax − one-hot, per sample's share of the mean
    return losses, grad.scatter_add_(-1, at_label, torch.full(at_label.shape, -share, dtype=grad.dtype))


def _zero_mean_mse_and_gradient(out, labels):
    resid = nn.functional.one_hot(labels, out.shape[-1]).to(out.dtype) - out
    resid = resid - resid.mean(dim=-1, keepdim=True)
    losses = resid.pow(2).sum(dim=-1).mean(dim=-1)
    return losses, resid.mul_(-2.0 / labels.shape[-1])  # −2 P⊥(Y − Ŷ) / n; resid is P⊥-projected already


_LOSS_AND_GRADIENT = {
    "mse": _mse_and_gradient,
    "cross_entropy": _cross_entropy_and_gradient,
    "zero_mean_mse": _zero_mean_mse_and_gradient,
}


def _accuracy(out: torch.Tensor, y: torch.Tensor) -> float:
    return (out.argmax(dim=1) == y).float().mean().item()


def _optimizer(cfg: dict, params):
    name, lr, wd = cfg["name"], cfg["lr"], cfg.get("weight_decay", 0.0)
    # fused: one kernel for all of a step's updates (on a CPU too, since torch 2.4), faster
    # than the loop over parameters (benchmarks/HISTORY.md). Packs call the
    # same kernels run by run (`batched_optim`).
    betas = tuple(cfg.get("betas", (0.9, 0.999)))  # absent: torch's default
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=wd, fused=True)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=wd, fused=True)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=cfg.get("momentum", 0.0), fused=True)
    raise ValueError(f"unknown optimiser '{name}'")


def _readout(model, name: str):
    """The model's readout module, at the path its architecture registered."""
    from .architectures import model_spec

    return model.get_submodule(model_spec(name).readout)


def _trainable(model, which: str, readout):
    """'all' trains every parameter; 'readout' freezes the features (coefficient learning)."""
    if which == "all":
        return list(model.parameters())
    if which == "readout":
        for p in model.parameters():
            p.requires_grad_(False)
        for p in readout.parameters():
            p.requires_grad_(True)
        return list(readout.parameters())
    raise ValueError(f"unknown optim.train '{which}'")


def _warmup(steps: int):
    return lambda t: min(1.0, (t + 1) / steps) if steps > 0 else 1.0


def _tensors(data: dict, device, kind: str):
    out = {}
    for key, arr in data.items():
        t = torch.as_tensor(arr)
        integer = not t.is_floating_point()  # labels, and token inputs such as (a, b) pairs
        out[key] = t.long() if integer else t.float()
        out[key] = out[key].to(device)
    return out


def train_runs(
    runs: list[tuple[str, dict]],
    data: dict,
    device="cpu",
    progress: bool = True,
    log_file=None,
    resume_dir=None,
    resume_every: float = 60.0,
) -> list[RunResult]:
    """Train each (run_id, train_config) on `data`; return their results.

    With `resume_dir`, each run saves its full training state there every
    `resume_every` seconds and, when started again after being killed, resumes
    from it: model, optimiser, scheduler and RNG states are all restored, so
    the result is identical to an uninterrupted run.
    """
    return [
        train_one(
            run_id,
            cfg,
            data,
            device,
            progress,
            log_file,
            resume_path=(Path(resume_dir) / f"{run_id}.pt") if resume_dir else None,
            resume_every=resume_every,
        )
        for run_id, cfg in runs
    ]


def train_one(
    run_id: str,
    cfg: dict,
    data: dict,
    device="cpu",
    progress=True,
    log_file=None,
    resume_path=None,
    resume_every: float = 60.0,
) -> RunResult:
    keep_freed_memory()
    flush_subnormals()
    device = resolve_device(device) if isinstance(device, str) else device
    kind = task_kind(cfg["task"]["name"])
    tensors = _tensors(data, device, kind)
    x, y = tensors["x_train"], tensors["y_train"]
    out_dim = y.shape[1] if kind == "regression" else task_outputs(cfg["task"])

    torch.manual_seed(cfg["seed"])
    model = build_model(cfg["model"], _in_dim(x, cfg["model"]["name"]), out_dim).to(device)
    readout = _readout(model, cfg["model"]["name"])
    opt = _optimizer(cfg["optim"], _trainable(model, cfg["optim"].get("train", "all"), readout))
    _training_mode(model, cfg["optim"].get("train", "all"), readout)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _warmup(cfg["optim"].get("warmup_steps", 0)))
    criterion = loss_fn(kind, cfg["train"]["loss"])
    total = cfg["train"]["steps"]
    eval_every = cfg["train"].get("eval_every", 1)
    is_checkpoint = schedules.from_config(cfg["schedule"], total)
    batch = cfg["optim"].get("batch_size") or len(x)
    ckpt_dtype = getattr(torch, cfg.get("checkpoint_dtype", "float32"))

    # Everything that evolves during training; saved whole for resumption.
    st = {
        "step": 0,
        "order": torch.arange(len(x)),
        "shuffle": torch.Generator().manual_seed(cfg["seed"]),
        "saved_steps": [],
        "saved": {name: [] for name in model.state_dict()},
        "rows": [],
        "elapsed": 0.0,
    }
    key = fingerprint(cfg)
    if resume_path is not None:
        _restore(resume_path, key, st, model, opt, sched)
    status, start, last_save = "ok", time.perf_counter() - st["elapsed"], time.perf_counter()
    bar = tqdm(total=total, initial=st["step"], desc=run_id, file=log_file, mininterval=2.0, disable=not progress)
    for step in range(st["step"], total + 1):
        if resume_path is not None and time.perf_counter() - last_save >= resume_every:
            st.update(step=step, elapsed=time.perf_counter() - start)
            _save_state(resume_path, key, st, model, opt, sched)
            last_save = time.perf_counter()
        pos = (step * batch) % len(x)
        if batch < len(x) and pos < batch:
            st["order"] = torch.randperm(len(x), generator=st["shuffle"])
        xb, yb = (
            (x, y)
            if batch >= len(x)
            else (x[st["order"][pos : pos + batch].to(device)], y[st["order"][pos : pos + batch].to(device)])
        )
        out = model(xb)
        loss = criterion(out, yb)
        lr = opt.param_groups[0]["lr"]
        value = loss.item()
        epoch = step * batch / len(x)
        evaluate = step % eval_every == 0 or step == total or is_checkpoint(step)
        if batch < len(x):  # the batch's loss, then the whole training set's at the same θ
            st["rows"].append(
                (step, epoch, "batch", value, _accuracy(out, yb) if kind == "classification" else math.nan, lr)
            )
            if evaluate:
                st["rows"].append(_evaluate(model, tensors, criterion, kind, step, epoch, lr, "train"))
        else:
            st["rows"].append(
                (step, epoch, "train", value, _accuracy(out, yb) if kind == "classification" else math.nan, lr)
            )
        if "x_test" in tensors and evaluate:
            st["rows"].append(_evaluate(model, tensors, criterion, kind, step, epoch, lr, "test"))
        # A diverged step is kept as a checkpoint when its parameters are still finite.
        if (is_checkpoint(step) or not math.isfinite(value)) and _finite(model):
            st["saved_steps"].append(step)
            for name, t in model.state_dict().items():  # parameters and batch-norm buffers
                dtype = ckpt_dtype if t.is_floating_point() else t.dtype
                st["saved"][name].append(t.detach().to("cpu", dtype, copy=True))
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

    metrics = pd.DataFrame(st["rows"], columns=["step", "epoch", "split", "loss", "acc", "lr"])
    metrics.insert(0, "run", run_id)
    bundle = {
        "format": CHECKPOINT_FORMAT,
        "steps": torch.tensor(st["saved_steps"], dtype=torch.int64),
        "params": {name: torch.stack(ts) for name, ts in st["saved"].items()},
        "model": cfg["model"],
        "in_dim": _in_dim(x, cfg["model"]["name"]),
        "out_dim": int(out_dim),
        "loss": cfg["train"]["loss"],
        "task": cfg["task"]["name"],
    }
    info = {
        "run": run_id,
        "status": status,
        "steps_done": int(step),
        "outputs": int(out_dim),
        "diverged_at": int(step) if status == "diverged" else None,
        "wall_seconds": time.perf_counter() - start,
        "device": str(device),
        "packed": 1,
        **versions(),
    }
    return RunResult(run_id, bundle, metrics, info)


def _in_dim(x: torch.Tensor, model: str) -> int:
    """Input size a model needs, as its architecture registered: an MLP sees each sample as
    a vector (C·H·W for an image), a convolutional net needs the channels."""
    from .architectures import in_dim_of, model_spec

    return in_dim_of(model_spec(model), tuple(x.shape[1:]))


def _finite(model) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def _save_state(path, key, st, model, opt, sched) -> None:
    from .io import save_torch

    save_torch(
        {
            "key": key,
            "model": model.state_dict(),
            "opt": opt.state_dict(),
            "sched": sched.state_dict(),
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            **{k: v for k, v in st.items() if k != "shuffle"},
            "shuffle": st["shuffle"].get_state(),
        },
        path,
    )


def load_resume_state(path, key) -> dict | None:
    """A saved training state, if it exists, is readable and belongs to this very `key`
    (a fingerprint of the config); else None: a fresh start."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:
        return None  # a damaged partial state is worth less than a fresh start
    return saved if saved.get("key") == key else None


def _restore(path, key, st, model, opt, sched) -> None:
    saved = load_resume_state(path, key)
    if saved is None:
        return
    model.load_state_dict(saved["model"])
    opt.load_state_dict(saved["opt"])
    sched.load_state_dict(saved["sched"])
    torch.set_rng_state(saved["rng"])
    if saved["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["cuda_rng"])
    st["shuffle"].set_state(saved["shuffle"])
    for k in ("step", "order", "saved_steps", "saved", "rows", "elapsed"):
        st[k] = saved[k]


def _training_mode(model, which: str, readout) -> None:
    """Train mode, except that frozen features also keep their batch-norm statistics frozen."""
    if which == "readout":
        model.eval()
        readout.train()
    else:
        model.train()


@torch.no_grad()
def _evaluate(model, tensors, criterion, kind, step, epoch, lr, split):
    mode = {m: m.training for m in model.modules()}
    model.eval()  # batch norm: use running statistics and leave them untouched
    out = model(tensors[f"x_{split}"])
    for m, training in mode.items():
        m.train(training)
    y = tensors[f"y_{split}"]
    acc = _accuracy(out, y) if kind == "classification" else math.nan
    return (step, epoch, split, criterion(out, y).item(), acc, lr)
