from featscope.pipeline import data_job

data_job(snakemake.params.task, snakemake.output[0])
