"""Job entry points: plain paths and dicts in, result files out.

The workflow's scripts call these; they know nothing about Snakemake, so each
stage can also be run by hand or from a notebook.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import torch

from . import io
from .analyses import AnalysisInputs, read_frames  # noqa: F401 (read_frames: the long-standing import path)
from .analyses.jobs import analysis_job, figure_job  # noqa: F401 (the workflow's jobs, torch-free)
from .config import Run, fingerprint, flatten
from .observe import observe_tables
from .packed import iter_train_packed, pack_key, train_alone_packed, why_unpacked
from .tasks import load_dataset
from .training import train_runs


def train_job(
    run_id: str,
    train_config: dict,
    data_path,
    out_checkpoints,
    out_metrics,
    out_info,
    device: str = "auto",
    threads: int = 1,
    log=None,
    resume_dir=None,
    resume_every: float = 60.0,
) -> None:
    """Train one run; a packable one through the packed path, so that its numbers do not
    depend on whether it trained alone or in a pack. In-progress state lives in
    `resume_dir`, which is not a job output, so it survives Snakemake deleting a killed
    job's outputs; it is removed once the run's outputs are written."""
    torch.set_num_threads(threads)
    data = load_dataset(data_path)
    with open(log, "a") if log else open(os.devnull, "w") as log_file:
        if pack_key(train_config) is None:
            print(why_unpacked(train_config), file=log_file)
            [result] = train_runs(
                [(run_id, train_config)],
                data,
                device,
                log_file=log_file,
                resume_dir=resume_dir,
                resume_every=resume_every,
            )
        else:  # the same numbers as if it had trained in a pack
            state = Path(resume_dir, f"{run_id}.pt") if resume_dir else None
            result = train_alone_packed(
                run_id,
                train_config,
                data,
                device=device,
                progress=True,
                log_file=log_file,
                resume_path=state,
                resume_every=resume_every,
            )
    _write_run(result, train_config, out_checkpoints, out_metrics, out_info)
    if resume_dir:
        Path(resume_dir, f"{run_id}.pt").unlink(missing_ok=True)


def _pack_data(data_path, runs: int):
    """A pack's dataset: one file all runs share, or one per run (in the runs' order; a
    per-seed split), loaded as a list that `iter_train_packed` stacks."""
    paths = [data_path] if isinstance(data_path, (str, os.PathLike)) else list(data_path)
    if len(set(map(str, paths))) == 1:
        return load_dataset(paths[0])
    if len(paths) != runs:
        raise ValueError(f"a pack of {runs} runs was given {len(paths)} datasets; give one, or one per run")
    return [load_dataset(p) for p in paths]


def train_block_job(
    runs: list[tuple[str, dict]],
    data_path,
    outputs: list[dict],
    cache_dir=None,
    device: str = "auto",
    threads: int = 1,
    log=None,
    resume_dir=None,
    resume_every: float = 60.0,
    keep_checkpoints: bool = True,
) -> None:
    """Train a block of runs: `runs` are (run id, training config), `data_path` one dataset
    all share or one per run (in their order), `outputs` per run
    {"checkpoints", "metrics", "info"} paths. A run whose results are in `cache_dir` (keyed
    by its training config and the code, see `featscope.cache`) is restored, not trained; the others
    train together in one pack (alone: as `train_job`), and are stored in the cache.
    Without `keep_checkpoints` the checkpoints are not cached (a link would keep the disk
    they take once the workflow drops them), so such runs train again."""
    from . import cache

    paths = [data_path] if isinstance(data_path, (str, os.PathLike)) else list(data_path)
    paths = paths * len(runs) if len(paths) == 1 else paths
    if len(paths) != len(runs):
        raise ValueError(f"a block of {len(runs)} runs was given {len(paths)} datasets; give one, or one per run")
    code = cache.code_version()
    entries = [Path(cache_dir, fingerprint({"config": cfg, "code": code})) if cache_dir else None for _, cfg in runs]
    due = [i for i, entry in enumerate(entries) if entry is None or not cache.restore(entry, outputs[i])]
    with open(log, "a") if log else open(os.devnull, "w") as log_file:
        print(f"{len(runs) - len(due)} of {len(runs)} runs restored from the cache, {len(due)} to train", file=log_file)
    if len(due) == 1:
        (i,) = due
        train_job(
            runs[i][0], runs[i][1], paths[i], *outputs[i].values(), device, threads, log, resume_dir, resume_every
        )
    elif due:
        torch.set_num_threads(threads)
        todo = [runs[i] for i in due]
        data = _pack_data([paths[i] for i in due], len(todo))
        state = Path(resume_dir, f"pack-{fingerprint([r for r, _ in todo])}.pt") if resume_dir else None
        with open(log, "a") if log else open(os.devnull, "w") as log_file:
            results = iter_train_packed(
                todo, data, device, progress=True, log_file=log_file, resume_path=state, resume_every=resume_every
            )
            for result, i in zip(results, due):
                _write_run(result, runs[i][1], *outputs[i].values())  # one run's checkpoints in memory at a time
        if state:
            state.unlink(missing_ok=True)
    for i in due:
        if entries[i] is not None and keep_checkpoints:
            cache.store(entries[i], outputs[i])


def _write_run(result, train_config, out_checkpoints, out_metrics, out_info) -> None:
    result.info["config_hash"] = fingerprint(train_config)
    io.save_torch(result.checkpoints, out_checkpoints)
    io.write_parquet(result.metrics, out_metrics)
    io.write_json(result.info, out_info)


def observe_pack_job(items: list[dict], progress: bool = True, log=None) -> None:
    """Observe several runs in one process. Each item: run, checkpoints, data and
    families {name: (params, output path)}; a run's families share its features."""
    from tqdm.auto import tqdm

    datasets = {}
    with open(log, "a") if log else open(os.devnull, "w") as log_file:
        for item in tqdm(items, desc="observe", file=log_file, disable=not progress):
            if item["data"] not in datasets:
                datasets[item["data"]] = load_dataset(item["data"])
            families = {name: params for name, (params, _) in item["families"].items()}
            tables = observe_tables(item["run"], families, io.load_torch(item["checkpoints"]), datasets[item["data"]])
            for name, (_, out) in item["families"].items():
                io.write_parquet(tables[name], out)


