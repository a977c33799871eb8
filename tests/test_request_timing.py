"""Where a request's clock starts, what the client spent before it, and why
generation ended: the ollama engine and the runner against the calibration
server's own log (same process, same monotonic clock)."""

from __future__ import annotations

import time

import pytest
from conftest import refused_url

from perflab.analyse.tables import scan_experiment, summarize
from perflab.core.records import RequestRecord, ServerTimings
from perflab.engines.base import Chunk, GenerationOptions
from perflab.engines.http_stream import SEND_EVENTS, SendStamp
from perflab.engines.ollama_engine import OllamaEngine
from perflab.measure.runner import Clock, LoadPlan, measure_request, run_load

MODEL = "llama3.1:8b"


def measure(engine, clock=None, **options) -> RequestRecord:
    return measure_request(
        engine,
        "hello world",
        GenerationOptions(**options),
        experiment_id="t",
        request_index=0,
        worker=0,
        is_warmup=False,
        clock=clock or Clock(),
    )


def test_the_stamp_takes_the_first_transport_event():
    stamp = SendStamp()
    stamp("connection.connect_tcp.complete", {})
    assert stamp.sent_at is None
    before = time.perf_counter()
    stamp("http11.send_request_headers.started", {})
    first = stamp.sent_at
    stamp("connection.connect_tcp.started", {})  # later events never move it
    assert before <= first <= time.perf_counter() and stamp.sent_at == first
    assert "http11.send_request_headers.started" in SEND_EVENTS


def test_the_clock_starts_when_the_request_leaves(make_calibration_server):
    server = make_calibration_server(ttft_fixed_s=0.03, itl_s=0.004)
    engine = OllamaEngine(MODEL, host=server.url, timeout_s=10)
    try:
        called = time.perf_counter()
        chunks = list(engine.stream("hello world", GenerationOptions()))
        records = [measure(engine) for _ in range(3)]
    finally:
        engine.close()
    log = server.wait_for_log(4)
    # the stream says when its request left: after the call, before the server had it
    assert chunks[0].sent_at is not None and chunks[0].n_tokens == 0
    assert called < chunks[0].sent_at <= log[0].t_arrival
    for record, entry in zip(records, log[1:], strict=True):
        assert record.status == "ok" and record.prep_s is not None and record.prep_s > 0
        truth = entry.token_times[0]  # arrival to the first token's write, server side
        # the client's TTFT covers the server's and little else; the tolerance is for busy machines
        assert truth <= record.ttft_s < truth + 0.05
        assert record.e2e_s >= entry.token_times[-1]
        assert record.ttft_s == pytest.approx(record.t_first_token - record.t_submit, abs=1e-6)


def test_preparation_is_apart_from_the_measured_time():
    """A scripted engine that prepares for 50 ms before its request leaves."""

    class Preparing:
        name = "preparing"

        def stream(self, prompt, options):
            time.sleep(0.05)
            yield Chunk(sent_at=time.perf_counter())
            time.sleep(0.02)
            yield Chunk(text="a", n_tokens=1)
            yield Chunk(done=True, timings=ServerTimings(output_tokens=1, finish_reason="stop"))

    record = measure(Preparing())
    assert record.prep_s == pytest.approx(0.05, abs=0.03)
    assert record.ttft_s == pytest.approx(0.02, abs=0.015)
    assert record.e2e_s < 0.05 and record.finish_reason == "stop"


def test_a_chunk_is_timed_when_its_bytes_arrived_not_when_it_was_parsed():
    """Work between the bytes' arrival and the chunk's yield is not latency."""

    class SlowParser:
        name = "slow-parser"

        def stream(self, prompt, options):
            sent = time.perf_counter()
            yield Chunk(sent_at=sent)
            arrived = sent + 0.01
            time.sleep(0.04)  # parsing, long after the bytes came in
            yield Chunk(text="a", n_tokens=1, arrived_at=arrived)
            yield Chunk(text="b", n_tokens=1, arrived_at=arrived + 0.005)
            final = ServerTimings(output_tokens=2, finish_reason="length")
            yield Chunk(done=True, timings=final, arrived_at=arrived + 0.006)

    record = measure(SlowParser())
    assert record.ttft_s == pytest.approx(0.01, abs=1e-9)
    assert record.itl_s == pytest.approx([0.005], abs=1e-9)
    assert record.e2e_s == pytest.approx(0.016, abs=1e-9)
    assert record.finish_reason == "length"


