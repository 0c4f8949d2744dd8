from featscope.pipeline import runs_table_job

runs_table_job(snakemake.params.runs, snakemake.input.info, snakemake.output[0])
