rule runs_table:
    """One row per run: resolved config, status, steps done, wall time, device, versions."""
    input:
        info=lambda w: per_run(RUN_INFO, w.study),
    output:
        RUNS_TABLE,
    log:
        f"{LOGS}/runs_table.log",
    localrule: True
    conda:
        "../../envs/featscope.yaml"
    params:
        # The runs' ids and training configs, as a fingerprint (the job reads the config).
        runs=lambda w: plan.runs_digest(RUNS[w.study]),
    script:
        "../scripts/runs_table.py"


rule analysis:
    """One analysis table of a study (featscope.registry.ANALYSES)."""
    input:
        unpack(analysis_inputs),
    output:
        TABLE,
    log:
        f"{LOGS}/analysis/{{analysis}}.log",
    wildcard_constraints:
        analysis="|".join(ANALYSES) or "no-analysis",
    localrule: True
    conda:
        "../../envs/featscope.yaml"
    params:
        params=analysis_params,
    script:
        "../scripts/analysis.py"
