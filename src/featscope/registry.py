"""The registries: one object per model, task, observable family, analysis and figure.

Built-ins register exactly as a user's plugin does, with the decorators below, and the
registries drive everything else: the config schema's enums and defaults, the workflow's
rules and outputs, the plot dispatch and the report captions. Adding a concept is one
decorated definition, inside the package or in a module named by the config's
``plugins:`` key.

This module imports no torch and no pandas: the workflow reads the registries while
Snakemake starts (and a dry run must stay quick). A spec stores its function; whatever
the function needs it imports itself.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

TASK_KINDS = frozenset({"regression", "classification"})


class RegistryError(ValueError):
    """A registration or a lookup is invalid; the message names the object and the reason."""


# --------------------------------------------------------------------------- models
@dataclass(frozen=True)
class ModelSpec:
    """An architecture: its factory, its defaults and where its layers live.

    ``factory(in_dim, out_dim, **params) -> torch.nn.Module``; ``params`` is the study's
    ``model`` block without ``name``. Defaults are the factory's keyword defaults: one
    place, which the config schema copies (tested).

    ``layers`` maps featscope layer names (``h1``, ``resid``, ...) to module paths
    (``hidden.0``, ``blocks.1``) — or is a function of the params giving that mapping, for
    architectures whose depth is a parameter. A layer is read by a forward hook on its
    module: the module's input is the pre-activation, its output the post-activation. The
    readout module's input is the penultimate feature. ``stacked``, if given, names a
    hand-written stacked form for packed training; without one the model packs through
    ``torch.func``. ``inputs``, if given, is the module whose input is the ``x`` layer (the
    model's own coding of the data, e.g. embeddings); without it ``x`` is the data as vectors.
    ``in_dim`` says what the factory's ``in_dim`` is: ``"flat"`` the size of one sample as a
    vector, ``"channels"`` an image's channels (vectors stay flat).
    """

    name: str
    factory: Callable
    layers: Mapping[str, str] | Callable[[dict], Mapping[str, str]]
    readout: str
    stacked: str | None = None
    description: str = ""
    inputs: str | None = None
    in_dim: str = "flat"

    @property
    def defaults(self) -> dict:
        """The factory's keyword parameters that have defaults."""
        return {
            k: p.default
            for k, p in list(inspect.signature(self.factory).parameters.items())[2:]
            if p.default is not inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        }

    @property
    def parameters(self) -> list[str]:
        """Every parameter the factory takes besides ``in_dim`` and ``out_dim``."""
        params = list(inspect.signature(self.factory).parameters.values())[2:]
        return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]

    def resolve(self, params: Mapping) -> dict:
        """``params`` with the defaults filled in; an unknown or missing key is refused, named.
        The keys every model takes (`COMMON_MODEL_PARAMS`) are left out: not the factory's."""
        params = {k: v for k, v in params.items() if k != "name" and k not in COMMON_MODEL_PARAMS}
        unknown = sorted(set(params) - set(self.parameters))
        if unknown:
            raise RegistryError(
                f"model '{self.name}' takes no parameter {unknown[0]!r} (it takes {sorted(self.parameters)})"
            )
        full = {**self.defaults, **params}
        missing = [p for p in self.parameters if p not in full]
        if missing:
            raise RegistryError(f"model '{self.name}' needs the parameter {missing[0]!r}")
        return full

    def layer_map(self, params: Mapping) -> dict[str, str]:
        """featscope layer name -> module path, for a model built with ``params``."""
        layers = self.layers(self.resolve(params)) if callable(self.layers) else self.layers
        return dict(layers)

    def layer_names(self, params: Mapping) -> list[str]:
        """The layer names the model's observables will carry, without building it."""
        return list(self.layer_map(params))

    def build(self, in_dim: int, out_dim: int, params: Mapping):
        """The model, built from the factory with the resolved params."""
        return self.factory(in_dim, out_dim, **self.resolve(params))


MODELS: dict[str, ModelSpec] = {}
IN_DIMS = ("flat", "channels")
COMMON_MODEL_PARAMS = frozenset({"init", "init_scale"})  # every model takes these (featscope.init)


