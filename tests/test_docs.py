"""The documentation's generated pages are current, and say what the code does.

`docs/gen.py` writes the config keys (config/README.md, from the schema) and the observables
table (docs/outputs.md, from the family registry); these tests fail when either page is out
of date, when a config key has no meaning, or when a built-in family writes an observable
its `observables=` does not name.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def gen():
    spec = importlib.util.spec_from_file_location("featscope_docs_gen", ROOT / "docs" / "gen.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_pages_are_current(gen):
    stale = [str(p.relative_to(ROOT)) for p in gen.stale()]
    assert not stale, f"out of date: {stale}; run `python docs/gen.py`"


def test_every_config_key_has_a_meaning(gen):
    assert gen.missing_meanings() == []


def test_config_page_lists_every_schema_key(gen):
    """Walk the schema independently of the generator: each property path appears as a row
    (the schema as the registries complete it: the tasks' keys are theirs)."""
    from featscope.config import complete_schema

    schema = complete_schema(yaml.safe_load(gen.SCHEMA.read_text()))
    page = gen.CONFIG_PAGE.read_text()
    keys = set(re.findall(r"^\| `([^`]+)`", page, flags=re.MULTILINE))

    def walk(node, path):
        while "$ref" in node:
            node = schema["$defs"][node["$ref"].split("/")[-1]]
        for key, sub in node.get("properties", {}).items():
            yield f"{path}.{key}" if path else key
            yield from walk(sub, f"{path}.{key}" if path else key)
        for case in node.get("allOf", ()):
            yield from (p for p in walk(case["then"], path) if not p.endswith(".name"))

    expected = {p for p in walk(schema, "") if p != "studies"}
    expected = {p for p in expected if not p.startswith("studies.")}
    study_keys = set(walk(schema["$defs"]["study"], ""))
    observable_keys = set(walk(schema["$defs"]["study"]["properties"]["observables"]["additionalProperties"], ""))
    expected |= {k for k in study_keys} | {f"observables.<family>.{k}" for k in observable_keys}
    assert expected - keys == set()


def test_a_changed_schema_makes_the_page_stale(gen, monkeypatch, tmp_path):
    """The check can fail: a new key in the schema changes the generated block."""
    schema = yaml.safe_load(gen.SCHEMA.read_text())
    schema["properties"]["extra_key"] = {"type": "integer", "default": 3, "description": "a new key"}
    block = gen.config_block(schema)
    assert "| `extra_key` | integer | `3` | a new key |" in block
    assert block != gen.config_block()
    schema["properties"]["undescribed"] = {"type": "string"}
    assert gen.missing_meanings(schema) == ["`undescribed`"]


def test_outputs_page_names_every_registered_observable(gen):
    import featscope.observables  # noqa: F401
    from featscope.registry import FAMILIES

    page = gen.OUTPUTS_PAGE.read_text()
    for name, spec in FAMILIES.items():
        assert spec.observables, f"family '{name}' declares no observables="
        for observable in spec.observables:
            assert f"| `{observable}` |" in page, (name, observable)


def _observed(model: dict, task: dict, loss: str, families: list) -> dict[str, set]:
    """Observable names per family from a real observe of a tiny trained run."""
    from featscope.observe import observe_families
    from featscope.tasks import make_dataset
    from featscope.training import train_one

    cfg = {
        "task": task,
        "model": model,
        "optim": {"name": "adam", "lr": 0.01},
        "train": {"steps": 12, "loss": loss},
        "schedule": {"every": 4},
        "seed": 0,
    }
    data = make_dataset(task)
    bundle = train_one("r", cfg, data, progress=False).checkpoints
    frames = observe_families("r", {f: ({"top": 3} if f == "spectral" else {}) for f in families}, bundle, data)
    return {family: set(frame.observable.unique()) for family, frame in frames.items()}


def test_built_in_families_write_exactly_the_observables_they_declare():
    """Every built-in family on a tiny MLP (regression) and a ModularNet (modular addition):
    the union of what they write is what `observables=` documents, no more, no less."""
    from featscope.registry import FAMILIES

    mlp = _observed(
        {"name": "mlp", "width": 8, "depth": 2},
        {"name": "sin2", "d": 3, "f": 2, "n_train": 40, "n_test": 0, "seed": 0},
        "mse",
        ["nonlinearity", "linreg", "spectral", "weights", "gradients"],
    )
    modular = _observed(
        {"name": "modnet", "width": 12},
        {"name": "modadd", "M": 7, "train_fraction": 0.6, "seed": 0},
        "cross_entropy",
        ["nonlinearity", "spectral", "weights", "gradients"],
    )
    for family, spec in FAMILIES.items():
        if family not in mlp:
            continue  # a plugin's family registered by another test
        assert mlp[family] | modular.get(family, set()) == set(spec.observables), family


def test_documented_names_match_a_workflow_result():
    """If a default-workflow result is present (results/ or /tmp/baseline_results), its
    families' observables are exactly those documented."""
    import pandas as pd

    import featscope.observables  # noqa: F401
    from featscope.registry import FAMILIES

    roots = [p for p in (ROOT / "results", Path("/tmp/baseline_results")) if p.is_dir()]
    folders = [f for root in roots for f in root.glob("*/observables/family=*")]
    if not folders:
        pytest.skip("no workflow results here")
    seen: dict[str, set] = {}
    for folder in folders:
        family = folder.name.split("=", 1)[1]
        if family in FAMILIES:
            seen.setdefault(family, set()).update(pd.read_parquet(folder, columns=["observable"]).observable.unique())
    for family, names in seen.items():
        assert names == set(FAMILIES[family].observables), family


def test_the_readme_pandas_example_reads_a_workflow_result(tmp_path, monkeypatch):
    """README.md's pandas lines, run where `results/` is a default-workflow result (if one is here)."""
    import pandas as pd

    root = next((p for p in (ROOT / "results", Path("/tmp/baseline_results")) if (p / "nonlinearity").is_dir()), None)
    if root is None:
        pytest.skip("no default-workflow results here")
    (tmp_path / "results").symlink_to(root)
    monkeypatch.chdir(tmp_path)
    readme = (ROOT / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", readme, re.DOTALL) if "read_parquet" in b]
    *lines, last = [line for line in block.strip().splitlines() if line.strip()]
    scope: dict = {}
    exec("\n".join(lines), scope)
    median = eval(last, scope)
    obs = scope["obs"]
    assert set(obs.columns) == {"run", "step", "observable", "layer", "k", "value", "family"}
    assert isinstance(median, pd.Series) and median.index.name == "step"
    h2 = obs[(obs.observable == "nonlinear_neurons") & (obs.layer == "h2")]
    assert median.loc[0] == h2[h2.step == 0].value.median()


def test_the_readme_stays_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150


def test_no_machine_timings_in_the_library():
    """Docstrings and comments state contracts; timings live in benchmarks/ (HISTORY.md)."""
    timing = re.compile(r"Xeon|EPYC|µs|\d ?ms\b|\d s\b")
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in (ROOT / "src").rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if timing.search(line)
    ]
    assert found == []
