"""The training loop: one for every engine.

`train` runs S runs together (S = 1 for a run trained alone) and owns everything that is
not arithmetic: each run's batch order (a ``torch.Generator`` seeded by the run's seed, a
fresh ``randperm`` at each epoch's start), the evaluation cadence (every ``eval_every``
steps, every checkpoint step and the last), the metrics rows, the checkpoints (appended
to a file per run as they are taken, `_Spill`), divergence (per run: a diverged run's
last parameters are kept if finite, its gradient is zeroed, the others train on), the
optimiser (`batched_optim.BatchedOptimizer`: each run's own learning rate, warm-up,
weight decay and momentum), the resume state and the progress bar.

The arithmetic is an engine's. An engine holds S runs' parameters and gives:

- ``runs``: S; ``name``: which engine (part of the resume state's key);
- ``train_step(x, y, shared) -> step``: the forward pass on the training batch (``x``
  shared by all runs, (n, ...), or one batch per run, (S, n, ...); targets ``y`` (S, n, ...))
  with ``step.output`` (S, n, out), no graph, ``step.losses`` (S,) and
  ``step.backward(diverged)``, which sets ``.grad`` of every tensor of ``trainable()``, the
  runs listed in ``diverged`` getting none of their loss' gradient;
- ``outputs(x, shared)``: outputs (S, n, out) for evaluation (no gradient, evaluation mode);
- ``trainable()``: the tensors (S, ...) the optimiser updates, in place;
- ``checkpoint()``: name -> tensor (S, ...), what a checkpoint holds (parameters and buffers);
- ``finite()``: per run, whether its parameters are all finite, a bool tensor (S,);
- ``state_dict()`` / ``load_state_dict(saved)``: its tensors, for the resume state.

The engines: `training.ModuleEngine` (one ``nn.Module`` trained by autograd: batch norm,
frozen features' evaluation mode, models vmap cannot batch), `packed.StackedEngine`
(stacked parameters, `stacked.TrainingPass`'s written-out backward) and
`packed.FuncEngine` (stacked parameters, ``torch.func.vmap`` and autograd). Losses come
from one table (`registry.register_loss`, `featscope.losses`).

Step convention: step t is the model after t optimiser updates. The metrics row for step t
holds the loss of those parameters, and the checkpoint for step t holds the same
parameters, so metrics and observables line up. Buffers a training forward updates (batch
norm's running statistics, module engine) are checkpointed after step t's batch has
updated them, as `train_one` always did.
"""

from __future__ import annotations

import math
import platform
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from . import schedules
from ._allocator import keep_freed_memory
from ._subnormals import flush_subnormals
from .batched_optim import BatchedOptimizer
from .config import fingerprint
from .registry import LossSpec
from .registry import loss as registered_loss
from .tasks import task_kind, task_outputs

CHECKPOINT_FORMAT = "featscope.checkpoints/1"
# Resume states. 3: one format for every engine (the loop's state, the engine's tensors,
# the optimiser's, checkpoints spilled beside it). 2 (packs, spilled) and 1 (train_one,
# checkpoints inside) have other keys, so such a state is ignored: a fresh start.
STATE_FORMAT = 3
METRICS_COLUMNS = ["step", "epoch", "split", "loss", "acc", "lr"]


@dataclass
class RunResult:
    run_id: str
    checkpoints: dict  # CHECKPOINT_FORMAT bundle: steps + stacked parameters
    metrics: pd.DataFrame
    info: dict = field(default_factory=dict)


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"``: CUDA if available, else the CPU; a CUDA device asked for where there is
    none is refused."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device '{name}' was requested but CUDA is not available")
    return device


def versions() -> dict:
    """The versions a run's info records."""
    from . import __version__

    return {
        "version.featscope": __version__,
        "version.torch": torch.__version__,
        "version.numpy": np.__version__,
        "version.python": platform.python_version(),
    }


