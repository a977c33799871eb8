# Gathers what every experiment job already tabulated (its records.parquet and
# one-row summary.parquet) into the run's tables. It declares no per-experiment
# outputs: a rule that gathers N files and also writes N makes Snakemake's
# rerun check quadratic in the number of experiments.
rule aggregate:
    input:
        records=get_experiment_files("records.parquet"),
        summaries=get_experiment_files("summary.parquet"),
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
        metadata=f"{RESULTS}/metadata.json",
    log:
        f"{LOGS}/aggregate.log",
    conda:
        "../../environment.yml"
    script:
        "../scripts/aggregate.py"