def register_model(
    name: str,
    *,
    layers: Mapping[str, str] | Callable[[dict], Mapping[str, str]],
    readout: str,
    stacked: str | None = None,
    description: str = "",
    inputs: str | None = None,
    in_dim: str = "flat",
):
    """Register a model factory ``(in_dim, out_dim, **params) -> nn.Module`` under ``name``.

    >>> @register_model("gelu_mlp", layers={"h1": "net.1"}, readout="net.2")
    ... def gelu_mlp(in_dim, out_dim, width=64): ...
    """

    if in_dim not in IN_DIMS:
        raise RegistryError(f"model '{name}': in_dim must be one of {IN_DIMS}, not {in_dim!r}")

    def decorate(factory: Callable) -> Callable:
        doc = description or _first_line(factory)
        spec = ModelSpec(name, factory, layers, readout, stacked, doc, inputs, in_dim)
        _add(MODELS, "model", spec)
        return factory

    return decorate


# ------------------------------------------------------------------------- families
@dataclass(frozen=True)
class FamilySpec:
    """An observable family: ``fn(snapshot, params, state) -> rows.Rows``.

    ``version`` is part of what each of its outputs was made from: bump it whenever its
    numbers change, and the workflow re-observes exactly this family. ``params`` are its own
    config parameters (``split`` and ``schedule`` are common to all). ``reads`` says what it
    needs of a chunk of checkpoints: ``"features"`` (outputs, pre- and post-activations),
    ``"active rates"`` (a cheaper pass of their own) or ``"parameters"``. ``observables``
    names what it writes, with one line each (the docs' table is made from them).
    """

    name: str
    fn: Callable
    version: int
    applies_to: frozenset = TASK_KINDS
    params: frozenset = frozenset()
    reads: str = "features"
    description: str = ""
    observables: Mapping[str, str] = field(default_factory=dict)

    @property
    def compute(self) -> Callable:
        """The family function (a ``"module:name"`` string is imported on first use, so that
        built-in families register without importing torch)."""
        return _resolve(self.fn)


FAMILIES: dict[str, FamilySpec] = {}
COMMON_PARAMS = frozenset({"split", "schedule"})  # every family takes these
READS = ("features", "active rates", "parameters")


def register_family(
    name: str,
    *,
    version: int,
    applies_to: Iterable[str] = TASK_KINDS,
    params: Iterable[str] = (),
    reads: str = "features",
    description: str = "",
    observables: Mapping[str, str] | None = None,
    fn: Callable | str | None = None,
):
    """Register an observable family ``fn(snapshot, params, state) -> Rows`` under ``name``.

    Used as a decorator, or called with ``fn`` (a function or a ``"module:name"`` string);
    returns the function (the decorator) or the spec (called with ``fn``)."""
    if reads not in READS:
        raise RegistryError(f"family '{name}': reads must be one of {READS}, not {reads!r}")
    kinds = frozenset(applies_to)
    if not kinds <= TASK_KINDS:
        raise RegistryError(f"family '{name}': applies_to {sorted(kinds - TASK_KINDS)} is not a task kind")

    def decorate(fn: Callable | str) -> Callable:
        doc = description or ("" if isinstance(fn, str) else _first_line(fn))
        spec = FamilySpec(name, fn, int(version), kinds, frozenset(params), reads, doc, observables or {})
        _add(FAMILIES, "family", spec)
        return fn

    if fn is not None:
        decorate(fn)
        return FAMILIES[name]
    return decorate


