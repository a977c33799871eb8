"""One experiment's files as a lazy frame of request rows: the records' schema, and the
per-experiment values (``metadata.json``) every row carries."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from perflab.measure.metadata import ExperimentMetadata

RECORD_SCHEMA = {
    "experiment_id": pl.String,
    "request_index": pl.Int64,
    "worker": pl.Int64,
    "is_warmup": pl.Boolean,
    "status": pl.String,
    "error_class": pl.String,
    "error": pl.String,
    "t_submit": pl.Float64,
    "t_first_token": pl.Float64,
    "t_end": pl.Float64,
    "ttft_s": pl.Float64,
    "e2e_s": pl.Float64,
    "itl_s": pl.List(pl.Float64),
    "prompt_tokens": pl.Int64,
    "output_tokens": pl.Int64,
    "tps": pl.Float64,
    "queue_s": pl.Float64,
    "load_s": pl.Float64,
    "prefill_s": pl.Float64,
    "decode_s": pl.Float64,
    "server_total_s": pl.Float64,
    "unaccounted_s": pl.Float64,
    "server_prompt_tokens": pl.Int64,
    "server_output_tokens": pl.Int64,
    "finish_reason": pl.String,
    "prep_s": pl.Float64,
    "t_scheduled": pl.Float64,
    "send_lag_s": pl.Float64,
    "held_s": pl.Float64,
    "ttft_sched_s": pl.Float64,
    "e2e_sched_s": pl.Float64,
    "turn": pl.Int64,
    "answer_ttft_s": pl.Float64,
    "reasoning_tokens": pl.Int64,
    "server_prefill_tokens": pl.Int64,
    "server_cached_tokens": pl.Int64,
}

EXPERIMENT_COLUMNS = {
    "target": pl.String,
    "condition_id": pl.String,
    "trial": pl.Int64,
    "prompt_cache": pl.String,
    "prompt_name": pl.String,
    "temperature": pl.Float64,
    "workers": pl.Int64,
    "threads": pl.Int64,  # the threads suite's compute threads (None: the engine's own)
    "requests": pl.Int64,
    "duration_s": pl.Float64,
    "suites": pl.String,
    "engine": pl.String,
    "model": pl.String,
    "measured_wall_s": pl.Float64,
    "partial": pl.Boolean,
    "interference_cpu_pct_mean": pl.Float64,
    "interference_cpu_pct_max": pl.Float64,
    "offered_rate": pl.Float64,
    "arrival": pl.String,
    "burstiness": pl.Float64,
    "schedule_rate": pl.Float64,
    "achieved_rate": pl.Float64,
    "schedule_valid": pl.Boolean,
    "interference_threshold_pct": pl.Float64,
    "interference_above_share": pl.Float64,
    # what a launched llama-server said of itself (perflab.measure.server_metrics)
    "server_requests_processing_max": pl.Float64,
    "server_requests_deferred_max": pl.Float64,
    "server_kv_used_max": pl.Float64,
}


SERVER_METRIC_COLUMNS = (
    "server_requests_processing_max",
    "server_requests_deferred_max",
    "server_kv_used_max",
)


def experiment_columns(metadata: ExperimentMetadata) -> dict:
    """The per-experiment values that every request row carries."""
    experiment, resources = metadata.experiment, metadata.used
    schedule = metadata.schedule or {}  # open loop only
    server = metadata.server_metrics or {}
    return {
        "target": experiment.get("target"),
        "condition_id": experiment["condition_id"],
        "trial": experiment["trial"],
        "prompt_cache": experiment["prompt_cache"],
        "prompt_name": experiment["prompt_name"],
        "temperature": experiment["temperature"],
        "workers": experiment["workers"],
        "threads": experiment.get("threads"),
        "requests": experiment["requests"],
        "duration_s": experiment["duration_s"],
        "suites": ",".join(experiment["suites"]),
        "engine": metadata.engine.engine,
        "model": metadata.engine.model,
        "measured_wall_s": metadata.run.measured_wall_s,
        "partial": metadata.run.partial,
        "interference_cpu_pct_mean": resources.interference_cpu_pct_mean,
        "interference_cpu_pct_max": resources.interference_cpu_pct_max,
        "offered_rate": experiment.get("rate"),
        "arrival": experiment.get("arrival"),
        "burstiness": experiment.get("burstiness"),
        "schedule_rate": schedule.get("schedule_rate"),
        "achieved_rate": schedule.get("achieved_rate"),
        "schedule_valid": schedule.get("valid"),
        "interference_threshold_pct": resources.interference_threshold_pct,
        "interference_above_share": resources.interference_above_share,
    } | {name: server.get(name) for name in SERVER_METRIC_COLUMNS}


def scan_experiment(records_path: Path, metadata_path: Path) -> pl.LazyFrame:
    metadata = ExperimentMetadata.from_json(json.loads(Path(metadata_path).read_text()))
    columns = experiment_columns(metadata)
    return pl.scan_ndjson(records_path, schema=RECORD_SCHEMA).with_columns(
        pl.lit(value, dtype=EXPERIMENT_COLUMNS[name]).alias(name) for name, value in columns.items()
    )
