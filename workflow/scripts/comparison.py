"""Snakemake adaptor: findings and charts → reports/<run>/comparison.md."""

import sys

from perflab.present.report import write_comparison

sys.stderr = open(snakemake.log[0], "w")

write_comparison(
    findings_path=snakemake.input.findings,
    charts_dir=snakemake.input.charts,
    config=snakemake.params.config,
    markdown_path=snakemake.output.comparison,
)
