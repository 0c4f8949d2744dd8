# Output paths, the plan and the functions rules call. Only definitions: the plan itself
# (which job makes which file) is featscope.plan, a pure function of the config.
import sys

import featscope.plan as plan
import featscope.registry as registry
from featscope.device import trains_on_cuda
from featscope.observables import FAMILIES

R = config["results"]
# Training jobs hold one GPU when they will use one, so that
# `snakemake --cores 8 --resources gpu=1` runs them one at a time beside CPU jobs.
TRAIN_GPUS = int(trains_on_cuda(config["device"]))
RUN_INDEX = {(study, run.id): run for study, runs in RUNS.items() for run in runs}
DATASETS = {run.dataset_id: run.config["task"] for run in RUN_INDEX.values()}
FAMILIES_OF = {study: list(config["studies"][study]["observables"]) for study in RUNS}
TRAIN_BLOCKS = plan.train_blocks(RUNS, config["pack_size"])
OBSERVE_BLOCKS = plan.observe_blocks(RUNS, FAMILIES_OF, config["pack_size"])
ANALYSES = sorted({a for study in RUNS for a in config["studies"][study]["analyses"]})

DATA = f"{R}/data/{{dataset}}.npz"
CHECKPOINTS = f"{R}/{{study}}/checkpoints/{{run}}.pt"
RUN_INFO = f"{R}/{{study}}/checkpoints/{{run}}.json"
METRICS = f"{R}/{{study}}/metrics/{{run}}.parquet"
OBSERVABLES = f"{R}/{{study}}/observables/family={{family}}/{{run}}.parquet"
RUNS_TABLE = f"{R}/{{study}}/runs.parquet"
TABLE = f"{R}/{{study}}/{{analysis}}.parquet"
FIGURE = f"{R}/{{study}}/figures/{{figure}}.png"
LOGS = f"{R}/{{study}}/logs"
CACHE = f"{R}/.cache"


wildcard_constraints:
    study=r"[A-Za-z0-9][A-Za-z0-9_-]*",
    run=r"[A-Za-z0-9][A-Za-z0-9_.+-]*",
    family=r"[a-z][a-z0-9_]*",
    dataset=r"[a-z0-9_]+-[0-9a-f]+",
    figure=r"[A-Za-z0-9_.+-]+",


def per_run(pattern, study, **fill):
    return [pattern.format(study=study, run=run.id, **fill) for run in RUNS[study]]


def grows_with_attempt(base):
    """A resource that a retried job (attempt 2, 3, ...) asks more of."""
    return lambda wildcards, attempt: base * attempt


def family_params(study, family):
    """What observing a family depends on besides its inputs: code version + parameters."""
    return {
        "version": FAMILIES[family].version,
        **config["studies"][study]["observables"][family],
    }


def block_paths(block, pattern, **fill):
    return [pattern.format(study=block.study, run=run, **fill) for run in block.members]


def member_data(block):
    """Each member's dataset, in member order."""
    return [
        DATA.format(dataset=RUN_INDEX[(block.study, run)].dataset_id)
        for run in block.members
    ]


def block_data(block):
    """A block's datasets, listed once each, so that its set of inputs does not change with
    its number of seeds. A train block's are one file all members share, or one per member
    in member order (task.split: per_seed); an observe block maps them with member_data.
    """
    return list(dict.fromkeys(member_data(block)))


def train_outputs(block):
    """Checkpoints (dropped once observed when keep_checkpoints is false), metrics, run info."""
    checkpoints = block_paths(block, CHECKPOINTS)
    return {
        "checkpoints": (
            checkpoints
            if config["keep_checkpoints"]
            else [temp(c) for c in checkpoints]
        ),
        "metrics": block_paths(block, METRICS),
        "info": block_paths(block, RUN_INFO),
    }


def study_inputs(study, needs):
    """Named inputs of an analysis or figure: the runs table, metrics, the observables of
    the families and the tables of the analyses it reads (`featscope.plan.Needs`)."""
    inputs = {
        "runs": RUNS_TABLE.format(study=study),
        "metrics": per_run(METRICS, study),
    }
    for family in needs.families:
        if family in FAMILIES_OF[study]:
            inputs[f"obs__{family}"] = per_run(OBSERVABLES, study, family=family)
    for analysis in needs.analyses:
        inputs[f"table__{analysis}"] = TABLE.format(study=study, analysis=analysis)
    return inputs


def analysis_inputs(wildcards):
    study = config["studies"][wildcards.study]
    return study_inputs(wildcards.study, plan.analysis_needs(wildcards.analysis, study))


def analysis_params(wildcards):
    study = config["studies"][wildcards.study]
    key = plan.analysis_needs(wildcards.analysis, study).params
    return dict(study.get(key) or {}) if key else {}


def figure_inputs(wildcards):
    study = config["studies"][wildcards.study]
    name, _ = plan.figures(study)[wildcards.figure]
    return study_inputs(wildcards.study, plan.figure_needs(name, study))


def analysis_outputs(study):
    """Analysis name -> its table, for the analyses the study asks for."""
    return {
        a: TABLE.format(study=study, analysis=a)
        for a in config["studies"][study]["analyses"]
    }


def all_targets():
    targets = []
    for study in RUNS:
        targets.append(RUNS_TABLE.format(study=study))
        for family in FAMILIES_OF[study]:
            targets += per_run(OBSERVABLES, study, family=family)
        targets += analysis_outputs(study).values()
        targets += [
            FIGURE.format(study=study, figure=f)
            for f in plan.figures(config["studies"][study])
        ]
    return targets


def move_aside_stray_files():
    """Files of runs, families, tables and figures the config no longer makes go to
    <study>/.removed/ before any job runs (see featscope.plan.move_aside)."""
    current = {
        study: plan.current_files(
            config["studies"][study],
            [r.id for r in RUNS[study]],
            FAMILIES_OF[study],
            ["runs.parquet"]
            + [f"{a}.parquet" for a in config["studies"][study]["analyses"]],
            plan.figures(config["studies"][study]),
        )
        for study in RUNS
    }
    line = plan.move_aside(R, current)
    if line:
        print(line, file=sys.stderr)


def figure_caption(study, figure):
    """The report caption of output figure `figure` of `study`."""
    name, axis = plan.figures(config["studies"][study])[figure]
    return registry.figure(name).caption_for(study, axis)
