"""Registered analyses and figures through `analysis_job` / `figure_job`: a plugin's own, and
each built-in against a twin computed by hand or by calling its science function directly."""

import re
import sys
import textwrap

import jinja2
import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from test_phases import four_phase_curves

import featscope.config as fsconfig
from featscope import io, registry
from featscope.analyses import AnalysisInputs, row_filter
from featscope.phases import segment_phases
from featscope.pipeline import analysis_job, figure_job
from featscope.regimes import label
from featscope.stages import fit_m_log_m

ROWS = ["run", "step", "observable", "layer", "k", "value"]


def write_runs(folder, metrics: pd.DataFrame, families: dict[str, pd.DataFrame], runs: pd.DataFrame | None = None):
    """One Parquet file per run and family, as the workflow writes them; the `paths` dict."""
    ids = list(dict.fromkeys(metrics.run))
    paths = {"metrics": [], "observables": {f: [] for f in families}, "tables": {}}
    for run in ids:
        paths["metrics"].append(folder / "metrics" / f"{run}.parquet")
        io.write_parquet(metrics[metrics.run == run].reset_index(drop=True), paths["metrics"][-1])
        for family, rows in families.items():
            paths["observables"][family].append(folder / f"family={family}" / f"{run}.parquet")
            io.write_parquet(rows[rows.run == run].reset_index(drop=True), paths["observables"][family][-1])
    if runs is not None:
        paths["runs"] = folder / "runs.parquet"
        io.write_parquet(runs, paths["runs"])
    return paths


def long_rows(rows) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=ROWS)
    return frame.astype({"k": "float64", "value": "float64"})


# ------------------------------------------------------------------------ a plugin
PLUGIN = '''
"""A user's analysis and figure, registered from outside featscope."""
import pandas as pd

import featscope


@featscope.register_analysis("final_loss_probe", families=["nonlinearity"], params="final_loss_probe")
def final_loss(inputs, split="train"):
    """Each run's last loss on `split` and its mean count of nonlinear h1 neurons."""
    m = inputs.metrics(columns=["run", "step", "split", "loss"], filters={"split": split})
    last = m.sort_values("step").groupby("run").loss.last()
    n = inputs.observables("nonlinearity", filters={"observable": "nonlinear_neurons", "layer": "h1"})
    mean = n.groupby("run").value.mean()
    return pd.DataFrame({"run": last.index, "final_loss": last.to_numpy(), "mean_neurons": mean[last.index].to_numpy()})


@final_loss.figure("final_loss_probe", caption="Final loss per run of **{study}**; {not Jinja} {{ kept }}.")
def draw(inputs):
    import matplotlib.pyplot as plt

    table = inputs.table("final_loss_probe")
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.bar(table.run, table.final_loss, color="k")
    return fig
'''


@pytest.fixture
def plugin(tmp_path):
    (tmp_path / "plugin_dir").mkdir()
    (tmp_path / "plugin_dir" / "analysis_probe_plugin.py").write_text(PLUGIN)
    registry.load_plugins(["analysis_probe_plugin"], [tmp_path / "plugin_dir"])
    yield "final_loss_probe"
    registry.ANALYSES.pop("final_loss_probe", None)
    registry.FIGURES.pop("final_loss_probe", None)
    sys.modules.pop("analysis_probe_plugin", None)
    sys.path.remove(str((tmp_path / "plugin_dir").resolve()))