def observe_block_job(items: list[dict], family: str, params: dict, cache_dir=None, log=None) -> None:
    """Observe one family on a block of runs. Each item: run, checkpoints, data, out. A
    run whose table is in `cache_dir` (keyed by its checkpoint file's bytes, its dataset and
    the family's `params`, version included) is restored, not observed again."""
    from . import cache

    entries = [
        Path(cache_dir, fingerprint([cache.file_digest(i["checkpoints"]), Path(i["data"]).name, family, params]))
        if cache_dir
        else None
        for i in items
    ]
    due = [i for i, e in zip(items, entries) if e is None or not cache.restore(e, {"table.parquet": i["out"]})]
    with open(log, "a") if log else open(os.devnull, "w") as log_file:
        print(
            f"{len(items) - len(due)} of {len(items)} runs restored from the cache, {len(due)} to observe",
            file=log_file,
        )
    todo = [
        {**{k: i[k] for k in ("run", "checkpoints", "data")}, "families": {family: (params, i["out"])}} for i in due
    ]
    observe_pack_job(todo, log=log)
    for item, entry in zip(items, entries):
        if entry is not None and item in due:
            cache.store(entry, {"table.parquet": item["out"]})


def runs_row(run: Run, info: dict) -> dict:
    row = {
        "run": run.id,
        "study": run.study,
        "seed": run.seed,
        "grid_point": run.id.rsplit("__seed-", 1)[0] if "__" in run.id else "base",
    }
    row.update(
        {k: (str(v) if isinstance(v, (list, dict)) else v) for k, v in flatten(run.train_config).items() if k != "seed"}
    )
    row.update({k: v for k, v in info.items() if k != "run"})
    return row


def runs_table_job(runs: list[dict], info_paths, out) -> None:
    """`runs`: Run.as_dict() of every run, in the order of `info_paths`."""
    rows = [runs_row(Run(**run), io.read_json(p)) for run, p in zip(runs, info_paths)]
    io.write_parquet(pd.DataFrame(rows), out)
