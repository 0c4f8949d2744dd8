# featscope.tasks alone: a data job needs no torch.
from featscope.tasks import make_dataset, save_dataset

save_dataset(make_dataset(dict(snakemake.params.task)), snakemake.output[0])
