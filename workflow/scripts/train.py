import re

from featscope.configload import load_job_plugins

load_job_plugins()
from featscope.pipeline import train_block_job  # noqa: E402

out = snakemake.output
runs = [
    (run, {**snakemake.params.config, "seed": int(re.search(r"seed-(\d+)$", run).group(1))})
    for run in (c.rsplit("/", 1)[1].removesuffix(".pt") for c in out.checkpoints)
]
train_block_job(
    runs,
    snakemake.input.data,
    [{"checkpoints": c, "metrics": m, "info": i} for c, m, i in zip(out.checkpoints, out.metrics, out.info)],
    cache_dir=snakemake.params.cache,
    device=snakemake.config["device"],
    threads=snakemake.threads,
    log=snakemake.log[0],
    resume_dir=snakemake.params.resume_dir,
    resume_every=snakemake.config["resume_every"],
    keep_checkpoints=snakemake.config["keep_checkpoints"],
)
