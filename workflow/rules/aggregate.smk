rule aggregate:
    input:
        records=get_experiment_files("records.jsonl"),
        metadata=get_experiment_files("metadata.json"),
    output:
        requests=f"{RESULTS}/requests.parquet",
        summary=f"{RESULTS}/summary.parquet",
        summary_csv=report(
            f"{RESULTS}/summary.csv",
            caption="../report/summary.rst",
            category="Results",
        ),
        summary_json=f"{RESULTS}/summary.json",
        experiment_json=get_experiment_files("summary.json"),
    log:
        f"{LOGS}/aggregate.log",
    script:
        "../scripts/aggregate.py"
