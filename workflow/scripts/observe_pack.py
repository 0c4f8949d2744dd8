from featscope.io import read_json
from featscope.pipeline import observe_pack_job

observe_pack_job(
    [
        {**item, "families": {f: (read_json(stamp), out) for f, (stamp, out) in item["families"].items()}}
        for item in read_json(snakemake.input.manifest)
    ],
    log=snakemake.log[0],
)
