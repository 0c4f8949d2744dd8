from featscope.configload import load_job_plugins

load_job_plugins()
from featscope.analyses import jobs  # noqa: E402  (no torch: these jobs start quickly)

name, study = snakemake.wildcards.analysis, snakemake.wildcards.study
inputs = snakemake.input
paths = {
    "runs": inputs.runs,
    "metrics": list(inputs.metrics),
    "observables": {k.removeprefix("obs__"): list(v) for k, v in inputs.items() if k.startswith("obs__")},
    "tables": {k.removeprefix("table__"): v for k, v in inputs.items() if k.startswith("table__")},
}
params = dict(snakemake.params.params)
jobs.analysis_job(name, study, paths, params, snakemake.output[0])