def test_a_plugin_analysis_and_figure_run_through_the_jobs(tmp_path, plugin):
    metrics = pd.DataFrame(
        [
            (r, s, sp, loss)
            for r in ("a", "b")
            for s in (0, 10, 20)
            for sp, loss in (("train", s + ord(r)), ("test", -1))
        ],
        columns=["run", "step", "split", "loss"],
    )
    counts = long_rows(
        [
            (r, s, obs, layer, None, s / 10 + (layer == "h2") * 100 + (r == "b") + (obs == "dead_neurons") * 50)
            for r in "ab"
            for s in (0, 10, 20)
            for layer in ("h1", "h2")
            for obs in ("nonlinear_neurons", "dead_neurons")
        ]
    )
    paths = write_runs(tmp_path, metrics, {"nonlinearity": counts})
    out = tmp_path / "final_loss_probe.parquet"
    analysis_job("final_loss_probe", "s", paths, {"split": "train"}, out)
    table = pd.read_parquet(out)
    # by hand: last train loss = 20 + ord(run); mean h1 count over steps 0, 1, 2 (+1 for b)
    assert table.to_dict("list") == {"run": ["a", "b"], "final_loss": [117.0, 118.0], "mean_neurons": [1.0, 2.0]}

    paths["tables"]["final_loss_probe"] = out
    png = tmp_path / "figure.png"
    figure_job("final_loss_probe", "s", paths, png)
    image = mpimg.imread(png)
    assert image.ndim == 3 and (image[..., :3] < 0.1).all(axis=-1).sum() > 100  # the black bars are drawn

    caption = tmp_path / "caption.rst"
    assert registry.write_caption("final_loss_probe", "s", caption) == str(caption.resolve())
    rendered = jinja2.Environment().from_string(caption.read_text()).render(snakemake=None)
    assert rendered.strip() == "Final loss per run of **s**; {not Jinja} {{ kept }}."


def test_a_plugin_analysis_is_in_the_schema_and_the_config_check(plugin):
    assert plugin in registry.schema_enums()["analyses"] and plugin in registry.schema_enums()["figures"]
    schema = fsconfig.complete_schema(io_schema())
    study = schema["$defs"]["study"]["properties"]
    assert plugin in study["analyses"]["items"]["enum"] and study[plugin]["default"] == {}
    config = {
        "studies": {
            "s": {
                "task": {"name": "sin2", "d": 3, "f": 2, "n_train": 32},
                "model": {"name": "mlp", "width": 4, "depth": 2},
                "optim": {"name": "adam", "lr": 0.01},
                "train": {"steps": 10, "loss": "mse"},
                "schedule": {"every": 5},
                "observables": {},
                "analyses": [plugin],
                "figures": [plugin],
                plugin: {"split": "test"},
                "seeds": [0],
            }
        }
    }
    fsconfig.validate_schema(config, io_schema())
    with pytest.raises(
        fsconfig.ConfigError, match=r"'final_loss_probe' needs the observable families \['nonlinearity'\]"
    ):
        fsconfig.check(config, io_schema(), {"nonlinearity": {"regression"}})
    config["studies"]["s"]["observables"] = {"nonlinearity": {}}
    assert len(fsconfig.check(config, io_schema(), {"nonlinearity": {"regression"}})["s"]) == 1


def io_schema():
    import yaml
    from conftest import REPO

    return yaml.safe_load(open(f"{REPO}/workflow/schemas/config.schema.yaml"))


# ------------------------------------------------------------------- the built-ins
def test_phases_job_equals_segment_phases_per_run(tmp_path):
    metrics, rows, twin = [], [], []
    for seed in (0, 1, 2):
        steps, loss, neurons = four_phase_curves(seed=seed)
        run = f"seed-{seed}"
        if seed == 2:
            loss = loss.copy()
            loss[7] = np.nan  # a non-finite loss: that checkpoint is left out
        metrics += [(run, s, "train", v) for s, v in zip(steps, loss)] + [(run, s, "test", 9.0) for s in steps]
        rows += [(run, s, "nonlinear_neurons", "h2", None, n) for s, n in zip(steps, neurons)]
        rows += [(run, s, "nonlinear_neurons", "h1", None, 3.0) for s in steps]  # another layer
        rows += [(run, s, "active_rate", "h2", None, 0.5) for s in steps]  # another observable
        ok = np.isfinite(loss)
        twin.append({"run": run, "layer": "h2", **segment_phases(steps[ok], loss[ok], neurons[ok], window=3).as_dict()})
    paths = write_runs(
        tmp_path, pd.DataFrame(metrics, columns=["run", "step", "split", "loss"]), {"nonlinearity": long_rows(rows)}
    )
    analysis_job("phases", "s", paths, {"layer": "h2", "window": 3}, tmp_path / "phases.parquet")
    table = pd.read_parquet(tmp_path / "phases.parquet")
    pd.testing.assert_frame_equal(table, pd.DataFrame(twin))
    assert table.t2.to_numpy() == pytest.approx([500] * 3, abs=60)  # the constructed boundary


