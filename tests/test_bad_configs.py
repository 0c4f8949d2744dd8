"""A corpus of malformed configs: each is rejected before any job starts, naming the key."""

import os
import pathlib
import subprocess
import sys

import pytest
import yaml

import featscope.config as fsconfig
from featscope.configload import load

CORPUS = sorted(pathlib.Path(__file__).parent.joinpath("bad_configs").glob("*.yaml"))
REPO = pathlib.Path(__file__).parent.parent
SCHEMA_PATH = REPO / "workflow" / "schemas" / "config.schema.yaml"


def expected(path):
    return path.read_text().splitlines()[0].removeprefix("# expect: ").strip()


def check_like_the_workflow(config):
    """What the Snakefile calls."""
    return load(config, SCHEMA_PATH)


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 20


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_rejected_with_key_path(path):
    config = yaml.safe_load(path.read_text())
    with pytest.raises(fsconfig.ConfigError) as err:
        check_like_the_workflow(config)
    message = str(err.value)
    assert expected(path) in message, message
    assert message.startswith("config key '")


def test_good_base_config_passes():
    config = yaml.safe_load((CORPUS[0].parent / "zero_lr.yaml").read_text())
    config["studies"]["s"]["optim"]["lr"] = 0.01
    runs = check_like_the_workflow(config)
    assert [r.id for r in runs["s"]] == ["seed-0"]


@pytest.mark.workflow
@pytest.mark.parametrize("name", ["negative_lr", "grid_value_invalid", "unknown_observable"])
def test_real_snakemake_refuses_before_any_job(tmp_path, name):
    (tmp_path / "config.yaml").write_text((CORPUS[0].parent / f"{name}.yaml").read_text())
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(tmp_path / "config.yaml"),
            "--cores",
            "1",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert expected(CORPUS[0].parent / f"{name}.yaml") in done.stdout + done.stderr
    assert not (tmp_path / "results").exists()
    assert not os.path.exists(tmp_path / ".snakemake" / "locks") or not os.listdir(tmp_path / ".snakemake" / "locks")
    assert "Traceback" not in done.stderr and 'File "' not in done.stderr  # the message only
    assert done.stderr.strip().splitlines()[-1].startswith("invalid config: config key '"), done.stderr
