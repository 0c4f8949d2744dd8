rule data:
    """Materialise one dataset per (task parameters, data seed); shared by all runs using it."""
    output:
        DATA,
    params:
        task=lambda w: DATASETS[w.dataset],
    log:
        f"{R}/logs/data/{{dataset}}.log",
    conda:
        "../../envs/featscope.yaml"
    script:
        "../scripts/data.py"
