"""The recipes of docs/extending.md, run from outside the package.

Every ```python block of the page whose first line is `# <module>.py` is written to a
temporary folder and imported as a plugin module. Each recipe's result is checked against
a brute-force twin.
"""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

PAGE = Path(__file__).resolve().parent.parent / "docs" / "extending.md"


def _blocks() -> list[str]:
    text = PAGE.read_text()
    return [textwrap.dedent(b) for b in re.findall(r"^[ ]*```python\n(.*?)^[ ]*```", text, re.DOTALL | re.MULTILINE)]


def _plugin_files() -> dict[str, str]:
    files = {}
    for block in _blocks():
        first = block.splitlines()[0]
        if re.fullmatch(r"# \w+\.py", first):
            files[first[2:-3]] = block
    return files


@pytest.fixture(scope="module")
def plugins(tmp_path_factory):
    """Import the page's plugin modules; unregister what they registered afterwards."""
    from featscope import registry

    folder = tmp_path_factory.mktemp("plugins")
    files = _plugin_files()
    assert set(files) == {"gelu_mlp", "activation_scale", "scale_growth", "parity"}, sorted(files)
    for name, code in files.items():
        (folder / f"{name}.py").write_text(code)
    # Built-ins register on first use: register them now, so that only the plugins' names go afterwards.
    registry.load_built_ins()
    import featscope.architectures  # noqa: F401 (registers the built-in models)

    before = {r: set(getattr(registry, r)) for r in ("MODELS", "FAMILIES", "ANALYSES", "FIGURES", "TASKS")}
    registry.load_plugins(list(files), search_path=[folder])
    yield {name: sys.modules[name] for name in files}
    for r, names in before.items():
        table = getattr(registry, r)
        for name in set(table) - names:
            del table[name]
    for name in files:
        sys.modules.pop(name, None)
    sys.path.remove(str(folder.resolve()))


def test_the_model_recipe_builds_and_its_layer_map_points_at_the_activations(plugins):
    from featscope.registry import MODELS, RegistryError

    spec = MODELS["gelu_mlp"]
    assert spec.defaults == {"width": 64}
    model = spec.build(3, 2, {"name": "gelu_mlp", "width": 8})
    seen = {}
    paths = spec.layer_map({"width": 8})
    assert paths == {"h1": "1", "h2": "3"}
    for layer, path in paths.items():
        model.get_submodule(path).register_forward_hook(
            lambda m, args, out, layer=layer: seen.update({layer: (args[0], out)})
        )
    model.get_submodule(spec.readout).register_forward_hook(lambda m, args, out: seen.update(readout=args[0]))
    x = torch.randn(5, 3)
    out = model(x)
    # brute force: the same net written out from its weights
    w = [model[i].weight for i in (0, 2, 4)]
    b = [model[i].bias for i in (0, 2, 4)]
    pre1 = x @ w[0].T + b[0]
    h1 = torch.nn.functional.gelu(pre1)
    pre2 = h1 @ w[1].T + b[1]
    h2 = torch.nn.functional.gelu(pre2)
    torch.testing.assert_close(seen["h1"][0], pre1)
    torch.testing.assert_close(seen["h1"][1], h1)
    torch.testing.assert_close(seen["h2"][0], pre2)
    torch.testing.assert_close(seen["readout"], h2)
    torch.testing.assert_close(out, h2 @ w[2].T + b[2])
    with pytest.raises(RegistryError, match="widht"):
        spec.resolve({"name": "gelu_mlp", "widht": 8})


@pytest.fixture(scope="module")
def run():
    """A tiny built-in MLP trained on sin² (checkpoints every 4 of 12 steps) and its data."""
    from featscope.tasks import make_dataset
    from featscope.training import train_one

    task = {"name": "sin2", "d": 3, "f": 2, "n_train": 40, "n_test": 0, "seed": 0}
    cfg = {
        "task": task,
        "model": {"name": "mlp", "width": 8, "depth": 2},
        "optim": {"name": "adam", "lr": 0.01},
        "train": {"steps": 12, "loss": "mse"},
        "schedule": {"every": 4},
        "seed": 0,
    }
    data = make_dataset(task)
    return train_one("r", cfg, data, progress=False).checkpoints, data


@pytest.fixture(scope="module")
def observed(plugins, run):
    from featscope.observe import observe_families

    bundle, data = run
    return observe_families("r", {"activation_scale": {}}, bundle, data)["activation_scale"]