@dataclass
class Setup:
    """What every engine and the loop share about a list of runs and their data."""

    runs: list  # (run_id, train config)
    device: torch.device
    kind: str  # the task's kind
    loss: LossSpec
    tensors: dict  # splits as tensors: (n, ...), or (S, n, ...) with one dataset per run
    own_data: bool
    x_run: torch.Tensor  # one run's training inputs (sizes and shapes)
    out_dim: int

    @property
    def configs(self) -> list[dict]:
        return [cfg for _, cfg in self.runs]

    @property
    def in_dim(self) -> int:
        return in_dim(self.x_run, self.configs[0]["model"]["name"])


def prepare(runs: list[tuple[str, dict]], data, device) -> Setup:
    """The runs' data as tensors on ``device`` (one dataset for all, or a list of one per
    run, stacked), their task's kind, output size and loss (checked to apply to the task)."""
    keep_freed_memory()
    flush_subnormals()
    cfg = runs[0][1]
    device = resolve_device(device) if isinstance(device, str) else device
    kind = task_kind(cfg["task"]["name"])
    loss = registered_loss(cfg["train"]["loss"]).for_task(kind, cfg["task"]["name"])
    own_data = isinstance(data, (list, tuple))  # one dataset per run (a per-seed split)
    tensors = _stacked_data(data, len(runs), device) if own_data else _tensors(data, device)
    y = tensors["y_train"]
    out_dim = y.shape[-1] if kind == "regression" else task_outputs(cfg["task"])
    x_run = tensors["x_train"][0] if own_data else tensors["x_train"]
    return Setup(runs, device, kind, loss, tensors, own_data, x_run, int(out_dim))


def in_dim(x: torch.Tensor, model: str) -> int:
    """Input size a model needs, as its architecture registered: an MLP sees each sample as
    a vector (C·H·W for an image), a convolutional net needs the channels."""
    from .architectures import in_dim_of, model_spec

    return in_dim_of(model_spec(model), tuple(x.shape[1:]))


def _tensors(data: dict, device) -> dict:
    out = {}
    for key, arr in data.items():
        t = torch.as_tensor(arr)
        integer = not t.is_floating_point()  # labels, and token inputs such as (a, b) pairs
        out[key] = (t.long() if integer else t.float()).to(device)
    return out


def _stacked_data(datasets: list, runs: int, device) -> dict:
    """One dataset per run stacked along a leading run axis: arrays (S, n, ...). Their
    splits must match in size (a per-seed split of one task does)."""
    if len(datasets) != runs:
        raise ValueError(f"a pack of {runs} runs was given {len(datasets)} datasets; give one, or one per run")
    each = [_tensors(d, device) for d in datasets]
    if any(e.keys() != each[0].keys() or any(e[k].shape != each[0][k].shape for k in e) for e in each):
        raise ValueError("the datasets of a pack's runs must have the same splits and shapes")
    return {k: torch.stack([e[k] for e in each]) for k in each[0]}


def train(engine, setup: Setup, desc: str, progress, log_file, resume_path, resume_every: float):
    """Train the engine's runs; yield one `RunResult` per run, in order, once all have
    trained, one at a time (only one run's checkpoints in memory at once: the others wait
    on disk, beside ``resume_path`` or in a temporary directory). With ``resume_path``,
    the whole state is saved there every ``resume_every`` seconds, and a restarted call
    resumes from it to the same numbers as an uninterrupted one."""
    with _spill_dir(resume_path) as spill_dir:
        yield from _loop(engine, setup, desc, progress, log_file, resume_path, resume_every, spill_dir)


@contextmanager
def _spill_dir(resume_path):
    if resume_path is None:
        with tempfile.TemporaryDirectory(prefix="featscope-pack-") as tmp:
            yield Path(tmp)
    else:
        spill = Path(resume_path).with_suffix(".checkpoints")
        yield spill
        shutil.rmtree(spill, ignore_errors=True)


