"""Packed training: runs that share shapes trained in one process, with batched
parameters (stacked weights in batched matrix products, `stacked`).

Each run keeps its own parameters, optimiser state (Adam, AdamW and SGD are elementwise, so
one optimiser over the stacked tensors is S independent ones), data order, metrics rows,
divergence and checkpoints, in exactly the format of `train_one`. Results match `train_one`
to float32 rounding: batched matrix products sum in another order, and the backward is
written out (`stacked.TrainingPass`; tests/test_packed.py holds the tolerance).
What packs: models without buffers (no batch norm) whose runs differ
only in their seed and their optimiser's values (learning rate, weight decay, momentum,
warm-up length; see `batched_optim`); `pack_key` says which runs can share a pack.
A model without a stacked form (or with an activation the stacked form has no derivative
for) packs through ``torch.func``: ``vmap`` over ``functional_call`` of one of its modules,
autograd for the backward (`_FuncPack`); the job log says so in one line.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.func import functional_call, stack_module_state, vmap
from tqdm.auto import tqdm

from . import schedules
from ._allocator import keep_freed_memory
from ._subnormals import flush_subnormals
from .batched_optim import BatchedOptimizer
from .config import fingerprint
from .models import build_model
from .packing import VALUE_KEYS, engine, pack_key, why_unpacked
from .stacked import TrainingPass, stacked_forward
from .tasks import task_kind, task_outputs
from .training import (
    CHECKPOINT_FORMAT,
    RunResult,
    _in_dim,
    _tensors,
    load_resume_state,
    per_run_loss,
    per_run_loss_and_gradient,
    resolve_device,
    train_one,
    versions,
)


def _check_packable(configs: list[dict]) -> None:
    for c in configs:
        if why_unpacked(c):
            raise ValueError(f"cannot pack: {why_unpacked(c)}")
    keys = {pack_key(c) for c in configs}
    if len(keys) > 1:
        raise ValueError(f"packed runs must differ only in their seed and optimiser values ({', '.join(VALUE_KEYS)})")


class _Pack:
    """The stacked models of a pack and their batched forward passes."""

    def __init__(self, configs, x, out_dim, device):
        models = []
        for c in configs:  # the same initialisation as train_one, seed by seed
            torch.manual_seed(c["seed"])
            models.append(build_model(c["model"], _in_dim(x, c["model"]["name"]), out_dim).to(device))
        self.params, _ = stack_module_state(models)
        self.model_cfg = configs[0]["model"]
        self.module = models[0]
        if configs[0]["optim"].get("train", "all") == "readout":  # frozen features
            from .architectures import model_spec

            readout = model_spec(self.model_cfg["name"]).readout + "."
            for name, p in self.params.items():
                p.requires_grad_(name.startswith(readout))

    def shared(self, x):
        """Outputs (S, n, out) on inputs all runs share."""
        return stacked_forward(self.model_cfg, self.params, x, shared=True)

    def own(self, xs):
        """Outputs (S, n, out) on one batch per run, xs (S, n, ...)."""
        return stacked_forward(self.model_cfg, self.params, xs, shared=False)

    def training_pass(self, x, shared: bool) -> TrainingPass:
        """A training step's forward, on inputs all runs share or one batch per run."""
        return TrainingPass(self.model_cfg, self.params, x, shared)

    def trainable(self):
        return [p for p in self.params.values() if p.requires_grad]

    def finite(self) -> torch.Tensor:
        ok = [torch.isfinite(p.detach()).flatten(1).all(dim=1) for p in self.params.values()]
        return torch.stack(ok).all(dim=0)


class _FuncPack(_Pack):
    """A pack of a model without a stacked form: ``vmap`` over ``functional_call`` of one of
    the pack's modules, each run's slice of the stacked parameters in turn; the backward is
    autograd's through the vmapped forward (each run's loss reaches only its own slice)."""

    def _call(self, params, x):
        return functional_call(self.module, params, (x,))

    def shared(self, x):
        return vmap(self._call, in_dims=(0, None))(self.params, x)

    def own(self, xs):
        return vmap(self._call, in_dims=(0, 0))(self.params, xs)

    def training_pass(self, x, shared: bool):
        with torch.enable_grad():
            return _AutogradPass(self.shared(x) if shared else self.own(x))


def _vmaps(pack: _FuncPack, x: torch.Tensor, log_file) -> bool:
    """Whether vmap can batch the model's forward (a model that, say, branches on a value
    it reads with ``.item()`` cannot); if not, the log says so and the runs train one by one."""
    try:
        with torch.no_grad():
            pack.shared(x[:2])
            pack.own(x[:2].expand(len(pack.finite()), *x[:2].shape))
    except Exception as err:  # noqa: BLE001  (any failure of vmap means: train run by run)
        reason = (str(err).splitlines() or [""])[0][:200]
        print(
            f"vmap cannot batch this model ({type(err).__name__}: {reason}): its runs train one by one", file=log_file
        )
        return False
    return True


