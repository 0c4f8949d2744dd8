"""Config loading: numbers from strings, defaults, plugins, registry-driven enums (no Snakemake)."""

import copy
import os
import sys

import pytest
import yaml
from tiny import sin2_study

from featscope import configload
from featscope.config import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA = os.path.join(REPO, "workflow", "schemas", "config.schema.yaml")


def test_number_strings_become_numbers_only_in_number_fields():
    study = sin2_study(grid={"optim.lr": ["1e-3", "0.01"], "train.steps": ["20"]})
    study["optim"] = {"name": "adam", "lr": "1e-3", "batch_size": "null", "weight_decay": "2E-4"}
    study["task"]["f"] = "2.5"
    study["task"]["n_train"] = "64"
    config = {"threads": "2", "keep_checkpoints": "false", "studies": {"s": study}}
    runs = configload.load(config, SCHEMA)
    s = config["studies"]["s"]
    assert s["optim"]["lr"] == 1e-3 and isinstance(s["optim"]["lr"], float)
    assert s["optim"]["batch_size"] is None and s["optim"]["weight_decay"] == 2e-4
    assert s["task"]["f"] == 2.5 and s["task"]["n_train"] == 64 and isinstance(s["task"]["n_train"], int)
    assert config["threads"] == 2 and config["keep_checkpoints"] is False
    assert s["grid"] == {"optim.lr": [0.001, 0.01], "train.steps": [20]}
    assert [r.id for r in runs["s"]][:2] == ["lr-0.001__steps-20__seed-0", "lr-0.001__steps-20__seed-1"]
    assert s["task"]["name"] == "sin2" and s["model"]["activation"] == "relu"  # defaults filled


def test_strings_that_are_not_numbers_are_still_refused_with_the_key():
    study = sin2_study()
    study["optim"]["lr"] = "fast"
    with pytest.raises(ConfigError, match=r"studies\.s\.optim\.lr"):
        configload.load({"studies": {"s": study}}, SCHEMA)
    study["optim"]["lr"] = "nan"  # a YAML float, but not a learning rate
    with pytest.raises(ConfigError, match=r"studies\.s\.optim\.lr"):
        configload.load({"studies": {"s": study}}, SCHEMA)


def test_defaults_are_those_snakemake_validate_fills(tmp_path):
    """The library fills defaults as snakemake.utils.validate(set_default=True) did (given
    the schema the registries complete: the task block is theirs)."""
    from snakemake.utils import validate

    from featscope.config import complete_schema

    default = yaml.safe_load(open(os.path.join(REPO, "config", "config.yaml")))
    ours, theirs = copy.deepcopy(default), copy.deepcopy(default)
    configload.load(ours, SCHEMA)
    complete = tmp_path / "complete.schema.yaml"
    complete.write_text(yaml.safe_dump(complete_schema(yaml.safe_load(open(SCHEMA))), sort_keys=False))
    validate(theirs, str(complete), set_default=True)
    assert ours == theirs
    assert ours["studies"]["nonlinearity"]["task"]["n_test"] == 0  # a task default, from the registry


def test_plugins_are_imported_and_their_names_validate(tmp_path, monkeypatch):
    from featscope.registry import FAMILIES

    (tmp_path / "my_plugin.py").write_text(
        "from featscope import register_family\n"
        "register_family('my_counts', version=3, reads='active rates',"
        " fn='featscope.observables.families:nonlinearity')\n"
    )
    monkeypatch.setattr(sys, "path", list(sys.path))
    study = sin2_study(observables={"my_counts": {}}, analyses=[])
    config = {"plugins": ["my_plugin"], "studies": {"s": study}}
    try:
        configload.load(config, SCHEMA, [tmp_path])
        assert FAMILIES["my_counts"].version == 3
        assert os.environ[configload.PLUGINS_ENV] == "my_plugin"
        with pytest.raises(ConfigError, match="plugin 'no_such_plugin' cannot be imported"):
            configload.load({"plugins": ["no_such_plugin"], "studies": {"s": study}}, SCHEMA, [tmp_path])
    finally:
        FAMILIES.pop("my_counts", None)
        sys.modules.pop("my_plugin", None)


def test_registered_analyses_and_figures_join_the_schema_enums():
    from featscope.registry import ANALYSES, FIGURES

    schema = yaml.safe_load(open(SCHEMA))
    ANALYSES["my_table"] = FIGURES["my_figure"] = object()
    try:
        props = configload.registry_schema(schema)["$defs"]["study"]["properties"]
        assert "my_table" in props["analyses"]["items"]["enum"] and "phases" in props["analyses"]["items"]["enum"]
        assert "my_figure" in props["figures"]["items"]["enum"]
    finally:
        del ANALYSES["my_table"], FIGURES["my_figure"]
