"""Summary statistics on hand-computed data."""

import json
import math
from dataclasses import replace

import polars as pl
import pytest

from perflab.analyse.table_files import (
    ExperimentTables,
    summary_schema,
    write_aggregates,
    write_experiment_tables,
    write_metadata_index,
)
from perflab.analyse.tables import scan_experiment, summarize
from perflab.core.records import RequestRecord, write_json_atomic, write_jsonl_atomic


def record(index, e2e, ttft, tokens=5, status="ok", warmup=False, itl=None, **extra):
    return RequestRecord(
        experiment_id="exp",
        request_index=index,
        worker=0,
        is_warmup=warmup,
        status=status,
        error_class=None if status == "ok" else "http_status",
        error=None,
        t_submit=100.0 + index,
        t_first_token=100.0 + index + ttft,
        t_end=100.0 + index + e2e,
        ttft_s=ttft,
        e2e_s=e2e,
        itl_s=itl or [0.1] * (tokens - 1),
        prompt_tokens=10,
        output_tokens=tokens,
        tps=(tokens - 1) / (e2e - ttft) if status == "ok" else None,
        **extra,
    )


@pytest.fixture
def experiment(tmp_path):
    records = [
        record(0, 9.0, 5.0, warmup=True),  # warm-up: must not count
        record(1, 1.0, 0.2, itl=[0.1, 0.2, 0.2, 0.3], prefill_s=0.15, decode_s=0.7),
        record(2, 2.0, 0.4, itl=[0.3, 0.4, 0.4, 0.5], prefill_s=0.35, decode_s=1.5),
        record(3, 3.0, 0.6, itl=[0.5, 0.6, 0.6, 0.7], prefill_s=0.55, decode_s=2.3),
        record(4, 7.0, 0.0, status="error", tokens=0),
    ]
    write_jsonl_atomic(tmp_path / "records.jsonl", records)
    metadata = {
        "experiment": {
            "condition_id": "short-t0.7-w1-n4",
            "trial": 1,
            "prompt_cache": "bust",
            "prompt_name": "short",
            "temperature": 0.7,
            "workers": 1,
            "requests": 4,
            "duration_s": None,
            "suites": ["basic", "prompt_length"],
        },
        "engine": {"engine": "llamacpp", "model": "tiny"},
        "run": {"measured_wall_s": 6.0, "partial": True},
        "resources": {"interference_cpu_pct_mean": 12.5, "interference_cpu_pct_max": 40.0},
    }
    write_json_atomic(tmp_path / "metadata.json", metadata)
    return tmp_path


def test_summary_matches_hand_computation(experiment):
    scanned = scan_experiment(experiment / "records.jsonl", experiment / "metadata.json")
    row = summarize(scanned).collect().row(0, named=True)
    assert (row["n_requests"], row["n_ok"], row["n_errors"], row["n_warmup"]) == (4, 3, 1, 1)
    assert row["error_rate"] == pytest.approx(0.25)
    assert row["e2e_mean_s"] == pytest.approx(2.0)
    # 3 requests: 3 batches of one, Student t at 2 degrees of freedom (sd of 1, 2, 3 is 1)
    assert row["e2e_ci95_s"] == pytest.approx(4.302653 * 1.0 / math.sqrt(3))
    assert row["e2e_p50_s"] == pytest.approx(2.0)
    assert row["e2e_p95_s"] is None and row["e2e_p99_s"] is None  # n · 5 % < 1 request
    assert row["ttft_mean_s"] == pytest.approx(0.4)
    assert row["itl_mean_s"] == pytest.approx(
        sum([0.1, 0.2, 0.2, 0.3, 0.3, 0.4, 0.4, 0.5, 0.5, 0.6, 0.6, 0.7]) / 12
    )
    tpots = [(1.0 - 0.2) / 4, (2.0 - 0.4) / 4, (3.0 - 0.6) / 4]
    assert row["tpot_mean_s"] == pytest.approx(sum(tpots) / 3)
    assert row["tps_mean"] == pytest.approx(sum(1 / t for t in tpots) / 3)
    assert row["output_tokens_mean"] == 5 and row["output_tokens_total"] == 15
    assert row["req_per_s"] == pytest.approx(3 / 6.0)
    assert row["output_tps"] == pytest.approx(15 / 6.0)
    assert row["prefill_mean_s"] == pytest.approx(0.35)
    assert row["ttft_share"] == pytest.approx(0.2)
    assert row["error_classes"] == "http_status"
    assert row["suites"] == "basic,prompt_length" and row["partial"] is True
    assert (row["condition_id"], row["trial"], row["repeats"]) == ("short-t0.7-w1-n4", 1, 1)
    assert row["prompt_cache"] == "bust"
    assert (row["interference_cpu_pct_mean"], row["interference_cpu_pct_max"]) == (12.5, 40.0)


