"""Config checking and grid expansion: config -> list of runs.

A study declares its task, model, optimiser, training length, checkpoint
schedule, observables, grid axes and seeds. ``expand_runs`` turns one study
into runs, each with a stable, readable id such as ``lr-0.001__seed-3``.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field

import jsonschema

# The sections of a study that determine what a training run computes. Only
# these go into a run's training config, so editing anything else (observables,
# figures) never retrains.
TRAIN_SECTIONS = ("task", "model", "optim", "train", "schedule", "checkpoint_dtype")


class ConfigError(ValueError):
    """A config is invalid; the message names the key path and the reason."""


@dataclass(frozen=True)
class Run:
    study: str
    id: str
    seed: int
    config: dict = field(repr=False)  # the study config with grid values applied
    grid: dict = field(default_factory=dict)  # axis -> value for this run

    def as_dict(self) -> dict:
        return {"study": self.study, "id": self.id, "seed": self.seed, "config": self.config, "grid": self.grid}

    @property
    def train_config(self) -> dict:
        cfg = {k: copy.deepcopy(self.config[k]) for k in TRAIN_SECTIONS if k in self.config}
        cfg["seed"] = self.seed
        return cfg

    @property
    def config_hash(self) -> str:
        return fingerprint(self.train_config)

    @property
    def dataset_id(self) -> str:
        return dataset_id(self.config["task"])


def fingerprint(obj) -> str:
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:12]


def dataset_id(task: dict) -> str:
    return f"{task['name']}-{fingerprint(task)}"


def get_path(cfg: dict, dotted: str):
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def set_path(cfg: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    node = cfg
    for part in parents:
        node = node[part]
    node[last] = value


def flatten(cfg: dict, prefix: str = "") -> dict:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists are kept as values."""
    out = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _format_value(value) -> str:
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, float):
        text = format(value, "g")
    elif isinstance(value, (list, tuple)):
        text = "x".join(_format_value(v) for v in value)
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9.+-]", "_", text)


def _axis_labels(axes: list[str]) -> dict[str, str]:
    """Shortest readable label per axis: the last key, or the full path if ambiguous."""
    last = [a.split(".")[-1] for a in axes]
    return {a: (l if last.count(l) == 1 else a.replace(".", "_")) for a, l in zip(axes, last)}


def grid_points(study: dict) -> list[dict]:
    """Grid points of a study as {axis: value} dicts, in a stable order.

    ``product`` (default): the Cartesian product of all axes.
    ``one_at_a_time``: the base config, then each axis varied alone around it.
    """
    grid = study.get("grid") or {}
    axes = list(grid)
    if not axes:
        return [{}]
    if study.get("grid_mode", "product") == "product":
        return [dict(zip(axes, values)) for values in itertools.product(*(grid[a] for a in axes))]
    base = {a: get_path(study, a) for a in axes}
    points = [dict(base)]
    for axis in axes:
        for value in grid[axis]:
            point = dict(base, **{axis: value})
            if point not in points:
                points.append(point)
    return points


def expand_runs(name: str, study: dict) -> list[Run]:
    """The runs of study ``name``: one per grid point (`grid_points`) and seed, each with its
    grid values applied to a copy of the study and a stable id (``lr-0.001__seed-3``)."""
    labels = _axis_labels(list(study.get("grid") or {}))
    runs = []
    for point in grid_points(study):
        cfg = copy.deepcopy(study)
        for axis, value in point.items():
            set_path(cfg, axis, value)
        prefix = "__".join(f"{labels[a]}-{_format_value(v)}" for a, v in point.items())
        for seed in study["seeds"]:
            run_id = f"{prefix}__seed-{seed}" if prefix else f"seed-{seed}"
            runs.append(Run(name, run_id, int(seed), _with_split_seed(cfg, int(seed)), dict(point)))
    return runs


def _with_split_seed(cfg: dict, seed: int) -> dict:
    """A task with ``split: per_seed`` draws its data with the run's seed (a dataset per run,
    as Tian's reference code splits with ``random_state=seed``); otherwise the grid point's
    config, shared by its seeds."""
    if cfg["task"].get("split") != "per_seed":
        return cfg
    own = copy.deepcopy(cfg)
    own["task"]["seed"] = seed
    return own


# --------------------------------------------------------------------- checks
def _path(parts) -> str:
    return ".".join(str(p) for p in parts) or "<top level>"


def _raise_schema_error(error: jsonschema.ValidationError, prefix: tuple = (), note: str = "") -> None:
    # The deepest error is the one that names the offending key.
    error = jsonschema.exceptions.best_match([error] + list(error.context or []))
    where = _path(prefix + tuple(error.absolute_path))
    raise ConfigError(f"config key '{where}'{note}: {error.message}")


