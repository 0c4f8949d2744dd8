from featscope.io import read_json
from featscope.pipeline import data_job

data_job(read_json(snakemake.input.stamp), snakemake.output[0])