class _AutogradPass:
    """`stacked.TrainingPass`'s interface over an autograd graph: ``output`` (S, n, out),
    detached (the losses' gradients are written out), and ``backward(grad_output)``."""

    def __init__(self, output: torch.Tensor):
        self._output, self.output = output, output.detach()

    def backward(self, grad_output: torch.Tensor) -> None:
        self._output.backward(grad_output)


def train_packed(
    runs: list[tuple[str, dict]],
    data: dict,
    device="cpu",
    progress: bool = False,
    log_file=None,
    resume_path=None,
    resume_every: float = 60.0,
) -> list[RunResult]:
    """Train runs that share a `pack_key` together; one RunResult per run, as
    `train_one` would give. With `resume_path`, the pack's state is saved there every
    `resume_every` seconds and a restarted pack resumes from it."""
    return list(iter_train_packed(runs, data, device, progress, log_file, resume_path, resume_every))


def iter_train_packed(
    runs: list[tuple[str, dict]],
    data: dict,
    device="cpu",
    progress: bool = False,
    log_file=None,
    resume_path=None,
    resume_every: float = 60.0,
):
    """`train_packed`, yielding the RunResults one at a time once the pack has trained, so
    that only one run's checkpoints are in memory at once (the others wait on disk: beside
    `resume_path`, else in a temporary directory)."""
    if resume_path is None:
        with tempfile.TemporaryDirectory(prefix="featscope-pack-") as tmp:
            yield from _train_packed(runs, data, device, progress, log_file, None, resume_every, Path(tmp))
    else:
        spill = Path(resume_path).with_suffix(".checkpoints")
        yield from _train_packed(runs, data, device, progress, log_file, resume_path, resume_every, spill)
        shutil.rmtree(spill, ignore_errors=True)


