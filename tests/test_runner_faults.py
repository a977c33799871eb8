"""The fault matrix over real HTTP: ``run_load`` with the ``ollama`` engine (Ollama's
NDJSON API) and with the ``openai`` engine (the OpenAI SSE API) against the
calibration server. Every planned request ends as exactly one record, the
faulted ones with the right class, and the counts agree with the server's log."""

from __future__ import annotations

from collections import Counter

import pytest
from conftest import refused_url

from perflab.engines.base import GenerationOptions
from perflab.engines.ollama_engine import OllamaEngine
from perflab.engines.openai_engine import OpenAIEngine
from perflab.measure.runner import LoadPlan, error_rate, run_load

MODEL = "llama3.1:8b"
PLANNED = 12
WORKERS = 2
TOKENS = 8  # FAST_TIMING's output_tokens
FAULTED_AT = (2, 5, 9)  # server-side request indexes


ENGINES = {"ollama": OllamaEngine, "openai": OpenAIEngine}


@pytest.fixture(params=sorted(ENGINES))
def engine_name(request) -> str:
    """Each test runs once per protocol."""
    return request.param


def run(url, engine_name, *, engine_timeout=5.0, timeout_s=5.0, workers=WORKERS, planned=PLANNED):
    engine = ENGINES[engine_name](MODEL, host=url, timeout_s=engine_timeout)
    try:
        return run_load(
            engine,
            "hello world",
            GenerationOptions(timeout_s=timeout_s),
            LoadPlan(workers=workers, requests=planned),
            experiment_id="faults",
        ).records
    finally:
        engine.close()


def assert_complete(records, planned=PLANNED):
    """No request lost, none counted twice."""
    assert len(records) == planned
    assert sorted(r.request_index for r in records) == list(range(planned))
    assert not any(r.is_warmup for r in records)


def assert_ok(record):
    assert (record.status, record.error_class, record.error) == ("ok", None, None)
    assert record.output_tokens == TOKENS and record.server_output_tokens == TOKENS
    assert len(record.itl_s) == TOKENS - 1


# spec, status, error_class, tokens the client gets before the failure
FAULTS = [
    ("http_500", "error", "http_status", 0),
    ("http_503", "error", "http_status", 0),
    ("disconnect", "error", "dropped", 0),
    ("drop_after:3", "error", "dropped", 3),
    ("malformed_after:3", "error", "protocol", 3),
    ("error_after:3:CUDA error: out of memory", "error", "server", 3),
]


@pytest.mark.parametrize(("fault", "status", "error_class", "tokens"), FAULTS)
def test_each_fault_is_one_classified_record(
    make_calibration_server, engine_name, fault, status, error_class, tokens
):
    server = make_calibration_server(fault_schedule={i: fault for i in FAULTED_AT})
    records = run(server.url, engine_name)
    assert_complete(records)
    failed = [r for r in records if r.status != "ok"]
    assert len(failed) == len(FAULTED_AT)
    for record in failed:
        assert (record.status, record.error_class) == (status, error_class), record.error
        assert record.output_tokens == tokens and record.tps is None
        assert (record.ttft_s is None) == (tokens == 0)
        assert record.server_raw == {} and record.decode_s is None
    for record in records:
        if record.status == "ok":
            assert_ok(record)
    assert error_rate(records) == pytest.approx(len(FAULTED_AT) / PLANNED)
    # the server saw each request once, and faulted exactly the scheduled ones
    log = server.wait_for_log(PLANNED)
    assert len(log) == PLANNED
    assert sorted(e.id for e in log if e.fault) == list(FAULTED_AT)
    assert sum(e.outcome == "ok" for e in log) == PLANNED - len(FAULTED_AT)


def test_http_status_records_keep_the_servers_message(make_calibration_server, engine_name):
    server = make_calibration_server(fault_schedule={1: "http_503", 4: "http_500:disk full"})
    records = run(server.url, engine_name)
    assert_complete(records)
    errors = sorted(r.error for r in records if r.status != "ok")
    assert len(errors) == 2
    assert "HTTP 500" in errors[0] and "disk full" in errors[0]
    assert "HTTP 503" in errors[1] and "server busy" in errors[1]


