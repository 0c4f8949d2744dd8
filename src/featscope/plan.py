"""The work plan: which runs need training or observing, grouped into packs.

A grid of thousands of small runs is bound by per-job start-up, so work that is due is
packed: stale runs that share shapes train in one process (`train_packed`), and stale
(run, family) pairs of a study are observed by one process. Only what is due goes into a
pack, so adding seeds still trains only the new runs, and each run keeps its own files.
Staleness is judged the way a make-like tool judges it: an output missing, or older than
an input. Plain paths and configs only; nothing here knows about the workflow engine.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .config import fingerprint
from .packing import pack_key


@dataclass
class RunFiles:
    """The files of one run: its config stamp, inputs and outputs."""

    stamp: str  # the run's training config as JSON; rewritten only when it changes
    data: str
    checkpoints: str
    metrics: str
    info: str
    observables: dict  # family -> path
    family_stamps: dict  # family -> path of that family's version + parameters


@dataclass
class Pack:
    id: str
    study: str
    members: list  # run ids (dataset ids in a data pack)
    families: dict = field(default_factory=dict)  # observe packs: run id -> due families

    def as_dict(self) -> dict:
        return {"id": self.id, "study": self.study, "members": self.members, "families": self.families}


def _mtime(path) -> float | None:
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:
        return None


def is_stale(outputs, inputs) -> bool:
    """An output is missing, an input is missing (it will be rebuilt), or an input is newer."""
    outs = [_mtime(p) for p in outputs]
    ins = [_mtime(p) for p in inputs]
    if None in outs or None in ins:
        return True
    return bool(ins) and min(outs) < max(ins)


def write_stamp(path, obj) -> bool:
    """Write `obj` as JSON unless the file already holds exactly that; True if written.
    Its modification time then changes only with its content, so it can stand as an input."""
    text = json.dumps(obj, sort_keys=True, indent=1, default=str)
    path = Path(path)
    try:
        if path.read_text() == text:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


def due_work(files: RunFiles, keep_checkpoints: bool) -> tuple[bool, list]:
    """(whether the run must train, the families it must observe)."""
    train_outputs = [files.metrics, files.info] + ([files.checkpoints] if keep_checkpoints else [])
    train = is_stale(train_outputs, [files.stamp, files.data])
    have_checkpoints = _mtime(files.checkpoints) is not None
    inputs = [files.data] + ([files.checkpoints] if have_checkpoints else [])
    families = [
        f for f, out in files.observables.items() if train or is_stale([out], inputs + [files.family_stamps[f]])
    ]
    if families and not have_checkpoints:
        train = True  # checkpoints were dropped after observing; observing again needs them
    return train, families


def plan_study(
    study: str, runs: list[tuple[str, dict]], files: dict, keep_checkpoints: bool, size: int
) -> tuple[list[Pack], list[Pack]]:
    """Train packs and observe packs (two runs or more each) of one study's due work."""
    if size < 2:
        return [], []
    train_groups: dict[str, list] = {}
    observe_items = []
    for run_id, cfg in runs:
        key = pack_key(cfg)
        if key is None:  # big or batch-norm models: one job per run keeps them parallel
            continue
        train, families = due_work(files[run_id], keep_checkpoints)
        if train:
            train_groups.setdefault(key, []).append(run_id)
        if families:
            observe_items.append((run_id, families))
    train_packs = [
        _train_pack(study, chunk) for group in train_groups.values() for chunk in _chunks(group, size) if len(chunk) > 1
    ]
    observe_packs = [_observe_pack(study, chunk) for chunk in _chunks(observe_items, size) if len(chunk) > 1]
    return train_packs, observe_packs


def spread(packs: list[Pack], workers: int) -> list[Pack]:
    """`packs` cut into near-equal parts of two runs or more, each into as few parts as keep
    them within their share, 1/`workers` of all the packs' runs (or into pairs and triples
    where that share is under two runs).

    One big pack leaves all but one core idle on a machine that runs jobs side by side: on
    2 cores two 1-thread packs of 8 runs train 16 seeds about twice as fast as one 16-run
    pack on 1 thread, and as fast as on 2 (see README, Benchmarks). Parts stop at two runs:
    a run on its own would go to one-run jobs, one per family for observing, and a small
    study would then pay a process start-up per job for the cores it gains."""
    share = -(-sum(len(p.members) for p in packs) // max(workers, 1))
    return [q for p in packs for q in _split(p, _parts(len(p.members), share))]


def _parts(n: int, share: int) -> int:
    """The fewest near-equal parts of n runs with none over `share` runs, or over the least
    that parts of two runs or more allow."""
    if n < 4:  # no two parts of two runs
        return 1
    most = max(share, -(-n // (n // 2)))
    return -(-n // most)


def _split(pack: Pack, k: int) -> list[Pack]:
    if k <= 1:
        return [pack]
    n = len(pack.members)
    bounds = [n * i // k for i in range(k + 1)]
    chunks = [pack.members[a:b] for a, b in zip(bounds, bounds[1:])]
    if pack.families:
        return [_observe_pack(pack.study, [(r, pack.families[r]) for r in chunk]) for chunk in chunks]
    return [_train_pack(pack.study, chunk) for chunk in chunks]


def _train_pack(study: str, runs: list) -> Pack:
    return Pack(fingerprint(["train", study, runs]), study, runs)


def _observe_pack(study: str, items: list) -> Pack:
    """`items`: (run id, its due families) pairs."""
    return Pack(fingerprint(["observe", study, items]), study, [r for r, _ in items], dict(items))


def covered_studies(packs: list[Pack], runs: dict, families: dict | None = None) -> list[str]:
    """Studies whose every run (every run and family, given `families`: study -> names) is
    in one of `packs`; their files need no one-run rule."""
    covered: dict[str, set] = {}
    for pack in packs:
        covered.setdefault(pack.study, set()).update((r, f) for r in pack.members for f in pack.families.get(r, [None]))
    wanted = (lambda study: families[study]) if families is not None else (lambda study: [None])
    return [
        study
        for study, items in covered.items()
        if all((run, f) in items for run in runs[study] for f in wanted(study))
    ]


def plan_datasets(datasets: dict, paths: dict, size: int) -> list[Pack]:
    """Packs of the missing datasets (id -> task config) that are generated locally; a
    download keeps a job of its own. `paths`: id -> the dataset's file."""
    from .tasks import DOWNLOADED

    due = [d for d, task in datasets.items() if task["name"] not in DOWNLOADED and _mtime(paths[d]) is None]
    return [Pack(fingerprint(["data", chunk]), "data", chunk) for chunk in _chunks(due, size) if len(chunk) > 1]


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]