def _train_packed(runs, data, device, progress, log_file, resume_path, resume_every, spill_dir):
    keep_freed_memory()
    flush_subnormals()
    configs = [cfg for _, cfg in runs]
    _check_packable(configs)
    cfg = configs[0]
    device = resolve_device(device) if isinstance(device, str) else device
    kind = task_kind(cfg["task"]["name"])
    own_data = isinstance(data, (list, tuple))  # one dataset per run (a per-seed split)
    tensors = _stacked_data(data, len(runs), device, kind) if own_data else _tensors(data, device, kind)
    x, y = tensors["x_train"], tensors["y_train"]
    x_run = x[0] if own_data else x  # one run's inputs: sizes and shapes
    n_samples = len(x_run)
    out_dim = y.shape[-1] if kind == "regression" else task_outputs(cfg["task"])
    packs_by = engine(cfg["model"])
    if log_file is not None and packs_by != "stacked":
        print(f"model '{cfg['model']['name']}' has no stacked form here: packing through {packs_by}", file=log_file)
    pack = (_Pack if packs_by == "stacked" else _FuncPack)(configs, x_run, out_dim, device)
    if packs_by != "stacked" and not _vmaps(pack, x_run, log_file):
        for i, (run_id, c) in enumerate(runs):
            yield train_one(run_id, c, data[i] if own_data else data, device, progress, log_file)
        return
    opt = BatchedOptimizer(pack.trainable(), [c["optim"] for c in configs])
    criterion = per_run_loss(kind, cfg["train"]["loss"])
    loss_and_gradient = per_run_loss_and_gradient(kind, cfg["train"]["loss"])
    total = cfg["train"]["steps"]
    eval_every = cfg["train"].get("eval_every", 1)
    is_checkpoint = schedules.from_config(cfg["schedule"], total)
    batch = cfg["optim"].get("batch_size") or n_samples
    ckpt_dtype = getattr(torch, cfg.get("checkpoint_dtype", "float32"))
    n = len(runs)
    rows = torch.arange(n, device=device).unsqueeze(1)  # indexes each run's own dataset

    def measure(split, xs=None, ys=None):
        """Per-run loss and accuracy on a split (or on per-run batches xs, ys)."""
        with torch.no_grad():
            if xs is None and own_data:
                xs, ys = tensors[f"x_{split}"], tensors[f"y_{split}"]
                out = pack.own(xs)
            elif xs is None:
                xs, ys = tensors[f"x_{split}"], tensors[f"y_{split}"]
                out = pack.shared(xs)
                ys = ys.expand(n, *ys.shape)
            else:
                out = pack.own(xs)
            return criterion(out, ys), _accuracies(out, ys, kind)

    st = {
        "step": 0,
        "orders": [torch.arange(n_samples) for _ in runs],
        "shuffles": [torch.Generator().manual_seed(c["seed"]) for c in configs],
        "saved_steps": [[] for _ in runs],
        "rows": [[] for _ in runs],
        "diverged_at": [None] * n,
        "elapsed": 0.0,
    }
    spill = _Spill(spill_dir, n, {k: v.shape[1:] for k, v in pack.params.items()}, ckpt_dtype)
    key = fingerprint({"configs": configs, "state": _STATE_FORMAT})
    if resume_path is not None:
        _restore(resume_path, key, st, pack, opt, spill)
    spill.keep_first([len(s) for s in st["saved_steps"]])
    start, last_save = time.perf_counter() - st["elapsed"], time.perf_counter()
    bar = tqdm(
        total=total, initial=st["step"], desc=f"pack of {n}", file=log_file, mininterval=2.0, disable=not progress
    )
    for step in range(st["step"], total + 1):
        if resume_path is not None and time.perf_counter() - last_save >= resume_every:
            st.update(step=step, elapsed=time.perf_counter() - start)
            _save_state(resume_path, key, st, pack, opt)
            last_save = time.perf_counter()
        pos = (step * batch) % n_samples
        if batch < n_samples and pos < batch:
            st["orders"] = [torch.randperm(n_samples, generator=g) for g in st["shuffles"]]
        if batch >= n_samples:
            forward = pack.training_pass(x, shared=not own_data)
            yb = y if own_data else y.expand(n, *y.shape)
        else:
            idx = torch.stack([o[pos : pos + batch] for o in st["orders"]]).to(device)
            if own_data:
                forward, yb = pack.training_pass(x[rows, idx], shared=False), y[rows, idx]
            else:
                forward, yb = pack.training_pass(x[idx], shared=False), y[idx]
        out = forward.output
        loss, grad_out = loss_and_gradient(out, yb)
        values = loss.cpu().tolist()
        accs = _accuracies(out, yb, kind).tolist()
        lrs = opt.lrs()
        epoch = step * batch / n_samples
        evaluate = step % eval_every == 0 or step == total or is_checkpoint(step)
        split = "batch" if batch < n_samples else "train"
        extra = []  # (split, per-run losses, per-run accuracies)
        if batch < n_samples and evaluate:
            extra.append(("train", *measure("train")))
        if "x_test" in tensors and evaluate:
            extra.append(("test", *measure("test")))
        alive = [i for i in range(n) if st["diverged_at"][i] is None]
        for i in alive:
            st["rows"][i].append((step, epoch, split, values[i], accs[i], lrs[i]))
            for name, losses, acc in extra:
                st["rows"][i].append((step, epoch, name, float(losses[i]), float(acc[i]), lrs[i]))
        wanted = [i for i in alive if is_checkpoint(step) or not math.isfinite(values[i])]
        finite = pack.finite() if wanted else None
        keep = [i for i in wanted if finite[i]]
        if keep:
            kept = {k: v.detach()[keep].to("cpu", ckpt_dtype) for k, v in pack.params.items()}
            for slot, i in enumerate(keep):
                spill.append(i, {k: v[slot] for k, v in kept.items()})
                st["saved_steps"][i].append(step)
        for i in alive:
            if not math.isfinite(values[i]):
                st["diverged_at"][i] = step
        if step == total or all(d is not None for d in st["diverged_at"]):
            break
        opt.zero_grad()
        # A diverged run's NaNs stay in its own slice: each run's loss only reaches its parameters.
        diverged = [i for i, v in enumerate(values) if not math.isfinite(v)]
        if diverged:
            grad_out[diverged] = 0.0
        forward.backward(grad_out)
        opt.step()
        bar.update(1)
    bar.close()
    wall = time.perf_counter() - start
    for i, (run_id, c) in enumerate(runs):
        yield _result(i, run_id, c, st, step, x_run, out_dim, wall / n, device, n, spill)


def _stacked_data(datasets: list, runs: int, device, kind: str) -> dict:
    """One dataset per run stacked along a leading run axis: arrays (S, n, ...). Their
    splits must match in size (a per-seed split of one task does)."""
    if len(datasets) != runs:
        raise ValueError(f"a pack of {runs} runs was given {len(datasets)} datasets; give one, or one per run")
    each = [_tensors(d, device, kind) for d in datasets]
    if any(e.keys() != each[0].keys() or any(e[k].shape != each[0][k].shape for k in e) for e in each):
        raise ValueError("the datasets of a pack's runs must have the same splits and shapes")
    return {k: torch.stack([e[k] for e in each]) for k in each[0]}


_STATE_FORMAT = 2  # resume states: 2 = checkpoints spilled to files, not in the state


