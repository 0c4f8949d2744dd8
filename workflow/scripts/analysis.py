from featscope.configload import load_job_plugins

load_job_plugins()
from featscope import pipeline  # noqa: E402

name, study = snakemake.wildcards.analysis, snakemake.wildcards.study
inputs = snakemake.input
paths = {
    "runs": inputs.runs,
    "metrics": list(inputs.metrics),
    "observables": {k.removeprefix("obs__"): list(v) for k, v in inputs.items() if k.startswith("obs__")},
    "tables": {k.removeprefix("table__"): v for k, v in inputs.items() if k.startswith("table__")},
}
params = dict(snakemake.params.params)
if hasattr(pipeline, "analysis_job"):
    pipeline.analysis_job(name, study, paths, params, snakemake.output[0])
else:  # the built-in analyses, until they register (featscope.registry.ANALYSES)
    obs, out = paths["observables"], snakemake.output[0]
    {
        "phases": lambda: pipeline.phases_job(paths["metrics"], obs["nonlinearity"], params, out),
        "regimes": lambda: pipeline.regimes_job(paths["runs"], obs["spectral"], params, out),
        "stages": lambda: pipeline.stages_job(paths["metrics"], obs["weights"], obs["gradients"], params, out),
        "grokking": lambda: pipeline.grokking_job(paths["metrics"], out),
        "scaling": lambda: pipeline.scaling_job(paths["runs"], paths["tables"]["grokking"], out),
    }[name]()
