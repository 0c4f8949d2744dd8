rule observe:
    """One observable family over every checkpoint of one run -> long-form Parquet."""
    wildcard_constraints:
        study=solo_study_constraint("observe_pack_"),
    input:
        checkpoints=CHECKPOINTS,
        data=lambda w: DATA.format(dataset=run_of(w).dataset_id),
        # The family's code version and parameters: bumping either re-runs only this family.
        stamp=FAMILY_STAMP,
    output:
        OBSERVABLES,
    resources:
        mem_mb=2000,
        runtime=30,
    log:
        f"{LOGS}/observe/{{family}}/{{run}}.log",
    conda:
        "../../envs/featscope.yaml"
    script:
        "../scripts/observe.py"


def observe_pack_files(pack):
    """Per run: checkpoints, data, and the due families' stamps and outputs."""
    return [{"run": run, "checkpoints": CHECKPOINTS.format(study=pack.study, run=run),
             "data": DATA.format(dataset=RUN_INDEX[(pack.study, run)].dataset_id),
             "families": {f: (FAMILY_STAMP.format(study=pack.study, family=f),
                              OBSERVABLES.format(study=pack.study, run=run, family=f))
                          for f in pack.families[run]}}
            for run in pack.members]


# Packs: the due (run, family) pairs of a study, observed by one job (see featscope.plan).
for name, pack in PACKS.items():
    if name.startswith("observe_pack_"):
        items = observe_pack_files(pack)
        # The job's plan as an input file, not params: params are compared per output file,
        # and a later single-run job for one of these files must not see a change.
        write_stamp(PACK_FILE.format(name=f"{name}.items"), items)
        rule:
            name:
                name
            input:
                checkpoints=[i["checkpoints"] for i in items],
                data=sorted({i["data"] for i in items}),
                stamps=sorted({s for i in items for s, _ in i["families"].values()}),
                manifest=PACK_FILE.format(name=f"{name}.items"),
            output:
                [out for i in items for _, out in i["families"].values()],
            resources:
                mem_mb=grows_with_attempt(2000),
                runtime=grows_with_attempt(30 + 10 * len(items)),
            log:
                f"{LOGS.format(study=pack.study)}/observe/pack-{pack.id}.log",
            conda:
                "../../envs/featscope.yaml"
            script:
                "../scripts/observe_pack.py"
