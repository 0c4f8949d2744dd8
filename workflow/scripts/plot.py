from featscope.configload import load_job_plugins

load_job_plugins()
from featscope.analyses import jobs  # noqa: E402  (no torch: these jobs start quickly)

study, out = snakemake.wildcards.study, snakemake.output[0]
name, axis = snakemake.params.figure
inputs = snakemake.input
observables = {k.removeprefix("obs__"): list(v) for k, v in inputs.items() if k.startswith("obs__")}
tables = {k.removeprefix("table__"): v for k, v in inputs.items() if k.startswith("table__")}
paths = {"runs": inputs.runs, "metrics": list(inputs.metrics), "observables": observables, "tables": tables}
jobs.figure_job(name, study, paths, out, axis=axis)