def test_an_engine_without_a_send_time_is_timed_from_the_call():
    class Plain:
        name = "plain"

        def stream(self, prompt, options):
            time.sleep(0.03)
            yield Chunk(text="a", n_tokens=1)
            yield Chunk(done=True, timings=ServerTimings(output_tokens=1))

    record = measure(Plain())
    assert record.prep_s is None and record.ttft_s >= 0.03 and record.finish_reason is None


def test_records_carry_the_finish_reason(make_calibration_server):
    server = make_calibration_server(output_tokens=6, fault_schedule={2: "http_500"})
    engine = OllamaEngine(MODEL, host=server.url, timeout_s=10)
    try:
        cut = run_load(
            engine,
            "hello",
            GenerationOptions(max_tokens=4),
            LoadPlan(requests=3),
            experiment_id="cut",
        ).records
        whole = run_load(
            engine,
            "hello",
            GenerationOptions(max_tokens=50),
            LoadPlan(requests=2),
            experiment_id="w",
        ).records
    finally:
        engine.close()
    assert [(r.status, r.finish_reason, r.output_tokens) for r in cut] == [
        ("ok", "length", 4),
        ("ok", "length", 4),
        ("error", None, 0),
    ]
    assert cut[2].error_class == "http_status" and cut[2].prep_s is not None
    assert [(r.finish_reason, r.output_tokens) for r in whole] == [("stop", 6), ("stop", 6)]


def test_pooled_connections_are_reused(calibration_server):
    """A fully read stream gives its connection back: later requests open none."""
    engine = OllamaEngine(MODEL, host=calibration_server.url, timeout_s=10)
    events: list[str] = []
    send = engine.http.send

    def traced_send(request, **kwargs):
        inner = request.extensions["trace"]

        def trace(event, info):
            events.append(event)
            inner(event, info)

        request.extensions["trace"] = trace
        return send(request, **kwargs)

    engine.http.send = traced_send
    try:
        for _ in range(4):
            assert list(engine.stream("hi", GenerationOptions()))[-1].done
    finally:
        engine.close()
    assert events.count("connection.connect_tcp.started") == 1
    assert events.count("http11.send_request_headers.started") == 4


def test_a_connect_failure_is_still_classified():
    engine = OllamaEngine(MODEL, host=refused_url(), timeout_s=2)
    try:
        record = measure(engine)
    finally:
        engine.close()
    assert (record.status, record.error_class) == ("error", "connect")
    assert record.ttft_s is None and record.finish_reason is None


def test_an_experiment_job_writes_finish_reason_and_preparation(tmp_path):
    """The calibration engine end to end: what the records and the summary carry."""
    from conftest import FAST_TIMING, ROOT

    from perflab.config.load import load_config_file
    from perflab.config.sweep import expand_experiments
    from perflab.core.records import read_jsonl
    from perflab.measure.experiment import RUNNER_VERSION, ExperimentPaths, run_experiment
    from perflab.measure.spec import experiment_spec

    overrides = {
        "engine": {"name": "calibration", "model": MODEL},
        "calibration": FAST_TIMING,  # 8 tokens per answer
        "generation": {"max_tokens": 5},
        "warmup_requests": 1,
        "sampler": {"interval_s": 0.1},
        "suites": {"concurrency": {"workers": [1], "requests": 4}},
    }
    config = load_config_file(ROOT / "config" / "config.yaml", overrides=overrides)
    (experiment,) = [
        e for e in expand_experiments(config).values() if "concurrency" in e.suites and e.trial == 1
    ]
    out = tmp_path / experiment.id
    files = ExperimentPaths(
        out / "records.jsonl", out / "samples.jsonl", out / "metadata.json", tmp_path / "failed"
    )
    metadata = run_experiment(experiment_spec(config, experiment), files)
    assert metadata["runner_version"] == RUNNER_VERSION >= 2
    records = read_jsonl(files.records)
    assert len(records) == 5
    assert all(r["finish_reason"] == "length" and r["output_tokens"] == 5 for r in records)
    assert all(0 < r["prep_s"] < 1 for r in records)
    row = summarize(scan_experiment(files.records, files.metadata)).collect().row(0, named=True)
    assert row["n_truncated"] == row["n_ok"] == 4
    assert 0 < row["prep_mean_s"] < 1
