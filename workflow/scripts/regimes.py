from featscope.pipeline import regimes_job

regimes_job(snakemake.input.runs, snakemake.input.spectral, dict(snakemake.params.rules), snakemake.output[0])