def _loop(engine, setup: Setup, desc, progress, log_file, resume_path, resume_every, spill_dir):
    configs, tensors, device, kind = setup.configs, setup.tensors, setup.device, setup.kind
    cfg, n = configs[0], engine.runs
    x, y = tensors["x_train"], tensors["y_train"]
    n_samples = len(setup.x_run)
    opt = BatchedOptimizer(engine.trainable(), [c["optim"] for c in configs])
    total = cfg["train"]["steps"]
    eval_every = cfg["train"].get("eval_every", 1)
    is_checkpoint = schedules.from_config(cfg["schedule"], total)
    batch = cfg["optim"].get("batch_size") or n_samples
    minibatch = batch < n_samples
    ckpt_dtype = getattr(torch, cfg.get("checkpoint_dtype", "float32"))
    rows = torch.arange(n, device=device).unsqueeze(1)  # indexes each run's own dataset

    def measure(split):
        """Per-run loss and accuracy on a whole split."""
        xs, ys = tensors[f"x_{split}"], tensors[f"y_{split}"]
        out = engine.outputs(xs, shared=not setup.own_data)
        if not setup.own_data:
            ys = ys.expand(n, *ys.shape)
        with torch.no_grad():
            return setup.loss.fn(out, ys), _accuracies(out, ys, kind)

    st = {
        "step": 0,
        "orders": [torch.arange(n_samples) for _ in range(n)],
        "shuffles": [torch.Generator().manual_seed(c["seed"]) for c in configs],
        "saved_steps": [[] for _ in range(n)],
        "rows": [[] for _ in range(n)],
        "diverged_at": [None] * n,
        "elapsed": 0.0,
    }
    kept_now = engine.checkpoint()
    dtypes = {k: ckpt_dtype if v.is_floating_point() else v.dtype for k, v in kept_now.items()}
    spill = _Spill(spill_dir, n, {k: v.shape[1:] for k, v in kept_now.items()}, dtypes)
    key = fingerprint({"configs": configs, "engine": engine.name, "state": STATE_FORMAT})
    if resume_path is not None:
        _restore(resume_path, key, st, engine, opt, spill)
    spill.keep_first([len(s) for s in st["saved_steps"]])
    start, last_save = time.perf_counter() - st["elapsed"], time.perf_counter()
    bar = tqdm(total=total, initial=st["step"], desc=desc, file=log_file, mininterval=2.0, disable=not progress)
    for step in range(st["step"], total + 1):
        if resume_path is not None and time.perf_counter() - last_save >= resume_every:
            st.update(step=step, elapsed=time.perf_counter() - start)
            _save_state(resume_path, key, st, engine, opt)
            last_save = time.perf_counter()
        pos = (step * batch) % n_samples
        if minibatch and pos < batch:
            st["orders"] = [torch.randperm(n_samples, generator=g) for g in st["shuffles"]]
        if not minibatch:
            xb, yb, shared = x, (y if setup.own_data else y.expand(n, *y.shape)), not setup.own_data
        else:
            idx = torch.stack([o[pos : pos + batch] for o in st["orders"]]).to(device)
            xb, yb, shared = (x[rows, idx], y[rows, idx], False) if setup.own_data else (x[idx], y[idx], False)
        train_step = engine.train_step(xb, yb, shared)
        values = train_step.losses.detach().cpu().tolist()
        accs = _accuracies(train_step.output, yb, kind).tolist()
        lrs = opt.lrs()
        epoch = step * batch / n_samples
        evaluate = step % eval_every == 0 or step == total or is_checkpoint(step)
        split = "batch" if minibatch else "train"
        extra = []  # (split, per-run losses, per-run accuracies)
        if minibatch and evaluate:  # the batch's loss, then the whole training set's at the same θ
            extra.append(("train", *measure("train")))
        if "x_test" in tensors and evaluate:
            extra.append(("test", *measure("test")))
        alive = [i for i in range(n) if st["diverged_at"][i] is None]
        for i in alive:
            st["rows"][i].append((step, epoch, split, values[i], accs[i], lrs[i]))
            for name, losses, acc in extra:
                st["rows"][i].append((step, epoch, name, float(losses[i]), float(acc[i]), lrs[i]))
        # A diverged step is kept as a checkpoint when its parameters are still finite.
        wanted = [i for i in alive if is_checkpoint(step) or not math.isfinite(values[i])]
        finite = engine.finite() if wanted else None
        keep = [i for i in wanted if finite[i]]
        if keep:
            kept = {k: v.detach()[keep].to("cpu", dtypes[k]) for k, v in engine.checkpoint().items()}
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
        train_step.backward([i for i, v in enumerate(values) if not math.isfinite(v)])
        opt.step()
        bar.update(1)
    bar.close()
    wall = time.perf_counter() - start
    for i, (run_id, c) in enumerate(setup.runs):
        yield _result(i, run_id, c, st, step, setup, wall / n, n, spill)


