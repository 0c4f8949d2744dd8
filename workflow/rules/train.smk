def train_outputs(study, run_ids):
    """Checkpoints (dropped once observed when keep_checkpoints is false), metrics, run info."""
    ckpts = [CHECKPOINTS.format(study=study, run=r) for r in run_ids]
    return {"checkpoints": ckpts if config["keep_checkpoints"] else [temp(c) for c in ckpts],
            "metrics": [METRICS.format(study=study, run=r) for r in run_ids],
            "info": [RUN_INFO.format(study=study, run=r) for r in run_ids]}


rule train:
    """Train one run: checkpoints on the study's schedule + a dense per-step metrics log."""
    wildcard_constraints:
        study=solo_study_constraint("train_pack_"),
    input:
        data=lambda w: DATA.format(dataset=run_of(w).dataset_id),
        stamp=STAMP,  # the run's training config; editing observables or figures never retrains
    output:
        checkpoints=CHECKPOINTS if config["keep_checkpoints"] else temp(CHECKPOINTS),
        metrics=METRICS,
        info=RUN_INFO,
    params:
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


# Packs: the due runs that share shapes train together in one job (see featscope.plan).
# Their rules name their files outright, so Snakemake prefers them to `train`, which stays
# the rule for anything else (a single run, a deleted checkpoint, --forcerun).
for name, pack in PACKS.items():
    if name.startswith("train_pack_"):
        rule:
            name:
                name
            input:
                # one file all members share, or one per member (task.split: per_seed), in their order
                data=[DATA.format(dataset=RUN_INDEX[(pack.study, r)].dataset_id) for r in pack.members],
                stamps=[STAMP.format(study=pack.study, run=r) for r in pack.members],
            output:
                **train_outputs(pack.study, pack.members),
            params:
                resume_dir=f"{R}/{pack.study}/.partial",
            threads: config["threads"]
            resources:
                mem_mb=grows_with_attempt(2000 + 100 * len(pack.members)),
                runtime=grows_with_attempt(120),
                gpu=TRAIN_GPUS,
            log:
                f"{LOGS.format(study=pack.study)}/train/pack-{pack.id}.log",
            conda:
                "../../envs/featscope.yaml"
            script:
                "../scripts/train_pack.py"
