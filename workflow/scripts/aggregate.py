"""Snakemake adaptor: raw records → requests.parquet and the summaries."""

import sys

from perflab.metrics import write_aggregates

sys.stderr = open(snakemake.log[0], "w")

write_aggregates(
    pairs=list(zip(snakemake.input.records, snakemake.input.metadata)),
    requests_path=snakemake.output.requests,
    summary_path=snakemake.output.summary,
    csv_path=snakemake.output.summary_csv,
    json_path=snakemake.output.summary_json,
    experiment_json_paths=snakemake.output.experiment_json,
)
