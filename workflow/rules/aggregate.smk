localrules:
    runs_table,
    phases,
    regimes,


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