def _accuracies(out: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    if kind != "classification":
        return torch.full(out.shape[:1], math.nan)
    return (out.argmax(dim=-1) == y).float().mean(dim=-1).cpu()


def _result(i, run_id, cfg, st, step, setup: Setup, wall, n, spill) -> RunResult:
    metrics = pd.DataFrame(st["rows"][i], columns=METRICS_COLUMNS)
    metrics.insert(0, "run", run_id)
    steps = st["saved_steps"][i]
    bundle = {
        "format": CHECKPOINT_FORMAT,
        "steps": torch.tensor(steps, dtype=torch.int64),
        "params": spill.read(i, len(steps)),
        "model": cfg["model"],
        "in_dim": setup.in_dim,
        "out_dim": setup.out_dim,
        "loss": cfg["train"]["loss"],
        "task": cfg["task"]["name"],
    }
    diverged = st["diverged_at"][i]
    info = {
        "run": run_id,
        "status": "ok" if diverged is None else "diverged",
        "steps_done": int(step if diverged is None else diverged),
        "outputs": setup.out_dim,
        "diverged_at": diverged,
        "wall_seconds": wall,
        "device": str(setup.device),
        "packed": n,
        **versions(),
    }
    return RunResult(run_id, bundle, metrics, info)


class _Spill:
    """Each run's checkpoints appended to a file of its own as they are taken, so a pack
    holds none of them in memory (16 runs of the grokking study's K = 2048 net at its
    schedule: 3.8 GB) and its resume state stays small; read back one run at a time."""

    def __init__(self, directory: Path, runs: int, shapes: dict, dtypes: dict):
        directory.mkdir(parents=True, exist_ok=True)
        self.paths = [directory / f"run-{i}.bin" for i in range(runs)]
        self.shapes, self.dtypes = shapes, dtypes
        self.sizes = {k: math.prod(shape) * dtypes[k].itemsize for k, shape in shapes.items()}
        self.record = sum(self.sizes.values())  # bytes of one checkpoint

    def append(self, i: int, params: dict) -> None:
        with open(self.paths[i], "ab") as f:
            for k in self.shapes:
                f.write(params[k].contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())

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
            params[k] = raw[:, at : at + self.sizes[k]].contiguous().view(self.dtypes[k]).view(count, *shape)
            at += self.sizes[k]
        return params

    @staticmethod
    def _bytes(path: Path) -> int:
        try:
            return path.stat().st_size
        except FileNotFoundError:
            return 0


def load_resume_state(path, key) -> dict | None:
    """A saved training state, if it exists, is readable and belongs to this very `key`
    (a fingerprint of the configs, the engine and `STATE_FORMAT`); else None: a fresh start."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:
        return None  # a damaged partial state is worth less than a fresh start
    return saved if isinstance(saved, dict) and saved.get("key") == key else None


def _save_state(path, key, st, engine, opt) -> None:
    from .io import save_torch

    save_torch(
        {
            "key": key,
            "format": STATE_FORMAT,
            "engine": engine.state_dict(),
            "opt": opt.state_dict(),
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            **{k: v for k, v in st.items() if k != "shuffles"},
            "shuffles": [g.get_state() for g in st["shuffles"]],
        },
        path,
    )


def _restore(path, key, st, engine, opt, spill) -> None:
    saved = load_resume_state(path, key)
    if saved is None or not spill.holds([len(s) for s in saved["saved_steps"]]):
        return
    engine.load_state_dict(saved["engine"])
    opt.load_state_dict(saved["opt"])
    torch.set_rng_state(saved["rng"])
    if saved["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["cuda_rng"])
    for g, state in zip(st["shuffles"], saved["shuffles"]):
        g.set_state(state)
    for k in ("step", "orders", "saved_steps", "rows", "diverged_at", "elapsed"):
        st[k] = saved[k]
