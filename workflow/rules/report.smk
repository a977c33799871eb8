# Every judgement of the log, computed once: results/<run>/findings.json
# (docs/metrics.md). The charts and the log read it.
rule findings:
    input:
        unpack(get_setup_benchmarks),
        unpack(get_peer_files),
        unpack(get_threads_peer_files),
        unpack(get_roofline_files),
        preflight_info=get_preflight_files(),
        probes=get_rate_probe_files(),
        summary=rules.aggregate.output.summary,
        requests=rules.aggregate.output.requests,
        metadata=rules.aggregate.output.metadata,
    output:
        findings=f"{RESULTS}/findings.json",
    log:
        f"{LOGS}/findings.log",
    conda:
        "../../environment.yml"
    params:
        config=get_config_keys(
            "engine",
            "targets",
            "baseline",
            "suites",
            "expected_tps",
            "slo",
            "calibration",
        ),
    script:
        "../scripts/findings.py"


rule charts:
    input:
        findings=rules.findings.output.findings,
        requests=rules.aggregate.output.requests,
        samples=get_suite_files("resources", "samples.jsonl"),
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
        metadata=rules.aggregate.output.metadata,
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
        config=get_config_keys(
            "run",
            "engine",
            "targets",
            "baseline",
            "prompts",
            "tiny_model",
            "warmup_requests",
            "generation",
        ),
        configfiles=get_config_files,
        experiment_summaries=f"{RESULTS}/experiments/*/summary.json",
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
        config=get_config_keys("run"),
    script:
        "../scripts/comparison.py"
