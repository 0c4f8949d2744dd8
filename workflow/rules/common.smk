# Config validation, the run plan and output paths. No science here: the
# library (src/featscope) does all the computing.
import itertools
import re
import sys

import yaml
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake_interface_executor_plugins.settings import ExecMode
from snakemake.utils import min_version, validate

import featscope.config as fsconfig
from featscope.io import read_json
from featscope.observables import FAMILIES, applicability, parameters
from featscope.plan import Pack, RunFiles, covered_studies, plan_datasets, plan_study, spread, write_stamp
from featscope.device import trains_on_cuda

min_version("9.0")

SCHEMA_PATH = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())

try:
    fsconfig.validate_schema(config, SCHEMA)  # clear message naming the key path
    validate(config, str(SCHEMA_PATH), set_default=True)  # fills in defaults
    RUNS = fsconfig.check(config, SCHEMA, applicability(), parameters())
except fsconfig.ConfigError as err:
    raise WorkflowError(f"invalid config: {err}") from None

R = config["results"]
# Training jobs hold one GPU when they will use one, so that
# `snakemake --cores 8 --resources gpu=1` runs them one at a time beside CPU jobs.
# An explicit `device: cuda` asks for GPUs even where the DAG is built (a cluster's login node).
TRAIN_GPUS = int(trains_on_cuda(config["device"]))
RUN_INDEX = {(study, run.id): run for study, runs in RUNS.items() for run in runs}
DATASETS = {run.dataset_id: run.config["task"] for run in RUN_INDEX.values()}

DATA = f"{R}/data/{{dataset}}.npz"
CHECKPOINTS = f"{R}/{{study}}/checkpoints/{{run}}.pt"
RUN_INFO = f"{R}/{{study}}/checkpoints/{{run}}.json"
METRICS = f"{R}/{{study}}/metrics/{{run}}.parquet"
OBSERVABLES = f"{R}/{{study}}/observables/family={{family}}/{{run}}.parquet"
RUNS_TABLE = f"{R}/{{study}}/runs.parquet"
PHASES = f"{R}/{{study}}/phases.parquet"
REGIMES = f"{R}/{{study}}/regimes.parquet"
STAGES = f"{R}/{{study}}/stages.parquet"
GROKKING = f"{R}/{{study}}/grokking.parquet"
SCALING = f"{R}/{{study}}/scaling.parquet"
FIGURE = f"{R}/{{study}}/figures/{{figure}}.png"
LOGS = f"{R}/{{study}}/logs"
# A run's training config and a family's version + parameters, as files that change only
# when their content does: inputs whose age tells what is out of date (see rerun-triggers
# in profiles/default).
DATA_STAMP = f"{R}/data/.plan/{{dataset}}.json"
STAMP = f"{R}/{{study}}/.plan/{{run}}.json"
FAMILY_STAMP = f"{R}/{{study}}/.plan/family={{family}}.json"
PACK_FILE = f"{R}/.packs/{{name}}.json"


wildcard_constraints:
    study=r"[A-Za-z0-9][A-Za-z0-9_-]*",
    run=r"[A-Za-z0-9][A-Za-z0-9_.+-]*",
    family=r"[a-z][a-z0-9_]*",
    dataset=r"[a-z0-9_]+-[0-9a-f]+",


def run_of(wildcards):
    return RUN_INDEX[(wildcards.study, wildcards.run)]


def study_of(wildcards):
    return config["studies"][wildcards.study]


def families_of(study):
    return list(config["studies"][study]["observables"])


def family_config(study, family):
    """What observing a family depends on besides its inputs: code version + parameters."""
    return {"version": FAMILIES[family].version, **config["studies"][study]["observables"][family]}


def run_files(study, run):
    paths = {k: v.format(study=study, run=run.id) for k, v in
             {"stamp": STAMP, "checkpoints": CHECKPOINTS, "metrics": METRICS, "info": RUN_INFO}.items()}
    return RunFiles(**paths, data=DATA.format(dataset=run.dataset_id),
                    observables={f: OBSERVABLES.format(study=study, run=run.id, family=f) for f in families_of(study)},
                    family_stamps={f: FAMILY_STAMP.format(study=study, family=f) for f in families_of(study)})


def grows_with_attempt(base):
    """A resource that a retried job (attempt 2, 3, ...) asks more of."""
    return lambda wildcards, attempt: base * attempt


def target_rule_names():
    """Rules of the jobs a job-running Snakemake was sent (its `--target-jobs rule:wildcards ...`;
    the settings object does not carry them while the Snakefile is read)."""
    argv, names = sys.argv, []
    for i, arg in enumerate(argv):
        if arg == "--target-jobs":
            for item in itertools.takewhile(lambda a: not a.startswith("-"), argv[i + 1:]):
                names.append(item.split(":", 1)[0])
    return names


