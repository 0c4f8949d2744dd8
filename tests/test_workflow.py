"""The real snakemake on a tiny config in a temporary directory."""

import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from tiny import sin2_study

from featscope.io import load_torch
from featscope.models import build_model
from featscope.tasks import load_dataset

pytestmark = pytest.mark.workflow

TINY = {
    "studies": {
        "tiny": sin2_study(figures=["loss_neurons", "linreg", "axes"], grid={"optim.lr": [0.01, 0.003]}),
        "tiny-cls": {
            "task": {"name": "mnist1d", "n_train": 200, "n_test": 100},
            "model": {"name": "mlp", "width": 16, "depth": 1},
            "optim": {"name": "adam", "lr": 0.01, "batch_size": 50},
            "train": {"steps": 20, "loss": "cross_entropy"},
            "schedule": {"every": 10},
            "observables": {"spectral": {"top": 3}},
            "analyses": ["regimes"],
            "figures": ["effective_dim", "regimes", "spectrum", "cumulative"],
            "grid": {"optim.train": ["all", "readout"]},
            "seeds": [0],
        },
        "tiny-grok": {
            "task": {"name": "modadd", "M": 5, "train_fraction": 0.5},
            "model": {"name": "onehot", "width": 16, "activation": "square", "bias": False},
            "optim": {"name": "adam", "lr": 0.01, "weight_decay": 0.0002},
            "train": {"steps": 30, "loss": "zero_mean_mse", "eval_every": 5},
            "schedule": {"every": 10},
            "observables": {"weights": {}, "gradients": {}},
            "analyses": ["stages", "grokking", "scaling"],
            "figures": ["stages", "dynamics", "scaling"],
            "grid": {"task.M": [5, 7], "task.train_fraction": [0.5, 0.8]},
            "seeds": [0],
        },
        "tiny-div": {  # one run diverges, the other does not
            "task": {"name": "sin2", "d": 3, "f": 2, "n_train": 64},
            "model": {"name": "mlp", "width": 8, "depth": 2},
            "optim": {"name": "sgd", "lr": 0.01},
            "train": {"steps": 40, "loss": "mse"},
            "schedule": {"every": 5},
            "observables": {"nonlinearity": {}, "linreg": {}, "spectral": {}},
            "analyses": ["phases"],
            "figures": ["loss_neurons", "linreg"],
            "grid": {"optim.lr": [0.01, 100.0]},
            "seeds": [0],
        },
    }
}


def snakemake(workdir, repo, *args, prelude=""):
    """Run the real snakemake CLI on `workdir` (optionally after a Python prelude)."""
    argv = [
        "--snakefile",
        os.path.join(repo, "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        "--cores",
        "2",
        *args,
    ]
    code = f"{prelude}\nimport sys\nfrom snakemake.cli import main\nsys.argv = ['snakemake'] + {argv!r}\nmain()"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=workdir)


def write_config(path, config):
    (path / "config.yaml").write_text(yaml.safe_dump(config))


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory, request):
    repo = request.config.rootpath
    workdir = tmp_path_factory.mktemp("tiny")
    write_config(workdir, TINY)
    done = snakemake(workdir, str(repo))
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir, str(repo)


def test_results_read_back_with_pandas(tiny_results):
    workdir, _ = tiny_results
    study = workdir / "results" / "tiny"
    runs = pd.read_parquet(study / "runs.parquet")
    assert sorted(runs.run) == ["lr-0.003__seed-0", "lr-0.003__seed-1", "lr-0.01__seed-0", "lr-0.01__seed-1"]
    assert (runs.status == "ok").all() and (runs.steps_done == 30).all()
    assert {"optim.lr", "model.width", "config_hash", "device", "version.torch", "wall_seconds"} <= set(runs.columns)

    obs = pd.read_parquet(study / "observables")
    assert list(obs.columns[:6]) == ["run", "step", "observable", "layer", "k", "value"]
    assert set(obs.family) == {"nonlinearity", "linreg"}
    assert set(obs.run) == set(runs.run)
    assert sorted(obs.step.unique()) == [0, 5, 10, 15, 20, 25, 30]
    counts = obs[obs.observable.isin(["nonlinear_neurons", "dead_neurons", "linear_neurons"])]
    per_layer = counts.groupby(["run", "step", "layer"]).value.sum()
    assert (per_layer == 8).all()  # every neuron is exactly one of the three kinds

    metrics = pd.read_parquet(study / "metrics")
    assert set(metrics.columns) >= {"run", "step", "epoch", "split", "loss", "acc", "lr"}
    assert len(metrics) == 4 * 31
    phases = pd.read_parquet(study / "phases.parquet")
    assert set(phases.run) == set(runs.run)
    assert {"loss_neurons.png", "linreg.png", "axis-optim.lr.png"} <= set(os.listdir(study / "figures"))


