from featscope.configload import load_job_plugins

load_job_plugins()
from featscope.pipeline import observe_block_job  # noqa: E402

# One dataset all runs share, or one per run in their order (task.split: per_seed).
data = list(snakemake.input.data)
data = data * len(snakemake.output) if len(data) == 1 else data
items = [
    {"run": out.rsplit("/", 1)[1].removesuffix(".parquet"), "checkpoints": c, "data": d, "out": out}
    for c, d, out in zip(snakemake.input.checkpoints, data, snakemake.output, strict=True)
]
observe_block_job(
    items,
    snakemake.params.family,
    dict(snakemake.params.config),
    cache_dir=snakemake.params.cache,
    log=snakemake.log[0],
)
