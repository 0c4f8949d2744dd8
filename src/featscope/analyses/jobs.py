"""The analysis and figure jobs: registered analyses and figures run on a study's files.

Kept free of torch (only pandas, pyarrow and, for figures, matplotlib), so that the
workflow's many small analysis and plot jobs start quickly.
"""

from __future__ import annotations

import pandas as pd

from .. import io, registry
from .inputs import AnalysisInputs


def analysis_job(name: str, study: str, paths: dict, params: dict | None, out) -> None:
    """Make the analysis table ``name`` of ``study`` and write it to ``out`` (Parquet).

    ``paths`` = ``{"runs": path, "metrics": [paths], "observables": {family: [paths]},
    "tables": {analysis: path}}`` (see `featscope.analyses.AnalysisInputs`); ``params`` is
    the study's config block the analysis declares (``None``: none). Plugins must be
    loaded (`featscope.registry.load_plugins`) before a plugin's analysis is named."""
    spec = registry.analysis(name)
    table = spec.fn(AnalysisInputs(study, paths, reader=f"analysis '{name}'"), **dict(params or {}))
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"analysis '{name}' returned {type(table).__name__}, not a pandas DataFrame")
    io.write_parquet(table, out)


def figure_job(name: str, study: str, paths: dict, out, axis: str | None = None) -> None:
    """Draw the figure ``name`` of ``study`` to ``out`` (PNG); ``paths`` as for `analysis_job`.
    A per-axis figure (``spec.per_axis``) is drawn for the grid axis ``axis`` (a dotted
    config key such as ``optim.lr``); other figures take no axis."""
    spec = registry.figure(name)
    if spec.per_axis and axis is None:
        raise ValueError(f"figure '{name}' is drawn once per grid axis: give the axis")
    if not spec.per_axis and axis is not None:
        raise ValueError(f"figure '{name}' is not drawn per grid axis, but the axis '{axis}' was given")
    fig = spec.fn(AnalysisInputs(study, paths, axis=axis, reader=f"figure '{name}'"))
    if not hasattr(fig, "savefig"):
        raise TypeError(f"figure '{name}' returned {type(fig).__name__}, not a matplotlib Figure")
    from ..plots import save

    save(fig, out)