def test_each_figure_has_its_own_caption_in_the_report(tiny_results):
    """`snakemake --report` on the tiny results: every figure carries the caption its
    registered figure gives (featscope.registry.FIGURES), not one shared text."""
    from featscope import registry

    workdir, repo = tiny_results
    done = snakemake(workdir, repo, "--report", str(workdir / "report.html"))
    assert done.returncode == 0, done.stderr[-3000:]
    html = (workdir / "report.html").read_text()
    registry.load_built_ins()
    # Four plain words in a row of each caption (rst renders markup and symbols otherwise).
    seen = set()
    for name in ("loss_neurons", "linreg", "regimes", "spectrum", "stages", "scaling"):
        words = registry.figure(name).caption_for("tiny", None).split()
        plain = [i for i in range(len(words) - 3) if all(w.isalpha() for w in words[i : i + 4])]
        fragment = " ".join(words[plain[0] : plain[0] + 4])
        assert fragment in html and fragment not in seen, (name, fragment)
        seen.add(fragment)


def test_spectral_study_and_regimes(tiny_results):
    workdir, _ = tiny_results
    study = workdir / "results" / "tiny-cls"
    spectral = pd.read_parquet(study / "observables")
    assert {
        "eigenvalue",
        "quality",
        "utility",
        "cum_quality",
        "effective_dim",
        "d_lr",
        "drift_init",
        "drift_prev",
    } <= set(spectral.observable)
    assert (spectral[spectral.observable == "cum_quality"].value <= 1 + 1e-9).all()
    regimes = pd.read_parquet(study / "regimes.parquet")
    frozen = regimes[regimes.run.str.startswith("train-readout")]
    # Frozen features: the same subspace at every checkpoint (zero up to rounding, ~1e-32).
    assert (frozen.drift_init.abs() < 1e-20).all() and (frozen.regime == "coefficient").all()
    trained = regimes[regimes.run.str.startswith("train-all") & (regimes.step > 0)]
    assert (trained.drift_init > 0).all()
    metrics = pd.read_parquet(study / "metrics")
    assert metrics[metrics.split == "test"].acc.between(0, 1).all()


def test_grokking_study_tables(tiny_results):
    workdir, _ = tiny_results
    study = workdir / "results" / "tiny-grok"
    obs = pd.read_parquet(study / "observables")
    names = set(obs.observable)
    assert {
        "weight_norm",
        "weight_delta_norm",
        "weight_delta_rel",
        "weight_init_distance",
        "grad_norm",
        "grad_cosine_neurons",
        "update_cosine",
        "hidden_grad_norm",
        "feature_diversity",
        "weight_effective_rank",
        "fourier_purity",
        "fourier_frequencies",
        "gram_diag",
        "gram_offdiag",
    } <= names
    init = obs[(obs.observable == "weight_init_distance") & (obs.step == 0)]
    assert (init.value == 0).all()
    stages = pd.read_parquet(study / "stages.parquet")
    assert set(stages.stage) <= {"lazy", "independent", "interactive", "converged"}
    assert len(pd.read_parquet(study / "grokking.parquet")) == 4
    scaling = pd.read_parquet(study / "scaling.parquet")
    assert sorted(scaling.M.unique()) == [5, 7] and scaling.generalisation_rate.between(0, 1).all()
    assert {"stages.png", "dynamics.png", "scaling.png"} <= set(os.listdir(study / "figures"))


