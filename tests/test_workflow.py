"""The real snakemake on a tiny config in a temporary directory."""

import os
import re
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
    figures = {str(p) for p in before if str(p).startswith("figures/")}
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


def test_new_seeds_train_together_and_nothing_else_reruns(tmp_path, repo):
    write_config(tmp_path, {"studies": {"tiny": sin2_study(seeds=[0, 1])}})
    first = snakemake(tmp_path, repo)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "train_pack_" in first.stderr and "observe_pack_" in first.stderr  # 2 runs, 1 job each way
    study = tmp_path / "results" / "tiny"
    before = _mtimes(study / "checkpoints")

    # Four new seeds on 2 cores: two packs of two side by side, each way, to keep both busy.
    write_config(tmp_path, {"studies": {"tiny": sin2_study(seeds=[0, 1, 2, 3, 4, 5])}})
    second = snakemake(tmp_path, repo)  # --cores 2
    assert second.returncode == 0, second.stderr[-3000:]
    jobs = [line.split("Rule: ")[1].rstrip(")") for line in second.stderr.splitlines() if "(Rule: " in line]
    assert sorted(j.split("_pack_")[0] for j in jobs) == [
        "all",
        "observe",
        "observe",
        "phases",
        "runs_table",
        "train",
        "train",
    ], jobs
    after = _mtimes(study / "checkpoints")
    assert {p: after[p] for p in before} == before  # seeds 0 and 1 untouched
    infos = {s: yaml.safe_load((study / "checkpoints" / f"seed-{s}.json").read_text()) for s in range(6)}
    assert [infos[s]["packed"] for s in range(6)] == [2] * 6
    assert "Nothing to be done" in snakemake(tmp_path, repo, "--dry-run").stdout


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


def test_packs_are_cut_to_fill_the_cores_training_counting_its_threads(tmp_path, repo):
    write_config(tmp_path, {"threads": 2, "studies": {"tiny": sin2_study(seeds=list(range(8)))}})

    def packs(cores):
        plan = snakemake(tmp_path, repo, "--dry-run", "--cores", str(cores))
        assert plan.returncode == 0, plan.stderr[-3000:]
        names = set(re.findall(r"^(train|observe)_pack_([0-9a-f]+)\s+1$", plan.stdout, re.M))  # job stats
        return sorted(kind for kind, _ in names)

    # 2 cores hold one 2-thread training job but two observe jobs; 4 cores two and four.
    assert packs(2) == ["observe"] * 2 + ["train"]
    assert packs(4) == ["observe"] * 4 + ["train"] * 2


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
    assert "train_pack_" in again.stderr and not list((study / "checkpoints").glob("*.pt"))
    pd.testing.assert_frame_equal(pd.read_parquet(study / "observables" / "family=linreg"), before)
