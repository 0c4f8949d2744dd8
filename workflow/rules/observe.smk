# One rule per observe block (featscope.plan.observe_blocks): one family on a study's runs.
# Its params are the family's version and parameters: changing them reruns only its jobs.
for block in OBSERVE_BLOCKS:

    rule:
        name:
            block.name
        input:
            checkpoints=block_paths(block, CHECKPOINTS),
            data=block_data(block),
        output:
            block_paths(block, OBSERVABLES, family=block.family),
        log:
            f"{LOGS.format(study=block.study)}/observe/{block.name}.log",
        conda:
            "../../envs/featscope.yaml"
        resources:
            mem_mb=grows_with_attempt(2000),
            runtime=grows_with_attempt(30 + 10 * len(block.members)),
        params:
            family=block.family,
            data=member_data(block),
            config=family_params(block.study, block.family),
            cache=f"{CACHE}/observe",
        script:
            "../scripts/observe.py"
