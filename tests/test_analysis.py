"""The computed answers on synthetic summaries."""

import polars as pl
import pytest

from perflab import analysis


def summary(rows: list[dict]) -> pl.DataFrame:
    defaults = {
        "experiment_id": "x",
        "prompt_name": "medium",
        "temperature": 0.7,
        "workers": 1,
        "suites": "basic",
        "n_ok": 10,
        "e2e_mean_s": 1.0,
        "e2e_ci95_s": 0.01,
        "ttft_mean_s": 0.2,
        "tps_mean": 20.0,
        "output_tokens_mean": 64.0,
        "prompt_tokens_mean": 20.0,
        "req_per_s": 1.0,
        "queue_mean_s": None,
        "load_mean_s": None,
        "prefill_mean_s": None,
        "decode_mean_s": None,
    }
    return pl.DataFrame([defaults | row for row in rows])


def test_linear_fit_recovers_a_line_exactly():
    fit = analysis.linear_fit([10, 20, 40, 80], [0.5 + 0.002 * x for x in (10, 20, 40, 80)])
    assert fit["slope"] == pytest.approx(0.002)
    assert fit["intercept"] == pytest.approx(0.5)
    assert fit["r2"] == pytest.approx(1.0)
    assert fit["n"] == 4


def test_prompt_length_scaling_gives_the_prefill_rate():
    rows = [
        {
            "suites": "prompt_length",
            "prompt_tokens_mean": t,
            "ttft_mean_s": 0.05 + t / 1000,
            "e2e_mean_s": 1 + t / 1000,
        }
        for t in (2, 10, 50, 200, 800)
    ]
    result = analysis.prompt_length_scaling(summary(rows))
    assert result["prefill_tps"] == pytest.approx(1000)
    assert result["ttft_fit"]["r2"] == pytest.approx(1.0)
    assert (
        "prefill ≈ 1,000 tokens/s" in result["sentence"]
        and "5 prompt lengths" in result["sentence"]
    )


def test_temperature_within_noise():
    rows = [
        {"suites": "temperature", "temperature": t, "e2e_mean_s": 1.0 + d, "e2e_ci95_s": 0.05}
        for t, d in ((0.0, 0), (0.7, 0.02), (1.5, -0.01))
    ]
    result = analysis.temperature_effect(summary(rows))
    assert result["overlapping"] and result["sentence"].startswith("No effect beyond noise")


def test_temperature_beyond_noise_names_the_slower_one():
    rows = [
        {"suites": "temperature", "temperature": t, "e2e_mean_s": e, "e2e_ci95_s": 0.01}
        for t, e in ((0.0, 1.0), (1.5, 1.5))
    ]
    result = analysis.temperature_effect(summary(rows))
    assert not result["overlapping"]
    assert "temperature 1.5 is 1.50× slower than 0" in result["sentence"]


def test_concurrency_flat_means_serialized():
    rows = [
        {"suites": "concurrency", "workers": w, "req_per_s": 2.0, "e2e_mean_s": 0.5 * w}
        for w in (1, 2, 4)
    ]
    result = analysis.concurrency_scaling(summary(rows))
    assert result["speedup"] == pytest.approx(1.0) and result["latency_growth"] == pytest.approx(
        4.0
    )
    assert result["sentence"].startswith("No: throughput stays flat")


def test_concurrency_scaling_means_parallel():
    rows = [
        {"suites": "concurrency", "workers": w, "req_per_s": 2.0 * w, "e2e_mean_s": 0.5}
        for w in (1, 2, 4)
    ]
    assert analysis.concurrency_scaling(summary(rows))["sentence"].startswith("Yes")


def test_expected_vs_actual_is_weighted_by_requests():
    rows = [{"tps_mean": 10.0, "n_ok": 30}, {"tps_mean": 30.0, "n_ok": 10}]
    result = analysis.expected_vs_actual_tps(summary(rows), (10, 20))
    assert result["actual_tps"] == pytest.approx(15.0)
    assert "within the expected 10–20 tok/s" in result["sentence"]


def test_breakdown_shares_add_to_100():
    rows = [
        {
            "e2e_mean_s": 2.0,
            "ttft_mean_s": 0.5,
            "queue_mean_s": 0.1,
            "load_mean_s": 0.0,
            "prefill_mean_s": 0.4,
            "decode_mean_s": 1.4,
        }
    ]
    result = analysis.latency_breakdown(summary(rows))
    assert result["ttft_percent"] == pytest.approx(25.0)
    assert result["decode_percent"] == pytest.approx(75.0)
    assert sum(result["shares"].values()) == pytest.approx(100.0)
    assert result["shares"]["decode"] == pytest.approx(70.0)
