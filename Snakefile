# featscope: train grids of small networks, observe every checkpoint, aggregate, plot.
# Data flows one way: data -> train -> observe -> aggregate -> plot (workflow/rules/).

# The embedded default; a config given with --configfile replaces it (instead of
# being merged into it), so a full study grid runs on its own.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/observe.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/plot.smk"


rule all:
    input:
        all_targets(),
    default_target: True
