# One rule per train block (featscope.plan.train_blocks): a grid point's seeds, trained
# together. Its params are what its outputs are made from, the member list left out.
for block in TRAIN_BLOCKS:

    rule:
        name:
            block.name
        input:
            # one file all members share, or one per member (task.split: per_seed), in their order
            data=block_data(block),
        output:
            **train_outputs(block),
        log:
            f"{LOGS.format(study=block.study)}/train/{block.name}.log",
        conda:
            "../../envs/featscope.yaml"
        threads: config["threads"]
        resources:
            mem_mb=grows_with_attempt(2000 + 100 * len(block.members)),
            runtime=grows_with_attempt(60 + 30 * len(block.members)),
            gpu=TRAIN_GPUS,
        params:
            config=plan.train_params(RUN_INDEX[(block.study, block.members[0])]),
            # In-progress state of a killed job and finished runs; not outputs, so
            # Snakemake leaves them alone when it reruns the job.
            resume_dir=f"{R}/{block.study}/.partial",
            cache=f"{CACHE}/train",
        script:
            "../scripts/train.py"
