from featscope.pipeline import phases_job

phases_job(snakemake.input.metrics, snakemake.input.nonlinearity, dict(snakemake.params.phases), snakemake.output[0])
