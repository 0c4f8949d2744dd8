"""profiles/slurm for real: a tiny study through a running Slurm equals the same study run locally.

Needs a Slurm that answers `sinfo` (`profiles/slurm/local-cluster.sh start` brings up a
single-node one as root on Debian). Without one the test is skipped, unless
FEATSCOPE_REQUIRE_SLURM=1 (CI), where it fails. The Slurm jobs run `<this python> -m snakemake`
on the node, so this interpreter (the venv, with featscope installed) and the temporary
directory must be visible there: true on the single-node cluster.
"""

import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import snakemake
import yaml
from tiny import sin2_study

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]

TINY = {"studies": {"tiny": sin2_study()}}

TIMEOUT = int(os.environ.get("FEATSCOPE_SLURM_TIMEOUT", "900"))  # seconds for the Slurm run
USABLE = {"idle", "mixed", "allocated", "completing"}


def slurm_problem():
    """None if Slurm answers and has a usable node, else what is wrong."""
    for tool in ("sinfo", "sbatch", "squeue"):
        if shutil.which(tool) is None:
            return f"`{tool}` not found"
    try:
        done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "`sinfo` did not answer within 30 s"
    if done.returncode != 0:
        return f"`sinfo` failed: {done.stderr.strip()}"
    states = {state.rstrip("*~#!%$@^-+") for state in done.stdout.split()}
    if not states & USABLE:
        return f"no usable Slurm node (sinfo states: {sorted(states) or 'none'})"
    return None


@pytest.fixture(scope="module")
def slurm():
    problem = slurm_problem()
    if problem:
        if os.environ.get("FEATSCOPE_REQUIRE_SLURM") == "1":
            pytest.fail(f"FEATSCOPE_REQUIRE_SLURM=1 but {problem}")
        pytest.skip(f"{problem} (profiles/slurm/local-cluster.sh start brings one up)")


def snakemake_argv(repo, workdir, *args):
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        os.path.join(repo, "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        *args,
    ]


def cancel_jobs_under(workdir):
    """scancel the Slurm jobs whose working directory is `workdir` (after a timeout)."""
    listed = subprocess.run(["squeue", "-h", "-o", "%i %Z"], capture_output=True, text=True)
    ids = [
        line.split()[0]
        for line in listed.stdout.splitlines()
        if len(line.split()) == 2 and line.split()[1] == str(workdir)
    ]
    if ids:
        subprocess.run(["scancel", *ids])
    return ids


def tail(path, n=4000):
    return path.read_text(errors="replace")[-n:] if path.exists() else ""


def read_study(workdir):
    study = workdir / "results" / "tiny"

    def ordered(frame, keys):
        keys = [k for k in keys if k in frame.columns]
        return frame.sort_values(keys, kind="mergesort", ignore_index=True)

    runs = pd.read_parquet(study / "runs.parquet").drop(columns=["wall_seconds", "device"])
    return {
        "runs": ordered(runs, ["run"]),
        "metrics": ordered(pd.read_parquet(study / "metrics"), ["run", "step", "split"]),
        "observables": ordered(
            pd.read_parquet(study / "observables"), ["family", "run", "step", "observable", "layer", "k"]
        ),
        "phases": ordered(pd.read_parquet(study / "phases.parquet"), ["run"]),
    }


def run_on_slurm_and_locally(repo, on_slurm, local, config):
    """The same config in both directories: on Slurm through the profile, and locally."""
    for workdir in (on_slurm, local):
        (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    log = on_slurm / "snakemake.log"
    start = time.monotonic()
    with open(log, "w") as out:
        # The profile verbatim; only the first status check comes sooner than its 40 s default
        # (still well inside MinJobAge), and successful jobs keep their logs to count them.
        proc = subprocess.Popen(
            snakemake_argv(
                repo,
                on_slurm,
                "--profile",
                os.path.join(repo, "profiles", "slurm"),
                "--slurm-init-seconds-before-status-checks",
                "5",
                "--slurm-keep-successful-logs",
            ),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=on_slurm,
        )
        # Meanwhile the same study locally (the Slurm run mostly waits on the scheduler).
        done = subprocess.run(snakemake_argv(repo, local, "--cores", "2"), capture_output=True, text=True, cwd=local)
        assert done.returncode == 0, done.stderr[-3000:]
        try:
            code = proc.wait(timeout=max(TIMEOUT - (time.monotonic() - start), 1))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)  # Snakemake cancels its Slurm jobs
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            cancelled = cancel_jobs_under(on_slurm)
            pytest.fail(f"Slurm run still going after {TIMEOUT} s (cancelled {cancelled}):\n{tail(log)}")
    print(f"slurm run: {time.monotonic() - start:.0f} s")
    assert code == 0, tail(log)
    return log


def slurm_logs(workdir, pattern):
    return sorted((workdir / ".snakemake" / "slurm_logs").glob(f"{pattern}/**/*.log"))


def test_slurm_run_equals_local_run(slurm, repo, tmp_path_factory):
    # Under /tmp: readable by the Slurm job (root here; on a real cluster it would have to be
    # on a shared filesystem).
    on_slurm = tmp_path_factory.mktemp("slurm")
    local = tmp_path_factory.mktemp("local")

    # Two new seeds: one Slurm job trains both (a block), one per family observes both.
    log = run_on_slurm_and_locally(repo, on_slurm, local, TINY)
    assert len(slurm_logs(on_slurm, "rule_data")) == 1, tail(log)
    assert len(slurm_logs(on_slurm, "rule_train_tiny__*")) == 1, tail(log)
    assert len(slurm_logs(on_slurm, "rule_observe_tiny__*")) == 2, tail(log)
    # ... by this interpreter's snakemake (the venv: featscope importable in the jobs).
    train_log = slurm_logs(on_slurm, "rule_train_tiny__*")[0].read_text()
    assert f"Command: {os.path.dirname(snakemake.__file__)}" in train_log

    # One seed more: its block reruns on the node, restoring seeds 0 and 1 from the cache.
    more = {"studies": {"tiny": sin2_study(seeds=[0, 1, 2])}}
    log = run_on_slurm_and_locally(repo, on_slurm, local, more)
    train_logs = (on_slurm / "results" / "tiny" / "logs" / "train").glob("*.log")
    assert "2 of 3 runs restored from the cache, 1 to train" in "".join(p.read_text() for p in train_logs), tail(log)

    slurm_results, local_results = read_study(on_slurm), read_study(local)
    assert len(slurm_results["runs"]) == 3 and (slurm_results["runs"].status == "ok").all()
    assert set(slurm_results["observables"].family) == {"nonlinearity", "linreg"}
    for name, frame in local_results.items():
        pd.testing.assert_frame_equal(slurm_results[name], frame, check_exact=True, obj=name)
