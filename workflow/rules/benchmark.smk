# Checks the engine and the model once, before the first experiment, and fails
# fast with the fix. Experiments take it as ancient() so a later re-check never
# reruns measured experiments; each experiment job checks the engine again.
rule preflight:
    input:
        **get_model_inputs(),
    output:
        info=f"{RESULTS}/preflight.json",
    log:
        f"{LOGS}/preflight.log",
    conda:
        "../../environment.yml"
    params:
        settings=get_settings_json,
    shell:
        "python -m perflab preflight --spec {params.settings:q} "
        + get_model_arg()
        + " --out {output.info} > {log} 2>&1 || (cat {log} >&2; exit 1)"


rule run_experiment:
    input:
        **get_model_inputs(),
        preflight=ancient(rules.preflight.output.info),
    output:
        records=f"{RESULTS}/experiments/{{experiment}}/records.jsonl",
        samples=f"{RESULTS}/experiments/{{experiment}}/samples.jsonl",
        metadata=f"{RESULTS}/experiments/{{experiment}}/metadata.json",
        records_table=f"{RESULTS}/experiments/{{experiment}}/records.parquet",
        summary=f"{RESULTS}/experiments/{{experiment}}/summary.parquet",
        summary_json=f"{RESULTS}/experiments/{{experiment}}/summary.json",
    log:
        f"{LOGS}/experiments/{{experiment}}.log",
    conda:
        "../../environment.yml"
    resources:
        llm_server=1,
    # spec and failed_dir are the parameters Snakemake records (a changed spec reruns
    # the experiment); the rest of the command is the same for every job.
    params:
        spec=get_experiment_spec,
        failed_dir=f"{RESULTS}/failed",
    shell:
        "python -m perflab run-experiment --spec {params.spec:q} "
        + get_model_arg()
        + ' --out-dir "$(dirname {output.records:q})" --failed-dir {params.failed_dir}'
        " --preflight {input.preflight} > {log} 2>&1"
        " || (cat {log} >&2; exit 1)"
