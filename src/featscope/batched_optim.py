"""Adam, AdamW and SGD over stacked parameters, with per-run hyperparameters: the
optimiser and the warm-up of every engine of the training loop (`featscope.loop`).

A pack's parameters are tensors (S, ...) holding S runs (the module engine's one run is
S = 1, views of its module's parameters). Each run's update is the one ``torch.optim``'s
fused optimiser with a ``LambdaLR`` linear warm-up makes on that run alone, bit for bit
(tests/test_packed.py, tests/test_loop.py), except that the learning rate, weight decay,
momentum and warm-up length are per run, so grid points that differ only in those values
share a pack.

The updates go through torch's fused kernels (``torch._fused_adam_`` and kin, which
``torch.optim``'s ``fused=True`` calls) on each run's slices of the stacked tensors. The
kernels round an element by its position in the tensor they are given (a run's slice of
a stacked bias, updated in one call with the others, differs from the run's own bias in
the last bit), so every run gets tensors of its own, shaped as when it trains alone, and
its numbers do not depend on its pack. Runs with equal values share a call. Several
times faster than the ``torch._foreach_*`` version this replaces (benchmarks/HISTORY.md).
"""

from __future__ import annotations

import torch

ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # torch.optim's defaults


class BatchedOptimizer:
    def __init__(self, params: list[torch.Tensor], optims: list[dict]):
        names = {o["name"] for o in optims}
        if len(names) != 1 or next(iter(names)) not in ("adam", "adamw", "sgd"):
            raise ValueError(f"one optimiser (adam, adamw or sgd) per pack, got {sorted(names)}")
        self.name = names.pop()
        self.params = params
        self.base_lr = [float(o["lr"]) for o in optims]
        self.warmup = [int(o.get("warmup_steps", 0)) for o in optims]
        self.weight_decay = [float(o.get("weight_decay", 0.0)) for o in optims]
        self.momentum = [float(o.get("momentum", 0.0)) for o in optims]
        betas = {tuple(o.get("betas", ADAM_BETAS)) for o in optims}
        if len(betas) != 1:  # pack_key keeps runs with other betas apart
            raise ValueError(f"one pair of Adam betas per pack, got {sorted(betas)}")
        self.betas = tuple(float(b) for b in betas.pop())
        self.t = 0  # optimiser steps taken
        self.state = [{} for _ in params]
        self._views = {}  # id -> (stacked tensor, its per-run views)

    def lrs(self) -> list[float]:
        """Each run's learning rate at this step: linear warm-up over its ``warmup_steps``,
        the factor ``LambdaLR`` would apply with ``min(1, (t + 1) / warmup_steps)``."""
        return [lr * (min(1.0, (self.t + 1) / w) if w > 0 else 1.0) for lr, w in zip(self.base_lr, self.warmup)]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        lrs = self.lrs()
        self.t += 1
        live = [(p, state) for p, state in zip(self.params, self.state) if p.grad is not None]
        if not live:
            return
        ps, states = [p for p, _ in live], [s for _, s in live]
        params = [self._runs_of(p) for p in ps]
        # The kernels read raw memory: a non-contiguous gradient is updated wrongly, silently.
        grads = [p.grad.contiguous().unbind(0) for p in ps]
        if self.name == "sgd":
            self._sgd(params, grads, states, lrs)
        else:
            self._adam(params, grads, states, lrs)

    def _adam(self, params, grads, states, lrs):
        for p, state in zip(params, states):
            if not state:
                state["exp_avg"] = torch.zeros((len(p), *p[0].shape), dtype=p[0].dtype, device=p[0].device)
                state["exp_avg_sq"] = torch.zeros_like(state["exp_avg"])
        m = [self._runs_of(s["exp_avg"]) for s in states]
        v = [self._runs_of(s["exp_avg_sq"]) for s in states]
        step = torch.tensor(float(self.t), device=params[0][0].device)  # torch.optim's: float32
        fused = torch._fused_adamw_ if self.name == "adamw" else torch._fused_adam_
        for (lr, decay), runs in _groups(lrs, self.weight_decay).items():
            pick = _picker(runs)
            fused(
                pick(params),
                pick(grads),
                pick(m),
                pick(v),
                [],
                [step] * (len(params) * len(runs)),
                lr=lr,
                beta1=self.betas[0],
                beta2=self.betas[1],
                weight_decay=decay,
                eps=ADAM_EPS,
                amsgrad=False,
                maximize=False,
            )

    def _sgd(self, params, grads, states, lrs):
        first = any(momentum for momentum in self.momentum) and not states[0]
        if first:  # as torch.optim's fused SGD: the kernel fills the buffers on the first step
            for p, state in zip(params, states):
                state["momentum_buffer"] = torch.empty((len(p), *p[0].shape), dtype=p[0].dtype, device=p[0].device)
        buffers = [self._runs_of(s["momentum_buffer"]) for s in states] if states[0] else None
        for (lr, decay, momentum), runs in _groups(lrs, self.weight_decay, self.momentum).items():
            pick = _picker(runs)
            torch._fused_sgd_(
                pick(params),
                pick(grads),
                pick(buffers) if momentum else [],
                weight_decay=decay,
                momentum=momentum,
                lr=lr,
                dampening=0.0,
                nesterov=False,
                maximize=False,
                is_first_step=first,
            )

    def _runs_of(self, stacked: torch.Tensor) -> tuple:
        """Per-run views of a tensor that lives across steps (a parameter, optimiser state),
        made once: `unbind` on every step cost more than the updates themselves."""
        hit = self._views.get(id(stacked))
        if hit is None or hit[0] is not stacked:
            hit = self._views[id(stacked)] = (stacked, stacked.detach().unbind(0))
        return hit[1]

    def state_dict(self) -> dict:
        return {"t": self.t, "state": self.state}

    def load_state_dict(self, saved: dict) -> None:
        self.t, self.state = saved["t"], saved["state"]


def _groups(*per_run: list) -> dict[tuple, list[int]]:
    """Runs by their values: (value, ...) -> the runs' indices."""
    groups: dict[tuple, list[int]] = {}
    for i, values in enumerate(zip(*per_run)):
        groups.setdefault(values, []).append(i)
    return groups


def _picker(runs: list[int]):
    """Per-run tensors, one tuple per stacked tensor -> the listed runs' tensors, flat."""
    return lambda per_tensor: [tensors[i] for tensors in per_tensor for i in runs]
