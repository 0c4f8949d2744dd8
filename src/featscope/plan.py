"""The work plan: which job makes which file, as a pure function of the config.

A grid of thousands of small runs is bound by per-job start-up, so runs are trained and
observed in blocks. A block depends on the config alone, never on files on disk, so every
output is always made by the same rule from the same inputs and parameters, and Snakemake's
own rerun triggers (mtime, params, input, code, software-env) say what is out of date:

- a train block holds the runs of one grid point, its seeds cut into blocks of
  ``pack_size`` (in the config's order); its params are the grid point's training config
  without the seed, so they change exactly when the block's numbers would;
- an observe block holds up to ``pack_size`` runs of one study for one family; its params
  are the family's version and parameters, so a change to one family touches only its jobs.

When a block reruns because its member list changed (a seed added), the jobs restore the
members whose results are in the content-addressed cache (`featscope.cache`) and compute
only the rest. Plain configs in, names and lists out; nothing here knows the workflow engine.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from .config import Run, fingerprint
from .packing import pack_key


@dataclass(frozen=True)
class Block:
    """The runs one job trains, or observes for one family."""

    name: str  # the rule's name
    kind: str  # "train" or "observe"
    study: str
    members: tuple  # run ids, in the config's order
    family: str | None = None


def _slug(text: str) -> str:
    return re.sub(r"\W", "_", text)


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


def _chunks(items: list, size: int) -> list[list]:
    size = max(size, 1)
    return [items[i : i + size] for i in range(0, len(items), size)]


def train_blocks(runs: dict[str, list[Run]], pack_size: int) -> list[Block]:
    """Train blocks of every study: one grid point's seeds in chunks of `pack_size`; a run
    that cannot be packed (`featscope.packing.pack_key` is None) is a block on its own."""
    blocks = []
    for study, study_runs in runs.items():
        points: dict[str, list[Run]] = {}
        for run in study_runs:
            points.setdefault(json.dumps(run.grid, sort_keys=True, default=str), []).append(run)
        for point in points.values():
            size = pack_size if pack_key(point[0].train_config) is not None else 1
            for chunk in _chunks(point, size):
                label = chunk[0].id.rsplit("seed-", 1)[0] + f"seed-{chunk[0].seed}"
                if len(chunk) > 1:
                    label += f"-{chunk[-1].seed}"
                blocks.append((study, label, tuple(r.id for r in chunk)))
    names = _unique([f"train_{_slug(s)}__{_slug(label)}" for s, label, _ in blocks])
    return [Block(n, "train", s, m) for n, (s, _, m) in zip(names, blocks)]


def observe_blocks(runs: dict[str, list[Run]], families: dict[str, list[str]], pack_size: int) -> list[Block]:
    """Observe blocks: per study and family, the study's runs in chunks of `pack_size`."""
    blocks = []
    for study, study_runs in runs.items():
        for family in families[study]:
            for i, chunk in enumerate(_chunks([r.id for r in study_runs], pack_size)):
                name = f"observe_{_slug(study)}__{family}__{i}"
                blocks.append(Block(name, "observe", study, tuple(chunk), family))
    return blocks


def train_params(run: Run) -> dict:
    """What a train block's outputs are made from besides its inputs: the grid point's
    training config without the seed (the same for every member)."""
    return {k: v for k, v in run.train_config.items() if k != "seed"}


def runs_digest(runs: list[Run]) -> str:
    """A short stand-in for everything the runs table is made from: run ids and training
    configs (not observables or figures, which it does not show)."""
    return fingerprint([(r.id, r.train_config, r.grid) for r in runs])


# ---------------------------------------------------------------- analyses, figures
@dataclass(frozen=True)
class Needs:
    """What an analysis or figure reads besides the runs table and metrics."""

    families: tuple = ()
    analyses: tuple = ()
    params: str | None = None  # the study's config block holding its parameters
    per_axis: bool = False


def analysis_needs(name: str, study: dict) -> Needs:
    """The inputs of analysis `name` in `study` (a defaults-filled study config)."""
    from .registry import analysis

    spec = analysis(name)
    return Needs(tuple(spec.families), tuple(spec.analyses), spec.params)