def test_values_match_recomputation(tiny_results):
    """Observables and metrics equal a brute-force recomputation from the checkpoint."""
    workdir, _ = tiny_results
    study = workdir / "results" / "tiny"
    run = "lr-0.01__seed-1"
    bundle = load_torch(study / "checkpoints" / f"{run}.pt")
    (data_file,) = (workdir / "results" / "data").glob("sin2-*.npz")
    data = load_dataset(data_file)
    x, y = torch.from_numpy(data["x_train"]), torch.from_numpy(data["y_train"])
    i = list(bundle["steps"].numpy()).index(20)
    model = build_model(bundle["model"], bundle["in_dim"], bundle["out_dim"])
    model.load_state_dict({k: v[i] for k, v in bundle["params"].items()})
    with torch.no_grad():
        out, feats = model.forward_features(x)
    metrics = pd.read_parquet(study / "metrics" / f"{run}.parquet")
    logged = metrics[(metrics.step == 20) & (metrics.split == "train")].loss.item()
    assert np.isclose(logged, torch.mean((out - y) ** 2).item(), rtol=1e-5)

    obs = pd.read_parquet(study / "observables", filters=[("run", "==", run), ("step", "==", 20)])
    nonlinear = obs[(obs.observable == "nonlinear_neurons") & (obs.layer == "h2")].value.item()
    rates = (feats.pre["h2"] > 0).double().mean(0)
    assert nonlinear == int(((rates > 0) & (rates < 1)).sum())
    h2 = np.hstack([feats.post["h2"].double().numpy(), np.ones((len(x), 1))])
    coef, *_ = np.linalg.lstsq(h2, y.double().numpy(), rcond=None)
    lin = obs[(obs.observable == "linreg_loss") & (obs.layer == "h2")].value.item()
    assert np.isclose(lin, np.mean((h2 @ coef - y.double().numpy()) ** 2), rtol=1e-8)


def test_second_invocation_has_nothing_to_do(tiny_results):
    workdir, repo = tiny_results
    again = snakemake(workdir, repo, "--dry-run")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Nothing to be done" in again.stdout + again.stderr


def _mtimes(folder):
    return {p.relative_to(folder): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_bumping_one_family_reruns_only_it(tiny_results):
    workdir, repo = tiny_results
    study = workdir / "results" / "tiny"
    before = _mtimes(study)
    before_cls = _mtimes(workdir / "results" / "tiny-cls")
    bump = (
        "import dataclasses, featscope.observables as o\n"
        "o.FAMILIES['linreg'] = dataclasses.replace(o.FAMILIES['linreg'], version=99)"
    )
    done = snakemake(workdir, repo, prelude=bump)
    assert done.returncode == 0, done.stderr[-2000:]
    after = _mtimes(study)
    changed = {str(p) for p in before if after.get(p) != before[p]}
    linreg = {str(p) for p in before if "linreg" in str(p)}  # outputs and logs
    assert _mtimes(workdir / "results" / "tiny-cls") == before_cls
    figures = {str(p) for p in before if str(p).startswith(("figures/", "logs/plot/"))}
    assert any("family=linreg" in p for p in linreg) and linreg <= changed
    assert changed - linreg - figures == set(), changed - linreg - figures


def test_bad_config_names_the_key(tmp_path, repo):
    bad = yaml.safe_load(yaml.safe_dump(TINY))
    bad["studies"]["tiny"]["optim"]["lr"] = -0.1
    write_config(tmp_path, bad)
    done = snakemake(tmp_path, repo, "--dry-run")
    assert done.returncode != 0
    assert "studies.tiny.optim.lr" in done.stderr + done.stdout
    assert not (tmp_path / "results").exists()


def test_diverged_run_is_recorded_and_the_rest_completes(tiny_results):
    workdir, _ = tiny_results
    study = workdir / "results" / "tiny-div"
    runs = pd.read_parquet(study / "runs.parquet").set_index("run")
    assert runs.loc["lr-0.01__seed-0", "status"] == "ok"
    bad = runs.loc["lr-100__seed-0"]
    assert bad.status == "diverged" and 0 < bad.steps_done < 40 and bad.diverged_at == bad.steps_done
    metrics = pd.read_parquet(study / "metrics" / "lr-100__seed-0.parquet")
    assert metrics.step.max() == bad.steps_done and not np.isfinite(metrics.loss.iloc[-1])
    obs = pd.read_parquet(study / "observables", filters=[("run", "==", "lr-100__seed-0")])
    assert obs.step.max() <= bad.steps_done and (obs.step == 0).any()
    assert (study / "figures" / "loss_neurons.png").exists()
    assert (study / "phases.parquet").exists()


def test_two_fresh_runs_give_identical_parquet(tiny_results, tmp_path):
    workdir, repo = tiny_results
    write_config(tmp_path, TINY)
    done = snakemake(tmp_path, repo)
    assert done.returncode == 0, done.stderr[-2000:]
    for study in TINY["studies"]:
        a, b = workdir / "results" / study, tmp_path / "results" / study
        for part in ("observables", "metrics"):
            pd.testing.assert_frame_equal(pd.read_parquet(a / part), pd.read_parquet(b / part))
        ra, rb = (pd.read_parquet(d / "runs.parquet").drop(columns="wall_seconds") for d in (a, b))
        pd.testing.assert_frame_equal(ra, rb)


def test_damaged_checkpoint_is_named_moved_aside_and_rebuilt(tiny_results):
    """Runs last: it damages the shared results."""
    workdir, repo = tiny_results
    checkpoint = workdir / "results" / "tiny" / "checkpoints" / "lr-0.01__seed-0.pt"
    good = load_torch(checkpoint)
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])  # truncated, newer than its observables
    failed = snakemake(workdir, repo)
    assert failed.returncode != 0
    assert "damaged file results/tiny/checkpoints/lr-0.01__seed-0.pt" in failed.stdout + failed.stderr, failed.stderr[
        -3000:
    ]
    assert checkpoint.with_name(checkpoint.name + ".corrupt").exists()
    rebuilt = snakemake(workdir, repo)
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    assert torch.equal(load_torch(checkpoint)["params"]["hidden.0.weight"], good["params"]["hidden.0.weight"])


