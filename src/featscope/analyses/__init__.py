"""Built-in analyses and figures, each registered with `featscope.register_analysis` or
`featscope.register_figure` exactly as a plugin registers its own (see `featscope.registry`).

One module per analysis, its figures beside it; figures that read only observables have
a module of their own. An analysis is ``fn(inputs, **params) -> DataFrame``, a figure
``fn(inputs) -> matplotlib Figure``; ``inputs`` is an `AnalysisInputs`. Importing this
package registers them all; it imports no torch and no matplotlib (the workflow reads the
registry while Snakemake starts; figures import their plotting code when drawn).
"""

from __future__ import annotations

import importlib

from .inputs import AnalysisInputs, read_frames, row_filter

# Importing registers; this order is the order of the config schema's enums (and the docs).
for _module in ("phases", "nonlinearity", "spectral", "regimes", "stages", "dynamics", "grokking", "scaling"):
    importlib.import_module(f".{_module}", __name__)

__all__ = ["AnalysisInputs", "read_frames", "row_filter"]