def figure_needs(name: str, study: dict) -> Needs:
    """The inputs of figure `name` (an entry of the study's ``figures``). A figure that reads
    an analysis' table only to decorate (e.g. phase shading) gets it when the study makes it."""
    from .registry import figure

    spec = figure(name)
    made = [a for a in study.get("analyses") or [] if a not in spec.analyses]
    return Needs(tuple(spec.families), tuple(spec.analyses) + tuple(made), None, spec.per_axis)


def figures(study: dict) -> dict[str, tuple[str, str | None]]:
    """Output figure name -> (figure, grid axis or None); a per-axis figure is drawn once
    per grid axis, as ``axis-<axis>``."""
    out = {}
    for name in study.get("figures") or []:
        if figure_needs(name, study).per_axis:
            out.update({f"axis-{axis}": (name, axis) for axis in study.get("grid") or {}})
        else:
            out[name] = (name, None)
    return out


@dataclass
class Current:
    """What a study's folder should hold, for `stray_files`."""

    runs: set = field(default_factory=set)
    families: set = field(default_factory=set)
    tables: set = field(default_factory=set)  # file names: runs.parquet, phases.parquet, ...
    figures: set = field(default_factory=set)  # file names


def current_files(study: dict, run_ids, families, tables, figure_names) -> Current:
    """What a study's folder should hold: file names of its runs, families, tables and figures."""
    return Current(set(run_ids), set(families), set(tables), {f"{f}.png" for f in figure_names})


def stray_files(study_dir, current: Current | None) -> list:
    """Files in a study's folder that the config no longer makes (`current` None: the
    study itself is gone): runs' checkpoints, metrics and observables, families, tables
    and figures. Logs, in-progress state and anything else are left alone."""
    from pathlib import Path

    study_dir = Path(study_dir)
    cur = current or Current()
    stray = []
    for sub, suffixes in (("checkpoints", (".pt", ".json")), ("metrics", (".parquet",))):
        for path in sorted(study_dir.glob(f"{sub}/*")):
            if path.is_file() and path.suffix in suffixes and path.stem not in cur.runs:
                stray.append(path)
    for folder in sorted(study_dir.glob("observables/family=*")):
        keep_family = folder.name.removeprefix("family=") in cur.families
        stray += [p for p in sorted(folder.glob("*.parquet")) if not (keep_family and p.stem in cur.runs)]
    stray += [p for p in sorted(study_dir.glob("*.parquet")) if p.name not in cur.tables]
    stray += [p for p in sorted(study_dir.glob("figures/*.png")) if p.name not in cur.figures]
    return stray


def move_aside(results, current: dict[str, Current]) -> str | None:
    """Move the stray files (see `stray_files`) of every study folder under `results` to
    ``<study>/.removed/<same relative path>`` (a numbered name if one is already there);
    no file is deleted (folders left empty are). A folder that is not a current study counts as a study when it has
    a runs table, checkpoints or metrics. Returns the one line that says what was moved."""
    import os
    from pathlib import Path

    results = Path(results)
    moved: dict[str, int] = {}
    if not results.is_dir():
        return None
    for study_dir in sorted(p for p in results.iterdir() if p.is_dir() and not p.name.startswith(".")):
        name = study_dir.name
        if name not in current and not any(
            (study_dir / f).exists() for f in ("runs.parquet", "checkpoints", "metrics")
        ):
            continue  # the datasets' folder, or not a study
        for path in stray_files(study_dir, current.get(name)):
            target = study_dir / ".removed" / path.relative_to(study_dir)
            n = 1
            while target.exists():
                target = target.with_name(f"{path.name}.{n}")
                n += 1
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            moved[name] = moved.get(name, 0) + 1
            for folder in path.parents:  # folders left empty go too (a folder dataset of nothing)
                if folder == study_dir or any(folder.iterdir()):
                    break
                folder.rmdir()
    if not moved:
        return None
    where = ", ".join(f"{n} of {s}" for s, n in moved.items())
    return (
        f"featscope: moved files of runs, families or studies no longer in the config to "
        f"{results}/<study>/.removed/ (nothing deleted): {where}"
    )
