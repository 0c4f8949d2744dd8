"""Built-in analyses and figures, each registered with `featscope.register_analysis` or
`featscope.register_figure` exactly as a plugin registers its own (see `featscope.registry`).

One module per analysis, its figures beside it; figures that read only observables have
a module of their own. An analysis is ``fn(inputs, **params) -> DataFrame``, a figure
``fn(inputs) -> matplotlib Figure``; ``inputs`` is an `AnalysisInputs`. Importing this
package registers them all; it imports no torch and no matplotlib (the workflow reads the
registry while Snakemake starts; figures import their plotting code when drawn).
"""

from __future__ import annotations

from . import dynamics, grokking, nonlinearity, phases, regimes, scaling, spectral, stages  # noqa: F401 (registers)
from .inputs import AnalysisInputs, read_frames, row_filter

__all__ = ["AnalysisInputs", "read_frames", "row_filter"]
