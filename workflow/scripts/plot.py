from featscope.configload import load_job_plugins

load_job_plugins()
from featscope import pipeline  # noqa: E402

study, out = snakemake.wildcards.study, snakemake.output[0]
name, axis = snakemake.params.figure
inputs = snakemake.input
observables = {k.removeprefix("obs__"): list(v) for k, v in inputs.items() if k.startswith("obs__")}
tables = {k.removeprefix("table__"): v for k, v in inputs.items() if k.startswith("table__")}
paths = {"runs": inputs.runs, "metrics": list(inputs.metrics), "observables": observables, "tables": tables}
if hasattr(pipeline, "figure_job"):
    pipeline.figure_job(name, study, paths, out, axis=axis)
else:  # the built-in figures, until they register (featscope.registry.FIGURES)
    legacy = {"runs": inputs.runs, "metrics": list(inputs.metrics), **tables}
    legacy["observables"] = [p for files in observables.values() for p in files]
    figure = snakemake.wildcards.figure
    axes = {f"axis-{a}": a for a in snakemake.config["studies"][study]["grid"]}
    pipeline.plot_job(figure, study, legacy, out, axes=axes)