def test_regimes_job_labels_by_hand(tmp_path):
    runs = pd.DataFrame({"run": ["frozen", "minimal", "extended"], "outputs": [3, 3, 1]})
    rows = []
    for run, drift, dim in (("frozen", 0.001, 40.0), ("minimal", 0.3, 5.5), ("extended", 0.3, 5.5)):
        for step in (0, 10):
            rows += [
                (run, step, "drift_init", None, drift if step else 0.0),
                (run, step, "effective_dim_utility", None, dim),
                (run, step, "effective_dim", None, 7.0),
                (run, step, "d_lr", None, 0.25),
                (run, step, "eigenvalue", 1.0, 123.0),  # per k: not read
            ]
    spectral = long_rows([(r, s, o, "h2", k, v) for r, s, o, k, v in rows])
    metrics = pd.DataFrame({"run": runs.run, "step": 0, "split": "train", "loss": 1.0})
    paths = write_runs(tmp_path, metrics, {"spectral": spectral}, runs)
    analysis_job("regimes", "s", paths, {"mf_factor": 2.0}, tmp_path / "regimes.parquet")
    table = pd.read_parquet(tmp_path / "regimes.parquet")
    last = table[table.step == 10].set_index("run")
    # by hand: drift 0.001 < 0.01 -> coefficient; 5.5 <= 2 x 3 -> MF; 5.5 > 2 x 1 -> EF
    assert last.regime.to_dict() == {"extended": "EF", "frozen": "coefficient", "minimal": "MF"}
    assert last.classes.to_dict() == {"extended": 1, "frozen": 3, "minimal": 3}
    assert (table[table.step == 0].regime == "coefficient").all()
    assert list(table.columns) == [
        "run",
        "step",
        "d_lr",
        "drift_init",
        "effective_dim",
        "effective_dim_utility",
        "classes",
        "regime",
    ]
    assert [label(d, e, c) for d, e, c in zip(table.drift_init, table.effective_dim_utility, table.classes)] == list(
        table.regime
    )


def test_stages_job_labels_by_hand(tmp_path):
    steps = np.arange(0, 201, 10)
    metrics = pd.DataFrame(
        [
            ("g", s, sp, acc)
            for s in steps
            for sp, acc in (("train", 1.0 if s >= 30 else 0.5), ("test", 1.0 if s >= 150 else 0.1))
        ],
        columns=["run", "step", "split", "acc"],
    )
    delta = np.where(steps < 50, 1e-6, np.where(steps < 120, 0.05, 1e-6))
    weights = [("g", s, "weight_delta_rel", "h1", None, d) for s, d in zip(steps, delta)]
    weights += [("g", s, "weight_delta_rel", "h1", 1.0, 99.0) for s in steps]  # per-k rows are not read
    grads = [("g", s, "grad_norm", None, None, g) for s, g in zip(steps, np.where(steps < 180, 1.0, 1e-4))]
    grads += [("g", s, "grad_norm", "h1", None, 5.0) for s in steps]  # a per-layer norm: not the total
    paths = write_runs(tmp_path, metrics, {"weights": long_rows(weights), "gradients": long_rows(grads)})
    analysis_job("stages", "s", paths, {"acc_high": 0.95}, tmp_path / "stages.parquet")
    table = pd.read_parquet(tmp_path / "stages.parquet").set_index("step")
    expected = {0: "lazy", 40: "lazy", 50: "independent", 130: "independent", 150: "interactive", 180: "converged"}
    assert {s: table.stage[s] for s in expected} == expected
    assert table.h1_delta_rate[60] == pytest.approx(0.05 / 10)


