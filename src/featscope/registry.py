"""The registries: one object per model, observable family, analysis and figure.

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
_BUILT_INS = ("featscope.observables", "featscope.analyses", "featscope.losses")


def load_built_ins() -> None:
    """Register the built-in families, analyses and figures (importing them registers them;
    they import no torch and no matplotlib)."""
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