# --------------------------------------------------------------------------- tasks
@dataclass(frozen=True)
class TaskSpec:
    """A data set: ``fn(cfg) -> {"x_train", "y_train"[, "x_test", "y_test"]}`` (numpy arrays),
    deterministic in ``cfg["seed"]``.

    ``cfg`` is the study's ``task`` block with the defaults filled in (`resolve`). ``params``
    maps each of the task's own keys to its JSON schema (``{"type": "integer", "minimum": 1,
    "default": 500}``); a key without a ``default`` is required, unless it is ``optional``
    (it may be left out: the builder handles its absence). ``seed`` (the data draw's
    seed, default 0) is common to every task (`COMMON_TASK_PARAMS`). The registry makes the
    config schema's branch for the task from them (`schema`), so the workflow fills the
    defaults and refuses an unknown or missing key before any job, naming it; ``check``, if
    given, is called with the resolved config and raises ``ValueError`` for what a schema
    cannot say (two keys that exclude each other).

    ``kind`` is ``"regression"`` or ``"classification"``; ``outputs`` is what a model must
    output: the number of classes, or the width of the regression targets (default 1),
    an int or a function of the resolved config. The data the builder returns is checked
    against them (`featscope.tasks.check_dataset`).
    """

    name: str
    fn: Callable | str
    kind: str
    params: Mapping[str, dict] = field(default_factory=dict)
    outputs: int | Callable[[dict], int] | None = None
    check: Callable[[dict], None] | None = None
    description: str = ""
    optional: frozenset = frozenset()

    @property
    def build(self) -> Callable:
        """The builder (a ``"module:name"`` string is imported on first use)."""
        return _resolve(self.fn)

    @property
    def all_params(self) -> dict[str, dict]:
        """Every key the task's block takes besides ``name``, with its JSON schema."""
        return {**self.params, **COMMON_TASK_PARAMS}

    @property
    def defaults(self) -> dict:
        """The keys that have defaults, with them."""
        return {k: p["default"] for k, p in self.all_params.items() if "default" in p}

    @property
    def required(self) -> list[str]:
        """The keys a study must give."""
        return [k for k, p in self.all_params.items() if "default" not in p and k not in self.optional]

    def schema(self) -> dict:
        """The config schema's branch for this task: its keys, their types and defaults."""
        branch = {"additionalProperties": False}
        if self.description:
            branch["description"] = self.description
        if self.required:
            branch["required"] = self.required
        branch["properties"] = {"name": {"type": "string"}, **{k: dict(p) for k, p in self.all_params.items()}}
        return branch

    def resolve(self, cfg: Mapping) -> dict:
        """``cfg`` with the defaults filled in; an unknown or missing key is refused, named.
        (The keys' types and ``check`` are `featscope.tasks.resolve_task`'s: this module
        imports only the standard library.)"""
        cfg = dict(cfg)
        if cfg.get("name", self.name) != self.name:
            raise RegistryError(f"task '{self.name}' was given the config of task {cfg['name']!r}")
        unknown = sorted(set(cfg) - {"name"} - set(self.all_params))
        if unknown:
            raise RegistryError(
                f"task '{self.name}' takes no parameter {unknown[0]!r} (it takes {sorted(self.all_params)})"
            )
        full = {"name": self.name, **cfg}
        for key, value in self.defaults.items():
            full.setdefault(key, value)
        missing = [k for k in self.required if k not in full]
        if missing:
            raise RegistryError(f"task '{self.name}' needs the parameter {missing[0]!r}")
        return full

    def outputs_of(self, cfg: Mapping) -> int:
        """What a model trained on this task outputs: classes, or regression targets."""
        if self.outputs is None:
            return 1
        return int(self.outputs(dict(cfg)) if callable(self.outputs) else self.outputs)


TASKS: dict[str, TaskSpec] = {}
COMMON_TASK_PARAMS = {  # every task takes these
    "seed": {
        "type": "integer",
        "minimum": 0,
        "default": 0,
        "description": "seed of the data draw (the run's own `seeds` set initialisation and batch order)",
    },
}
_JSON_TYPES = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"))


