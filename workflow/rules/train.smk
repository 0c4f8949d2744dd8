rule train:
    """Train one run: checkpoints on the study's schedule + a dense per-step metrics log."""
    input:
        data=lambda w: DATA.format(dataset=run_of(w).dataset_id),
    output:
        checkpoints=CHECKPOINTS,
        metrics=METRICS,
        info=RUN_INFO,
    params:
        # Only what determines the numbers: editing observables or figures never retrains.
        run=lambda w: run_of(w).train_config,
    threads: config["threads"]
    resources:
        mem_mb=2000,
        runtime=60,
    log:
        f"{LOGS}/train/{{run}}.log",
    conda:
        "../../envs/featscope.yaml"
    script:
        "../scripts/train.py"
