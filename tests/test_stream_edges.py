"""Streams that bias naive figures, against the calibration server over real HTTP:
reasoning tokens (Ollama's ``thinking``, the OpenAI API's ``reasoning_content`` /
``reasoning``), answers without a token, timeouts, several tokens in the first chunk,
and a prefill time of 0."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import polars as pl
import pytest

from perflab.analyse.findings.comparison import _values
from perflab.analyse.findings.frame import with_defaults
from perflab.analyse.metrics import metric
from perflab.analyse.tables import summarize
from perflab.core.records import RequestRecord
from perflab.engines.base import GenerationOptions
from perflab.engines.ollama_engine import OllamaEngine
from perflab.engines.openai_engine import OpenAIEngine
from perflab.measure.runner import Clock, measure_request

MODEL = "llama3.1:8b"
PREFILL_S, ITL_S = 0.05, 0.02
THINKING = {"reasoning_tokens": 5, "output_tokens": 12, "itl_s": ITL_S, "ttft_fixed_s": PREFILL_S}


def measure(engine, index: int = 0, **options) -> RequestRecord:
    try:
        return measure_request(
            engine,
            "one two three",
            GenerationOptions(**options),
            experiment_id="edges",
            request_index=index,
            worker=0,
            is_warmup=False,
            clock=Clock(),
        )
    finally:
        engine.close()


def engines(url: str) -> dict:
    return {
        "ollama": lambda: OllamaEngine(MODEL, host=url, timeout_s=10),
        "openai": lambda: OpenAIEngine(MODEL, host=url, timeout_s=10),
    }


def assert_reasoning_figures(record: RequestRecord) -> None:
    assert record.status == "ok"
    assert record.output_tokens == 12 and record.reasoning_tokens == 5
    # TTFT to the first token of any kind: the first reasoning token, after prefill
    assert PREFILL_S - 0.005 < record.ttft_s < PREFILL_S + 0.1
    # the answer's first token came 5 gaps later
    assert record.answer_ttft_s - record.ttft_s == pytest.approx(5 * ITL_S, abs=0.03)
    # decode over every generated token: 11 gaps of 20 ms, not 6 answer tokens over 11 gaps
    assert record.tps == pytest.approx(1 / ITL_S, rel=0.25)
    assert len(record.itl_s) == 11


@pytest.mark.parametrize("name", ["ollama", "openai"])
def test_a_reasoning_stream_times_both_first_tokens_and_counts_all(make_calibration_server, name):
    server = make_calibration_server(**THINKING)
    assert_reasoning_figures(measure(engines(server.url)[name]()))


def test_the_openai_reasoning_field_is_read_under_either_name(make_calibration_server):
    server = make_calibration_server(**THINKING, reasoning_field="reasoning")
    assert_reasoning_figures(measure(engines(server.url)["openai"]()))


def test_without_reasoning_the_answer_starts_at_the_first_token(make_calibration_server):
    server = make_calibration_server(output_tokens=6, itl_s=0.005)
    for name, make in engines(server.url).items():
        record = measure(make())
        assert record.answer_ttft_s == record.ttft_s, name
        assert not record.reasoning_tokens, name  # none counted, or the server says 0


def test_the_ollama_stream_sends_thinking_apart_from_the_answer(make_calibration_server):
    import httpx

    server = make_calibration_server(reasoning_tokens=2, output_tokens=4, itl_s=0.001)
    body = {"model": MODEL, "prompt": "x", "stream": True}
    lines = httpx.post(server.url + "/api/generate", json=body, timeout=10).text.splitlines()
    parts = [json.loads(line) for line in lines]
    assert [bool(p.get("thinking")) for p in parts[:-1]] == [True, True, False, False]
    assert all(p["response"] == "" for p in parts[:2]) and parts[-1]["eval_count"] == 4


def test_an_answer_without_a_token_is_counted_not_a_fast_success(make_calibration_server):
    server = make_calibration_server(output_tokens=0, ttft_fixed_s=0.001)
    records = [measure(OllamaEngine(MODEL, host=server.url), i) for i in range(3)]
    slow = make_calibration_server(output_tokens=4, itl_s=0.01)
    records.append(measure(OllamaEngine(MODEL, host=slow.url), 3))
    assert [r.status for r in records] == ["ok"] * 4 and records[0].output_tokens == 0
    row = summary(records)
    assert (row["n_requests"], row["n_ok"], row["n_empty"], row["n_errors"]) == (4, 1, 3, 0)
    assert row["e2e_mean_s"] == pytest.approx(records[3].e2e_s)  # the empty ones are not in it


def test_timeouts_are_censored_values_not_dropped(make_calibration_server):
    server = make_calibration_server(output_tokens=3, itl_s=0.001, ttft_fixed_s=0.01)
    fast = [measure(OllamaEngine(MODEL, host=server.url, timeout_s=10), i) for i in range(3)]
    stalled = make_calibration_server(output_tokens=3, itl_s=0.5, ttft_fixed_s=0.01)
    cut = measure(OllamaEngine(MODEL, host=stalled.url, timeout_s=10), 3, timeout_s=0.4)
    assert cut.status == "timeout" and cut.e2e_s >= 0.4
    row = summary([*fast, cut])
    assert (row["n_censored"], row["n_errors"], row["n_ok"]) == (1, 1, 3)
    assert row["e2e_mean_s"] == pytest.approx(sum(r.e2e_s for r in fast) / 3)
    assert row["e2e_mean_censored_s"] == pytest.approx(sum(r.e2e_s for r in [*fast, cut]) / 4)
    assert row["e2e_p99_censored_s"] is None and row["e2e_p99_s"] is None  # under 100
    # with 100 requests, the timed-out one is the p99's tail
    many = summary([*(replace(fast[0], request_index=i) for i in range(99)), cut])
    assert many["n_censored"] == 1 and many["e2e_p99_s"] is None  # 99 ok: too few alone
    assert many["e2e_p99_censored_s"] > fast[0].e2e_s


def test_a_first_chunk_of_several_tokens_loses_none_of_their_gaps(make_calibration_server):
    server = make_calibration_server(tokens_per_chunk=4, output_tokens=8, itl_s=0.01)
    record = measure(OpenAIEngine(MODEL, host=server.url, timeout_s=10))
    assert record.output_tokens == 8 and len(record.itl_s) == 7
    assert record.itl_s[:3] == [0.0, 0.0, 0.0]  # they came with the first token
    first_to_last = record.e2e_s - record.ttft_s
    assert sum(record.itl_s) == pytest.approx(first_to_last, abs=0.01)


def test_no_rate_is_infinite_when_a_time_is_zero():
    """A prompt the cache served whole has a prefill time of 0; a measured wall of 0."""
    frame = with_defaults(
        pl.DataFrame(
            {
                "experiment_id": ["a-r1", "b-r1"],
                "prompt_tokens_mean": [100.0, 100.0],
                "prefill_mean_s": [0.0, 0.05],
            }
        )
    )
    prefill = metric("server_prefill_tps")  # a rate computed from two summary columns
    assert _values(frame, prefill).to_list() == [None, pytest.approx(2000.0)]
    record = RequestRecord(
        "zero", 0, 0, False, "ok", None, None, 0.0, 0.0, 0.0, 0.0, 0.0, [], 3, 2, None
    )
    row = summary([record], measured_wall_s=0.0)
    for key in ("req_per_s", "output_tps", "ttft_share", "tps_mean"):
        assert row[key] is None or math.isfinite(row[key]), key


def summary(records: list[RequestRecord], measured_wall_s: float = 1.0) -> dict:
    from perflab.analyse.tables import EXPERIMENT_COLUMNS, RECORD_SCHEMA

    rows = [{k: v for k, v in r.__dict__.items() if k in RECORD_SCHEMA} for r in records]
    frame = pl.DataFrame(rows, schema=RECORD_SCHEMA, strict=False)
    columns = dict.fromkeys(EXPERIMENT_COLUMNS) | {"measured_wall_s": measured_wall_s}
    frame = frame.with_columns(
        pl.lit(value, dtype=EXPERIMENT_COLUMNS[name]).alias(name) for name, value in columns.items()
    )
    return summarize(frame.lazy()).collect().row(0, named=True)


def test_the_log_gives_failures_timeouts_and_empty_answers_beside_each_figure():
    from perflab.analyse.findings.frame import conditions
    from perflab.present.wording import failures

    frame = with_defaults(
        pl.DataFrame(
            {
                "experiment_id": ["a-r1", "a-r2", "b-r1"],
                "condition_id": ["a", "a", "b"],
                "trial": [1, 2, 1],
                "n_requests": [10, 10, 10],
                "n_ok": [8, 9, 10],
                "n_errors": [2, 0, 0],
                "n_censored": [1, 0, 0],
                "n_empty": [0, 1, 0],
                "e2e_mean_s": [1.0, 1.1, 1.0],
            }
        )
    )
    a, b = conditions(frame, set())
    assert (a.n_errors, a.n_censored, a.n_empty, a.error_rate) == (2, 1, 1, 0.1)
    text = failures(a)
    assert "2 of 20 failed (10%)" in text and "1 of them timed out (censored" in text
    assert "1 answered without a token" in text
    assert failures(b) == ""
