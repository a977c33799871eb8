"""Reading llama-server's own metrics: its Prometheus text and slot states, and
their summary over an experiment's measured window. Against the real server:
tests/test_llama_server.py."""

from __future__ import annotations

from perflab.measure.server_metrics import (
    parse_prometheus,
    slots_fields,
    summarize_server_metrics,
)

# The layout llama-server's to_metrics() writes (tools/server/server-task.cpp).
PROMETHEUS = """# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 120
llamacpp:prompt_seconds_total 0.8
llamacpp:tokens_predicted_total 300
llamacpp:tokens_predicted_seconds_total 4
llamacpp:requests_processing 3
llamacpp:requests_deferred 1
llamacpp:spec_decode_num_accepted_tokens_per_pos_total{position="0"} 0
llamacpp:n_busy_slots_per_decode nan
"""


def test_prometheus_lines_become_numbers_and_others_are_skipped():
    values = parse_prometheus(PROMETHEUS)
    assert values["prompt_tokens_total"] == 120 and values["requests_processing"] == 3
    assert values["requests_deferred"] == 1
    assert "n_busy_slots_per_decode" not in values  # nan is no reading
    assert not any("spec_decode" in name for name in values)  # labelled series


def test_slots_say_how_many_run_and_how_full_their_kv_cache_is():
    slots = [
        {
            "id": 0,
            "n_ctx": 1000,
            "is_processing": True,
            "n_prompt_tokens": 90,
            "next_token": [{"n_decoded": 10}],
        },
        {"id": 1, "n_ctx": 1000, "is_processing": False, "n_prompt_tokens": 500},
    ]
    fields = slots_fields(slots)
    assert fields["llama_slots"] == 2 and fields["llama_slots_processing"] == 1
    assert fields["llama_kv_tokens"] == 100 and fields["llama_kv_used"] == 100 / 2000
    assert slots_fields({"error": "slots disabled"}) == {}


def sample(t, processing, deferred, prompt, prompt_s, predicted, predicted_s):
    return {
        "t": t,
        "interval_s": 0.5,
        "llama_requests_processing": processing,
        "llama_requests_deferred": deferred,
        "llama_prompt_tokens_total": prompt,
        "llama_prompt_seconds_total": prompt_s,
        "llama_tokens_predicted_total": predicted,
        "llama_tokens_predicted_seconds_total": predicted_s,
        "llama_kv_used": processing / 10,
    }


def test_the_summary_keeps_to_the_window_and_rates_come_from_counter_differences():
    samples = [
        sample(10.0, 4, 9, 0, 0.0, 0, 0.0),  # before the window (warm-up)
        sample(11.0, 1, 0, 100, 1.0, 50, 1.0),
        sample(11.5, 4, 2, 300, 2.0, 250, 3.0),
        sample(12.0, 2, 0, 500, 3.0, 450, 5.0),
    ]
    summary = summarize_server_metrics(samples, (10.6, 12.0))
    assert summary["n_server_metric_samples"] == 3
    assert summary["server_requests_processing_max"] == 4
    assert summary["server_requests_deferred_max"] == 2
    assert summary["server_prompt_tps"] == 400 / 2.0
    assert summary["server_decode_tps"] == 400 / 4.0
    assert summary["server_kv_used_max"] == 0.4
    assert summarize_server_metrics([{"t": 11.0, "interval_s": 0.5}], (10, 12)) == {
        "n_server_metric_samples": 0
    }
