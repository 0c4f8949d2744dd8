from featscope.pipeline import data_pack_job

data_pack_job(snakemake.input.stamps, snakemake.output)
