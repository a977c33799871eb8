"""The computed answers on synthetic summaries with hand-computed results."""

import polars as pl
import pytest

from perflab import analysis

DEFAULTS = {
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
ANSWERS = (
    analysis.prompt_length_scaling,
    analysis.temperature_effect,
    analysis.concurrency_scaling,
    analysis.expected_vs_actual_tps,
    analysis.latency_breakdown,
)


def summary(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame([DEFAULTS | row for row in rows], schema_overrides={"workers": pl.Int64})


def lengths(tokens=(2, 10, 50, 200, 800), ttft=lambda t: 0.05 + t / 1000, **extra) -> list[dict]:
    return [
        {
            "suites": "prompt_length",
            "prompt_name": f"p{t}",
            "prompt_tokens_mean": float(t),
            "ttft_mean_s": ttft(t),
            "e2e_mean_s": 1 + ttft(t),
        }
        | extra
        for t in tokens
    ]


def test_suite_rows_matches_whole_names_in_the_comma_list():
    frame = summary(
        [
            {"experiment_id": "a", "suites": "basic,prompt_length"},
            {"experiment_id": "b", "suites": "prompt_length"},
            {"experiment_id": "c", "suites": "basic_extra"},
        ]
    )
    assert analysis.suite_rows(frame, "basic")["experiment_id"].to_list() == ["a"]
    assert analysis.suite_rows(frame, "prompt_length").height == 2
    assert analysis.suite_rows(pl.DataFrame(), "basic").is_empty()


def test_linear_fit_recovers_a_line_exactly():
    xs = (10, 20, 40, 80)
    fit = analysis.linear_fit(xs, [0.5 + 0.002 * x for x in xs])
    assert fit["slope"] == pytest.approx(0.002)
    assert fit["intercept"] == pytest.approx(0.5)
    assert fit["r2"] == pytest.approx(1.0)
    assert fit["n"] == 4


def test_linear_fit_hand_computed_r2_and_missing_points():
    # y = 0, 2, 1 at x = 0, 1, 2: slope 0.5, intercept 0.5, residuals -0.5, 1, -0.5
    # SSres = 1.5, SStot = 2 → R² = 0.25; the None pair is dropped
    fit = analysis.linear_fit([0, 1, 2, 3], [0, 2, 1, None])
    assert fit == pytest.approx({"slope": 0.5, "intercept": 0.5, "r2": 0.25, "n": 3})


def test_linear_fit_without_spread_has_no_line():
    assert analysis.linear_fit([5, 5, 5], [1, 2, 3])["slope"] is None
    assert analysis.linear_fit([1], [1]) == {"slope": None, "intercept": None, "r2": None, "n": 1}


def test_prompt_length_scaling_gives_the_prefill_rate():
    result = analysis.prompt_length_scaling(summary(lengths()))
    assert result["prefill_tps"] == pytest.approx(1000)
    assert result["ttft_ms_per_token"] == pytest.approx(1.0)
    assert result["ttft_fit"]["intercept"] == pytest.approx(0.05)
    assert result["ttft_fit"]["r2"] == pytest.approx(1.0)
    assert result["reliable"] and result["same_output_length"]
    sentence = result["sentence"]
    assert sentence.startswith(
        "TTFT grows by 1.000 ms per prompt token (R² 1.00, 5 prompt lengths)"
    )
    assert "prefill ≈ 1,000 tok/s" in sentence and "same at every prompt length" in sentence


def test_prompt_length_scaling_says_when_there_are_too_few_points():
    result = analysis.prompt_length_scaling(summary(lengths(tokens=(10, 100))))
    assert not result["reliable"] and "Only 2 points" in result["sentence"]
    one = analysis.prompt_length_scaling(summary(lengths(tokens=(10,))))
    assert one["ttft_fit"] is None and "no scaling to report" in one["sentence"]


def test_prompt_length_scaling_flags_a_poor_fit_and_flat_ttft():
    noisy = {2: 0.3, 10: 0.1, 50: 0.3, 200: 0.1, 800: 0.2}
    result = analysis.prompt_length_scaling(summary(lengths(ttft=noisy.get)))
    assert result["ttft_fit"]["r2"] < analysis.GOOD_FIT_R2
    assert not result["reliable"] and "fit is poor" in result["sentence"]
    flat = analysis.prompt_length_scaling(summary(lengths(ttft=lambda t: 0.1)))
    assert flat["prefill_tps"] is None and "no prefill cost seen" in flat["sentence"]


def test_prompt_length_scaling_mentions_varying_output_length_and_skips_failed_rows():
    rows = lengths()
    rows[0]["output_tokens_mean"] = 32.0
    rows.append(lengths(tokens=(3000,))[0] | {"ttft_mean_s": None, "e2e_mean_s": None})
    result = analysis.prompt_length_scaling(summary(rows))
    assert result["ttft_fit"]["n"] == 5
    assert "Output length varies from 32 to 64 tokens" in result["sentence"]


def temperatures(values, **extra):
    return summary(
        [{"suites": "temperature", "temperature": t} | row | extra for t, row in values.items()]
    )


def test_temperature_within_noise():
    result = analysis.temperature_effect(
        temperatures(
            {
                0.0: {"e2e_mean_s": 1.0},
                0.7: {"e2e_mean_s": 1.02},
                1.5: {"e2e_mean_s": 0.99},
            },
            e2e_ci95_s=0.05,
        )
    )
    assert result["overlapping"] and result["verdict"] == "noise"
    assert result["sentence"].startswith("No effect beyond noise")
    assert "Output length was the same at every temperature (64 tokens)" in result["sentence"]


def test_temperature_overlap_means_every_pair_overlaps():
    # 0 and 0.7 overlap, 0.7 and 1.5 overlap, but 0 and 1.5 do not: [0.9, 1.0] vs [1.1, 1.2]
    result = analysis.temperature_effect(
        temperatures(
            {
                0.0: {"e2e_mean_s": 0.95, "e2e_ci95_s": 0.05},
                0.7: {"e2e_mean_s": 1.05, "e2e_ci95_s": 0.1},
                1.5: {"e2e_mean_s": 1.15, "e2e_ci95_s": 0.05},
            }
        )
    )
    assert not result["overlapping"] and result["slowest"] == 1.5 and result["fastest"] == 0.0


def test_temperature_beyond_noise_names_the_slower_one_and_the_output_length():
    result = analysis.temperature_effect(
        temperatures(
            {
                0.0: {"e2e_mean_s": 1.0, "output_tokens_mean": 50.0},
                1.5: {"e2e_mean_s": 1.5, "output_tokens_mean": 75.0},
            },
            e2e_ci95_s=0.01,
        )
    )
    assert not result["overlapping"] and result["verdict"] == "slower"
    assert result["difference"] == pytest.approx(0.5)
    sentence = result["sentence"]
    assert "temperature 1.5 is 1.50× slower than 0" in sentence
    assert "Output length differs between temperatures (50–75 tokens)" in sentence
    assert "20.0 ms at 1.5 vs 20.0 ms at 0" in sentence


def test_temperature_difference_too_small_to_matter():
    result = analysis.temperature_effect(
        temperatures({0.0: {"e2e_mean_s": 1.0}, 1.5: {"e2e_mean_s": 1.02}}, e2e_ci95_s=0.001)
    )
    assert result["verdict"] == "negligible" and result["sentence"].startswith("No practical")


def concurrency(req_per_s, e2e, **extra):
    return summary(
        [
            {"suites": "concurrency", "experiment_id": f"w{w}", "workers": w}
            | {"req_per_s": req_per_s(w), "e2e_mean_s": e2e(w)}
            | extra
            for w in (1, 2, 4)
        ]
    )


def test_concurrency_flat_means_serialized():
    result = analysis.concurrency_scaling(
        concurrency(lambda w: 2.0, lambda w: 0.5 * w, ttft_mean_s=None)
    )
    assert result["speedup"] == pytest.approx(1.0)
    assert result["latency_growth"] == pytest.approx(4.0)
    assert result["verdict"] == "serializes"
    assert [r["efficiency"] for r in result["rows"]] == pytest.approx([1.0, 0.5, 0.25])
    assert result["sentence"].startswith(
        "No: the server serializes requests: throughput stays flat (×1.00)"
    )
    assert "latency grows ×4.00" in result["sentence"]


def test_concurrency_scaling_means_parallel():
    result = analysis.concurrency_scaling(concurrency(lambda w: 2.0 * w, lambda w: 0.5))
    assert result["verdict"] == "scales" and result["speedup"] == pytest.approx(4.0)
    assert result["peak_workers"] == 4 and result["sentence"].startswith("Yes")


def test_concurrency_partial_reports_the_peak_and_the_queue():
    frame = concurrency(
        lambda w: {1: 2.0, 2: 2.6, 4: 2.4}[w],
        lambda w: 0.5 * w,
        queue_mean_s=0.25,
    )
    result = analysis.concurrency_scaling(frame)
    assert result["verdict"] == "partial" and result["peak_workers"] == 2
    assert result["speedup"] == pytest.approx(1.3)
    assert "Mean queue wait goes from 0.250 s at 1 to 0.250 s at 4 workers" in result["sentence"]


def test_concurrency_without_a_one_worker_run_uses_the_smallest():
    frame = concurrency(lambda w: 2.0, lambda w: 0.5 * w).filter(pl.col("workers") > 1)
    result = analysis.concurrency_scaling(frame)
    assert result["baseline_workers"] == 2 and "no 1-worker run" in result["sentence"]
    single = analysis.concurrency_scaling(frame.head(1))
    assert single["verdict"] is None and "at least two worker counts" in single["sentence"]


def test_expected_vs_actual_is_weighted_by_requests():
    rows = [{"tps_mean": 10.0, "n_ok": 30}, {"tps_mean": 30.0, "n_ok": 10}]
    result = analysis.expected_vs_actual_tps(summary(rows), (10, 20))
    assert result["actual_tps"] == pytest.approx(15.0)
    assert result["n"] == 40 and result["position"] == "within"
    assert "within the expected 10–20 tok/s" in result["sentence"]


def test_expected_vs_actual_below_and_above_the_range():
    below = analysis.expected_vs_actual_tps(summary([{"tps_mean": 5.0}]), (10, 20))
    assert below["position"] == "below" and below["ratio"] == pytest.approx(0.5)
    above = analysis.expected_vs_actual_tps(summary([{"tps_mean": 60.0}]), (10, 20))
    assert above["position"] == "above" and "3.0× the high end" in above["sentence"]


def test_expected_vs_actual_falls_back_to_all_experiments():
    result = analysis.expected_vs_actual_tps(summary([{"suites": "temperature"}]))
    assert result["source"] == "all experiments" and result["actual_tps"] == pytest.approx(20)


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
    assert result["seconds"]["other"] == pytest.approx(0.1)
    assert "Decode dominates" in result["sentence"]


def test_breakdown_is_weighted_and_clips_other_at_zero():
    rows = [
        {"n_ok": 30, "e2e_mean_s": 1.0, "ttft_mean_s": 0.6, "prefill_mean_s": 0.5},
        {"n_ok": 10, "e2e_mean_s": 2.0, "ttft_mean_s": 1.4, "prefill_mean_s": 1.5},
        {"n_ok": 0, "e2e_mean_s": None, "ttft_mean_s": None},
    ]
    result = analysis.latency_breakdown(summary(rows))
    # e2e = (30·1 + 10·2)/40 = 1.25, ttft = (18 + 14)/40 = 0.8, prefill = (15 + 15)/40 = 0.75
    assert result["e2e_mean_s"] == pytest.approx(1.25) and result["n"] == 40
    assert result["ttft_percent"] == pytest.approx(64.0)
    assert result["shares"] == pytest.approx({"prefill": 60.0, "other": 40.0})
    assert "Time to first token dominates" in result["sentence"]
    over = analysis.latency_breakdown(
        summary([{"e2e_mean_s": 1.0, "prefill_mean_s": 0.5, "decode_mean_s": 0.75}])
    )
    assert over["seconds"]["other"] == 0.0
    assert sum(over["shares"].values()) == pytest.approx(100.0)
    assert "add up to 125%" in over["sentence"]


def test_breakdown_without_engine_timings_gives_the_ttft_share_only():
    result = analysis.latency_breakdown(summary([{}]))
    assert result["shares"] == {} and result["ttft_percent"] == pytest.approx(20.0)


@pytest.mark.parametrize("answer", ANSWERS)
def test_every_answer_copes_with_no_data(answer):
    for frame in (
        pl.DataFrame(),
        summary([{}]).clear(),
        summary([{"n_ok": 0, "e2e_mean_s": None}]),
    ):
        result = answer(frame)
        assert isinstance(result["sentence"], str) and result["sentence"]
