"""perflab's ``ollama`` engine against the calibration server, over real HTTP."""

from __future__ import annotations

import threading
import time

import pytest

from perflab.calibration import refused_url
from perflab.engines.base import EngineError, GenerationOptions, PreflightError
from perflab.engines.ollama_engine import OllamaEngine, resolve_host
from perflab.records import (
    ERROR_CLASSES,
    ERROR_CONNECT,
    ERROR_DROPPED,
    ERROR_HTTP_STATUS,
    ERROR_PROTOCOL,
    ERROR_SERVER,
    ERROR_TIMEOUT,
)

MODEL = "llama3.1:8b"


@pytest.fixture
def engine(calibration_server):
    eng = OllamaEngine(MODEL, host=calibration_server.url, timeout_s=10)
    yield eng
    eng.close()


def run(engine: OllamaEngine, prompt: str = "hello there", **options) -> list:
    return list(engine.stream(prompt, GenerationOptions(**options)))


def failure(engine: OllamaEngine, **options) -> tuple[EngineError, list]:
    chunks: list = []
    with pytest.raises(EngineError) as info:
        for chunk in engine.stream("hello", GenerationOptions(**options)):
            chunks.append(chunk)
    assert info.value.error_class in ERROR_CLASSES
    return info.value, chunks


def test_streams_the_scripted_tokens(engine, calibration_server):
    chunks = run(engine)
    tokens = [c for c in chunks if not c.done]
    assert len(tokens) == 8 and all(c.n_tokens == 1 and c.text for c in tokens)
    assert chunks[-1].done and chunks[-1].timings is not None
    assert sum(c.n_tokens for c in chunks) == chunks[-1].timings.output_tokens == 8
    entry = calibration_server.wait_for_log(1)[0]
    assert entry.tokens_sent == 8


def test_max_tokens_becomes_num_predict(engine, calibration_server):
    chunks = run(engine, max_tokens=3)
    assert sum(c.n_tokens for c in chunks) == 3
    assert calibration_server.wait_for_log(1)[0].done_reason == "length"


def test_final_timings_equal_the_server_log(make_calibration_server):
    server = make_calibration_server(load_time_s=0.04, ttft_per_token_s=0.001, itl_s=0.006)
    engine = OllamaEngine(MODEL, host=server.url, timeout_s=10)
    try:
        first = run(engine, prompt="one two three four five six seven eight nine ten")[-1]
        second = run(engine, prompt="one two")[-1]
    finally:
        engine.close()
    log = server.wait_for_log(2)
    for chunk, entry in zip((first, second), log, strict=True):
        t = chunk.timings
        assert t.load_s == pytest.approx(entry.load_s, abs=1e-9)
        assert t.prefill_s == pytest.approx(entry.prefill_s, abs=1e-9)
        assert t.decode_s == pytest.approx(entry.decode_s, abs=1e-9)
        assert t.total_s == pytest.approx(entry.total_s, abs=1e-9)
        assert t.prompt_tokens == entry.prompt_tokens
        assert t.output_tokens == entry.tokens_sent == 8
        assert t.raw["eval_count"] == 8
    assert log[0].loaded and first.timings.load_s >= 0.04
    assert not log[1].loaded and second.timings.load_s < 0.005
    assert (first.timings.prompt_tokens, second.timings.prompt_tokens) == (13, 3)


def test_keep_alive_is_passed_on(make_calibration_server):
    server = make_calibration_server(load_time_s=0.03)
    engine = OllamaEngine(MODEL, host=server.url, timeout_s=10)
    try:
        run(engine, keep_alive="0")
        run(engine)
    finally:
        engine.close()
    log = server.wait_for_log(2)
    assert log[0].keep_alive_s == 0.0
    assert [e.loaded for e in log] == [True, True]  # unloaded after the first


def test_concurrent_streams_share_one_engine(make_calibration_server):
    server = make_calibration_server(num_parallel=2, itl_s=0.005, output_tokens=6)
    engine = OllamaEngine(MODEL, host=server.url, timeout_s=10)
    counts: list[int] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        counts.append(sum(c.n_tokens for c in run(engine)))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    engine.close()
    assert counts == [6, 6, 6, 6]
    assert sum(e.queue_s > 0.01 for e in server.wait_for_log(4)) >= 1


# -- preflight ----------------------------------------------------------------


def test_preflight_returns_metadata(engine, calibration_server):
    meta = engine.preflight()
    tags = calibration_server.model_entry(MODEL)
    assert meta["engine"] == "ollama"
    assert meta["engine_version"] == calibration_server.timing.version
    assert meta["host"] == calibration_server.url
    assert meta["model"] == MODEL
    assert meta["model_digest"] == tags["digest"]
    assert meta["model_details"]["family"] == "llama"
    assert meta["model_details"]["parameter_size"] == "8.0B"


