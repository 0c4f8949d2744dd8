from featscope.configload import load_job_plugins

load_job_plugins()
from featscope.pipeline import observe_block_job  # noqa: E402

data = snakemake.params.data  # each run's dataset, in the outputs' order
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