class _Spill:
    """Each run's checkpoints appended to a file of its own as they are taken, so a pack
    holds none of them in memory (16 runs of the grokking study's K = 2048 net at its
    schedule: 3.8 GB) and its resume state stays small; read back one run at a time."""

    def __init__(self, directory: Path, runs: int, shapes: dict, dtype: torch.dtype):
        directory.mkdir(parents=True, exist_ok=True)
        self.paths = [directory / f"run-{i}.bin" for i in range(runs)]
        self.shapes, self.dtype = shapes, dtype
        self.sizes = {k: math.prod(shape) * dtype.itemsize for k, shape in shapes.items()}
        self.record = sum(self.sizes.values())  # bytes of one checkpoint

    def append(self, i: int, params: dict) -> None:
        with open(self.paths[i], "ab") as f:
            for k in self.shapes:
                f.write(params[k].contiguous().view(torch.uint8).numpy().tobytes())

    def holds(self, counts: list[int]) -> bool:
        """Whether the files hold at least `counts` checkpoints (a resume state's)."""
        return all(self._bytes(path) >= c * self.record for path, c in zip(self.paths, counts))

    def keep_first(self, counts: list[int]) -> None:
        """Drop checkpoints taken after the state being resumed was saved."""
        for path, c in zip(self.paths, counts):
            with open(path, "ab") as f:
                f.truncate(c * self.record)

    def read(self, i: int, count: int) -> dict:
        raw = torch.from_numpy(np.fromfile(self.paths[i], dtype=np.uint8, count=count * self.record))
        raw = raw.view(count, self.record)
        params, at = {}, 0
        for k, shape in self.shapes.items():
            params[k] = raw[:, at : at + self.sizes[k]].contiguous().view(self.dtype).view(count, *shape)
            at += self.sizes[k]
        return params

    @staticmethod
    def _bytes(path: Path) -> int:
        try:
            return path.stat().st_size
        except FileNotFoundError:
            return 0


def _accuracies(out: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    if kind != "classification":
        return torch.full(out.shape[:1], math.nan)
    return (out.argmax(dim=-1) == y).float().mean(dim=-1).cpu()


def _result(i, run_id, cfg, st, step, x, out_dim, wall, device, n, spill) -> RunResult:
    metrics = pd.DataFrame(st["rows"][i], columns=["step", "epoch", "split", "loss", "acc", "lr"])
    metrics.insert(0, "run", run_id)
    steps = st["saved_steps"][i]
    bundle = {
        "format": CHECKPOINT_FORMAT,
        "steps": torch.tensor(steps, dtype=torch.int64),
        "params": spill.read(i, len(steps)),
        "model": cfg["model"],
        "in_dim": _in_dim(x, cfg["model"]["name"]),
        "out_dim": int(out_dim),
        "loss": cfg["train"]["loss"],
        "task": cfg["task"]["name"],
    }
    diverged = st["diverged_at"][i]
    info = {
        "run": run_id,
        "status": "ok" if diverged is None else "diverged",
        "steps_done": int(step if diverged is None else diverged),
        "outputs": int(out_dim),
        "diverged_at": diverged,
        "wall_seconds": wall,
        "device": str(device),
        "packed": n,
        **versions(),
    }
    return RunResult(run_id, bundle, metrics, info)


def _save_state(path, key, st, pack, opt) -> None:
    from .io import save_torch

    save_torch(
        {
            "key": key,
            "params": {k: v.detach() for k, v in pack.params.items()},
            "opt": opt.state_dict(),
            **{k: v for k, v in st.items() if k != "shuffles"},
            "shuffles": [g.get_state() for g in st["shuffles"]],
        },
        path,
    )


def _restore(path, key, st, pack, opt, spill) -> None:
    saved = load_resume_state(path, key)
    if saved is None or not spill.holds([len(s) for s in saved["saved_steps"]]):
        return
    with torch.no_grad():
        for k, v in pack.params.items():
            v.copy_(saved["params"][k])
    opt.load_state_dict(saved["opt"])
    for g, state in zip(st["shuffles"], saved["shuffles"]):
        g.set_state(state)
    for k in ("step", "orders", "saved_steps", "rows", "diverged_at", "elapsed"):
        st[k] = saved[k]


def train_alone_packed(run_id: str, cfg: dict, data: dict, **kwargs) -> RunResult:
    """One run through the packed path, bitwise equal to its result in any pack of two or
    more (each run's slice of a batched product is computed alike). On one thread (the
    workflow's default) a pack of one does that. On more, MKL splits a lone product's long
    inner dimension across threads, which rounds differently from the same product in a
    batch (measured: the first layer's weight gradient), so the run trains beside a copy;
    likewise on a GPU, where it has not been measured."""
    device = resolve_device(kwargs.get("device", "cpu"))
    if device.type == "cpu" and torch.get_num_threads() == 1:
        return train_packed([(run_id, cfg)], data, **kwargs)[0]
    return train_packed([(run_id, cfg), (f"{run_id}~copy", cfg)], data, **kwargs)[0]