def test_the_family_recipe_gives_the_mean_absolute_activation(observed, run):
    bundle, data = run
    x = torch.from_numpy(data["x_train"]).double()
    p = bundle["params"]
    assert sorted(observed.step.unique()) == [int(s) for s in bundle["steps"]] == [0, 4, 8, 12]
    for t, step in enumerate(bundle["steps"]):
        h = x
        for i, layer in enumerate(["h1", "h2"]):
            h = torch.relu(h @ p[f"hidden.{i}.weight"][t].double().T + p[f"hidden.{i}.bias"][t].double())
            got = observed[(observed.step == int(step)) & (observed.layer == layer)]
            assert (got.observable == "mean_abs_activation").all()
            assert len(got) == 1 and got.k.isna().all()
            assert np.isclose(got.value.iloc[0], h.abs().mean().item(), rtol=1e-5)


class _Inputs:
    """The two reads the recipe's analysis and figure make, over real rows."""

    def __init__(self, rows, tables=None):
        self.rows, self.tables = rows, tables or {}

    def observables(self, family):
        assert family == "activation_scale"
        return self.rows

    def table(self, name):
        return self.tables[name]


def test_the_analysis_recipe_gives_last_over_first_and_its_figure_draws_it(plugins, observed):
    import matplotlib.figure

    from featscope.registry import ANALYSES, FIGURES

    spec = ANALYSES["scale_growth"]
    assert spec.families == ("activation_scale",)
    table = spec.fn(_Inputs(observed))
    for layer in ("h1", "h2"):
        rows = observed[observed.layer == layer]
        first, last = rows[rows.step == rows.step.min()].value.item(), rows[rows.step == rows.step.max()].value.item()
        assert np.isclose(table.set_index("layer").loc[layer, "ratio"], last / first)
    figure = FIGURES["scale_growth"]
    assert figure.analyses == ("scale_growth",) and "{study}" in figure.caption
    drawn = figure.fn(_Inputs(observed, {"scale_growth": table}))
    assert isinstance(drawn, matplotlib.figure.Figure)
    assert len(drawn.axes[0].patches) == 2  # one run, two layers


def test_the_task_recipe_registers_a_deterministic_parity_set(plugins):
    """The page's task, through the registry: its defaults filled, its labels the parity of
    the first k inputs (by hand), the same data for the same seed, other data for another."""
    from featscope.registry import TASKS
    from featscope.tasks import make_dataset, task_kind, task_outputs

    spec = TASKS["parity"]
    assert spec.defaults == {"d": 8, "k": 3, "n_train": 256, "n_test": 64, "seed": 0}
    assert task_kind("parity") == "classification" and task_outputs({"name": "parity"}) == 2
    cfg = {"name": "parity", "d": 6, "k": 4, "n_train": 30, "n_test": 10, "seed": 1}
    data, again, other = make_dataset(cfg), make_dataset(dict(cfg)), make_dataset({**cfg, "seed": 2})
    assert data["x_train"].shape == (30, 6) and data["x_test"].shape == (10, 6)
    assert data["x_train"].dtype == np.float32 and data["y_train"].dtype == np.int64
    assert all(np.array_equal(data[k], again[k]) for k in data)
    assert not np.array_equal(data["x_train"], other["x_train"])
    x = np.concatenate([data["x_train"], data["x_test"]])
    y = np.concatenate([data["y_train"], data["y_test"]])
    assert set(np.unique(x)) == {-1.0, 1.0}
    np.testing.assert_array_equal(y, [int(np.prod(row[:4]) > 0) for row in x])
    assert make_dataset({"name": "parity"})["x_train"].shape == (256, 8)  # the defaults


