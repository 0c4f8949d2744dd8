from featscope.configload import load_job_plugins

load_job_plugins()
from featscope.pipeline import observe_block_job  # noqa: E402

items = [
    {"run": out.rsplit("/", 1)[1].removesuffix(".parquet"), "checkpoints": c, "data": d, "out": out}
    for c, d, out in zip(snakemake.input.checkpoints, snakemake.input.data, snakemake.output)
]
observe_block_job(
    items,
    snakemake.params.family,
    dict(snakemake.params.config),
    cache_dir=snakemake.params.cache,
    log=snakemake.log[0],
)