def test_grokking_and_scaling_jobs_by_hand(tmp_path):
    rows, runs = [], []
    # M = 5 and 7, fractions 0.2 / 0.4 / 0.6, two seeds; which ones generalise is set by hand
    generalise = {
        (5, 0.2): (0, 0),
        (5, 0.4): (1, 0),
        (5, 0.6): (1, 1),
        (7, 0.2): (0, 0),
        (7, 0.4): (0, 0),
        (7, 0.6): (1, 1),
    }
    for (m, f), outcome in generalise.items():
        for seed, grok in enumerate(outcome):
            run = f"M{m}f{f}s{seed}"
            runs.append({"run": run, "task.M": m, "task.train_fraction": f})
            for step in (0, 10, 20, 30):
                rows.append((run, step, step / 10, "train", 1.0 if step >= 10 else 0.2))
                rows.append((run, step, step / 10, "test", 0.97 if grok and step >= 30 else 0.1))
    metrics = pd.DataFrame(rows, columns=["run", "step", "epoch", "split", "acc"])
    paths = write_runs(tmp_path, metrics, {}, pd.DataFrame(runs))
    analysis_job("grokking", "s", paths, None, tmp_path / "grokking.parquet")
    grok = pd.read_parquet(tmp_path / "grokking.parquet").set_index("run")
    assert grok.loc["M5f0.4s0"].to_dict() == {
        "step_train_fit": 10.0,
        "step_test_fit": 30.0,
        "delay_steps": 20.0,
        "delay_epochs": 2.0,
        "final_train_acc": 1.0,
        "final_test_acc": 0.97,
        "generalised": True,
    }
    assert not grok.loc["M5f0.4s1", "generalised"] and np.isnan(grok.loc["M5f0.4s1", "delay_steps"])

    paths["tables"]["grokking"] = tmp_path / "grokking.parquet"
    analysis_job("scaling", "s", paths, None, tmp_path / "scaling.parquet")
    table = pd.read_parquet(tmp_path / "scaling.parquet")
    rate = table.set_index(["M", "train_fraction"]).generalisation_rate
    assert rate[(5, 0.4)] == 0.5 and rate[(7, 0.4)] == 0.0 and rate[(7, 0.6)] == 1.0
    crit = table.drop_duplicates("M").set_index("M").critical_fraction
    assert crit[5] == pytest.approx(0.4) and crit[7] == pytest.approx(0.5)  # 0.4 + (0.5 - 0) * 0.2 / 1
    # the fit through the origin, by least squares on the two points
    n_crit = np.array([0.4 * 25, 0.5 * 49])
    g = np.array([5 * np.log(5), 7 * np.log(7)])
    c = np.linalg.lstsq(g[:, None], n_crit, rcond=None)[0][0]
    assert table.c.iloc[0] == pytest.approx(c) and fit_m_log_m([5, 7], n_crit)[0] == pytest.approx(c)


# ---------------------------------------------------------------------- the inputs
def test_row_filter_matches_pandas(tmp_path):
    rng = np.random.default_rng(0)
    frame = long_rows(
        [
            (
                f"r{i % 3}",
                int(i),
                ["a", "b", "c"][i % 3],
                [None, "h1", "h2"][i % 2],
                None if i % 4 else float(i),
                rng.random(),
            )
            for i in range(60)
        ]
    )
    io.write_parquet(frame, tmp_path / "rows.parquet")
    inputs = AnalysisInputs("s", {"observables": {"f": [tmp_path / "rows.parquet"]}})
    got = inputs.observables("f", filters={"observable": ["a", "c"], "k": None, "layer": "h1"})
    twin = frame[frame.observable.isin(["a", "c"]) & frame.k.isna() & (frame.layer == "h1")]
    pd.testing.assert_frame_equal(got, twin.reset_index(drop=True))
    assert row_filter(None) is None


def test_inputs_read_only_what_is_asked_and_name_what_is_missing(tmp_path):
    metrics = pd.DataFrame({"run": ["a"], "step": [0], "split": ["train"], "loss": [1.0]})
    paths = write_runs(tmp_path, metrics, {})
    paths["observables"] = {"spectral": [tmp_path / "absent.parquet"]}  # never opened
    inputs = AnalysisInputs("s", paths, reader="analysis 'x'")
    assert inputs.metrics(columns=["loss"]).loss.tolist() == [1.0]
    with pytest.raises(
        ValueError, match=r"analysis 'x' of study 's' reads the observable family 'weights'.*\['spectral'\]"
    ):
        inputs.observables("weights")
    with pytest.raises(ValueError, match="reads the analysis table 'phases'"):
        inputs.table("phases")
    assert inputs.table("phases", optional=True) is None


