rule data:
    """Materialise one dataset per (task parameters, data seed); shared by all runs using it."""
    input:
        stamp=DATA_STAMP,  # the task config; the dataset's name already fingerprints it
    output:
        DATA,
    log:
        f"{R}/logs/data/{{dataset}}.log",
    conda:
        "../../envs/featscope.yaml"
    script:
        "../scripts/data.py"


# Missing datasets that are generated locally (not downloaded) are made by one job.
for name, pack in PACKS.items():
    if name.startswith("data_pack_"):
        rule:
            name:
                name
            input:
                stamps=[DATA_STAMP.format(dataset=d) for d in pack.members],
            output:
                [DATA.format(dataset=d) for d in pack.members],
            log:
                f"{R}/logs/data/pack-{pack.id}.log",
            conda:
                "../../envs/featscope.yaml"
            script:
                "../scripts/data_pack.py"
