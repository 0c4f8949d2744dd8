"""Adam, AdamW and SGD over stacked parameters, with per-run hyperparameters.

A pack's parameters are tensors (S, ...) holding S runs. The updates are the ones
``torch.optim`` makes (same formulas, same order of operations), except that the
learning rate, weight decay, momentum and warm-up length are per run, so grid points
that differ only in those values share a pack.
"""
from __future__ import annotations

import math

import torch

VALUE_KEYS = ("lr", "weight_decay", "momentum", "warmup_steps")  # may differ within a pack
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # torch.optim's defaults, as train_one uses


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
        self.t = 0  # optimiser steps taken
        self.state = [{} for _ in params]
        self._shaped = {}  # per-run values shaped for each parameter, made once

    def lrs(self) -> list[float]:
        """Each run's learning rate at this step (linear warm-up, as train_one's LambdaLR)."""
        return [lr * (min(1.0, (self.t + 1) / w) if w > 0 else 1.0) for lr, w in zip(self.base_lr, self.warmup)]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        lrs = self.lrs()
        self.t += 1
        update = self._sgd if self.name == "sgd" else self._adam
        for p, state in zip(self.params, self.state):
            if p.grad is not None:
                update(p, p.grad, state, self._per_run("lr", lrs, p),
                       self._per_run("weight_decay", self.weight_decay, p),
                       self._per_run("momentum", self.momentum, p))

    def _per_run(self, name, values, p):
        """Per-run values shaped to broadcast over a stacked parameter (S, ...). Constant
        values (all but a warming-up learning rate) are shaped once per parameter."""
        key = (name, p.dim(), p.dtype, p.device)
        if key in self._shaped and self._shaped[key][0] == values:
            return self._shaped[key][1]
        shaped = torch.tensor(values, dtype=p.dtype, device=p.device).view(-1, *[1] * (p.dim() - 1))
        self._shaped[key] = (values, shaped)
        return shaped

    def _adam(self, p, grad, state, lr, wd, _):
        beta1, beta2 = ADAM_BETAS
        if self.name == "adamw":
            p.mul_(1 - lr * wd)
        elif any(self.weight_decay):
            grad = grad + wd * p
        if not state:
            state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(grad, 1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step_size = lr / (1 - beta1 ** self.t)
        denom = (v.sqrt() / math.sqrt(1 - beta2 ** self.t)).add_(ADAM_EPS)
        p.sub_(step_size * m / denom)

    def _sgd(self, p, grad, state, lr, wd, momentum):
        if any(self.weight_decay):
            grad = grad + wd * p
        if any(self.momentum):
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = grad.clone()
            else:
                state["momentum_buffer"].mul_(momentum).add_(grad)
            grad = state["momentum_buffer"]
        p.sub_(lr * grad)

    def state_dict(self) -> dict:
        return {"t": self.t, "state": self.state}

    def load_state_dict(self, saved: dict) -> None:
        self.t, self.state = saved["t"], saved["state"]
