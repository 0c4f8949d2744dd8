"""What an analysis or figure function reads: a study's runs table, metrics, observables and tables.

`AnalysisInputs` reads lazily: nothing is opened until the function asks, and then only
the columns and rows it asks for (Parquet column projection and row filters), so an
analysis that needs one observable of a family never loads the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property

import pandas as pd

from .. import io

TRAIN_PREFIXES = ("task.", "model.", "optim.", "train.", "schedule.", "checkpoint_dtype")


def read_frames(paths, columns=None, filters=None) -> pd.DataFrame:
    """Concatenate Parquet files (in the order given); a damaged file raises an error naming it.

    ``filters`` is a pyarrow expression or a dict (see `row_filter`)."""
    import pyarrow.dataset as pads

    paths = [str(p) for p in paths]
    for p in paths:
        try:
            _ = pads.dataset(p, format="parquet").schema  # reading the footer finds damage
        except Exception as err:
            raise io.quarantine(p, err) from err
    table = pads.dataset(paths, format="parquet").to_table(columns=columns, filter=row_filter(filters))
    return table.to_pandas()


def row_filter(filters):
    """A pyarrow row filter from ``{column: value}``: ``None`` keeps null values, a list,
    tuple or set keeps any of its values, anything else equal values; all conditions must
    hold. A pyarrow expression (or None) is returned unchanged."""
    if filters is None or not isinstance(filters, Mapping):
        return filters
    import pyarrow.dataset as pads

    expression = None
    for column, value in filters.items():
        field = pads.field(column)
        if value is None:
            condition = field.is_null()
        elif isinstance(value, (list, tuple, set, frozenset)):
            condition = field.isin(list(value))
        else:
            condition = field == value
        expression = condition if expression is None else expression & condition
    return expression


class AnalysisInputs:
    """A study's inputs, handed to analysis functions ``fn(inputs, **params)`` and figure
    functions ``fn(inputs)``.

    ``paths`` = ``{"runs": path, "metrics": [paths], "observables": {family: [paths]},
    "tables": {analysis: path}}``, each list in the study's run order (any key may be
    absent when nothing of it is needed). ``axis`` is the grid axis of a per-axis figure.
    """

    def __init__(self, study: str, paths: Mapping, axis: str | None = None, reader: str = "analysis"):
        self.study = study
        self.axis = axis
        self._paths = paths
        self._reader = reader  # named in errors: "analysis 'phases'", "figure 'linreg'"

    @cached_property
    def runs(self) -> pd.DataFrame:
        """The runs table: one row per run, its resolved training config flattened
        (``optim.lr``), ``run``, ``seed``, ``grid_point`` and the training job's info."""
        if not self._paths.get("runs"):
            raise ValueError(
                f"{self._reader} of study '{self.study}' reads the runs table, but no 'runs' path was given"
            )
        return io.read_parquet(self._paths["runs"])

    @cached_property
    def axes(self) -> list[str]:
        """The study's grid axes that vary (dotted config keys, in the runs table's column
        order): the training-config columns of the runs table with more than one value."""
        runs = self.runs
        return [c for c in runs.columns if c.startswith(TRAIN_PREFIXES) and runs[c].astype(str).nunique() > 1]

    def metrics(self, columns=None, filters=None) -> pd.DataFrame:
        """Training metrics of every run (run, step, epoch, split, loss, acc, ...)."""
        return read_frames(self._list("metrics"), columns, filters)

    def observables(self, family: str, columns=None, filters=None) -> pd.DataFrame:
        """Long-form rows (run, step, observable, layer, k, value) of one observable family."""
        families = self._paths.get("observables") or {}
        if family not in families:
            raise ValueError(
                f"{self._reader} of study '{self.study}' reads the observable family '{family}', "
                f"which is not among its inputs {sorted(families)}"
            )
        return read_frames(families[family], columns, filters)

    def has_table(self, name: str) -> bool:
        """Whether the study makes the analysis table ``name``."""
        return bool((self._paths.get("tables") or {}).get(name))

    def table(self, name: str, optional: bool = False) -> pd.DataFrame | None:
        """The analysis table ``name``; ``optional``: None when the study does not make it."""
        if not self.has_table(name):
            if optional:
                return None
            tables = sorted(self._paths.get("tables") or {})
            raise ValueError(
                f"{self._reader} of study '{self.study}' reads the analysis table '{name}', "
                f"which is not among its inputs {tables}"
            )
        return io.read_parquet(self._paths["tables"][name])

    def _list(self, key: str) -> list:
        paths = self._paths.get(key)
        if not paths:
            raise ValueError(f"{self._reader} of study '{self.study}' reads '{key}', but no such paths were given")
        return list(paths)