def test_trials_of_one_condition_are_rows_of_their_own(experiment, tmp_path):
    """Each trial is its own row; ``repeats`` counts the condition's trials in the run."""
    pairs = [(experiment / "records.jsonl", experiment / "metadata.json")]
    metadata = json.loads((experiment / "metadata.json").read_text())
    for trial in (2, 3):
        trial_dir = tmp_path / f"r{trial}"
        trial_dir.mkdir()
        records = (experiment / "records.jsonl").read_text().replace('"exp"', f'"exp-r{trial}"')
        (trial_dir / "records.jsonl").write_text(records)
        metadata["experiment"]["trial"] = trial
        metadata["resources"] = {}  # not sampled: null, not zero
        write_json_atomic(trial_dir / "metadata.json", metadata)
        pairs.append((trial_dir / "records.jsonl", trial_dir / "metadata.json"))
    scanned = pl.concat([scan_experiment(*pair) for pair in pairs])
    summary = summarize(scanned).collect().sort("trial")
    assert summary["trial"].to_list() == [1, 2, 3]
    assert summary["repeats"].to_list() == [3, 3, 3]
    assert summary.schema["repeats"] == summary.schema["trial"] == pl.Int64
    assert summary["condition_id"].unique().to_list() == ["short-t0.7-w1-n4"]
    assert summary["interference_cpu_pct_mean"].to_list() == [12.5, None, None]


def test_experiment_tables_hold_its_records_and_summary(experiment):
    tables = ExperimentTables.in_dir(experiment)
    row = write_experiment_tables(
        experiment / "records.jsonl", experiment / "metadata.json", tables
    )
    records = pl.read_parquet(tables.records)
    assert records.height == 5 and records["itl_s"][1].to_list() == [0.1, 0.2, 0.2, 0.3]
    assert (records["prompt_name"] == "short").all() and (records["workers"] == 1).all()
    assert row["e2e_mean_s"] == pytest.approx(2.0)
    assert pl.read_parquet(tables.summary).row(0, named=True) == row
    payload = json.loads(tables.summary_json.read_text())
    assert payload["units"]["times"] == "seconds"
    assert payload["summary"]["n_ok"] == 3 and payload["summary"]["experiment_id"] == "exp"


def write_run(tmp_path, experiments: dict[str, list]) -> list[ExperimentTables]:
    """Experiments as an experiment job leaves them: JSON lines, metadata, tables."""
    tables = []
    for name, records in experiments.items():
        directory = tmp_path / name
        directory.mkdir()
        write_jsonl_atomic(directory / "records.jsonl", records)
        metadata = {
            "experiment": {
                "id": name,
                "condition_id": name,
                "trial": 1,
                "prompt_cache": "bust",
                "prompt_name": name,
                "temperature": 0.7,
                "workers": 1,
                "requests": len(records),
                "duration_s": None,
                "suites": ["basic"],
            },
            "engine": {"engine": "llamacpp", "model": "tiny"},
            "run": {"measured_wall_s": 2.0, "partial": False},
        }
        write_json_atomic(directory / "metadata.json", metadata)
        tables.append(ExperimentTables.in_dir(directory))
        write_experiment_tables(
            directory / "records.jsonl", directory / "metadata.json", tables[-1]
        )
    return tables


def aggregate(tables: list[ExperimentTables], out) -> pl.DataFrame:
    out.mkdir()
    return write_aggregates(
        [t.records for t in tables],
        [t.summary for t in tables],
        out / "requests.parquet",
        out / "summary.parquet",
        out / "summary.csv",
        out / "summary.json",
    )


def test_aggregates_gather_each_experiments_tables_without_per_token_columns(tmp_path):
    b = [replace(record(i, 2.0, 0.5), experiment_id="b") for i in range(3)]
    a = [replace(record(i, 1.0, 0.2), experiment_id="a") for i in range(2)]
    tables = write_run(tmp_path, {"b": b, "a": a})
    out = tmp_path / "out"
    summary = aggregate(tables, out)
    assert summary["experiment_id"].to_list() == ["a", "b"]  # sorted, one row each
    assert summary["e2e_mean_s"].to_list() == pytest.approx([1.0, 2.0])
    assert list(summary.columns) == list(summary_schema())
    requests = pl.read_parquet(out / "requests.parquet")
    assert requests.height == 5 and "itl_s" not in requests.columns
    assert set(requests["prompt_name"]) == {"a", "b"}
    assert pl.read_csv(out / "summary.csv")["n_ok"].to_list() == [2, 3]
    payload = json.loads((out / "summary.json").read_text())
    assert payload["units"]["times"] == "seconds" and payload["experiments"]["b"]["n_ok"] == 3


