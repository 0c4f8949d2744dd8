from featscope.io import read_json
from featscope.pipeline import train_job

train_job(
    snakemake.wildcards.run,
    read_json(snakemake.input.stamp),
    snakemake.input.data,
    snakemake.output.checkpoints,
    snakemake.output.metrics,
    snakemake.output.info,
    device=snakemake.config["device"],
    threads=snakemake.threads,
    log=snakemake.log[0],
    resume_dir=snakemake.params.resume_dir,
    resume_every=snakemake.config["resume_every"],
)