@pytest.mark.parametrize(
    ("fault", "engine_timeout", "tokens", "e2e_range"),
    [
        # the engine's read timeout (0.5 s) ends a stall before any answer ...
        ("stall:3", 0.5, 0, (0.5, 1.5)),
        # ... or in the middle of the stream
        ("stall_after:1:3", 0.5, 1, (0.5, 1.5)),
        # the engine allows 5 s of silence: the request's own 0.5 s deadline
        # ends it when the next token, 1 s late, arrives
        ("stall_after:1:1", 5.0, 1, (0.95, 1.9)),
    ],
)
def test_stall_past_the_timeout_is_a_timeout_record(
    make_calibration_server, engine_name, fault, engine_timeout, tokens, e2e_range
):
    server = make_calibration_server(fault_schedule={4: fault})
    records = run(server.url, engine_name, engine_timeout=engine_timeout, timeout_s=0.5)
    assert_complete(records)
    timeouts = [r for r in records if r.status != "ok"]
    assert len(timeouts) == 1
    (record,) = timeouts
    assert (record.status, record.error_class) == ("timeout", "timeout")
    assert e2e_range[0] <= record.e2e_s < e2e_range[1]
    assert record.output_tokens == tokens
    for other in records:
        if other is not record:
            assert_ok(other)
    assert error_rate(records) == pytest.approx(1 / PLANNED)
    log = server.wait_for_log(PLANNED)
    assert len(log) == PLANNED
    assert [e.id for e in log if e.fault] == [4]


def test_nothing_listening_every_request_is_a_connect_error(engine_name):
    records = run(refused_url(), engine_name)
    assert_complete(records)
    assert Counter((r.status, r.error_class) for r in records) == {("error", "connect"): PLANNED}
    assert all(r.ttft_s is None and r.output_tokens == 0 for r in records)
    assert error_rate(records) == 1.0


def test_server_killed_mid_experiment_one_worker(make_calibration_server, engine_name):
    server = make_calibration_server(fault_schedule={5: "kill_after:2"})
    records = run(server.url, engine_name, workers=1)
    assert_complete(records)
    classes = [r.error_class for r in records]
    assert classes == [None] * 5 + ["dropped"] + ["connect"] * (PLANNED - 6)
    assert records[5].output_tokens == 2
    assert error_rate(records) == pytest.approx((PLANNED - 5) / PLANNED)
    log = server.wait_for_log(6)
    assert [e.outcome for e in log] == ["ok"] * 5 + ["killed"]


def test_server_killed_mid_experiment_two_workers(make_calibration_server, engine_name):
    server = make_calibration_server(fault_schedule={5: "kill_after:2"})
    records = run(server.url, engine_name)
    assert_complete(records)
    by_class = Counter(r.error_class for r in records)
    assert set(by_class) <= {None, "dropped", "connect"}
    # the request that killed it, perhaps the other worker's one in flight, and
    # perhaps one that connected while the server was closing (reset, never logged)
    assert 1 <= by_class["dropped"] <= 3
    assert any(r.error_class == "dropped" and r.output_tokens == 2 for r in records)
    assert by_class["connect"] >= PLANNED - 8
    for record in records:
        if record.status == "ok":
            assert_ok(record)
    # every request the server finished is an ok record, and nothing else is
    log = server.wait_for_log(6)
    assert by_class[None] == sum(e.outcome == "ok" for e in log) >= 4
    assert sum(e.fault == "kill_after:2" for e in log) == 1
    assert 1 <= sum(e.outcome == "killed" for e in log) <= by_class["dropped"]
    # once nothing listens, nothing succeeds
    first_refused = min(r.t_submit for r in records if r.error_class == "connect")
    assert all(r.t_submit < first_refused for r in records if r.status == "ok")
    assert error_rate(records) == pytest.approx(1 - by_class[None] / PLANNED)


FAULT_RATES = {
    "http_500": 0.1,
    "http_503": 0.05,
    "disconnect": 0.05,
    "drop_after:2": 0.1,
    "malformed_after:1": 0.1,
    "error_after:3": 0.1,
    "stall_after:1:2": 0.05,
}
EXPECTED_CLASS = {
    "http": "http_status",
    "disconnect": "dropped",
    "drop": "dropped",
    "malformed": "protocol",
    "error": "server",
    "stall": "timeout",
}


def fault_class(spec: str) -> str:
    kind = spec.split(":")[0].split("_")[0]
    return EXPECTED_CLASS[kind]


def test_fault_rates_match_the_servers_own_log(make_calibration_server, engine_name):
    planned = 24
    server = make_calibration_server(fault_rates=FAULT_RATES, seed=3)
    # the seeded draw puts every kind of fault in this run at least once
    drawn = [server.timing.draw_fault(i) for i in range(planned)]
    assert {spec for spec in drawn if spec} == set(FAULT_RATES)
    records = run(server.url, engine_name, engine_timeout=0.5, timeout_s=0.5, planned=planned)
    assert_complete(records, planned)
    log = server.wait_for_log(planned)
    assert len(log) == planned
    injected = Counter(fault_class(e.fault) for e in log if e.fault)
    assert injected == Counter(fault_class(spec) for spec in drawn if spec)
    measured = Counter(r.error_class for r in records if r.status != "ok")
    assert measured == injected
    assert sum(r.status == "timeout" for r in records) == injected["timeout"]
    for record in records:
        if record.status == "ok":
            assert_ok(record)
    faulted = sum(injected.values())
    assert error_rate(records) == pytest.approx(faulted / planned)
