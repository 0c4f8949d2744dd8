"""The conda environment used by the rules pins exactly what pyproject.toml pins."""

import pathlib
import re
import tomllib

import yaml

REPO = pathlib.Path(__file__).parent.parent


def test_conda_env_pins_match_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((REPO / "envs" / "featscope.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pinned = {p.replace(" ", "") for p in pip if not p.startswith("-e")}
    assert pinned == {d.replace(" ", "") for d in project["dependencies"]}
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert python.split(None, 1)[1].replace(" ", "") == project["requires-python"].replace(" ", "")


def test_every_rule_uses_an_existing_env_file():
    for rules in (REPO / "workflow" / "rules").glob("*.smk"):
        for path in re.findall(r'conda:\s*\n\s*"([^"]+)"', rules.read_text()):
            assert (rules.parent / path).resolve().exists(), f"{rules.name}: {path}"