def test_preflight_accepts_an_untagged_name(make_calibration_server):
    server = make_calibration_server(models=["tinyllama:latest"])
    engine = OllamaEngine("tinyllama", host=server.url)
    try:
        assert (
            engine.preflight()["model_digest"] == server.model_entry("tinyllama:latest")["digest"]
        )
    finally:
        engine.close()


def test_preflight_missing_model_says_pull(calibration_server):
    engine = OllamaEngine("mistral:7b", host=calibration_server.url)
    with pytest.raises(PreflightError, match="ollama pull mistral:7b") as info:
        engine.preflight()
    assert MODEL in str(info.value)  # it lists what the server has
    engine.close()


def test_preflight_nothing_listening_says_serve():
    url = refused_url()
    engine = OllamaEngine(MODEL, host=url, timeout_s=2)
    with pytest.raises(PreflightError, match="ollama serve") as info:
        engine.preflight()
    assert url in str(info.value)
    engine.close()


def test_host_from_environment(monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", "http://127.0.0.1:9")
    assert resolve_host(None) == "http://127.0.0.1:9"
    assert resolve_host("http://x:1") == "http://x:1"


# -- faults -> error classes ----------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error_class", "tokens_before"),
    [
        ("http_500", ERROR_HTTP_STATUS, 0),
        ("http_503", ERROR_HTTP_STATUS, 0),
        ("disconnect", ERROR_DROPPED, 0),
        ("drop_after:0", ERROR_DROPPED, 0),
        ("drop_after:3", ERROR_DROPPED, 3),
        ("malformed_after:2", ERROR_PROTOCOL, 2),
        ("error_after:2:CUDA error: out of memory", ERROR_SERVER, 2),
    ],
)
def test_fault_maps_to_error_class(engine, calibration_server, fault, error_class, tokens_before):
    calibration_server.inject_fault(fault)
    error, chunks = failure(engine)
    assert error.error_class == error_class, str(error)
    assert sum(c.n_tokens for c in chunks) == tokens_before
    assert calibration_server.wait_for_log(1)[0].fault == fault
    # the engine recovers: the next request is fine
    assert run(engine)[-1].done


def test_http_status_message(engine, calibration_server):
    calibration_server.inject_fault("http_503")
    error, _ = failure(engine)
    assert "503" in str(error) and "server busy" in str(error)
    calibration_server.inject_fault("error_after:1:CUDA error: out of memory")
    error, _ = failure(engine)
    assert "CUDA error: out of memory" in str(error)


@pytest.mark.parametrize("fault", ["stall", "stall_after:2"])
def test_stall_longer_than_the_timeout_is_timeout(calibration_server, fault):
    engine = OllamaEngine(MODEL, host=calibration_server.url, timeout_s=0.3)
    calibration_server.inject_fault(fault)
    t0 = time.perf_counter()
    error, _ = failure(engine)
    elapsed = time.perf_counter() - t0
    engine.close()
    assert error.error_class == ERROR_TIMEOUT
    assert 0.25 <= elapsed < 2.0


def test_nothing_listening_is_connect():
    engine = OllamaEngine(MODEL, host=refused_url(), timeout_s=2)
    error, _ = failure(engine)
    engine.close()
    assert error.error_class == ERROR_CONNECT


def test_server_killed_mid_experiment(engine, calibration_server):
    assert run(engine)[-1].done
    calibration_server.inject_fault("kill_after:2")
    error, chunks = failure(engine)
    assert error.error_class == ERROR_DROPPED
    assert sum(c.n_tokens for c in chunks) == 2
    error, _ = failure(engine)  # later requests: nobody listens any more
    assert error.error_class == ERROR_CONNECT
    with pytest.raises(PreflightError, match="ollama serve"):
        engine.preflight()
    calibration_server.restart()  # and it comes back
    assert run(engine)[-1].done


def test_server_stopped_between_requests(engine, calibration_server):
    assert run(engine)[-1].done
    calibration_server.stop()
    error, _ = failure(engine)
    assert error.error_class == ERROR_CONNECT


def test_per_request_timeout_is_honoured(calibration_server):
    engine = OllamaEngine(MODEL, host=calibration_server.url, timeout_s=30)
    calibration_server.inject_fault("stall:1")
    t0 = time.perf_counter()
    try:
        error, _ = failure(engine, timeout_s=0.3)
    finally:
        engine.close()
    assert error.error_class == ERROR_TIMEOUT
    assert time.perf_counter() - t0 < 2.0