def test_the_readme_family_is_the_page_family(plugins, run, observed):
    """README.md's short plugin example, registered under another name, gives the page's rows."""
    from featscope import registry
    from featscope.observe import observe_families

    readme = (PAGE.parent.parent / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", readme, re.DOTALL) if "register_family" in b]
    code = block.replace('"activation_scale"', '"readme_activation_scale"')
    try:
        exec(compile(code, "README.md", "exec"), {"__name__": "readme_plugin"})
        bundle, data = run
        rows = observe_families("r", {"readme_activation_scale": {}}, bundle, data)["readme_activation_scale"]
        assert rows.drop(columns="family", errors="ignore").equals(observed.drop(columns="family", errors="ignore"))
    finally:
        registry.FAMILIES.pop("readme_activation_scale", None)


def _study_configs() -> list[dict]:
    import yaml

    text = PAGE.read_text()
    return [yaml.safe_load(b) for b in re.findall(r"^```yaml\n(.*?)^```", text, re.DOTALL | re.MULTILINE)]


@pytest.mark.workflow
def test_the_page_plugins_and_config_run_through_the_real_snakemake(tmp_path, repo):
    """The page's three plugin files beside its combined config (fewer steps), through the
    real `snakemake`: every family's rows on the model's named layers, the analysis table
    and its figure, with values recomputed from the checkpoints."""
    from test_workflow import snakemake, write_config

    (config,) = [c for c in _study_configs() if "scale_growth" in str(c.get("studies"))]
    files = _plugin_files()
    assert config["plugins"] == [f for f in files if f != "parity"]
    for name, code in files.items():
        (tmp_path / f"{name}.py").write_text(code)
    study = config["studies"]["gelu"]
    study["train"]["steps"] = 40
    study["schedule"] = {"every": 10, "log": 0}
    study["observables"]["activation_scale"] = {"schedule": {"every": 20}}
    write_config(tmp_path, config)
    done = snakemake(tmp_path, repo, "--replace-workflow-config")
    assert done.returncode == 0, done.stderr[-3000:]

    out = tmp_path / "results" / "gelu"
    rows = {f: pd.read_parquet(out / "observables" / f"family={f}") for f in study["observables"]}
    for family, frame in rows.items():
        assert set(frame.run) == {"seed-0", "seed-1"}, family
    assert {"h1", "h2"} <= set(rows["linreg"].layer) and set(rows["activation_scale"].layer) == {"h1", "h2"}
    assert sorted(rows["linreg"].step.unique()) == [0, 10, 20, 30, 40]
    assert sorted(rows["activation_scale"].step.unique()) == [0, 20, 40]  # its own schedule
    assert len(rows["spectral"]) and len(rows["weights"])

    # the family's values from the saved checkpoints and the dataset, by hand
    from featscope.io import load_torch
    from featscope.tasks import load_dataset

    (data_file,) = (tmp_path / "results" / "data").glob("*.npz")
    x = torch.from_numpy(load_dataset(data_file)["x_train"]).double()
    bundle = load_torch(out / "checkpoints" / "seed-1.pt")
    steps = [int(s) for s in bundle["steps"]]
    p = bundle["params"]
    mine = rows["activation_scale"].query("run == 'seed-1'")
    for step in (0, 20, 40):
        t = steps.index(step)
        h1 = torch.nn.functional.gelu(x @ p["0.weight"][t].double().T + p["0.bias"][t].double())
        h2 = torch.nn.functional.gelu(h1 @ p["2.weight"][t].double().T + p["2.bias"][t].double())
        for layer, h in (("h1", h1), ("h2", h2)):
            got = mine[(mine.step == step) & (mine.layer == layer)].value.item()
            assert np.isclose(got, h.abs().mean().item(), rtol=1e-5), (step, layer)

    table = pd.read_parquet(out / "scale_growth.parquet")
    assert len(table) == 4  # two runs × two layers
    for _, row in table.iterrows():
        ends = rows["activation_scale"].query("run == @row.run and layer == @row.layer").sort_values("step").value
        assert np.isclose(row["first"], ends.iloc[0]) and np.isclose(row["ratio"], ends.iloc[-1] / ends.iloc[0])
    figure = out / "figures" / "scale_growth.png"
    assert figure.stat().st_size > 1000 and figure.read_bytes()[:4] == b"\x89PNG"


def test_the_observe_model_example_runs_the_page_family_on_any_module(plugins):
    """The page's `observe_model` example, on the recipe's model at two states: the plugin
    family's rows are the mean |GELU activation| of each state, by hand."""
    (block,) = [b for b in _blocks() if "fs.observe_model(" in b]
    torch.manual_seed(0)
    x, y = torch.randn(50, 3), torch.randn(50, 1)
    gelu_mlp = plugins["gelu_mlp"].gelu_mlp
    state_0 = {k: v.clone() for k, v in gelu_mlp(3, 1, width=32).state_dict().items()}
    state_100 = {k: v.clone() for k, v in gelu_mlp(3, 1, width=32).state_dict().items()}
    scope = {"gelu_mlp": gelu_mlp, "x": x, "y": y, "state_0": state_0, "state_100": state_100}
    exec(compile(block, "extending.md", "exec"), scope)
    rows = scope["rows"]
    for step, state in ((0, state_0), (100, state_100)):
        h1 = torch.nn.functional.gelu(x @ state["0.weight"].T + state["0.bias"])
        h2 = torch.nn.functional.gelu(h1 @ state["2.weight"].T + state["2.bias"])
        for layer, h in (("h1", h1), ("h2", h2)):
            got = rows[(rows.observable == "mean_abs_activation") & (rows.step == step) & (rows.layer == layer)]
            assert np.isclose(got.value.item(), h.abs().mean().item(), rtol=1e-5), (step, layer)
    assert set(rows[rows.observable == "linreg_loss"].layer) == {"x", "h1", "h2"}
    assert set(rows[rows.observable == "effective_dim"].layer) == {"h2"}  # the readout's input
    assert sorted(rows.step.unique()) == [0, 100]


def test_a_misspelt_parameter_of_the_page_model_is_refused_before_any_job(plugins, monkeypatch):
    """The page's claim: an unknown key of the plugin model's block is refused, naming it,
    when the workflow checks the config."""
    from featscope import configload
    from featscope.config import ConfigError

    for name in (configload.PLUGINS_ENV, configload.PLUGIN_PATH_ENV):  # restored afterwards
        monkeypatch.setenv(name, "")
    (config,) = [c for c in _study_configs() if "scale_growth" in str(c.get("studies"))]
    schema = PAGE.parent.parent / "workflow" / "schemas" / "config.schema.yaml"
    configload.load(json_copy(config), schema)  # as on the page: accepted
    config["studies"]["gelu"]["model"]["widht"] = 8
    with pytest.raises(ConfigError, match=r"studies\.gelu\.model.*'widht'"):
        configload.load(config, schema)


def json_copy(value):
    import json

    return json.loads(json.dumps(value))


@pytest.mark.workflow
def test_the_page_task_and_its_study_run_through_the_real_snakemake(tmp_path, repo):
    """The page's task file beside its study (fewer samples and steps), through the real
    `snakemake`, nothing under src/ or workflow/ edited: the data job writes the dataset
    the builder makes (labels checked by hand), and the runs are trained and observed."""
    from test_workflow import snakemake, write_config

    (config,) = [c for c in _study_configs() if c.get("plugins") == ["parity"]]
    (tmp_path / "parity.py").write_text(_plugin_files()["parity"])
    study = config["studies"]["parity"]
    study["task"].update(n_train=64, n_test=32)
    study["train"]["steps"] = 20
    study["schedule"] = {"every": 10, "log": 0}
    write_config(tmp_path, config)
    done = snakemake(tmp_path, repo, "--replace-workflow-config")
    assert done.returncode == 0, done.stderr[-3000:]

    from featscope.tasks import load_dataset

    (data_file,) = (tmp_path / "results" / "data").glob("parity-*.npz")
    data = load_dataset(data_file)
    assert data["x_train"].shape == (64, 12) and data["x_test"].shape == (32, 12)
    x = np.concatenate([data["x_train"], data["x_test"]])
    y = np.concatenate([data["y_train"], data["y_test"]])
    np.testing.assert_array_equal(y, [int(np.prod(row[:3]) > 0) for row in x])

    out = tmp_path / "results" / "parity"
    runs = pd.read_parquet(out / "runs.parquet")
    assert sorted(runs.run) == ["seed-0", "seed-1"] and (runs.status == "ok").all()
    assert (runs["task.d"] == 12).all() and (runs["task.n_train"] == 64).all() and (runs["task.seed"] == 0).all()
    for family in ("spectral", "weights"):
        rows = pd.read_parquet(out / "observables" / f"family={family}")
        assert set(rows.run) == {"seed-0", "seed-1"} and sorted(rows.step.unique()) == [0, 10, 20], family
    metrics = pd.concat(pd.read_parquet(p) for p in (out / "metrics").glob("*.parquet"))
    assert len(metrics) and metrics.filter(like="acc").notna().any().any()


def test_a_misspelt_key_of_the_page_task_is_refused_before_any_job(plugins, monkeypatch):
    """The page's claim: an unknown key of the plugin task's block is refused, naming it,
    when the workflow checks the config; so is a wrong type."""
    from featscope import configload
    from featscope.config import ConfigError

    for name in (configload.PLUGINS_ENV, configload.PLUGIN_PATH_ENV):  # restored afterwards
        monkeypatch.setenv(name, "")
    (config,) = [c for c in _study_configs() if c.get("plugins") == ["parity"]]
    schema = PAGE.parent.parent / "workflow" / "schemas" / "config.schema.yaml"
    runs = configload.load(json_copy(config), schema)  # as on the page: accepted, defaults filled
    assert runs["parity"][0].config["task"] == {
        "name": "parity",
        "d": 12,
        "k": 3,
        "n_train": 256,
        "n_test": 64,
        "seed": 0,
    }
    bad = json_copy(config)
    bad["studies"]["parity"]["task"]["kk"] = 3
    with pytest.raises(ConfigError, match=r"studies\.parity\.task.*'kk'"):
        configload.load(bad, schema)
    bad = json_copy(config)
    bad["studies"]["parity"]["task"]["d"] = "twelve"
    with pytest.raises(ConfigError, match=r"studies\.parity\.task\.d"):
        configload.load(bad, schema)
