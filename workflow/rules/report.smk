# Every judgement of the log, computed once: results/<run>/findings.json
# (docs/metrics.md). The charts and the log read it.
rule findings:
    input:
        preflight=get_preflight_files(),
        summary=rules.aggregate.output.summary,
        requests=rules.aggregate.output.requests,
        metadata=get_experiment_files("metadata.json"),
    output:
        findings=f"{RESULTS}/findings.json",
    log:
        f"{LOGS}/findings.log",
    conda:
        "../../environment.yml"
    params:
        config=config,
    script:
        "../scripts/findings.py"


rule charts:
    input:
        findings=rules.findings.output.findings,
        requests=rules.aggregate.output.requests,
        samples=get_experiment_files("samples.jsonl"),
    output:
        charts=report(
            directory(f"{REPORTS}/charts"),
            patterns=["{name}.svg"],
            caption="../report/charts.rst",
            category="Charts",
        ),
    log:
        f"{LOGS}/charts.log",
    conda:
        "../../environment.yml"
    script:
        "../scripts/charts.py"


rule report:
    input:
        findings=rules.findings.output.findings,
        summary_json=rules.aggregate.output.summary_json,
        experiment_json=rules.aggregate.output.experiment_json,
        metadata=get_experiment_files("metadata.json"),
        charts=rules.charts.output.charts,
    output:
        log_md=report(
            f"{REPORTS}/day1-log.md",
            caption="../report/day1_log.rst",
            category="Day-1 log",
        ),
        log_html=report(
            f"{REPORTS}/day1-log.html",
            caption="../report/day1_log.rst",
            category="Day-1 log",
        ),
    log:
        f"{LOGS}/report.log",
    conda:
        "../../environment.yml"
    params:
        config=config,
        configfiles=get_config_files,
    script:
        "../scripts/report.py"


# With two or more targets: the targets side by side, per metric and per point.
rule comparison:
    input:
        findings=rules.findings.output.findings,
        charts=rules.charts.output.charts,
    output:
        comparison=report(
            f"{REPORTS}/comparison.md",
            caption="../report/comparison.rst",
            category="Comparison",
        ),
    log:
        f"{LOGS}/comparison.log",
    conda:
        "../../environment.yml"
    params:
        config=config,
    script:
        "../scripts/comparison.py"