def test_second_snakemake_on_the_same_directory_is_refused(tmp_path, repo):
    # Long enough training that the first run still holds its lock when the second starts.
    write_config(
        tmp_path, {"studies": {"tiny": sin2_study(train={"steps": 20000, "loss": "mse"}, schedule={"every": 2000})}}
    )
    argv = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        os.path.join(repo, "Snakefile"),
        "--directory",
        str(tmp_path),
        "--configfile",
        str(tmp_path / "config.yaml"),
        "--cores",
        "1",
    ]
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    locks = tmp_path / ".snakemake" / "locks"
    deadline = time.time() + 60
    while time.time() < deadline and not (locks.exists() and any(locks.iterdir())):
        time.sleep(0.2)
    second = subprocess.run(argv, capture_output=True, text=True)
    assert second.returncode != 0
    assert "cannot be locked" in second.stdout + second.stderr
    assert first.wait(timeout=600) == 0, first.stdout.read()[-2000:]  # the first run was not disturbed
    assert len(pd.read_parquet(tmp_path / "results" / "tiny" / "runs.parquet")) == 2


def _inodes(folder):
    return {p.name: p.stat().st_ino for p in folder.iterdir()}


def _log(study, kind):
    return "".join(p.read_text() for p in sorted((study / "logs" / kind).glob("*.log")))


def test_adding_a_seed_trains_and_observes_only_that_run(tmp_path, repo):
    write_config(tmp_path, {"studies": {"tiny": sin2_study(seeds=[0, 1])}})
    first = snakemake(tmp_path, repo)
    assert first.returncode == 0, first.stderr[-3000:]
    study = tmp_path / "results" / "tiny"
    before = _inodes(study / "checkpoints")
    observed = _inodes(study / "observables" / "family=linreg")

    write_config(tmp_path, {"studies": {"tiny": sin2_study(seeds=[0, 1, 2])}})
    second = snakemake(tmp_path, repo)
    assert second.returncode == 0, second.stderr[-3000:]
    # The block of seeds 0-2 reran, but seeds 0 and 1 came back from the cache: the same
    # files (inodes), not retrained or re-observed.
    assert "2 of 3 runs restored from the cache, 1 to train" in _log(study, "train")
    assert "2 of 3 runs restored from the cache, 1 to observe" in _log(study, "observe")
    after = _inodes(study / "checkpoints")
    assert {p: after[p] for p in before} == before and "seed-2.pt" in after
    assert {p: i for p, i in _inodes(study / "observables" / "family=linreg").items() if p in observed} == observed
    info = yaml.safe_load((study / "checkpoints" / "seed-2.json").read_text())
    assert info["packed"] == 1
    assert sorted(pd.read_parquet(study / "runs.parquet").run) == ["seed-0", "seed-1", "seed-2"]
    assert "Nothing to be done" in snakemake(tmp_path, repo, "--dry-run").stdout


