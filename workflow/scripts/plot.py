from featscope.pipeline import plot_job

plot_job(
    snakemake.wildcards.figure,
    snakemake.wildcards.study,
    {key: snakemake.input.get(key) for key in ("runs", "phases", "regimes", "stages", "grokking", "scaling", "metrics", "observables")},
    snakemake.output[0],
    axes=dict(snakemake.params.axes),
)
