"""The content-addressed cache: its training keys follow the code, not only the config."""

import importlib
import sys

from featscope import cache, registry


def test_code_version_follows_the_packages_and_the_plugins_source(tmp_path, monkeypatch):
    """A plugin edited between two workflow runs: a rerun block must not restore members
    its old code trained, so the key changes with the plugin's bytes."""
    plugin = tmp_path / "cache_plugin_mod.py"
    plugin.write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "PLUGINS_LOADED", set())
    monkeypatch.setattr(cache, "_CODE_VERSION", {})
    package_only = cache.code_version()
    registry.load_plugins(["cache_plugin_mod"])
    try:
        with_plugin = cache.code_version()
        assert with_plugin != package_only
        plugin.write_text("X = 2\n")
        cache._CODE_VERSION.clear()  # a new process: the workflow's next job
        importlib.reload(sys.modules["cache_plugin_mod"])
        assert cache.code_version() not in (package_only, with_plugin)
        plugin.write_text("X = 1\n")
        cache._CODE_VERSION.clear()
        assert cache.code_version() == with_plugin  # the same bytes: the same key
    finally:
        sys.modules.pop("cache_plugin_mod", None)


def test_a_train_block_does_not_restore_runs_made_by_other_code(tmp_path, monkeypatch):
    from featscope.pipeline import train_block_job
    from featscope.tasks import make_dataset, save_dataset

    cfg = {
        "task": {"name": "sin2", "d": 3, "f": 2, "n_train": 32, "seed": 0},
        "model": {"name": "mlp", "width": 4, "depth": 2, "activation": "relu"},
        "optim": {"name": "adam", "lr": 0.01},
        "train": {"steps": 5, "loss": "mse"},
        "schedule": {"every": 5},
        "seed": 0,
    }
    save_dataset(make_dataset(cfg["task"]), tmp_path / "data.npz")

    def block(tag):
        outs = [{k: str(tmp_path / f"{tag}.{k}") for k in ("checkpoints", "metrics", "info")}]
        log = tmp_path / f"{tag}.log"
        train_block_job([("r", cfg)], tmp_path / "data.npz", outs, cache_dir=tmp_path / "cache", log=log)
        return log.read_text().splitlines()[0]

    assert block("first") == "0 of 1 runs restored from the cache, 1 to train"
    assert block("same-code") == "1 of 1 runs restored from the cache, 0 to train"
    monkeypatch.setattr(cache, "code_version", lambda: "edited")
    assert block("new-code") == "0 of 1 runs restored from the cache, 1 to train"
