"""Loading a workflow config: plugins, the schema the registries extend, number coercion,
defaults, checks. Torch-free and Snakemake-free: the Snakefile calls `load` while Snakemake
starts, and every job calls `load_job_plugins` before it runs.

How a config is put together is Snakemake's own business (a ``--configfile`` is merged onto
``config/config.yaml``, ``--replace-workflow-config`` makes it stand alone, ``--config`` is
merged last); this module takes the merged dict.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import jsonschema
import yaml

from . import config as fsconfig
from .config import ConfigError

PLUGINS_ENV = "FEATSCOPE_PLUGINS"  # the config's plugin modules, for the jobs' own processes
PLUGIN_PATH_ENV = "FEATSCOPE_PLUGIN_PATH"  # the folders they are imported from


def load(config: dict, schema_path, search_path=()) -> dict:
    """Check `config` in place (plugins imported, numbers coerced, defaults filled) and
    return its runs, {study: [Run]}. Raises ConfigError naming the key.

    `search_path`: folders put first on ``sys.path`` for the plugins (the config files'
    folders and the repository root); they and the plugin list are also put in the
    environment, so that jobs started from here import the same plugins."""
    from .observables import applicability, parameters
    from .registry import RegistryError, load_plugins

    plugins = config.get("plugins") or []
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise ConfigError("config key 'plugins': a list of module names is expected")
    folders = [str(Path(p).resolve()) for p in search_path]
    try:
        load_plugins(plugins, folders)
    except RegistryError as err:
        raise ConfigError(f"config key 'plugins': {err}") from None
    os.environ[PLUGINS_ENV] = os.pathsep.join(plugins)
    os.environ[PLUGIN_PATH_ENV] = os.pathsep.join(folders)
    # the registries' names (plugins' included) for every step below, defaults too
    schema = fsconfig.complete_schema(registry_schema(yaml.safe_load(Path(schema_path).read_text())))
    coerce_numbers(config, schema)
    fsconfig.validate_schema(config, schema)  # the message names the key path
    fill_defaults(config, schema)
    return fsconfig.check(config, schema, applicability(), parameters())


def load_job_plugins() -> None:
    """Import the plugins of the config that started this job (see `load`)."""
    from .registry import load_plugins

    plugins = [p for p in os.environ.get(PLUGINS_ENV, "").split(os.pathsep) if p]
    if plugins:
        load_plugins(plugins, [p for p in os.environ.get(PLUGIN_PATH_ENV, "").split(os.pathsep) if p])


def registry_schema(schema: dict) -> dict:
    """The schema with the registries' names as its enums: an analysis or figure a plugin
    registers validates like a built-in one (families are checked against the registry by
    `featscope.config.check`)."""
    from .registry import ANALYSES, FIGURES

    schema = copy.deepcopy(schema)
    study = schema["$defs"]["study"]["properties"]
    for key, registry in (("analyses", ANALYSES), ("figures", FIGURES)):
        if registry:  # until the built-ins register, the schema's own list stands
            names = set(registry) | set(study[key]["items"].get("enum", []))
            study[key]["items"] = {"enum": sorted(names)}
    return schema


# ---------------------------------------------------------------- number coercion
def coerce_numbers(config: dict, schema: dict) -> None:
    """Strings in number, integer, boolean or null fields that YAML reads as such become
    those values, in place: ``lr: 1e-3`` (YAML 1.1 reads a string) and every value of
    ``--config 'studies={s: {optim: {lr: 0.01}}}'`` (Snakemake reads strings). Grid values
    are coerced by the schema of the key they vary. Anything else is left for the schema
    to refuse."""
    defs = schema.get("$defs", {})
    _coerce(config, schema, defs)
    for study in (config.get("studies") or {}).values():
        if not isinstance(study, dict) or not isinstance(study.get("grid"), dict):
            continue
        for axis, values in study["grid"].items():
            if not isinstance(values, list):
                continue
            for i, value in enumerate(values):
                probe = copy.deepcopy(study)
                try:
                    fsconfig.set_path(probe, axis, value)
                except (KeyError, TypeError):
                    break  # the check names a bad axis
                _coerce(probe, defs["study"], defs)
                values[i] = fsconfig.get_path(probe, axis)


def _scalar(text: str):
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:  # YAML 1.1 leaves 1e-3 (no dot) a string; YAML 1.2 and Python read a number
            return float(value) if value.strip().lower() not in ("nan", "inf", "-inf", "infinity") else value
        except ValueError:
            return value
    return value


def _accepts(schema: dict, value) -> bool:
    types = schema.get("type")
    types = [types] if isinstance(types, str) else list(types or [])
    if isinstance(value, bool):
        return "boolean" in types
    if value is None:
        return "null" in types
    if isinstance(value, int):
        return "integer" in types or "number" in types
    if isinstance(value, float):
        return "number" in types or ("integer" in types and value.is_integer())
    return False


def _coerce(node, schema: dict, defs: dict):
    """`node` coerced by `schema`; dicts and lists in place."""
    if not isinstance(schema, dict):
        return node
    if "$ref" in schema:
        target = defs.get(schema["$ref"].rsplit("/", 1)[-1], {})
        node = _coerce(node, target, defs)
        schema = {k: v for k, v in schema.items() if k != "$ref"}
    for branch in schema.get("allOf", []):
        cond = branch.get("if")
        if cond is None or jsonschema.Draft202012Validator(cond).is_valid(node):
            node = _coerce(node, branch.get("then", branch if cond is None else {}), defs)
    if isinstance(node, str) and schema.get("type"):
        value = _scalar(node)
        if value is not node and _accepts(schema, value):
            if isinstance(value, float) and value.is_integer() and "integer" in str(schema["type"]):
                value = int(value)
            return value
        return node
    if isinstance(node, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key in list(node):
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                node[key] = _coerce(node[key], sub, defs)
    elif isinstance(node, list) and isinstance(schema.get("items"), dict):
        node[:] = [_coerce(v, schema["items"], defs) for v in node]
    return node


# ---------------------------------------------------------------------- defaults
def fill_defaults(config: dict, schema: dict) -> None:
    """Fill in the schema's defaults, in place, wherever a property is absent (in the
    branch of a conditional that applies, as the validation chooses it)."""
    base = jsonschema.Draft202012Validator
    properties = base.VALIDATORS["properties"]

    def set_defaults(validator, props, instance, sub):
        if isinstance(instance, dict):
            for key, prop in props.items():
                if isinstance(prop, dict) and "default" in prop:
                    instance.setdefault(key, copy.deepcopy(prop["default"]))
        yield from properties(validator, props, instance, sub)

    filler = jsonschema.validators.extend(base, {"properties": set_defaults})
    for error in filler(schema).iter_errors(config):
        raise ConfigError(f"config key '{'.'.join(map(str, error.absolute_path))}': {error.message}")
