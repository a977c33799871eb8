"""The tables' files: each experiment's records and summary as Parquet and JSON (with
units) beside its JSON lines, and the run's gathered requests, summaries and metadata
index. The statistics themselves are ``perflab.analyse.tables``."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from perflab.analyse.metrics import summary_units
from perflab.analyse.tables import (
    EXPERIMENT_COLUMNS,
    RECORD_SCHEMA,
    scan_experiment,
    summarize,
    trials_of_condition,
)
from perflab.measure.metadata import ExperimentMetadata


def summary_records(summary: pl.DataFrame) -> dict[str, dict]:
    """Per-experiment summaries as plain dicts, keyed by experiment id."""
    return {row["experiment_id"]: row for row in summary.to_dicts()}


SUMMARY_UNITS = summary_units()

# Per-token columns stay in each experiment's records.parquet: every statistic over
# them is computed there, and they are most of the bytes (one float per token).
PER_TOKEN_COLUMNS = ("itl_s",)


def request_schema() -> dict:
    """Columns of the run's requests.parquet: every record column but the per-token ones."""
    columns = {
        name: dtype for name, dtype in RECORD_SCHEMA.items() if name not in PER_TOKEN_COLUMNS
    }
    return columns | EXPERIMENT_COLUMNS


def summary_schema() -> dict:
    """Columns and types that ``summarize`` produces (its one definition, evaluated on no rows)."""
    empty = pl.LazyFrame(schema=RECORD_SCHEMA | EXPERIMENT_COLUMNS)
    return dict(summarize(empty).collect_schema())


@dataclass(frozen=True)
class ExperimentTables:
    """What an experiment job writes beside its JSON lines: typed, columnar, summarized."""

    records: Path  # records.parquet: every record with its experiment's columns
    summary: Path  # summary.parquet: the experiment's one summary row
    summary_json: Path  # the same row as JSON, with units

    @classmethod
    def in_dir(cls, directory: Path) -> ExperimentTables:
        directory = Path(directory)
        return cls(
            directory / "records.parquet",
            directory / "summary.parquet",
            directory / "summary.json",
        )


def write_parquet_atomic(frame: pl.DataFrame, path: Path) -> None:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    frame.write_parquet(tmp)
    os.replace(tmp, path)


def write_experiment_tables(
    records_path: Path, metadata_path: Path, tables: ExperimentTables
) -> dict:
    """One experiment's raw records and metadata → its Parquet records and summary.

    Reads only the crash-safe files, so it can be run again on an experiment measured
    earlier (``perflab summarize``) without measuring anything again.
    """
    from perflab.core.records import write_json_atomic

    records = scan_experiment(records_path, metadata_path).collect()
    write_parquet_atomic(records, tables.records)
    summary = summarize(records.lazy()).collect()
    write_parquet_atomic(summary, tables.summary)
    if summary.height == 0:  # a sweep point not measured: its metadata says why
        skipped = json.loads(Path(metadata_path).read_text()).get("skipped", "no records")
        payload = {"units": SUMMARY_UNITS, "summary": None, "skipped": skipped}
        write_json_atomic(tables.summary_json, payload)
        return {}
    row = summary.row(0, named=True)
    write_json_atomic(tables.summary_json, {"units": SUMMARY_UNITS, "summary": row})
    return row


def tabulate_experiment(records_path: Path, metadata_path: Path) -> dict:
    """An experiment's Parquet records and summary, beside its JSON lines and metadata."""
    tables = ExperimentTables.in_dir(Path(records_path).parent)
    return write_experiment_tables(records_path, metadata_path, tables)


def scan_tables(paths: list[Path], schema: dict) -> pl.LazyFrame:
    """Parquet files in today's schema: a column an older file lacks reads as null."""
    return pl.scan_parquet(
        [str(path) for path in paths],
        schema=schema,
        missing_columns="insert",
        extra_columns="ignore",
    )


def write_aggregates(
    records_paths: list[Path],
    summary_paths: list[Path],
    requests_path: Path,
    summary_path: Path,
    csv_path: Path,
    json_path: Path,
) -> pl.DataFrame:
    """Every experiment's tables → the run's requests.parquet and summaries.

    Nothing is recomputed: each experiment job summarized its own records.
    """
    from perflab.core.records import write_json_atomic

    # one query plan for both: the small summary read runs while the requests stream
    requests = scan_tables(records_paths, request_schema()).sink_parquet(requests_path, lazy=True)
    _, summary = pl.collect_all([requests, scan_tables(summary_paths, summary_schema())])
    summary = summary.with_columns(trials_of_condition()).sort("experiment_id")
    summary.write_parquet(summary_path)
    summary.write_csv(csv_path)
    payload = {"units": SUMMARY_UNITS, "experiments": summary_records(summary)}
    write_json_atomic(json_path, payload)
    return summary


def write_metadata_index(metadata_paths: list[Path], out_path: Path) -> None:
    """Every experiment's metadata.json in one file, keyed by experiment id."""
    from perflab.core.records import write_json_atomic

    index = {}
    for path in metadata_paths:
        metadata = json.loads(Path(path).read_text())
        index[metadata["experiment"]["id"]] = metadata
    write_json_atomic(out_path, index)


def read_metadata_index(path: Path) -> list[ExperimentMetadata]:
    """Every experiment's metadata, from the run's index (``write_metadata_index``)."""
    index = json.loads(Path(path).read_text())
    return [ExperimentMetadata.from_json(m) for m in index.values()]
