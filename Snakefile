# featscope: train grids of small networks, observe every checkpoint, aggregate, plot.
# Data flows one way: data -> train -> observe -> aggregate -> plot (workflow/rules/).
# A --configfile is merged onto this default (--replace-workflow-config: it stands alone);
# --config is merged last. featscope.configload checks the result.
import sys
from pathlib import Path

from snakemake.utils import min_version

import featscope.configload as configload
from featscope.config import ConfigError

min_version("9.0")


configfile: "config/config.yaml"


try:
    RUNS = configload.load(
        config,
        Path(workflow.basedir, "workflow", "schemas", "config.schema.yaml"),
        [*(Path(f).parent for f in workflow.configfiles), workflow.basedir],
    )
except ConfigError as err:
    sys.exit(f"invalid config: {err}")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/observe.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/plot.smk"


onstart:
    move_aside_stray_files()


rule all:
    default_target: True
    input:
        all_targets(),
