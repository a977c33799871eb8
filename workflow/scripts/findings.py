"""Snakemake adaptor: summary, requests and metadata → findings.json."""

import sys

from perflab.analyse.findings import write_findings

sys.stderr = open(snakemake.log[0], "w")

write_findings(
    summary_path=snakemake.input.summary,
    requests_path=snakemake.input.requests,
    metadata_path=snakemake.input.metadata,
    config=snakemake.params.config,
    findings_path=snakemake.output.findings,
    setup_benchmarks={
        step: snakemake.input.get(step) for step in ("model_fetch", "model_build", "preflight")
    },
    peer_path=snakemake.input.get("peer"),
    threads_peer_path=snakemake.input.get("threads_peer"),
    machine_path=snakemake.input.get("machine"),
    model_path=snakemake.input.get("roofline_model"),
    preflight_paths=list(snakemake.input.preflight_info),
    probe_paths=list(snakemake.input.probes),
)
