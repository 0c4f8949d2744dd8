"""Checkpoint schedules: plain functions ``step -> bool`` (as in Cockpit).

A schedule always includes step 0 (the initialisation) and the final step.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

Schedule = Callable[[int], bool]


def every(n: int) -> Schedule:
    """Every n-th step."""
    return lambda step: step % n == 0


def log_spaced(total: int, count: int) -> Schedule:
    """About `count` steps spaced evenly in log(1 + step) over [0, total]."""
    steps = set(np.unique(np.round(np.geomspace(1, total + 1, count)).astype(int) - 1).tolist())
    return lambda step: step in steps


def union(*schedules: Schedule) -> Schedule:
    return lambda step: any(s(step) for s in schedules)


def from_config(cfg: dict, total: int) -> Schedule:
    """Schedule from the config's ``schedule`` block: ``every`` and/or ``log``."""
    parts = []
    if cfg.get("every"):
        parts.append(every(int(cfg["every"])))
    if cfg.get("log"):
        parts.append(log_spaced(total, int(cfg["log"])))
    ends = lambda step: step in (0, total)  # noqa: E731
    return union(ends, *parts)


def checkpoint_steps(cfg: dict, total: int) -> list[int]:
    schedule = from_config(cfg, total)
    return [s for s in range(total + 1) if schedule(s)]
