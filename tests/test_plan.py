"""The work plan: staleness by file age, stamps, and which due work goes into which pack."""

import os
import time
from pathlib import Path

from featscope.plan import (
    Pack,
    RunFiles,
    covered_studies,
    due_work,
    is_stale,
    plan_datasets,
    plan_study,
    spread,
    write_stamp,
)

MLP = {
    "task": {"name": "sin2"},
    "model": {"name": "mlp", "width": 8, "depth": 2},
    "optim": {"name": "adam", "lr": 0.01},
    "train": {"steps": 10},
    "schedule": {"every": 5},
}


def touch(path, age=0.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x")
    t = time.time() - age
    os.utime(path, (t, t))


def files(root, run, families=("nonlinearity", "linreg")):
    return RunFiles(
        stamp=str(root / ".plan" / f"{run}.json"),
        data=str(root / "data.npz"),
        checkpoints=str(root / "ck" / f"{run}.pt"),
        metrics=str(root / "m" / f"{run}.parquet"),
        info=str(root / "ck" / f"{run}.json"),
        observables={f: str(root / f"family={f}" / f"{run}.parquet") for f in families},
        family_stamps={f: str(root / ".plan" / f"family={f}.json") for f in families},
    )


def done(f: RunFiles, age=10.0):
    """All of a run's files exist; inputs older than outputs."""
    for p in [f.stamp, f.data, *f.family_stamps.values()]:
        touch(Path(p), age + 20)
    for p in [f.checkpoints, f.metrics, f.info]:
        touch(Path(p), age + 10)
    for p in f.observables.values():
        touch(Path(p), age)


def test_is_stale_by_age_and_absence(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    touch(old, 10)
    touch(new, 0)
    assert not is_stale([new], [old])
    assert is_stale([old], [new])
    assert is_stale([tmp_path / "missing"], [old])
    assert is_stale([new], [tmp_path / "missing"])  # a missing input will be rebuilt
    assert not is_stale([new], [])


def test_stamp_is_rewritten_only_when_its_content_changes(tmp_path):
    stamp = tmp_path / "s.json"
    assert write_stamp(stamp, {"lr": 0.1})
    os.utime(stamp, (1, 1))
    assert not write_stamp(stamp, {"lr": 0.1}) and stamp.stat().st_mtime == 1
    assert write_stamp(stamp, {"lr": 0.2}) and stamp.stat().st_mtime > 1


def test_due_work_follows_file_ages(tmp_path):
    f = files(tmp_path, "a")
    done(f)
    assert due_work(f, keep_checkpoints=True) == (False, [])
    touch(Path(f.family_stamps["linreg"]))  # a family was bumped
    assert due_work(f, keep_checkpoints=True) == (False, ["linreg"])
    os.remove(f.checkpoints)  # ... and its checkpoints were dropped after observing
    assert due_work(f, keep_checkpoints=False) == (True, ["linreg"])
    done(f)
    touch(Path(f.stamp))  # the run's config changed
    assert due_work(f, keep_checkpoints=True) == (True, ["nonlinearity", "linreg"])


def test_only_due_runs_that_share_shapes_are_packed(tmp_path):
    runs = [
        (f"w-{w}__seed-{s}", {**MLP, "model": {**MLP["model"], "width": w}, "seed": s})
        for w in (8, 16)
        for s in range(3)
    ]
    runs.append(("cnn__seed-0", {**MLP, "model": {"name": "cnn", "width": 4, "batch_norm": True}, "seed": 0}))
    all_files = {r: files(tmp_path, r) for r, _ in runs}
    done(all_files["w-8__seed-0"])  # already trained and observed
    train, observe = plan_study("s", runs, all_files, keep_checkpoints=True, size=16)
    assert sorted(p.members for p in train) == [
        ["w-16__seed-0", "w-16__seed-1", "w-16__seed-2"],
        ["w-8__seed-1", "w-8__seed-2"],
    ]
    assert [p.members for p in observe] == [[r for r, _ in runs[1:6]]]  # not the batch-norm CNN: alone
    assert observe[0].families["w-8__seed-1"] == ["nonlinearity", "linreg"]
    train, observe = plan_study("s", runs, all_files, keep_checkpoints=True, size=2)
    assert [len(p.members) for p in train] == [2, 2] and [len(p.members) for p in observe] == [2, 2]
    assert plan_study("s", runs, all_files, keep_checkpoints=True, size=1) == ([], [])
    ids = [p.id for p in train + observe]
    assert len(set(ids)) == len(ids)


def test_a_study_is_covered_only_when_packs_hold_all_its_runs_and_families(tmp_path):
    runs = [(f"seed-{s}", {**MLP, "seed": s}) for s in range(4)]
    all_files = {r: files(tmp_path, r) for r, _ in runs}
    ids = {"s": [r for r, _ in runs], "other": ["x"]}
    fams = {"s": ["nonlinearity", "linreg"], "other": ["linreg"]}
    train, observe = plan_study("s", runs, all_files, keep_checkpoints=True, size=2)
    assert covered_studies(train, ids) == ["s"]
    assert covered_studies(observe, ids, fams) == ["s"]
    assert covered_studies(train[:1], ids) == []  # seeds 2 and 3 are left to one-run jobs
    done(all_files["seed-0"]), done(all_files["seed-1"])
    Path(all_files["seed-1"].observables["linreg"]).unlink()  # one family of one run is due
    train, observe = plan_study("s", runs, all_files, keep_checkpoints=True, size=16)
    assert [p.members for p in train] == [["seed-2", "seed-3"]] and covered_studies(train, ids) == []
    assert observe[0].families["seed-1"] == ["linreg"] and covered_studies(observe, ids, fams) == []


def best_cut(n, share):
    """Brute force: of all the ways to cut n runs into k near-equal parts of two runs or
    more, the fewest parts with none over `share` runs, else the smallest largest part."""
    return min(range(1, max(n // 2, 1) + 1), key=lambda k: (max(-(-n // k) - share, 0), k))


def test_packs_are_spread_over_the_workers_evenly_and_in_order(tmp_path):
    runs = [(f"seed-{s}", {**MLP, "seed": s}) for s in range(16)]
    all_files = {r: files(tmp_path, r) for r, _ in runs}
    train, observe = plan_study("s", runs, all_files, keep_checkpoints=True, size=16)
    assert spread(train, 1) == train and spread(observe, 1) == observe
    halves = spread(train, 2)
    assert [p.members for p in halves] == [[f"seed-{s}" for s in range(8)], [f"seed-{s}" for s in range(8, 16)]]
    assert [len(p.members) for p in spread(observe, 3)] == [5, 5, 6]
    assert all(p.families == {r: ["nonlinearity", "linreg"] for r in p.members} for p in spread(observe, 3))
    ids = [p.id for p in [*train, *halves, *spread(train, 3), *observe, *spread(observe, 2)]]
    assert len(set(ids)) == len(ids)
    assert [len(p.members) for p in spread(train, 12)] == [2] * 8  # 16 runs: a share of 2 each
    assert spread(train, 16) == spread(train, 99) == spread(train, 8)  # never below two runs


def test_spread_cuts_each_pack_as_brute_force_would():
    for sizes in [(10, 4), (7, 7, 2), (16,), (16, 2), (5, 3, 3, 2), (9, 2), (3,)]:
        packs = [Pack(f"p{i}", "s", [f"p{i}-r{j}" for j in range(n)]) for i, n in enumerate(sizes)]
        for workers in range(1, sum(sizes) + 2):
            parts = spread(packs, workers)
            share = -(-sum(sizes) // workers)
            for pack in packs:  # near-equal parts of it, in its order, as many as brute force picks
                mine = [p.members for p in parts if p.members[0] in pack.members]
                assert [r for m in mine for r in m] == pack.members
                assert len(mine) == best_cut(len(pack.members), share), (sizes, workers)
                assert max(map(len, mine)) - min(map(len, mine)) <= 1 and min(map(len, mine)) >= 2


def test_missing_generated_datasets_are_packed_downloads_are_not(tmp_path):
    datasets = {f"sin2-{i}": {"name": "sin2", "seed": i} for i in range(3)}
    datasets["mnist-0"] = {"name": "mnist"}
    paths = {d: str(tmp_path / f"{d}.npz") for d in datasets}
    touch(Path(paths["sin2-0"]))
    (pack,) = plan_datasets(datasets, paths, size=16)
    assert pack.members == ["sin2-1", "sin2-2"]
    assert plan_datasets(datasets, paths, size=1) == []
