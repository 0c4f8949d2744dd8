"""Training: a list of runs in, checkpoints and a dense metrics log out.

The unit of work is a list of runs (so that runs sharing shapes can later be packed into
one process); each run keeps its own checkpoints and metrics. Runs train through the one
training loop (`featscope.loop`); here is its module engine, which trains one
``nn.Module`` by autograd: what packs cannot hold (batch norm's running statistics) and
what vmap cannot batch. Packs are `featscope.packed`'s.

Step convention: step t is the model after t optimiser updates. The metrics row for step t
holds the loss of those parameters, and the checkpoint for step t holds the same
parameters, so metrics and observables line up.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .loop import (  # noqa: F401 (the names callers import from here)
    CHECKPOINT_FORMAT,
    RunResult,
    Setup,
    load_resume_state,
    prepare,
    resolve_device,
    train,
    versions,
)
from .losses import zero_mean_mse  # noqa: F401 (tests and notebooks import it from here)
from .models import build_model
from .registry import loss as registered_loss
from .tasks import task_kind, task_outputs  # noqa: F401 (imported from here by tests)


def loss_fn(kind: str, name: str):
    """One run's loss, ``(outputs (n, ...), targets (n, ...)) -> scalar``: the registered
    loss' per-run value (`registry.LossSpec.fn`) on a pack of one. An unknown loss, or one
    that does not apply to a task of ``kind``, is refused, named."""
    per_run = per_run_loss(kind, name)
    return lambda out, y: per_run(out.unsqueeze(0), y.unsqueeze(0))[0]


def per_run_loss(kind: str, name: str):
    """The registered loss' value over a pack: outputs (S, n, ...) and targets (S, n, ...)
    give S losses (`registry.LossSpec.fn`)."""
    return registered_loss(name).for_task(kind).fn


def per_run_loss_and_gradient(kind: str, name: str):
    """`per_run_loss` with its gradient written out: (outputs (S, n, C), targets) give the
    S losses, and the gradient of their sum with respect to the outputs (S, n, C), for a
    pack's hand-written backward (`stacked.TrainingPass`). The gradients agree with
    autograd's to float32 rounding (tests/test_packed.py: mse's exactly, the others within
    a few roundings of their largest entry)."""
    return registered_loss(name).for_task(kind).value_and_gradient


def _readout(model, name: str):
    """The model's readout module, at the path its architecture registered."""
    from .architectures import model_spec

    return model.get_submodule(model_spec(name).readout)


def _trainable(model, which: str, readout) -> list:
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


def _training_mode(model, which: str, readout) -> None:
    """Train mode, except that frozen features also keep their batch-norm statistics frozen."""
    if which == "readout":
        model.eval()
        readout.train()
    else:
        model.train()


class ModuleEngine:
    """The module engine (see `featscope.loop`): one run, one ``nn.Module``, autograd
    through the model and the loss' per-run value. Batch-norm buffers update in training
    mode and are part of each checkpoint; with ``optim.train: readout`` the features stay
    in evaluation mode. The optimiser sees each trainable parameter as a stack of one run
    (a view, updated in place): the same optimiser, warm-up and kernels as a pack's."""

    name = "module"
    runs = 1

    def __init__(self, setup: Setup):
        (cfg,) = setup.configs
        torch.manual_seed(cfg["seed"])
        self.model = build_model(cfg["model"], setup.in_dim, setup.out_dim).to(setup.device)
        which = cfg["optim"].get("train", "all")
        readout = _readout(self.model, cfg["model"]["name"])
        self._params = _trainable(self.model, which, readout)
        _training_mode(self.model, which, readout)
        self._stacks = [p.detach().unsqueeze(0) for p in self._params]
        self.loss = setup.loss

    def _forward(self, x, shared: bool) -> torch.Tensor:
        return self.model(x if shared else x[0]).unsqueeze(0)

    def train_step(self, x, y, shared: bool):
        out = self._forward(x, shared)
        return _AutogradStep(self, out, self.loss.fn(out, y))

    @torch.no_grad()
    def outputs(self, x, shared: bool) -> torch.Tensor:
        mode = {m: m.training for m in self.model.modules()}
        self.model.eval()  # batch norm: use running statistics and leave them untouched
        out = self._forward(x, shared)
        for m, training in mode.items():
            m.train(training)
        return out

    def trainable(self) -> list:
        return self._stacks

    def checkpoint(self) -> dict:
        return {name: t.unsqueeze(0) for name, t in self.model.state_dict().items()}  # parameters and buffers

    def finite(self) -> torch.Tensor:
        return torch.tensor([all(bool(torch.isfinite(p).all()) for p in self.model.parameters())])

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, saved: dict) -> None:
        self.model.load_state_dict(saved)  # in place: the optimiser's views stay the parameters

    def _gradients_to_stacks(self) -> None:
        for stack, p in zip(self._stacks, self._params):
            stack.grad = None if p.grad is None else p.grad.unsqueeze(0)
            p.grad = None  # the stack's view holds it now; the next backward makes a new one


class _AutogradStep:
    def __init__(self, engine: ModuleEngine, out: torch.Tensor, losses: torch.Tensor):
        self.engine, self.output, self.losses, self._losses = engine, out.detach(), losses.detach(), losses

    def backward(self, diverged: list[int]) -> None:
        if not diverged:  # (the one run has diverged: the loop stops before any backward)
            self._losses.sum().backward()
        self.engine._gradients_to_stacks()


def train_runs(
    runs: list[tuple[str, dict]],
    data: dict,
    device="cpu",
    progress: bool = True,
    log_file=None,
    resume_dir=None,
    resume_every: float = 60.0,
) -> list[RunResult]:
    """Train each (run_id, train_config) on `data`, one by one; return their results.

    With `resume_dir`, each run saves its full training state there every
    `resume_every` seconds and, when started again after being killed, resumes
    from it: model, optimiser and RNG states are all restored, so
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
    """Train one run through the module engine (see `train_runs` for resuming)."""
    setup = prepare([(run_id, cfg)], data, device)
    [result] = train(ModuleEngine(setup), setup, run_id, progress, log_file, resume_path, resume_every)
    return result
