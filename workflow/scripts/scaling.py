from featscope.pipeline import scaling_job

scaling_job(snakemake.input.runs, snakemake.input.grokking, snakemake.output[0])