def test_axes_are_the_training_config_columns_that_vary():
    runs = pd.DataFrame(
        {
            "run": ["a", "b", "c", "d"],
            "optim.lr": [0.1, 0.1, 0.01, 0.1],
            "task.d": [3, 5, 3, 3],
            "model.width": [8, 8, 8, 8],
            "wall_seconds": [1.0, 2.0, 3.0, 4.0],
            "seed": [0, 0, 0, 1],
        }
    )
    inputs = AnalysisInputs("s", {})
    inputs.runs = runs  # the cached property, set by hand
    assert inputs.axes == ["optim.lr", "task.d"]


def test_figure_job_checks_the_axis(tmp_path):
    with pytest.raises(ValueError, match="figure 'axes' is drawn once per grid axis"):
        figure_job("axes", "s", {}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="figure 'linreg' is not drawn per grid axis"):
        figure_job("linreg", "s", {}, tmp_path / "x.png", axis="optim.lr")
    with pytest.raises(registry.RegistryError, match="unknown analysis 'phase'; registered: .*'phases'"):
        analysis_job("phase", "s", {}, None, tmp_path / "x.parquet")


def test_every_built_in_figure_has_its_own_caption():
    registry.load_built_ins()
    built_in = {n: f for n, f in registry.FIGURES.items() if f.fn.__module__.startswith("featscope.")}
    assert set(built_in) >= {"loss_neurons", "linreg", "axes", "spectrum", "cumulative", "effective_dim"}
    captions = [f.caption_for("s", "optim.lr") for f in built_in.values()]
    assert len(set(captions)) == len(captions) and all(len(c) > 100 for c in captions)
    assert "``optim.lr``" in registry.figure("axes").caption_for("s", "optim.lr")
    assert textwrap.dedent(registry.figure("linreg").caption).strip().startswith("Training loss")


def test_the_registry_of_analyses_loads_without_torch_or_matplotlib():
    """The workflow reads it while Snakemake starts: figures import their plotting code when drawn."""
    import subprocess

    code = (
        "import sys; from featscope import registry; e = registry.schema_enums(); "
        "print(len(e['analyses']), len(e['figures']), 'torch' in sys.modules, 'matplotlib' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["5", "10", "False", "False"]


REPORT_SNAKEFILE = """
from featscope import registry

FIGURES = {"linreg": None, "axis-optim.lr": "optim.lr"}

rule all:
    input: expand("out/{f}.png", f=FIGURES)

for name, axis in FIGURES.items():
    rule:
        name: "figure_" + name.replace("-", "_").replace(".", "_")
        output:
            report(f"out/{name}.png", category="demo", caption=registry.write_caption(
                "axes" if axis else name, "demo", f"out/.captions/{name}.rst", axis=axis))
        run:
            import matplotlib.pyplot as plt
            fig, ax = plt.subplots(figsize=(1, 1))
            fig.savefig(output[0])
"""


@pytest.mark.workflow
def test_each_figure_gets_its_caption_in_a_snakemake_report(tmp_path):
    """`write_caption` files as Snakemake's report reads them: each figure its own caption."""
    import subprocess

    (tmp_path / "Snakefile").write_text(REPORT_SNAKEFILE)
    snakemake = [
        sys.executable,
        "-m",
        "snakemake",
        "--directory",
        str(tmp_path),
        "--snakefile",
        str(tmp_path / "Snakefile"),
    ]
    subprocess.run([*snakemake, "--cores", "1", "--quiet"], check=True, capture_output=True)
    subprocess.run([*snakemake, "--report", str(tmp_path / "report.html")], check=True, capture_output=True)
    html = (tmp_path / "report.html").read_text()
    captions = dict(re.findall(r'"filename": "([^"]+)\.png".*?"caption": "(.*?)(?<!\\)"', html))
    assert set(captions) == {"linreg", "axis-optim.lr"}
    assert captions["linreg"].startswith("<p>Training loss of study <strong>demo</strong>")
    assert "least-squares baselines" in captions["linreg"] and "Effect of" not in captions["linreg"]
    assert captions["axis-optim.lr"].startswith("<p>Effect of the grid axis <tt")
    assert "optim.lr</tt> in study <strong>demo</strong>" in captions["axis-optim.lr"]