def validate_schema(config: dict, schema: dict) -> None:
    """Validate `config` against the JSON schema (`complete_schema`: with the registries'
    names); the error names the key path."""
    validator = jsonschema.Draft202012Validator(complete_schema(schema))
    errors = sorted(validator.iter_errors(config), key=lambda e: -len(e.absolute_path))
    if errors:
        _raise_schema_error(errors[0])


def check(
    config: dict, schema: dict, known_observables: dict, family_params: dict | None = None
) -> dict[str, list[Run]]:
    """Check a defaults-filled config beyond what the schema can say; return its runs.

    `known_observables` maps family name -> set of task kinds it applies to;
    `family_params`, if given, family name -> the parameters it takes.
    """
    if not config.get("studies"):
        raise ConfigError("config key 'studies': no study is declared")
    study_schema = {"$defs": complete_schema(schema).get("$defs", {}), "$ref": "#/$defs/study"}
    all_runs = {}
    for name, study in config["studies"].items():
        at = ("studies", name)
        _check_grid(study, at)
        runs = expand_runs(name, study)
        validator = jsonschema.Draft202012Validator(study_schema)
        checked = set()
        for run in runs:
            if id(run.config) in checked:  # seeds of one grid point share its config
                continue
            checked.add(id(run.config))
            for error in validator.iter_errors(run.config):
                _raise_schema_error(error, at, note=f" (in grid point {run.id})")
            _check_run(run, at, known_observables, family_params or {})
        all_runs[name] = runs
    return all_runs


def _check_grid(study: dict, at: tuple) -> None:
    for axis, values in (study.get("grid") or {}).items():
        where = _path(at + ("grid", axis))
        if axis.split(".")[0] not in TRAIN_SECTIONS:
            raise ConfigError(f"config key '{where}': grid axes must lie in one of {TRAIN_SECTIONS}")
        try:
            get_path(study, axis)
        except KeyError:
            raise ConfigError(f"config key '{where}': the study has no key '{axis}' to vary") from None
        if len(values) == 0:
            raise ConfigError(f"config key '{where}': the grid axis is empty")
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise ConfigError(f"config key '{where}': the grid axis repeats a value")


def _check_run(run: Run, at: tuple, known_observables: dict, family_params: dict) -> None:
    cfg = run.config
    steps = cfg["train"]["steps"]
    every = cfg["schedule"].get("every")
    if every and every > steps:
        raise ConfigError(
            f"config key '{_path(at + ('schedule', 'every'))}': checkpoints every {every} steps "
            f"but run {run.id} trains only {steps} steps"
        )
    warmup = cfg["optim"].get("warmup_steps", 0)
    if warmup > steps:
        raise ConfigError(
            f"config key '{_path(at + ('optim', 'warmup_steps'))}': warmup of {warmup} steps "
            f"exceeds the run's {steps} steps"
        )
    if "betas" in cfg["optim"] and cfg["optim"]["name"] == "sgd":
        raise ConfigError(f"config key '{_path(at + ('optim', 'betas'))}': SGD has no betas (Adam and AdamW do)")
    from .tasks import task_kind

    _check_task(cfg["task"], at + ("task",))
    kind = task_kind(cfg["task"]["name"])
    from .registry import LOSSES  # filled in by `complete_schema` (built-ins and plugins)

    loss = LOSSES.get(cfg["train"]["loss"])
    if loss is not None and kind not in loss.applies_to:
        raise ConfigError(
            f"config key '{_path(at + ('train', 'loss'))}': loss '{loss.name}' applies to "
            f"{sorted(loss.applies_to)} tasks, not to task '{cfg['task']['name']}' ({kind})"
        )
    for family in cfg.get("observables") or {}:
        where = _path(at + ("observables", family))
        if family not in known_observables:
            raise ConfigError(f"config key '{where}': unknown observable family; known: {sorted(known_observables)}")
        if kind not in known_observables[family]:
            raise ConfigError(f"config key '{where}': family '{family}' does not apply to a {kind} task")
        taken = family_params.get(family)
        for key in cfg["observables"][family] or {}:
            if taken is not None and key not in taken:
                raise ConfigError(
                    f"config key '{where}.{key}': family '{family}' takes no parameter "
                    f"'{key}' (it takes {sorted(taken)})"
                )
    _check_model(cfg["model"], at + ("model",))
    _check_analyses(cfg, at)
    layer = (cfg.get("phases") or {}).get("layer")
    if "phases" in (cfg.get("analyses") or []) and layer:
        if layer not in model_layer_names(cfg["model"]):
            raise ConfigError(
                f"config key '{_path(at + ('phases', 'layer'))}': the model of run "
                f"{run.id} has no layer '{layer}' (it has {model_layer_names(cfg['model'])})"
            )