def test_removed_runs_leave_the_results_and_the_tables_rebuild(tmp_path, repo):
    write_config(tmp_path, {"studies": {"tiny": sin2_study(seeds=[0, 1])}})
    assert snakemake(tmp_path, repo).returncode == 0
    write_config(tmp_path, {"studies": {"tiny": sin2_study(seeds=[1])}})
    done = snakemake(tmp_path, repo)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len([line for line in done.stderr.splitlines() if line.startswith("featscope: moved")]) == 1
    study = tmp_path / "results" / "tiny"
    for table in ("phases.parquet", "runs.parquet", "observables", "metrics"):
        assert set(pd.read_parquet(study / table).run) == {"seed-1"}, table
    assert (study / ".removed" / "checkpoints" / "seed-0.pt").exists()
    assert (study / ".removed" / "observables" / "family=linreg" / "seed-0.parquet").exists()
    # Nothing trained or observed again: seed 1's train block is the same job; its observe
    # blocks lost a member (their input set changed), so they reran and restored it.
    assert "train_tiny" not in done.stdout + done.stderr
    assert _log(study, "observe").count("1 of 1 runs restored from the cache, 0 to observe") == 2

    # A study dropped from the config: all its results moved aside.
    write_config(tmp_path, {"studies": {"other": sin2_study(seeds=[1], observables={}, analyses=[])}})
    done = snakemake(tmp_path, repo)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (study / "runs.parquet").exists() and not (study / "metrics").exists()
    assert (study / ".removed" / "runs.parquet").exists()


def test_a_family_schedule_change_reobserves_only_that_family(tmp_path, repo):
    write_config(tmp_path, {"studies": {"tiny": sin2_study()}})
    assert snakemake(tmp_path, repo).returncode == 0
    study = tmp_path / "results" / "tiny"
    before = _mtimes(study)
    write_config(
        tmp_path,
        {"studies": {"tiny": sin2_study(observables={"nonlinearity": {}, "linreg": {"schedule": {"every": 10}}})}},
    )
    done = snakemake(tmp_path, repo)
    assert done.returncode == 0, done.stderr[-3000:]
    after = _mtimes(study)
    changed = {str(p) for p in before if after.get(p) != before[p]}
    assert changed == {
        "observables/family=linreg/seed-0.parquet",
        "observables/family=linreg/seed-1.parquet",
        "logs/observe/observe_tiny__linreg__0.log",
    }, changed  # phases reads only nonlinearity; the study declares no figures
    steps = pd.read_parquet(study / "observables" / "family=linreg").step.unique()
    assert sorted(steps) == [0, 10, 20, 30]


def test_an_observe_block_over_grid_points_with_their_own_datasets(tmp_path, repo):
    """One observe block spans grid points whose datasets differ (random labels or not):
    each run is observed on its own dataset, as when observed alone."""
    from featscope.observe import observe_tables

    study = {
        "task": {"name": "mnist1d", "n_train": 60, "n_test": 20},
        "model": {"name": "mlp", "width": 8, "depth": 1},
        "optim": {"name": "adam", "lr": 0.01},
        "train": {"steps": 10, "loss": "cross_entropy"},
        "schedule": {"every": 5},
        "observables": {"spectral": {"top": 3}},
        "grid": {"task.random_labels": [False, True]},
        "seeds": [0, 1],  # four runs, two datasets
    }
    write_config(tmp_path, {"studies": {"rl": study}})
    done = snakemake(tmp_path, repo)
    assert done.returncode == 0, done.stderr[-3000:]
    results = tmp_path / "results"
    runs = pd.read_parquet(results / "rl" / "runs.parquet")
    assert len(runs) == 4
    for run in runs.run:
        written = pd.read_parquet(results / "rl" / "observables" / "family=spectral" / f"{run}.parquet")
        datasets = [p for p in (results / "data").iterdir() if p.suffix == ".npz"]
        # The run's own dataset, found by which one reproduces its rows.
        own = [
            d
            for d in datasets
            if observe_tables(
                run,
                {"spectral": {"top": 3}},
                load_torch(results / "rl" / "checkpoints" / f"{run}.pt"),
                load_dataset(d),
            )["spectral"]
            .to_pandas()
            .value.equals(written.value)
        ]
        assert len(own) == 1, run
    assert len(datasets) == 2


