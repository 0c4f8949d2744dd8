"""Write the documentation's generated parts: `python docs/gen.py` (`--check`: fail if stale).

Two pages hold generated blocks between ``<!-- BEGIN generated: NAME -->`` and
``<!-- END generated: NAME -->``; the text around them is written by hand:

- ``config/README.md``, block ``config``: every config key, from the JSON schema
  ``workflow/schemas/config.schema.yaml`` (type, allowed values, default, description);
- ``docs/outputs.md``, block ``observables``: every observable family and what it writes,
  from the family registry ``featscope.registry.FAMILIES``.

The tests (tests/test_docs.py) run `stale()` and fail when either page is out of date.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
CONFIG_PAGE = ROOT / "config" / "README.md"
OUTPUTS_PAGE = ROOT / "docs" / "outputs.md"


# ----------------------------------------------------------------------------- config keys

# Meanings of the keys whose schema entry has no `description` (the schema's own, where it
# has one, wins). `missing_meanings()` lists keys with neither: the tests require none.
NOTES = {
    "studies": "study name → its settings (the table below); each study expands into runs",
    "plugins": "Python modules imported before the config is checked; their decorators register models, "
    "tasks, families, analyses and figures (docs/extending.md). Searched in the config file's folder and the "
    "repository root",
    "task": "the data set a study trains on, chosen by `name`; the other keys depend on it",
    "task.name": "a task registered with featscope.register_task: a built-in (each described in its rows below) "
    "or a plugin's (docs/extending.md)",
    "model": "the architecture, chosen by `name`",
    "model.width": "hidden units per layer (modnet, onehot: the embedding / hidden width)",
    "model.depth": "hidden layers (mlp)",
    "model.activation": "the hidden activation",
    "model.bias": "whether the linear layers have biases",
    "optim": "the optimiser",
    "optim.name": "adam, adamw (decoupled weight decay) or sgd",
    "optim.lr": "learning rate (after warm-up)",
    "optim.weight_decay": "weight decay (decoupled for adamw)",
    "optim.momentum": "momentum (sgd)",
    "optim.warmup_steps": "steps of linear learning-rate warm-up from 0",
    "train": "the training loop",
    "train.steps": "optimiser updates",
    "train.loss": "mse; cross_entropy (classification); zero_mean_mse = MSE against the centred one-hot "
    "target (Tian's one-hot net)",
    "schedule.every": "checkpoint every this many steps (`every: 1`: every step)",
    "schedule.log": "this many log-spaced checkpoint steps besides",
    "checkpoint_dtype": "dtype checkpoints are stored in",
    "observables.<family>.split": "the samples the family is evaluated on",
    "observables.<family>.layer": "spectral: the layer whose features it measures (default: the penultimate)",
    "observables.<family>.landmarks": "spectral: Nyström approximation on this many samples",
    "observables.<family>.top": "spectral: size of the top eigenfunction subspace the drifts compare (10)",
    "observables.<family>.min_purity": "weights: purity above which a neuron's dominant frequency counts (0.5)",
    "observables.<family>.schedule.every": "observe every this many steps' checkpoint",
    "observables.<family>.schedule.log": "and this many log-spaced ones",
    "analyses": "analysis tables to write, `results/<study>/<name>.parquet` (docs/outputs.md)",
    "phases": "parameters of the phase rule (see featscope.phases)",
    "phases.layer": "the layer whose nonlinear-neuron count is segmented",
    "phases.window": "running-median window over checkpoints (5)",
    "phases.min_delta": "least detection tolerance, in neurons (2)",
    "phases.rel_delta": "tolerance as a share of the drop N(0) − N_min (0.1)",
    "phases.tail": "share of the last checkpoints whose median is the final count (0.1)",
    "phases.floor": "the Phase IV fit stops once the loss falls below floor × loss(t3) (1e-4)",
    "figures": "figures to draw, `results/<study>/figures/<name>.png`",
    "stages.lazy_rate": "relative change of the h1 weights per step below which a run is still lazy (1e-3)",
    "stages.acc_high": "test accuracy from which a run has generalised (0.95)",
    "stages.converged_grad": "gradient norm below which a generalised run has converged (0.01)",
    "regimes.coefficient_drift": "drift_init below which features count as frozen: coefficient learning (0.01)",
    "regimes.mf_factor": "MF if effective_dim_utility ≤ mf_factor × classes, else EF (2)",
    "grid_mode": "product = every combination of the grid's values; one_at_a_time = vary one key at a "
    "time around the study's own values",
    "seeds": "one run per seed and grid point",
}


def _resolve(node: dict, schema: dict) -> dict:
    """The node with its ``$ref`` (``#/$defs/...``) followed, its own keys taking precedence."""
    while "$ref" in node:
        name = node["$ref"].removeprefix("#/$defs/")
        node = {**schema["$defs"][name], **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _value(value) -> str:
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, dict | list):
        return f"`{yaml.safe_dump(value, default_flow_style=True, sort_keys=False).strip()}`"
    return f"`{value}`"


def _type(node: dict) -> str:
    """What a value may be: type and bounds, or the allowed values."""
    if "enum" in node:
        return "one of " + ", ".join(_value(v) for v in node["enum"])
    if "const" in node:
        return _value(node["const"])
    kind = node.get("type", "")
    kind = " or ".join(kind) if isinstance(kind, list) else kind
    if kind == "array" and "items" in node and "enum" in node["items"]:
        kind = "list of " + ", ".join(_value(v) for v in node["items"]["enum"])
    elif kind == "array" and node.get("items", {}).get("type"):
        kind = f"list of {node['items']['type']}s"
    bounds = []
    for key, sign in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<")):
        if key in node:
            bounds.append(f"{sign} {node[key]}")
    if "minItems" in node:
        bounds.append(f"at least {node['minItems']}")
    if "pattern" in node:
        bounds.append(f"matching `{node['pattern']}`")
    return kind + (f" ({', '.join(bounds)})" if bounds else "")


def _rows(node: dict, path: str, schema: dict, required: bool = False) -> list[tuple]:
    """(key, type, default, description) for `node` and every key below it."""
    node = _resolve(node, schema)
    rows = []
    if path:
        default = _value(node["default"]) if "default" in node else ("required" if required else "")
        kind = _type(node)
        if kind == "object" and isinstance(node.get("additionalProperties"), dict) and not node.get("properties"):
            kind = "mapping"
        rows.append((f"`{path}`", kind, default, node.get("description") or NOTES.get(path, "")))
    needed = set(node.get("required", ()))
    for key, sub in node.get("properties", {}).items():
        rows += _rows(sub, f"{path}.{key}" if path else key, schema, key in needed)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        placeholder = {"studies": "<study>", "observables": "<family>"}.get(path.rsplit(".", 1)[-1], "<name>")
        extra = _resolve(extra, schema)
        if extra.get("properties") or extra.get("type") == "object":
            rows += _rows(extra, f"{path}.{placeholder}", schema)[1 if not extra.get("description") else 0 :]
    return rows


def _variants(node: dict, path: str, schema: dict) -> list[tuple]:
    """Rows of an ``allOf`` of ``if name is X then {...}``: one group per value of ``name``."""
    rows = []
    for case in _resolve(node, schema).get("allOf", ()):
        cond = case["if"]["properties"]["name"]
        names = cond.get("enum") or [cond["const"]]
        then = case["then"]
        label = " / ".join(names)
        if then.get("description"):
            rows.append((f"`{path}` ({label})", "", "", then["description"]))
        needed = set(then.get("required", ()))
        for key, sub in then.get("properties", {}).items():
            if key == "name":
                continue
            for r in _rows(sub, f"{path}.{key}", schema, key in needed):
                r = (r[0], r[1], r[2], r[3] or NOTES.get(r[0].strip("`"), ""))
                rows.append((f"{r[0]} ({label})", *r[1:]))
    return rows


def _table(rows: list[tuple]) -> list[str]:
    lines = ["| key | value | default | meaning |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(_cell(c) for c in row)} |" for row in rows]
    return lines


def config_block(schema: dict | None = None) -> str:
    """The config page's generated block: top-level keys, a study's keys, task variants."""
    if schema is None:
        from featscope.config import complete_schema  # the registries fill in the enums

        schema = complete_schema(yaml.safe_load(SCHEMA.read_text()))
    top = dict(schema)
    top["properties"] = {k: v for k, v in schema["properties"].items() if k != "studies"}
    out = ["### Top-level keys", ""] + _table(_rows(top, "", schema, False)) + [""]
    studies = schema["properties"]["studies"]
    out += ["### `studies`", "", _cell(studies.get("description") or NOTES["studies"]), ""]
    study = _resolve(schema["$defs"]["study"], schema)
    required = set(study.get("required", ()))
    rows = []
    for key, sub in study["properties"].items():
        sub_rows = _rows(sub, key, schema, key in required)
        rows += sub_rows
        if key in ("task", "model"):  # keys that depend on the name
            rows += _variants(sub, key, schema)
    out += ["Each study (`studies.<study>`) takes:", ""] + _table(rows) + [""]
    return "\n".join(out)


def missing_meanings(schema: dict | None = None) -> list[str]:
    """Config keys that neither the schema nor `NOTES` describes."""
    block = config_block(schema)
    rows = [line for line in block.splitlines() if line.startswith("| `")]
    return [line.split("|")[1].strip() for line in rows if line.endswith("|  |")]


# ----------------------------------------------------------------------------- observables
def observables_block() -> str:
    """The outputs page's generated block: families and their observables, from the registry."""
    sys.path.insert(0, str(ROOT / "src"))
    import featscope.observables  # noqa: F401  (registers the built-in families)
    from featscope.registry import COMMON_PARAMS, FAMILIES

    out = [
        "| family | version | applies to | reads | parameters (besides "
        + ", ".join(f"`{p}`" for p in sorted(COMMON_PARAMS))
        + ") | what it measures |",
        "|---|---|---|---|---|---|",
    ]
    for name, spec in FAMILIES.items():
        params = ", ".join(f"`{p}`" for p in sorted(spec.params)) or "–"
        kinds = ", ".join(sorted(spec.applies_to))
        out.append(f"| `{name}` | {spec.version} | {kinds} | {spec.reads} | {params} | {_cell(spec.description)} |")
    out += ["", "| family | observable | definition |", "|---|---|---|"]
    for name, spec in FAMILIES.items():
        if not spec.observables:
            out.append(f"| `{name}` | – | (the family declares no `observables=`) |")
        for i, (obs, meaning) in enumerate(spec.observables.items()):
            out.append(f"| {f'`{name}`' if i == 0 else ''} | `{obs}` | {_cell(meaning)} |")
    return "\n".join(out)


# ----------------------------------------------------------------------------- pages
def _fill(text: str, name: str, block: str, page: Path) -> str:
    pattern = re.compile(rf"(<!-- BEGIN generated: {name} [^\n]*-->\n)(.*?)(<!-- END generated: {name} -->)", re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"{page}: no '<!-- BEGIN generated: {name} ... -->' ... '<!-- END generated: {name} -->'")
    return pattern.sub(lambda m: m.group(1) + "\n" + block.strip() + "\n\n" + m.group(3), text, count=1)


def pages() -> dict[Path, str]:
    """Each generated page's up-to-date text."""
    return {
        CONFIG_PAGE: _fill(CONFIG_PAGE.read_text(), "config", config_block(), CONFIG_PAGE),
        OUTPUTS_PAGE: _fill(OUTPUTS_PAGE.read_text(), "observables", observables_block(), OUTPUTS_PAGE),
    }


def stale() -> list[Path]:
    """The generated pages whose text is not what `python docs/gen.py` would write."""
    return [page for page, text in pages().items() if page.read_text() != text]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a page is out of date")
    args = parser.parse_args(argv)
    if args.check:
        old = stale()
        for page in old:
            print(f"{page.relative_to(ROOT)} is out of date: run `python docs/gen.py`", file=sys.stderr)
        return 1 if old else 0
    for page, text in pages().items():
        if page.read_text() != text:
            page.write_text(text)
            print(f"wrote {page.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
