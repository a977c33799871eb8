"""Snakemake adaptor: summary and requests → charts (SVG, PNG, offline HTML)."""

import sys

from perflab.charts import render_charts

sys.stderr = open(snakemake.log[0], "w")

render_charts(
    summary_path=snakemake.input.summary,
    requests_path=snakemake.input.requests,
    samples_paths=snakemake.input.samples,
    out_dir=snakemake.output.charts,
)