def test_dry_run_and_lint_write_nothing_under_results(tmp_path, repo):
    write_config(tmp_path, TINY)
    assert snakemake(tmp_path, repo, "--dry-run").returncode == 0
    lint = snakemake(tmp_path, repo, "--lint")
    assert lint.returncode == 0, lint.stdout[-3000:] + lint.stderr[-3000:]
    assert not (tmp_path / "results").exists()


def test_partial_configfile_and_one_value_overrides(tmp_path, repo):
    """A --configfile is merged onto the default config; --config values are YAML numbers."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump({"studies": {"tiny": sin2_study()}}))
    (tmp_path / "config.yaml").write_text("studies: {tiny: {optim: {lr: 1e-3}}}\n")  # YAML 1.1: a string
    done = snakemake(tmp_path, repo, "--config", "studies={tiny: {train: {steps: 20}, seeds: [3]}}")
    assert done.returncode == 0, done.stderr[-3000:]
    runs = pd.read_parquet(tmp_path / "results" / "tiny" / "runs.parquet")
    assert list(runs.run) == ["seed-3"] and runs["optim.lr"].item() == 0.001
    assert runs["train.steps"].item() == 20 and runs.steps_done.item() == 20
    assert runs["model.width"].item() == 8  # from the default


def test_plugin_family_is_validated_and_observed_by_the_jobs(tmp_path, repo):
    (tmp_path / "counts_plugin.py").write_text(
        "from featscope import register_family\n"
        "register_family('counts', version=1, reads='active rates',"
        " fn='featscope.observables.families:nonlinearity')\n"
    )
    write_config(
        tmp_path,
        {"plugins": ["counts_plugin"], "studies": {"tiny": sin2_study(observables={"counts": {}}, analyses=[])}},
    )
    done = snakemake(tmp_path, repo)
    assert done.returncode == 0, done.stderr[-3000:]
    obs = pd.read_parquet(tmp_path / "results" / "tiny" / "observables" / "family=counts")
    assert {"nonlinear_neurons", "dead_neurons"} <= set(obs.observable) and set(obs.run) == {"seed-0", "seed-1"}


def test_planning_the_workflow_imports_no_torch(tmp_path, repo):
    """Snakemake reads the Snakefile on every start (and on each cluster job): the plan,
    config check (a phases layer included) and GPU question take no torch where no GPU
    driver is (import torch alone takes a second or more)."""
    import copy

    config = copy.deepcopy(TINY)
    config["studies"]["tiny"]["phases"] = {"layer": "h2"}
    write_config(tmp_path, config)
    probe = "import atexit, sys\natexit.register(lambda: print('torch imported:', 'torch' in sys.modules))"
    plan = snakemake(tmp_path, repo, "--dry-run", prelude=probe)
    assert plan.returncode == 0, plan.stderr[-3000:]
    from featscope.device import gpu_device_files

    expected = bool(gpu_device_files())  # a GPU may be here: torch is asked
    assert f"torch imported: {expected}" in plan.stdout


def test_compact_checkpoints_are_dropped_once_observed(tmp_path, repo):
    study_cfg = sin2_study(checkpoint_dtype="float16")
    write_config(tmp_path, {"keep_checkpoints": False, "studies": {"tiny": study_cfg}})
    done = snakemake(tmp_path, repo)
    assert done.returncode == 0, done.stderr[-3000:]
    study = tmp_path / "results" / "tiny"
    assert not list((study / "checkpoints").glob("*.pt"))  # observed, then dropped
    assert len(list((study / "observables").rglob("*.parquet"))) == 4
    assert "Nothing to be done" in snakemake(tmp_path, repo, "--dry-run").stdout

    # Observing again needs the checkpoints back: the runs retrain (in a pack), identically.
    before = pd.read_parquet(study / "observables" / "family=linreg")
    bump = (
        "import dataclasses, featscope.observables as o\n"
        "o.FAMILIES['linreg'] = dataclasses.replace(o.FAMILIES['linreg'], version=99)"
    )
    again = snakemake(tmp_path, repo, prelude=bump)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "train_tiny__seed_0_1" in again.stdout + again.stderr
    assert not list((study / "checkpoints").glob("*.pt"))
    pd.testing.assert_frame_equal(pd.read_parquet(study / "observables" / "family=linreg"), before)
