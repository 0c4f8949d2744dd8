from featscope.pipeline import plot_job

paths = {
    key: snakemake.input.get(key)
    for key in ("runs", "phases", "regimes", "stages", "grokking", "scaling", "metrics", "observables")
}
for figure, out in zip(snakemake.params.figures, snakemake.output):
    plot_job(figure, snakemake.params.study, paths, out, axes=dict(snakemake.params.axes))
