rule train:
    """Train one run: checkpoints on the study's schedule + a dense per-step metrics log."""
    input:
        data=lambda w: DATA.format(dataset=run_of(w).dataset_id),
    output:
        # keep_checkpoints: false deletes them once every observe job has read them
        # (smaller disk; bumping an observable then retrains).
        checkpoints=CHECKPOINTS if config["keep_checkpoints"] else temp(CHECKPOINTS),
        metrics=METRICS,
        info=RUN_INFO,
    params:
        # Only what determines the numbers: editing observables or figures never retrains.
        run=lambda w: run_of(w).train_config,
        # In-progress state of a killed job; not an output, so Snakemake leaves it alone.
        resume_dir=lambda w: f"{R}/{w.study}/.partial",
    threads: config["threads"]
    resources:
        mem_mb=2000,
        runtime=60,
        gpu=TRAIN_GPUS,
    log:
        f"{LOGS}/train/{{run}}.log",
    conda:
        "../../envs/featscope.yaml"
    script:
        "../scripts/train.py"
