"""Snakemake adaptor: findings, metadata and charts → the Day-1 log (Markdown + HTML)."""

import sys

from perflab.present.report import write_log

sys.stderr = open(snakemake.log[0], "w")

write_log(
    findings_path=snakemake.input.findings,
    metadata_path=snakemake.input.metadata,
    charts_dir=snakemake.input.charts,
    result_files=[snakemake.input.summary_json, snakemake.params.experiment_summaries],
    config=snakemake.params.config,
    markdown_path=snakemake.output.log_md,
    html_path=snakemake.output.log_html,
    configfiles=snakemake.params.configfiles,
)