def register_task(
    name: str,
    *,
    kind: str,
    params: Mapping[str, object] | None = None,
    outputs: int | Callable[[dict], int] | None = None,
    check: Callable[[dict], None] | None = None,
    optional: Iterable[str] = (),
    description: str = "",
    fn: Callable | str | None = None,
):
    """Register a task builder ``fn(cfg) -> dict of numpy arrays`` under ``name``.

    ``params`` maps each key of the task's config block (besides ``name`` and ``seed``) to
    its JSON schema, or to a plain default (a bool, int, float or string: its type is the
    default's); a key without a default is required, unless named in ``optional``. A
    classification task must give ``outputs`` (its number of classes); ``check(cfg)``
    raises ``ValueError`` for what the keys' schemas cannot say. See `TaskSpec`.

    >>> @register_task("parity", kind="classification", outputs=2, params={"d": 8, "n_train": 256})
    ... def parity(cfg): ...

    Used as a decorator, or called with ``fn`` (a function or a ``"module:name"`` string);
    returns the function (the decorator) or the spec (called with ``fn``)."""
    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_]+", name):
        raise RegistryError(
            f"task {name!r}: a task's name is lower-case letters, digits and '_' (it names the dataset files, "
            "results/data/<name>-<hash>.npz)"
        )
    if kind not in TASK_KINDS:
        raise RegistryError(f"task '{name}': kind must be one of {sorted(TASK_KINDS)}, not {kind!r}")
    if kind == "classification" and outputs is None:
        raise RegistryError(f"task '{name}': a classification task needs outputs= (its number of classes)")
    if (
        isinstance(outputs, bool)
        or not (outputs is None or callable(outputs) or isinstance(outputs, int))
        or (isinstance(outputs, int) and outputs < 1)
    ):
        raise RegistryError(f"task '{name}': outputs must be a positive int or a function of the config")
    schemas = {}
    for key, value in (params or {}).items():
        if key in COMMON_TASK_PARAMS or key == "name":
            raise RegistryError(f"task '{name}': parameter {key!r} is common to every task; leave it out")
        schemas[key] = _param_schema(name, key, value)
    optional = frozenset(optional)
    if not optional <= set(schemas):
        raise RegistryError(f"task '{name}': optional {sorted(optional - set(schemas))} are not among its params")

    def decorate(fn: Callable | str) -> Callable:
        doc = description or ("" if isinstance(fn, str) else _first_line(fn))
        _add(TASKS, "task", TaskSpec(name, fn, kind, schemas, outputs, check, doc, optional))
        return fn

    if fn is not None:
        decorate(fn)
        return TASKS[name]
    return decorate


def _param_schema(task: str, key: str, value) -> dict:
    if isinstance(value, Mapping):
        return dict(value)
    for cls, json_type in _JSON_TYPES:  # bool first: a bool is an int too
        if isinstance(value, cls):
            return {"type": json_type, "default": value}
    raise RegistryError(
        f"task '{task}': parameter {key!r} needs a JSON schema (a dict) or a bool, int, float or string default, "
        f"not {value!r}"
    )


def task(name: str) -> TaskSpec:
    """The registered task ``name``; an unknown name is refused, naming the known ones."""
    return _lookup(TASKS, "task", name)


# ------------------------------------------------------------- analyses and figures
@dataclass(frozen=True)
class FigureSpec:
    """A figure: ``fn(inputs) -> matplotlib Figure``, with the caption the report shows.

    ``families`` and ``analyses`` are what it needs (the config check refuses a study that
    asks for the figure without them); it may read any other table the study makes, if
    present (``inputs.table(name, optional=True)``). ``per_axis`` figures are drawn once per
    grid axis (``axis-<label>``), with the axis as ``inputs.axis``. In the caption,
    ``{study}`` and ``{axis}`` stand for the study and the grid axis (`caption_for`).
    """

    name: str
    fn: Callable
    caption: str
    families: tuple = ()
    analyses: tuple = ()
    per_axis: bool = False

    def caption_for(self, study: str, axis: str | None = None) -> str:
        """The report caption of this figure in ``study`` (and for ``axis``, if per axis)."""
        text = inspect.cleandoc(self.caption).replace("{study}", study)
        return text.replace("{axis}", axis) if axis is not None else text


@dataclass(frozen=True)
class AnalysisSpec:
    """An analysis table: ``fn(inputs, **params) -> pandas.DataFrame``, written to
    ``results/<study>/<name>.parquet``.

    ``families`` are the observable families it reads, ``analyses`` the other tables;
    ``params`` is the name of the study's config block holding its parameters (``None``:
    none). ``tasks``, if given, are the only task names it applies to. ``inputs`` gives the
    study's runs table, metrics, observables and tables (``featscope.analyses.AnalysisInputs``,
    made by ``featscope.pipeline.analysis_job``)."""

    name: str
    fn: Callable
    families: tuple = ()
    analyses: tuple = ()
    params: str | None = None
    description: str = ""
    tasks: tuple = ()

    def figure(self, name: str, *, caption: str, families: Iterable[str] = (), per_axis: bool = False):
        """Register a figure that reads this analysis' table (and ``families``)."""
        return register_figure(name, caption=caption, families=families, analyses=(self.name,), per_axis=per_axis)


