def plot_inputs(study):
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


# One job per study draws all its figures: a figure is quick, its job's start-up is not.
for study in RUNS:
    if figures_of(study):
        rule:
            name:
                "plot_" + re.sub(r"\W", "_", study)
            localrule: True
            input:
                **plot_inputs(study),
            output:
                [report(FIGURE.format(study=study, figure=f), caption="../report/figure.rst", category=study)
                 for f in figures_of(study)],
            params:
                study=study,
                figures=figures_of(study),
                axes=axis_figures(study),
            conda:
                "../../envs/featscope.yaml"
            script:
                "../scripts/plot.py"
