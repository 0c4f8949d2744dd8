localrules:
    plot,


def plot_inputs(wildcards):
    study = wildcards.study
    inputs = {
        "runs": RUNS_TABLE.format(study=study),
        "metrics": per_run(METRICS, study),
        "observables": [
            path
            for family in families_of(study)
            for path in per_run(OBSERVABLES, study, family=family)
        ],
    }
    inputs.update(analysis_outputs(study))
    return inputs


rule plot:
    """Seaborn figures, registered for `snakemake --report`."""
    input:
        unpack(plot_inputs),
    output:
        report(FIGURE, caption="../report/figure.rst", category="{study}"),
    params:
        axes=lambda w: axis_figures(w.study),
    conda:
        "../../envs/featscope.yaml"
    script:
        "../scripts/plot.py"
