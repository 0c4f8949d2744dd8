# featscope.tasks alone: a data job needs no torch. The config's plugins first: a task may be theirs.
from featscope.configload import load_job_plugins

load_job_plugins()
from featscope.tasks import make_dataset, save_dataset  # noqa: E402

save_dataset(make_dataset(dict(snakemake.params.task)), snakemake.output[0])
