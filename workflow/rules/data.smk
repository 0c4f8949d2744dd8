rule data:
    """Materialise one dataset per (task parameters, data seed); shared by all runs using it."""
    output:
        DATA,
    log:
        f"{R}/logs/data/{{dataset}}.log",
    conda:
        "../../envs/featscope.yaml"
    params:
        task=lambda w: DATASETS[w.dataset],  # its name already fingerprints it
    script:
        "../scripts/data.py"
