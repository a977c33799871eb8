# Checks the engine and the model before the first experiment, and fails fast
# with the fix; times one request and prints an estimate of the whole run. It
# runs first by priority and holds the server like an experiment, but no
# experiment takes its output as input: a re-check (a new plan, new settings)
# never reruns measured experiments, and never holds back the ones that are due
# (an ancient() input whose producer reruns drops its consumers from the DAG).
# Each experiment job checks the engine again; the findings read its output.
# Made once per target, never changed: it connects the target's pre-flight check
# and experiments, so that profiles/slurm's `groups:` makes them one job group
# (one Slurm job on one node). Only that profile groups them: Snakemake checks
# each member of a group against every other, which made a local dry run
# quadratic in the number of experiments (docs/performance.md).
rule target_anchor:
    output:
        anchor=f"{RESULTS}/target.anchor",
    log:
        f"{LOGS}/target_anchor.log",
    conda:
        "../../environment.yml"
    shell:
        "date -u > {output.anchor} 2> {log}"


use rule target_anchor as target_anchor_target with:
    output:
        anchor=f"{RESULTS}/targets/{{target}}.anchor",
    log:
        f"{LOGS}/target_anchor/{{target}}.log",


rule preflight:
    input:
        unpack(get_model_inputs),
        anchor=get_target_anchor,
    output:
        info=f"{RESULTS}/preflight.json",
    log:
        f"{LOGS}/preflight.log",
    benchmark:
        f"{RESULTS}/setup/preflight.tsv"
    priority: get_preflight_priority()
    conda:
        "../../environment.yml"
    resources:
        llm_server=1,
    params:
        settings=get_settings_json,
        model=get_model_arg,
        plan=get_run_plan_json,
    shell:
        "python -m perflab preflight --spec {params.settings:q} {params.model}"
        " --estimate {params.plan:q} --out {output.info} 2> {log}"
        " || (cat {log} >&2; exit 1)"


# The same check for each target of a config with targets.
use rule preflight as preflight_target with:
    output:
        info=f"{RESULTS}/preflight/{{target}}.json",
    log:
        f"{LOGS}/preflight/{{target}}.log",
    benchmark:
        f"{RESULTS}/setup/preflight-{{target}}.tsv"


# A rate sweep's probe (suites.rate.rates: sweep): synchronous, then saturated
# throughput of the target; the sweep points read their rates from it when they run.
rule rate_probe:
    input:
        unpack(get_model_inputs),
        anchor=get_target_anchor,
    output:
        probe=f"{RESULTS}/rate_probe.json",
    log:
        f"{LOGS}/rate_probe.log",
    benchmark:
        f"{RESULTS}/setup/rate_probe.tsv"
    conda:
        "../../environment.yml"
    resources:
        llm_server=1,
    params:
        spec=get_probe_spec,
        model=get_model_arg,
    shell:
        "python -m perflab rate-probe --spec {params.spec:q} {params.model}"
        " --out {output.probe} 2> {log}"
        " || (cat {log} >&2; exit 1)"


use rule rate_probe as rate_probe_target with:
    output:
        probe=f"{RESULTS}/rate_probe/{{target}}.json",
    log:
        f"{LOGS}/rate_probe/{{target}}.log",
    benchmark:
        f"{RESULTS}/setup/rate_probe-{{target}}.tsv"


rule run_experiment:
    input:
        unpack(get_experiment_inputs),
    output:
        records=f"{RESULTS}/experiments/{{experiment}}/records.jsonl",
        samples=f"{RESULTS}/experiments/{{experiment}}/samples.jsonl",
        metadata=f"{RESULTS}/experiments/{{experiment}}/metadata.json",
        records_table=f"{RESULTS}/experiments/{{experiment}}/records.parquet",
        summary=f"{RESULTS}/experiments/{{experiment}}/summary.parquet",
        summary_json=f"{RESULTS}/experiments/{{experiment}}/summary.json",
    log:
        f"{LOGS}/experiments/{{experiment}}.log",
    priority: get_experiment_priority
    conda:
        "../../environment.yml"
    resources:
        llm_server=1,
    params:
        spec=get_experiment_spec,
        preflight=get_experiment_preflight_param(),
        failed_dir=f"{RESULTS}/failed",
        args=get_experiment_args,
    shell:
        "python -m perflab run-experiment --spec {params.spec:q} {params.args}"
        ' --out-dir "$(dirname {output.records:q})" --failed-dir {params.failed_dir}'
        " --preflight {params.preflight} 2> {log}"
        " || (cat {log} >&2; exit 1)"
