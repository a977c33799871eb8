# Run against run, as a target: snakemake reports/compare/RUN_A--vs--RUN_B/compare.md
# compares two finished runs (docs/comparing.md). It refuses runs whose prompts or
# generation settings differ; `perflab compare RUN_A RUN_B --force` compares them anyway.
rule compare_runs:
    input:
        summary_a="results/{run_a}/summary.parquet",
        summary_b="results/{run_b}/summary.parquet",
    output:
        markdown="reports/compare/{run_a}--vs--{run_b}/compare.md",
        json="reports/compare/{run_a}--vs--{run_b}/compare.json",
        chart="reports/compare/{run_a}--vs--{run_b}/compare.svg",
        chart_png="reports/compare/{run_a}--vs--{run_b}/compare.png",
        chart_html="reports/compare/{run_a}--vs--{run_b}/compare.html",
    log:
        "logs/compare/{run_a}--vs--{run_b}.log",
    conda:
        "../../environment.yml"
    params:
        out=subpath(output.markdown, parent=True),
    shell:
        "python -m perflab compare {wildcards.run_a} {wildcards.run_b} --out {params.out}"
        " > {log} 2>&1 || (cat {log} >&2; exit 1)"
