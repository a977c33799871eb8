"""Summary statistics on hand-computed data."""

import json
import math

import polars as pl
import pytest

from perflab.metrics import Z_95, scan_requests, summarize, write_aggregates
from perflab.records import RequestRecord, write_json_atomic, write_jsonl_atomic


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
    pairs = [(experiment / "records.jsonl", experiment / "metadata.json")]
    row = summarize(scan_requests(pairs)).collect().row(0, named=True)
    assert (row["n_requests"], row["n_ok"], row["n_errors"], row["n_warmup"]) == (4, 3, 1, 1)
    assert row["error_rate"] == pytest.approx(0.25)
    assert row["e2e_mean_s"] == pytest.approx(2.0)
    assert row["e2e_ci95_s"] == pytest.approx(Z_95 * 1.0 / math.sqrt(3))  # sd of 1, 2, 3 is 1
    assert row["e2e_p50_s"] == pytest.approx(2.0)
    assert row["e2e_p95_s"] == pytest.approx(2.9)  # linear: 2 + 0.95 * 2 * (3 - 2)... = 2.9
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
    summary = summarize(scan_requests(pairs)).collect().sort("trial")
    assert summary["trial"].to_list() == [1, 2, 3]
    assert summary["repeats"].to_list() == [3, 3, 3]
    assert summary["condition_id"].unique().to_list() == ["short-t0.7-w1-n4"]
    assert summary["interference_cpu_pct_mean"].to_list() == [12.5, None, None]


def test_write_aggregates_writes_every_format(experiment, tmp_path):
    pairs = [(experiment / "records.jsonl", experiment / "metadata.json")]
    out = tmp_path / "out"
    out.mkdir()
    per_experiment = out / "exp" / "summary.json"
    per_experiment.parent.mkdir()
    summary = write_aggregates(
        pairs,
        out / "requests.parquet",
        out / "summary.parquet",
        out / "summary.csv",
        out / "summary.json",
        [per_experiment],
    )
    assert pl.read_parquet(out / "requests.parquet").height == 5
    assert pl.read_csv(out / "summary.csv")["e2e_mean_s"][0] == pytest.approx(2.0)
    assert summary.height == 1
    payload = json.loads((out / "summary.json").read_text())
    assert payload["units"]["times"] == "seconds"
    assert payload["experiments"]["exp"]["n_ok"] == 3
    assert json.loads(per_experiment.read_text())["summary"]["e2e_mean_s"] == pytest.approx(2.0)


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
    pairs = [(tmp_path / "records.jsonl", tmp_path / "metadata.json")]
    row = summarize(scan_requests(pairs)).collect().row(0, named=True)
    assert row["n_truncated"] == 2
    assert row["prep_mean_s"] == pytest.approx(0.002)
