from featscope.pipeline import observe_job

observe_job(
    snakemake.wildcards.run,
    snakemake.wildcards.family,
    dict(snakemake.params.family),
    snakemake.input.checkpoints,
    snakemake.input.data,
    snakemake.output[0],
)
