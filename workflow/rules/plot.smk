rule plot:
    """One figure of a study (featscope.registry.FIGURES), with its caption in the report."""
    input:
        unpack(figure_inputs),
    output:
        report(FIGURE, caption="../report/figure.rst", category="{study}"),
    log:
        f"{LOGS}/plot/{{figure}}.log",
    localrule: True
    conda:
        "../../envs/featscope.yaml"
    params:
        figure=lambda w: plan.figures(config["studies"][w.study])[w.figure],
        # Each figure's own caption (featscope.registry.FIGURES), rendered by figure.rst.
        caption=lambda w: figure_caption(w.study, w.figure),
    script:
        "../scripts/plot.py"