ANALYSES: dict[str, AnalysisSpec] = {}
FIGURES: dict[str, FigureSpec] = {}


def register_analysis(
    name: str,
    *,
    families: Iterable[str] = (),
    analyses: Iterable[str] = (),
    params: str | None = None,
    description: str = "",
    tasks: Iterable[str] = (),
):
    """Register an analysis ``fn(inputs, **params) -> DataFrame``; the decorator returns its
    spec, whose ``.figure(...)`` registers the figures drawn from it."""
    if isinstance(tasks, str):
        raise RegistryError(f"analysis '{name}': tasks must be a list of task names, not the string {tasks!r}")

    def decorate(fn: Callable) -> AnalysisSpec:
        doc = description or _first_line(fn)
        spec = AnalysisSpec(name, fn, tuple(families), tuple(analyses), params, doc, tuple(tasks))
        _add(ANALYSES, "analysis", spec)
        return spec

    return decorate


def register_figure(
    name: str,
    *,
    caption: str,
    families: Iterable[str] = (),
    analyses: Iterable[str] = (),
    per_axis: bool = False,
):
    """Register a figure ``fn(inputs) -> Figure`` with its report caption."""

    def decorate(fn: Callable) -> Callable:
        _add(FIGURES, "figure", FigureSpec(name, fn, caption, tuple(families), tuple(analyses), per_axis))
        return fn

    return decorate


# --------------------------------------------------------------------------- losses
@dataclass(frozen=True)
class LossSpec:
    """A training loss, for both engines.

    ``fn(outputs, targets) -> losses``: outputs (S, n, ...) of S runs, targets (S, n, ...)
    (float for regression, class indices for classification), one loss per run (S,),
    differentiable by autograd: the module engine's backward and every evaluation row.
    ``gradient``, if given, is the same loss with its gradient written out,
    ``(outputs, targets) -> (losses (S,), d losses.sum() / d outputs)``, for the stacked
    engine's hand-written backward (it may overwrite ``outputs``' copy it is given);
    without one, `value_and_gradient` asks autograd. ``applies_to`` are the task kinds
    it is defined for."""

    name: str
    fn: Callable
    gradient: Callable | None = None
    applies_to: frozenset = TASK_KINDS
    description: str = ""

    def value_and_gradient(self, outputs, targets):
        """Per-run losses (S,) and the gradient of their sum with respect to ``outputs``."""
        if self.gradient is not None:
            return self.gradient(outputs, targets)
        return _resolve("featscope.losses:by_autograd")(self.fn, outputs, targets)  # imports torch

    def for_task(self, kind: str, task: str = "") -> LossSpec:
        """This loss, checked to apply to a task of ``kind``; a mismatch is refused, named."""
        if kind not in self.applies_to:
            what = f"task '{task}' ({kind})" if task else f"{kind} task"
            raise RegistryError(f"loss '{self.name}' applies to {sorted(self.applies_to)} tasks, not to a {what}")
        return self


LOSSES: dict[str, LossSpec] = {}


def register_loss(
    name: str,
    *,
    applies_to: Iterable[str] = TASK_KINDS,
    gradient: Callable | None = None,
    description: str = "",
):
    """Register a loss ``fn(outputs (S, n, ...), targets (S, n, ...)) -> losses (S,)`` under
    ``name`` (the config's ``train.loss``), optionally with its written-out ``gradient``
    (see `LossSpec`). Returns the function.

    >>> @register_loss("l1", applies_to=["regression"])
    ... def l1(out, y): return (out - y).abs().flatten(1).mean(1)
    """
    kinds = frozenset(applies_to)
    if not kinds <= TASK_KINDS:
        raise RegistryError(f"loss '{name}': applies_to {sorted(kinds - TASK_KINDS)} is not a task kind")

    def decorate(fn: Callable) -> Callable:
        _add(LOSSES, "loss", LossSpec(name, fn, gradient, kinds, description or _first_line(fn)))
        return fn

    return decorate


# ------------------------------------------------------------------------- lookups
_BUILT_INS = ("featscope.observables", "featscope.analyses", "featscope.tasks", "featscope.losses")


