rule observe:
    """One observable family over every checkpoint of one run -> long-form Parquet."""
    input:
        checkpoints=CHECKPOINTS,
        data=lambda w: DATA.format(dataset=run_of(w).dataset_id),
    output:
        OBSERVABLES,
    params:
        # The family's code version and parameters: bumping either re-runs only this family.
        family=family_params,
    resources:
        mem_mb=2000,
        runtime=30,
    log:
        f"{LOGS}/observe/{{family}}/{{run}}.log",
    conda:
        "../../envs/featscope.yaml"
    script:
        "../scripts/observe.py"
