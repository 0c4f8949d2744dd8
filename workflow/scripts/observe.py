from featscope.io import read_json
from featscope.pipeline import observe_job

observe_job(
    snakemake.wildcards.run,
    snakemake.wildcards.family,
    read_json(snakemake.input.stamp),
    snakemake.input.checkpoints,
    snakemake.input.data,
    snakemake.output[0],
)
