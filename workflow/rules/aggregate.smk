localrules:
    runs_table,
    phases,
    regimes,
    stages,
    grokking,
    scaling,


rule runs_table:
    """One row per run: resolved config, status, steps done, wall time, device, versions."""
    input:
        info=lambda w: per_run(RUN_INFO, w.study),
    output:
        RUNS_TABLE,
    params:
        runs=lambda w: [run.as_dict() for run in RUNS[w.study]],
    conda:
        "../../envs/featscope.yaml"
    script:
        "../scripts/runs_table.py"


rule phases:
    """Phase boundaries and Phase IV decay rate per run (nonlinearity study)."""
    input:
        metrics=lambda w: per_run(METRICS, w.study),
        nonlinearity=lambda w: per_run(OBSERVABLES, w.study, family="nonlinearity"),
    output:
        PHASES,
    params:
        phases=lambda w: study_of(w)["phases"],
    conda:
        "../../envs/featscope.yaml"
    script:
        "../scripts/phases.py"


rule regimes:
    """Coefficient / MF / EF label per run and checkpoint from the kernel eigen-measures."""
    input:
        runs=RUNS_TABLE,
        spectral=lambda w: per_run(OBSERVABLES, w.study, family="spectral"),
    output:
        REGIMES,
    params:
        rules=lambda w: study_of(w)["regimes"],
    conda:
        "../../envs/featscope.yaml"
    script:
        "../scripts/regimes.py"


rule stages:
    """Grokking stage (lazy / independent / interactive / converged) per run and checkpoint."""
    input:
        metrics=lambda w: per_run(METRICS, w.study),
        weights=lambda w: per_run(OBSERVABLES, w.study, family="weights"),
        gradients=lambda w: per_run(OBSERVABLES, w.study, family="gradients"),
    output:
        STAGES,
    params:
        rules=lambda w: study_of(w)["stages"],
    conda:
        "../../envs/featscope.yaml"
    script:
        "../scripts/stages.py"


rule grokking:
    """Per run: when train and test accuracy are reached, and the grokking delay between them."""
    input:
        metrics=lambda w: per_run(METRICS, w.study),
    output:
        GROKKING,
    conda:
        "../../envs/featscope.yaml"
    script:
        "../scripts/grokking.py"


rule scaling:
    """Generalisation rate over M x training fraction, critical fractions, n_crit = c M ln M fit."""
    input:
        runs=RUNS_TABLE,
        grokking=GROKKING,
    output:
        SCALING,
    conda:
        "../../envs/featscope.yaml"
    script:
        "../scripts/scaling.py"
