"""Tasks are registered objects (`featscope.register_task`): the built-ins' data unchanged,
their parameters checked the same through the library and the config, a plugin's task
validating like a built-in one, and a builder's wrong output named before any training."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import numpy as np
import pytest

from featscope import registry
from featscope.config import ConfigError
from featscope.registry import RegistryError, register_task
from featscope.tasks import DatasetError, make_dataset, task_kind, task_outputs

SCHEMA = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"


def digest(data: dict) -> str:
    h = hashlib.sha256()
    for key in sorted(data):
        array = np.ascontiguousarray(data[key])
        h.update(f"{key}:{array.dtype.str}:{array.shape};".encode())
        h.update(array.tobytes())
    return h.hexdigest()[:16]


# Digests of the datasets the code before the registry (main a87aec1, `TASKS = {...}` in
# featscope.tasks) built from these configs: the refactor keeps every byte.
BEFORE = [
    ({"name": "sin2", "d": 10, "f": 10, "n_train": 500, "n_test": 0, "seed": 0}, "7c15722c46bd6c1c"),
    ({"name": "sin2", "d": 3, "f": 2, "n_train": 40, "n_test": 20, "seed": 5}, "12ea6f46b488ab16"),
    ({"name": "fn1d", "freq": 2, "noise": 0.1, "n_train": 64, "n_test": 32, "seed": 1}, "e5de7fa535051e7a"),
    ({"name": "mnist1d", "n_train": 200, "n_test": 100, "random_labels": False, "seed": 0}, "8b3806a65652a644"),
    ({"name": "mnist1d", "n_train": 200, "n_test": 100, "random_labels": True, "seed": 3}, "5c1bc12f6e9fc377"),
    ({"name": "modadd", "M": 23, "train_fraction": 0.4, "seed": 0}, "51069c1c5827f773"),
    ({"name": "modadd", "M": 23, "train_ratio": 3.0, "split": "per_seed", "seed": 2}, "dd7c29031bfe7f93"),
    ({"name": "digits", "n_train": 1200, "n_test": 597, "random_labels": False, "seed": 0}, "9312cb46c90d2419"),
    ({"name": "digits", "n_train": 100, "n_test": 50, "random_labels": True, "seed": 4}, "f07ed93213ca02c2"),
]


@pytest.mark.parametrize("cfg,before", BEFORE, ids=[f"{c['name']}-{i}" for i, (c, _) in enumerate(BEFORE)])
def test_built_in_datasets_are_byte_for_byte_what_they_were(cfg, before):
    assert digest(make_dataset(dict(cfg))) == before


def test_built_ins_are_registered_with_their_kind_and_outputs():
    registry.load_built_ins()
    assert {"sin2", "fn1d", "mnist1d", "modadd", "mnist", "cifar10", "digits"} <= set(registry.TASKS)
    assert [task_kind(n) for n in ("sin2", "fn1d", "mnist1d", "modadd", "digits")] == [
        "regression",
        "regression",
        "classification",
        "classification",
        "classification",
    ]
    assert task_outputs({"name": "modadd", "M": 13}) == 13 and task_outputs({"name": "cifar10"}) == 10
    assert task_outputs({"name": "sin2"}) == 1


@pytest.fixture
def scratch():
    """Names registered by a test are removed afterwards."""
    registry.load_built_ins()
    before = set(registry.TASKS)
    yield
    for name in set(registry.TASKS) - before:
        del registry.TASKS[name]


def test_a_second_task_under_a_taken_name_is_refused(scratch):
    with pytest.raises(RegistryError, match="task 'sin2' is registered twice"):
        register_task("sin2", kind="regression")(lambda cfg: {})


def test_an_unknown_or_missing_key_is_refused_by_the_library_naming_it():
    with pytest.raises(ValueError, match=r"task 'sin2' takes no parameter 'dd'"):
        make_dataset({"name": "sin2", "dd": 3})
    with pytest.raises(ValueError, match=r"task 'modadd' needs the parameter 'M'"):
        make_dataset({"name": "modadd", "train_fraction": 0.5})
    with pytest.raises(ValueError, match=r"task 'sin2', parameter 'd': 0 is less than the minimum of 1"):
        make_dataset({"name": "sin2", "d": 0})
    with pytest.raises(ValueError, match=r"unknown task 'sine'"):
        make_dataset({"name": "sine"})


def test_the_library_fills_the_defaults_the_workflow_fills():
    """One place for a task's defaults: `make_dataset({name: fn1d})` is the dataset of a
    study's `task: {name: fn1d}` (before, the library had no test split where the workflow
    had 256 test samples)."""
    from featscope import configload

    study = {
        "task": {"name": "fn1d"},
        "model": {"name": "mlp"},
        "optim": {"name": "adam", "lr": 0.01},
        "train": {"steps": 10, "loss": "mse"},
        "schedule": {"every": 5},
        "seeds": [0],
    }
    config = {"studies": {"s": study}}
    (run,) = configload.load(config, SCHEMA)["s"]
    assert run.config["task"] == {"name": "fn1d", "freq": 2, "noise": 0.0, "n_train": 256, "n_test": 256, "seed": 0}
    library, workflow = make_dataset({"name": "fn1d"}), make_dataset(run.config["task"])
    assert digest(library) == digest(workflow) and library["x_test"].shape == (256, 1)


def _study(task: dict) -> dict:
    return {
        "studies": {
            "s": {
                "task": task,
                "model": {"name": "mlp", "width": 4, "depth": 1},
                "optim": {"name": "adam", "lr": 0.01},
                "train": {"steps": 4, "loss": "cross_entropy"},
                "schedule": {"every": 2},
                "seeds": [0, 1],
            }
        }
    }


def _parity(cfg):
    rng = np.random.default_rng(cfg["seed"])
    x = rng.choice([-1.0, 1.0], size=(cfg["n_train"] + cfg["n_test"], cfg["d"])).astype(np.float32)
    y = (x[:, : cfg["k"]].prod(axis=1) > 0).astype(np.int64)
    n = cfg["n_train"]
    return {"x_train": x[:n], "y_train": y[:n], "x_test": x[n:], "y_test": y[n:]}


def test_a_plugin_task_validates_fills_its_defaults_and_refuses_unknown_keys(scratch, monkeypatch):
    from featscope import configload

    for name in (configload.PLUGINS_ENV, configload.PLUGIN_PATH_ENV):
        monkeypatch.setenv(name, "")
    register_task(
        "parity_t",
        kind="classification",
        outputs=2,
        params={"d": 6, "k": {"type": "integer", "minimum": 1}, "n_train": 40, "n_test": 10},
    )(_parity)
    runs = configload.load(_study({"name": "parity_t", "k": 3}), SCHEMA)["s"]
    task = runs[0].config["task"]
    assert task == {"name": "parity_t", "k": 3, "d": 6, "n_train": 40, "n_test": 10, "seed": 0}
    data = make_dataset(task)
    x = np.concatenate([data["x_train"], data["x_test"]])
    y = np.concatenate([data["y_train"], data["y_test"]])
    np.testing.assert_array_equal(y, (x[:, 0] * x[:, 1] * x[:, 2] > 0).astype(np.int64))
    assert task_kind("parity_t") == "classification" and task_outputs(task) == 2

    for bad, match in (
        ({"name": "parity_t", "k": 3, "dd": 4}, r"studies\.s\.task.*'dd' was unexpected"),
        ({"name": "parity_t"}, r"studies\.s\.task.*'k' is a required property"),
        ({"name": "parity_t", "k": 3, "d": 2.5}, r"studies\.s\.task\.d.*2\.5 is not of type 'integer'"),
    ):
        with pytest.raises(ConfigError, match=match):
            configload.load(_study(bad), SCHEMA)


def test_plain_defaults_give_their_type_and_the_registration_is_checked(scratch):
    spec = register_task("plain_t", kind="regression", params={"a": 1, "b": 0.5, "c": True, "d": "x"}, fn=_parity)
    assert {k: p["type"] for k, p in spec.params.items()} == {
        "a": "integer",
        "b": "number",
        "c": "boolean",
        "d": "string",
    }
    assert spec.defaults == {"a": 1, "b": 0.5, "c": True, "d": "x", "seed": 0}
    with pytest.raises(RegistryError, match="classification task needs outputs="):
        register_task("no_classes_t", kind="classification")
    with pytest.raises(RegistryError, match="a task's name is lower-case letters, digits and '_'"):
        register_task("My-Task", kind="regression")  # the data rule's wildcard would not match it
    with pytest.raises(RegistryError, match="kind must be one of"):
        register_task("kind_t", kind="ranking")
    with pytest.raises(RegistryError, match="'seed' is common to every task"):
        register_task("seed_t", kind="regression", params={"seed": 1})
    with pytest.raises(RegistryError, match=r"parameter 'shape' needs a JSON schema"):
        register_task("list_t", kind="regression", params={"shape": [1, 2]})
    with pytest.raises(RegistryError, match=r"optional \['e'\] are not among its params"):
        register_task("opt_t", kind="regression", params={"a": 1}, optional=["e"])


def test_a_builder_named_by_a_string_is_imported_when_first_built(scratch, tmp_path, monkeypatch):
    (tmp_path / "lazy_task_mod.py").write_text(
        "import numpy as np\n"
        "def build(cfg):\n"
        "    x = np.arange(cfg['n'], dtype=np.float32)[:, None]\n"
        "    return {'x_train': x, 'y_train': 2 * x}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    register_task("lazy_t", kind="regression", params={"n": 5}, fn="lazy_task_mod:build")
    import sys

    assert "lazy_task_mod" not in sys.modules
    data = make_dataset({"name": "lazy_t"})
    np.testing.assert_array_equal(data["y_train"][:, 0], 2 * np.arange(5))


def _good():
    x = np.zeros((8, 3), np.float32)
    return {"x_train": x, "y_train": np.arange(8, dtype=np.int64) % 3, "x_test": x[:4], "y_test": np.zeros(4, np.int64)}


def _with(**changes):
    def build(cfg):
        data = _good()
        for key, value in changes.items():
            if value is None:
                del data[key]
            else:
                data[key] = value
        return data

    return build


BAD = [
    (_with(z_train=np.zeros(3)), r"unknown key 'z_train'"),
    (_with(y_train=None), r"no 'y_train'"),
    (_with(y_test=None), r"x_test and y_test come together"),
    (_with(x_train=np.zeros((8, 3))), r"x_train has dtype float64; inputs are float32"),
    (_with(x_train=np.zeros(8, np.float32)), r"x_train has shape \(8,\)"),
    (_with(x_train=[[0.0]] * 8), r"x_train is a list, not a numpy array"),
    (_with(y_train=np.zeros(7, np.int64)), r"x_train has 8 samples but y_train has 7"),
    (_with(y_train=np.zeros(8, np.int32)), r"y_train has dtype int32 and shape \(8,\); class labels are int64"),
    (
        _with(y_train=np.zeros((8, 1), np.int64)),
        r"y_train has dtype int64 and shape \(8, 1\); class labels are int64 \(n,\)",
    ),
    (_with(y_test=np.array([0, 1, 2, 3])), r"y_test has labels in \[0, 3\]; the task has 3 classes"),
    (_with(x_test=np.zeros((4, 2), np.float32)), r"x_train is float32 \(3,\) per sample but x_test is float32 \(2,\)"),
    (_with(x_train=np.full((8, 3), np.nan, np.float32)), r"x_train holds NaN or infinite values"),
    (lambda cfg: [np.zeros(3)], r"the builder returned list, not a dict"),
]


@pytest.mark.parametrize("build,match", BAD, ids=[str(i) for i in range(len(BAD))])
def test_a_builder_that_breaks_the_contract_is_named(scratch, build, match):
    register_task("three_t", kind="classification", outputs=3)(build)
    with pytest.raises(DatasetError, match=r"task 'three_t' \(.*\): " + match):
        make_dataset({"name": "three_t"})


def test_regression_targets_must_have_the_declared_width(scratch):
    def build(cfg):
        x = np.zeros((5, 2), np.float32)
        return {"x_train": x, "y_train": np.zeros((5, cfg["width"]), np.float32)}

    register_task("wide_t", kind="regression", outputs=lambda cfg: 2, params={"width": 2})(build)
    assert make_dataset({"name": "wide_t"})["y_train"].shape == (5, 2)
    with pytest.raises(DatasetError, match=r"y_train has dtype float32 and shape \(5, 3\); .* \(n, 2\)"):
        make_dataset({"name": "wide_t", "width": 3})


def test_a_check_refuses_at_config_time_what_a_schema_cannot_say(monkeypatch):
    from featscope import configload

    for name in (configload.PLUGINS_ENV, configload.PLUGIN_PATH_ENV):
        monkeypatch.setenv(name, "")
    config = _study({"name": "digits", "n_train": 1500, "n_test": 300})
    with pytest.raises(ConfigError, match=r"studies\.s\.task': task 'digits': n_train \+ n_test = 1800"):
        configload.load(copy.deepcopy(config), SCHEMA)


@pytest.mark.workflow
def test_the_data_job_names_a_plugin_builders_bad_array_before_any_training(tmp_path, repo):
    """Through the real `snakemake`: a plugin task whose builder returns float64 inputs
    fails in its data job, with the task and the array named; no run is trained."""
    from test_workflow import snakemake, write_config

    (tmp_path / "wide_inputs.py").write_text(
        "import numpy as np\n"
        "import featscope as fs\n\n\n"
        "@fs.register_task('wide_inputs', kind='regression', params={'n_train': 16})\n"
        "def wide_inputs(cfg):\n"
        "    x = np.random.default_rng(cfg['seed']).standard_normal((cfg['n_train'], 2))  # float64\n"
        "    return {'x_train': x, 'y_train': x[:, :1].astype(np.float32)}\n"
    )
    config = _study({"name": "wide_inputs"})
    config["studies"]["s"]["train"]["loss"] = "mse"
    config["plugins"] = ["wide_inputs"]
    write_config(tmp_path, config)
    done = snakemake(tmp_path, repo, "--replace-workflow-config")
    assert done.returncode != 0
    assert "task 'wide_inputs' (wide_inputs.wide_inputs): x_train has dtype float64" in done.stdout + done.stderr
    assert not list((tmp_path / "results").glob("data/*.npz"))
    assert not list((tmp_path / "results").glob("s/checkpoints/*.pt"))


def test_a_plugin_task_with_split_per_seed_draws_its_data_with_each_runs_seed(scratch, monkeypatch):
    """`split: per_seed` is a key any task may take (as modadd does): each run's task config
    then carries the run's seed, so each seed gets its own dataset."""
    from featscope import configload

    for name in (configload.PLUGINS_ENV, configload.PLUGIN_PATH_ENV):
        monkeypatch.setenv(name, "")

    def draw(cfg):
        x = np.random.default_rng(cfg["seed"]).standard_normal((6, 2)).astype(np.float32)
        return {"x_train": x, "y_train": x[:, :1].copy()}

    register_task("drawn_t", kind="regression", params={"split": {"enum": ["fixed", "per_seed"], "default": "fixed"}})(
        draw
    )
    config = _study({"name": "drawn_t", "split": "per_seed"})
    config["studies"]["s"]["train"]["loss"] = "mse"
    runs = configload.load(config, SCHEMA)["s"]
    assert [r.config["task"]["seed"] for r in runs] == [0, 1]
    assert len({r.dataset_id for r in runs}) == 2
    a, b = (make_dataset(r.config["task"]) for r in runs)
    assert not np.array_equal(a["x_train"], b["x_train"])
    config = _study({"name": "drawn_t"})  # split: fixed, the default
    config["studies"]["s"]["train"]["loss"] = "mse"
    assert len({r.dataset_id for r in configload.load(config, SCHEMA)["s"]}) == 1