def test_an_experiment_tabulated_by_older_code_reads_with_nulls(tmp_path):
    old = [replace(record(0, 1.0, 0.2), experiment_id="old")]
    tables = write_run(
        tmp_path, {"old": old, "new": [replace(record(0, 2.0, 0.4), experiment_id="new")]}
    )
    old = tables[0]
    dropped = pl.read_parquet(old.summary).drop("ttft_share").with_columns(gone=pl.lit(1))
    dropped.write_parquet(old.summary)
    pl.read_parquet(old.records).drop("unaccounted_s").write_parquet(old.records)
    summary = aggregate(tables, tmp_path / "out")
    assert summary.filter(pl.col("experiment_id") == "old")["ttft_share"][0] is None
    assert summary.filter(pl.col("experiment_id") == "new")["ttft_share"][0] == pytest.approx(0.2)
    assert "gone" not in summary.columns
    requests = pl.read_parquet(tmp_path / "out" / "requests.parquet")
    assert requests["unaccounted_s"].null_count() == 2


def test_metadata_index_keys_every_experiment_by_id(tmp_path):
    write_run(tmp_path, {"a": [record(0, 1.0, 0.2)], "b": [record(0, 1.0, 0.2)]})
    out = tmp_path / "metadata.json"
    write_metadata_index([tmp_path / "a" / "metadata.json", tmp_path / "b" / "metadata.json"], out)
    index = json.loads(out.read_text())
    assert sorted(index) == ["a", "b"] and index["b"]["experiment"]["prompt_name"] == "b"


def test_summary_counts_truncation_and_means_preparation(tmp_path):
    def cut(index, finish_reason, prep_s, **extra):
        return record(index, 1.0, 0.1, 4, finish_reason=finish_reason, prep_s=prep_s, **extra)

    records = [
        cut(0, "length", 0.009, warmup=True),  # warm-up: neither counted nor averaged
        cut(1, "length", 0.001),
        cut(2, "stop", 0.002),
        cut(3, "length", 0.003),
        cut(4, None, 0.004, status="error"),  # failed: not truncated, not averaged
    ]
    write_jsonl_atomic(tmp_path / "records.jsonl", records)
    write_json_atomic(
        tmp_path / "metadata.json",
        {
            "experiment": {
                "condition_id": "exp",
                "trial": 1,
                "prompt_cache": "bust",
                "prompt_name": "short",
                "temperature": 0.7,
                "workers": 1,
                "requests": 4,
                "duration_s": None,
                "suites": ["basic"],
            },
            "engine": {"engine": "ollama", "model": "llama3.1:8b"},
            "run": {"measured_wall_s": 4.0, "partial": True},
        },
    )
    scanned = scan_experiment(tmp_path / "records.jsonl", tmp_path / "metadata.json")
    row = summarize(scanned).collect().row(0, named=True)
    assert row["n_truncated"] == 2
    assert row["prep_mean_s"] == pytest.approx(0.002)


def test_batch_means_and_percentiles_follow_the_request_count():
    from perflab.analyse.tables import batches

    assert [batches(n) for n in (1, 3, 5, 6, 8, 34, 100)] == [1, 3, 5, 2, 2, 10, 10]
    ok = [
        {"experiment_id": "e", "request_index": i, "is_warmup": False, "status": "ok",
         "output_tokens": 10, "finish_reason": "stop",
         "e2e_s": 1.0 + 0.01 * i + (0.5 if i >= 50 else 0.0)}
        for i in range(100)
    ]  # fmt: skip
    requests = pl.DataFrame(ok).lazy()
    from perflab.analyse.tables import batch_means_ci, percentile_ci

    half = batch_means_ci(requests, "e2e_s", "ci").collect()["ci"][0]
    # 10 batches of 10: their means are 1.045 + 0.1 k (+ 0.5 from the 6th on)
    means = [1.045 + 0.1 * k + (0.5 if k >= 5 else 0.0) for k in range(10)]
    sd = float(pl.Series(means).std())
    assert half == pytest.approx(2.262157 * sd / math.sqrt(10))
    bounds = percentile_ci(requests, "e2e_s", 50).collect().row(0, named=True)
    # binomial ranks 40 and 61 of 100: the 40th and 61st smallest values
    assert bounds["e2e_p50_low_s"] == pytest.approx(1.39)
    assert bounds["e2e_p50_high_s"] == pytest.approx(1.0 + 0.60 + 0.5)


def test_gap_tps_is_one_over_the_mean_gap_between_tokens():
    from perflab.analyse.tables import token_stats

    requests = pl.DataFrame(
        {
            "status": ["ok", "ok", "error"],
            "is_warmup": [False, False, False],
            "itl_s": [[0.02, 0.02], [0.02, 0.02, 0.03, 0.01], [0.5]],
            "output_tokens": [3, 5, 1],
        }
    )
    (gap,) = [e for e in token_stats() if e.meta.output_name() == "gap_tps"]
    assert requests.select(gap).item() == pytest.approx(50.0)  # the failed request left out
    silent = requests.with_columns(pl.lit([], dtype=pl.List(pl.Float64)).alias("itl_s"))
    assert silent.select(gap).item() is None  # no gaps: no speed, not an infinite one
