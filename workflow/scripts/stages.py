from featscope.pipeline import stages_job

stages_job(
    snakemake.input.metrics,
    snakemake.input.weights,
    snakemake.input.gradients,
    dict(snakemake.params.rules),
    snakemake.output[0],
)
