"""Snakemake adaptor: findings, requests and samples → charts (SVG, PNG, offline HTML)."""

import sys

from perflab.present.charts import render_charts

sys.stderr = open(snakemake.log[0], "w")

render_charts(
    findings_path=snakemake.input.findings,
    requests_path=snakemake.input.requests,
    samples_paths=snakemake.input.samples,
    out_dir=snakemake.output.charts,
)
