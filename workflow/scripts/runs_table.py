from featscope.config import expand_runs
from featscope.pipeline import runs_table_job

study = snakemake.wildcards.study
runs = [run.as_dict() for run in expand_runs(study, snakemake.config["studies"][study])]
runs_table_job(runs, snakemake.input.info, snakemake.output[0])
