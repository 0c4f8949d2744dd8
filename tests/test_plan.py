"""The plan is a pure function of the config, and stray results are moved aside (no Snakemake)."""

import copy

from tiny import sin2_study

from featscope.config import expand_runs
from featscope.plan import (
    Block,
    current_files,
    figures,
    move_aside,
    observe_blocks,
    runs_digest,
    train_blocks,
    train_params,
)


def runs_of(**studies):
    return {name: expand_runs(name, study) for name, study in studies.items()}


def test_train_blocks_are_grid_points_cut_into_seed_blocks():
    study = sin2_study(grid={"optim.lr": [0.01, 0.003]}, seeds=[0, 1, 2, 3, 4])
    blocks = train_blocks(runs_of(s=study), pack_size=2)
    members = [b.members for b in blocks]
    assert members == [
        ("lr-0.01__seed-0", "lr-0.01__seed-1"),
        ("lr-0.01__seed-2", "lr-0.01__seed-3"),
        ("lr-0.01__seed-4",),
        ("lr-0.003__seed-0", "lr-0.003__seed-1"),
        ("lr-0.003__seed-2", "lr-0.003__seed-3"),
        ("lr-0.003__seed-4",),
    ]
    assert len({b.name for b in blocks}) == len(blocks) and all(b.name.isidentifier() for b in blocks)
    # Every run in exactly one block, and a block's members share their config but the seed.
    runs = runs_of(s=study)["s"]
    assert sorted(r for b in blocks for r in b.members) == sorted(r.id for r in runs)
    by_id = {r.id: r for r in runs}
    for block in blocks:
        assert len({str(train_params(by_id[r])) for r in block.members}) == 1


def test_blocks_depend_on_the_config_alone_and_adding_a_seed_touches_one_block():
    before = train_blocks(runs_of(s=sin2_study(seeds=[0, 1, 2])), pack_size=2)
    assert before == train_blocks(runs_of(s=sin2_study(seeds=[0, 1, 2])), pack_size=2)
    after = train_blocks(runs_of(s=sin2_study(seeds=[0, 1, 2, 3])), pack_size=2)
    assert [b.members for b in before] == [("seed-0", "seed-1"), ("seed-2",)]
    assert [b.members for b in after] == [("seed-0", "seed-1"), ("seed-2", "seed-3")]
    assert before[0] == after[0]  # the untouched block: same rule name, same members


def test_unpackable_runs_are_blocks_of_one():
    study = sin2_study(model={"name": "cnn", "width": 4, "batch_norm": True}, seeds=[0, 1, 2])
    assert [b.members for b in train_blocks(runs_of(s=study), pack_size=16)] == [
        ("seed-0",),
        ("seed-1",),
        ("seed-2",),
    ]


def test_observe_blocks_one_family_each():
    runs = runs_of(s=sin2_study(seeds=[0, 1, 2]))
    blocks = observe_blocks(runs, {"s": ["nonlinearity", "linreg"]}, pack_size=2)
    assert [(b.family, b.members) for b in blocks] == [
        ("nonlinearity", ("seed-0", "seed-1")),
        ("nonlinearity", ("seed-2",)),
        ("linreg", ("seed-0", "seed-1")),
        ("linreg", ("seed-2",)),
    ]
    assert all(isinstance(b, Block) and b.kind == "observe" for b in blocks)


def test_runs_digest_ignores_what_the_runs_table_does_not_show():
    base = sin2_study()
    other = copy.deepcopy(base)
    other["observables"] = {"nonlinearity": {"schedule": {"every": 10}}}
    other["figures"] = ["loss_neurons"]
    assert runs_digest(expand_runs("s", base)) == runs_digest(expand_runs("s", other))
    other["optim"]["lr"] = 0.5
    assert runs_digest(expand_runs("s", base)) != runs_digest(expand_runs("s", other))


def test_per_axis_figures_are_drawn_once_per_axis():
    study = sin2_study(figures=["loss_neurons", "axes"], grid={"optim.lr": [0.1], "train.steps": [20]})
    assert figures(study) == {
        "loss_neurons": ("loss_neurons", None),
        "axis-optim.lr": ("axes", "optim.lr"),
        "axis-train.steps": ("axes", "train.steps"),
    }


def _touch(path, text="x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_files_no_longer_in_the_config_are_moved_aside_not_deleted(tmp_path):
    s = tmp_path / "s"
    keep = [
        _touch(s / "checkpoints" / "seed-1.pt"),
        _touch(s / "checkpoints" / "seed-1.json"),
        _touch(s / "metrics" / "seed-1.parquet"),
        _touch(s / "observables" / "family=linreg" / "seed-1.parquet"),
        _touch(s / "runs.parquet"),
        _touch(s / "phases.parquet"),
        _touch(s / "figures" / "linreg.png"),
        _touch(s / "logs" / "train" / "x.log"),  # logs are not results
        _touch(tmp_path / "data" / "sin2-0123.npz"),
    ]
    gone = [
        s / "checkpoints" / "seed-0.pt",
        s / "metrics" / "seed-0.parquet",
        s / "observables" / "family=linreg" / "seed-0.parquet",
        s / "observables" / "family=spectral" / "seed-1.parquet",  # a family removed
        s / "regimes.parquet",  # an analysis removed
        s / "figures" / "spectrum.png",
        tmp_path / "old" / "runs.parquet",  # a study removed
        tmp_path / "old" / "metrics" / "seed-0.parquet",
    ]
    for path in gone:
        _touch(path, text=path.name)
    current = {"s": current_files({}, ["seed-1"], ["linreg"], ["runs.parquet", "phases.parquet"], ["linreg"])}
    line = move_aside(tmp_path, current)
    assert line.count("\n") == 0 and "6 of s" in line and "2 of old" in line and "nothing deleted" in line
    assert all(p.exists() for p in keep)
    for path in gone:
        study = tmp_path / path.relative_to(tmp_path).parts[0]
        moved = study / ".removed" / path.relative_to(study)
        assert not path.exists() and moved.read_text() == path.name
    assert move_aside(tmp_path, current) is None  # nothing left to move
    assert not (s / "observables" / "family=spectral").exists() and not (tmp_path / "old" / "metrics").exists()
    _touch(s / "metrics" / "seed-0.parquet", "second")  # moved again: kept beside the first
    move_aside(tmp_path, current)
    assert (s / ".removed" / "metrics" / "seed-0.parquet.1").read_text() == "second"
