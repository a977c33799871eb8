"""Snakemake adaptor: every experiment's tables → the run's requests, summaries and metadata."""

import sys

from perflab.analyse.table_files import write_aggregates, write_metadata_index

sys.stderr = open(snakemake.log[0], "w")

write_aggregates(
    records_paths=snakemake.input.records,
    summary_paths=snakemake.input.summaries,
    requests_path=snakemake.output.requests,
    summary_path=snakemake.output.summary,
    csv_path=snakemake.output.summary_csv,
    json_path=snakemake.output.summary_json,
)
write_metadata_index(snakemake.input.metadata, snakemake.output.metadata)
