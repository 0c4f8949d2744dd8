from featscope.pipeline import grokking_job

grokking_job(snakemake.input.metrics, snakemake.output[0])