def load_built_ins() -> None:
    """Register the built-in families, analyses, figures and tasks (importing them registers
    them; they import no torch and no matplotlib)."""
    for module in _BUILT_INS:
        importlib.import_module(module)


def analysis(name: str) -> AnalysisSpec:
    """The registered analysis ``name``; an unknown name is refused, naming the known ones."""
    return _lookup(ANALYSES, "analysis", name)


def loss(name: str) -> LossSpec:
    """The registered loss ``name``; an unknown name is refused, naming the known ones."""
    return _lookup(LOSSES, "loss", name)


def figure(name: str) -> FigureSpec:
    """The registered figure ``name``; an unknown name is refused, naming the known ones."""
    return _lookup(FIGURES, "figure", name)


def needs(kind: str, name: str) -> tuple[tuple, tuple]:
    """(observable families, analyses) that the analysis or figure ``name`` needs; ``kind``
    is the config key that names it, ``"analyses"`` or ``"figures"``."""
    if kind not in ("analyses", "figures"):
        raise RegistryError(f"needs: kind must be 'analyses' or 'figures', not {kind!r}")
    spec = analysis(name) if kind == "analyses" else figure(name)
    return spec.families, spec.analyses


def schema_enums() -> dict[str, list[str]]:
    """The names a study's ``analyses`` and ``figures`` lists may hold, in registration
    order (built-ins first): the config schema's enums."""
    load_built_ins()
    return {"analyses": list(ANALYSES), "figures": list(FIGURES)}


def write_caption(name: str, study: str, path: str | Path, axis: str | None = None) -> str:
    """Write the report caption of figure ``name`` in ``study`` to ``path`` (a reStructuredText
    file for ``report(..., caption=...)``) and return its absolute path (Snakemake joins a
    relative caption path to the rule file's folder). The file is rewritten only
    when its text changes. Snakemake renders captions as Jinja templates: the text is kept
    verbatim (a raw block), so a caption may hold braces."""
    text = "{% raw %}\n" + figure(name).caption_for(study, axis) + "\n{% endraw %}\n"
    path = Path(path)
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return str(path.resolve())


def _lookup(registry: dict, kind: str, name: str):
    if name not in registry:
        load_built_ins()
    if name not in registry:
        raise RegistryError(f"unknown {kind} '{name}'; registered: {sorted(registry)}")
    return registry[name]


# --------------------------------------------------------------------------- plugins
PLUGINS_LOADED: set[str] = set()  # module names, for `featscope.cache.code_version`


def load_plugins(modules: Iterable[str], search_path: Iterable[str | Path] = ()) -> None:
    """Import each plugin module (its decorators register what it defines).

    ``search_path`` folders go first on ``sys.path`` (the config file's folder and the
    repository root, for the workflow). A module that cannot be imported is named in the
    error, with the folders searched."""
    for folder in reversed([str(Path(p).resolve()) for p in search_path]):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    for module in modules:
        try:
            importlib.import_module(module)
            PLUGINS_LOADED.add(module)
        except ImportError as err:
            if getattr(err, "name", None) != module and not module.startswith(f"{err.name}."):
                raise  # the plugin itself failed to import something: show that
            raise RegistryError(
                f"plugin '{module}' cannot be imported ({err}); searched {list(search_path) or sys.path[:3]}"
            ) from None


# --------------------------------------------------------------------------- helpers
def _add(registry: dict, kind: str, spec) -> None:
    old = registry.get(spec.name)
    # Re-importing the same definition (a reloaded module, a test) replaces it; two
    # different definitions under one name are an error.
    if old is not None and _origin(old) != _origin(spec):
        raise RegistryError(f"{kind} '{spec.name}' is registered twice: by {_origin(old)} and by {_origin(spec)}")
    registry[spec.name] = spec


def _origin(spec) -> str:
    fn = getattr(spec, "factory", None) or spec.fn
    return fn if isinstance(fn, str) else f"{fn.__module__}:{fn.__qualname__}"


def _resolve(fn: Callable | str) -> Callable:
    if not isinstance(fn, str):
        return fn
    module, _, name = fn.partition(":")
    return getattr(importlib.import_module(module), name)


def _first_line(fn: Callable) -> str:
    return (inspect.getdoc(fn) or "").split("\n", 1)[0]
