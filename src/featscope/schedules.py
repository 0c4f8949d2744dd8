"""Checkpoint schedules: plain functions ``step -> bool`` (as in Cockpit).

A schedule always includes step 0 (the initialisation) and the final step.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Schedule = Callable[[int], bool]


def every(n: int) -> Schedule:
    """Every n-th step."""
    return lambda step: step % n == 0


def log_spaced(total: int, count: int, below: int | None = None) -> Schedule:
    """About `count` steps spaced evenly in log(1 + step) over [0, total]; with `below`, only
    those before that step."""
    steps = set(np.unique(np.round(np.geomspace(1, total + 1, count)).astype(int) - 1).tolist())
    if below is not None:
        steps = {s for s in steps if s < below}
    return lambda step: step in steps


def union(*schedules: Schedule) -> Schedule:
    return lambda step: any(s(step) for s in schedules)


def from_config(cfg: dict, total: int) -> Schedule:
    """Schedule from the config's ``schedule`` block: ``every`` and/or ``log``, the log-spaced
    steps only before ``log_below`` if given. Dense early and evenly spaced after, so the gaps
    between checkpoints never shrink again: where log-spaced steps fall between multiples of
    `every`, a measure against the previous checkpoint (spectral's drift_prev) zigzags with
    the gap."""
    parts = []
    if cfg.get("every"):
        parts.append(every(int(cfg["every"])))
    if cfg.get("log"):
        below = cfg.get("log_below")
        parts.append(log_spaced(total, int(cfg["log"]), None if below is None else int(below)))
    ends = lambda step: step in (0, total)  # noqa: E731
    return union(ends, *parts)


def checkpoint_steps(cfg: dict, total: int) -> list[int]:
    schedule = from_config(cfg, total)
    return [s for s in range(total + 1) if schedule(s)]
