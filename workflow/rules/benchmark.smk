# Checks the engine and the model once, before the first experiment, and fails
# fast with the fix. Experiments take it as ancient() so a later re-check never
# reruns measured experiments; each experiment job checks the engine again.
rule preflight:
    input:
        unpack(get_model_inputs),
    output:
        info=f"{RESULTS}/preflight.json",
    log:
        f"{LOGS}/preflight.log",
    conda:
        "../../environment.yml"
    params:
        settings=get_settings_json,
        model=get_model_arg,
    shell:
        "python -m perflab preflight --spec {params.settings:q} {params.model}"
        " --out {output.info} > {log} 2>&1 || (cat {log} >&2; exit 1)"


rule run_experiment:
    input:
        unpack(get_model_inputs),
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
    params:
        spec=get_experiment_spec,
        model=get_model_arg,
        out_dir=subpath(output.records, parent=True),
        failed_dir=f"{RESULTS}/failed",
    shell:
        "python -m perflab run-experiment --spec {params.spec:q} {params.model}"
        " --out-dir {params.out_dir} --failed-dir {params.failed_dir} > {log} 2>&1"
        " || (cat {log} >&2; exit 1)"