def _check_model(model: dict, at: tuple) -> None:
    """A registered model's block against its factory's parameters: a plugin model has no
    schema branch, so an unknown key is refused here, before any job. Only models already
    registered are checked (looking up the others would import torch while Snakemake starts)."""
    from .registry import MODELS, RegistryError

    spec = MODELS.get(model["name"])
    if spec is not None:
        try:
            spec.resolve(model)
        except RegistryError as err:
            raise ConfigError(f"config key '{_path(at)}': {err}") from None


def _check_task(task: dict, at: tuple) -> None:
    """What a task's keys' schemas cannot say (its ``check``: modadd's one size, the digits
    that exist), before any job."""
    from .registry import RegistryError
    from .tasks import resolve_task

    try:
        resolve_task(task)
    except RegistryError as err:
        raise ConfigError(f"config key '{_path(at)}': {err}") from None


def model_layer_names(cfg: dict) -> list[str]:
    """Names of the layers a model config will have, from its architecture's registered
    layer mapping, without building it (or importing torch: the workflow checks configs
    while Snakemake starts)."""
    from .architectures import model_spec

    return model_spec(cfg["name"]).layer_names(cfg)


def _check_analyses(cfg: dict, at: tuple) -> None:
    """What the study's analyses and figures need (their registered families, analyses and
    tasks) is in the study."""
    from . import registry

    observables = cfg.get("observables") or {}
    analyses = cfg.get("analyses") or []
    asked = [(key, name) for key in ("analyses", "figures") for name in cfg.get(key) or []]
    for key, name in asked:
        missing = [f for f in registry.needs(key, name)[0] if f not in observables]
        if missing:
            raise ConfigError(
                f"config key '{_path(at + (key,))}': '{name}' needs the observable "
                f"families {missing} in '{_path(at + ('observables',))}'"
            )
    for key, name in asked:
        for needed in registry.needs(key, name)[1]:
            if needed not in analyses:
                raise ConfigError(
                    f"config key '{_path(at + (key,))}': '{name}' needs '{needed}' in '{_path(at + ('analyses',))}'"
                )
    for name in analyses:
        tasks = registry.analysis(name).tasks
        if tasks and cfg["task"]["name"] not in tasks:
            raise ConfigError(f"config key '{_path(at + ('analyses',))}': '{name}' needs the {' or '.join(tasks)} task")


def complete_schema(schema: dict) -> dict:
    """The config schema with what the registries hold filled in: the names a study's
    ``analyses`` and ``figures`` may list (built-in and plugin ones), the model names (the
    schema file's built-ins and any registered model), the task names and each task's keys
    (`task_branches`), for a registered analysis whose parameter block the schema lacks, that
    block (an object, default {}), and the losses ``train.loss`` may name (the file's
    built-ins and any registered loss).
    The schema file leaves these open; `validate_schema` and `check` complete it."""
    from . import registry

    enums = registry.schema_enums()
    schema = copy.deepcopy(schema)
    study = schema.get("$defs", {}).get("study", {}).get("properties")
    if study is None:
        return schema
    for key in ("analyses", "figures"):
        if key in study:
            study[key].setdefault("items", {})["enum"] = enums[key]
    loss = study.get("train", {}).get("properties", {}).get("loss")
    if loss is not None and "enum" in loss:  # the file's built-ins, then losses plugins registered
        loss["enum"] = list(dict.fromkeys([*loss["enum"], *registry.LOSSES]))
    from .architectures import MODELS  # importing it registers the built-in models (no torch)

    name = schema["$defs"].get("model", {}).get("properties", {}).get("name")
    if name is not None and "enum" in name:  # the file's built-ins, then models plugins registered
        name["enum"] = list(dict.fromkeys([*name["enum"], *MODELS]))
    task = schema["$defs"].get("task")
    if task is not None:
        task.setdefault("properties", {}).setdefault("name", {})["enum"] = list(registry.TASKS)
        task["allOf"] = task_branches()
    for spec in registry.ANALYSES.values():
        if spec.params and spec.params not in study:
            study[spec.params] = {
                "type": "object",
                "default": {},
                "description": f"parameters of analysis '{spec.name}'",
            }
    return schema


def task_branches() -> list[dict]:
    """The ``task`` block's conditional branches: ``if name is X then <X's keys>`` for each
    registered task (`featscope.registry.TaskSpec.schema`), tasks with the same keys sharing
    one branch, in registration order."""
    from . import registry

    registry.load_built_ins()
    groups: dict[str, tuple[list, dict]] = {}
    for name, spec in registry.TASKS.items():
        branch = spec.schema()
        groups.setdefault(json.dumps(branch, sort_keys=True, default=str), ([], branch))[0].append(name)
    out = []
    for names, branch in groups.values():
        cond = {"const": names[0]} if len(names) == 1 else {"enum": names}
        out.append({"if": {"properties": {"name": cond}}, "then": branch})
    return out