def write_stamps():
    """Each run's training config, each family's version + parameters and each task config
    as a file, rewritten only when its content changes."""
    for dataset, task in DATASETS.items():
        write_stamp(DATA_STAMP.format(dataset=dataset), task)
    for study, runs in RUNS.items():
        for run in runs:
            write_stamp(STAMP.format(study=study, run=run.id), run.train_config)
        for family in families_of(study):
            write_stamp(FAMILY_STAMP.format(study=study, family=family), family_config(study, family))


def local_workers(threads):
    """How many jobs of `threads` threads a local `--cores N` run keeps busy side by side:
    packs are cut to fill them (featscope.plan.spread). 1 on a cluster (`--jobs`), where a
    pack per job is the point."""
    if workflow.nodes is not None:
        return 1
    try:
        return max(1, workflow.cores // threads)
    except WorkflowError:  # no --cores given
        return 1


def plan_packs():
    """Packs of the work that is due, as {rule name: Pack}.

    The Snakemake that plans (default mode) writes the stamps, judges what is out of date
    and records each pack in its own file; a Snakemake that runs a job on a cluster node
    (remote mode) re-reads just the packs it was sent to run, since by then the files on
    disk, and so a fresh plan, may have changed."""
    if workflow.exec_mode != ExecMode.DEFAULT:
        names = [n for n in target_rule_names() if "_pack_" in n]
        return {n: Pack(**read_json(PACK_FILE.format(name=n))) for n in names}
    write_stamps()
    data = plan_datasets(DATASETS, {d: DATA.format(dataset=d) for d in DATASETS}, config["pack_size"])
    train, observe = [], []
    for study, runs in RUNS.items():
        t, o = plan_study(study, [(r.id, r.train_config) for r in runs],
                          {r.id: run_files(study, r) for r in runs},
                          config["keep_checkpoints"], config["pack_size"])
        train += t
        observe += o
    packs = {f"data_pack_{p.id}": p for p in data}
    # Training on a GPU runs one job at a time: its packs stay whole. Observe jobs take 1 thread.
    train_workers = 1 if TRAIN_GPUS else local_workers(config["threads"])
    packs.update({f"train_pack_{p.id}": p for p in spread(train, train_workers)})
    packs.update({f"observe_pack_{p.id}": p for p in spread(observe, local_workers(1))})
    for name, pack in packs.items():
        write_stamp(PACK_FILE.format(name=name), pack.as_dict())
    return packs


def per_run(pattern, study, **fill):
    return [pattern.format(study=study, run=run.id, **fill) for run in RUNS[study]]


def axis_figures(study):
    """Figure name -> grid axis, one summary figure per axis."""
    grid = config["studies"][study]["grid"]
    return {f"axis-{axis}": axis for axis in grid}


def figures_of(study):
    names = []
    for figure in config["studies"][study]["figures"]:
        names += list(axis_figures(study)) if figure == "axes" else [figure]
    return names


def analysis_outputs(study):
    """Analysis name -> its table, for the analyses the study asks for."""
    tables = {"phases": PHASES, "regimes": REGIMES, "stages": STAGES, "grokking": GROKKING,
              "scaling": SCALING}
    return {a: tables[a].format(study=study) for a in config["studies"][study]["analyses"]}


def all_targets():
    targets = []
    for study in RUNS:
        targets.append(RUNS_TABLE.format(study=study))
        for family in families_of(study):
            targets += per_run(OBSERVABLES, study, family=family)
        targets += analysis_outputs(study).values()
        targets += [FIGURE.format(study=study, figure=f) for f in figures_of(study)]
    return targets


def solo_study_constraint(prefix):
    """The `study` wildcard of a one-run rule, leaving out the studies that packs cover whole.
    Packs are preferred anyway; without this Snakemake would still make, and discard, a
    one-run candidate job for every packed file (a third of a 10,000-run dry run)."""
    study = r"[A-Za-z0-9][A-Za-z0-9_-]*"
    if workflow.exec_mode != ExecMode.DEFAULT:
        return study  # a node re-reads only the packs it runs; it cannot tell
    packs = [p for name, p in PACKS.items() if name.startswith(prefix)]
    runs = {s: [r.id for r in rs] for s, rs in RUNS.items()}
    families = {s: families_of(s) for s in RUNS} if prefix == "observe_pack_" else None
    covered = covered_studies(packs, runs, families)
    if not covered:
        return study
    # Every path puts a "/" after the study.
    return "(?!(?:" + "|".join(re.escape(s) for s in covered) + ")/)" + study


PACKS = plan_packs()
