"""perflab's ``ollama`` engine against the calibration server, over real HTTP."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import ollama
import pytest
from conftest import refused_url

from perflab.core.records import (
    ERROR_CLASSES,
    ERROR_CONNECT,
    ERROR_DROPPED,
    ERROR_HTTP_STATUS,
    ERROR_PROTOCOL,
    ERROR_SERVER,
    ERROR_TIMEOUT,
)
from perflab.engines.base import EngineError, GenerationOptions, PreflightError
from perflab.engines.ollama_engine import OllamaEngine, base_url, classify, resolve_host

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
    tokens = [c for c in chunks if not c.done and c.sent_at is None]
    assert len(tokens) == 8 and all(c.n_tokens == 1 and c.text for c in tokens)
    assert chunks[-1].done and chunks[-1].timings is not None
    assert chunks[-1].timings.finish_reason == "stop"
    assert sum(c.n_tokens for c in chunks) == chunks[-1].timings.output_tokens == 8
    entry = calibration_server.wait_for_log(1)[0]
    assert entry.tokens_sent == 8


def test_max_tokens_becomes_num_predict(engine, calibration_server):
    chunks = run(engine, max_tokens=3)
    assert sum(c.n_tokens for c in chunks) == 3
    assert calibration_server.wait_for_log(1)[0].done_reason == "length"
    assert chunks[-1].timings.finish_reason == "length"


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
    # the engine allows 30 s of silence; the request allows 0.3 s in all, so the
    # first chunk, after the 1 s stall, arrives past the deadline
    engine = OllamaEngine(MODEL, host=calibration_server.url, timeout_s=30)
    calibration_server.inject_fault("stall:1")
    t0 = time.perf_counter()
    try:
        error, chunks = failure(engine, timeout_s=0.3)
    finally:
        engine.close()
    elapsed = time.perf_counter() - t0
    assert error.error_class == ERROR_TIMEOUT
    assert "0.3 s" in str(error)
    assert [c for c in chunks if c.n_tokens or c.done] == []
    assert 0.9 <= elapsed < 2.0


def test_timeout_bounds_the_whole_request_not_each_gap(make_calibration_server):
    # every gap (0.03 s) is far below any read timeout; the total (~0.5 s) is not
    server = make_calibration_server(itl_s=0.03, output_tokens=16)
    engine = OllamaEngine(MODEL, host=server.url, timeout_s=10)
    t0 = time.perf_counter()
    try:
        error, chunks = failure(engine, timeout_s=0.2)
        elapsed = time.perf_counter() - t0
        assert run(engine, timeout_s=5)[-1].done  # the engine is fine afterwards
    finally:
        engine.close()
    assert error.error_class == ERROR_TIMEOUT
    assert 0.2 <= elapsed < 0.4
    assert 1 <= sum(c.n_tokens for c in chunks) < 16
    assert server.wait_for_log(2)[0].tokens_sent < 16  # the stream was closed early


def test_final_chunk_past_the_deadline_is_a_timeout(calibration_server):
    engine = OllamaEngine(MODEL, host=calibration_server.url, timeout_s=10)
    calibration_server.inject_fault("stall_after:8:0.5")  # just before the final chunk
    try:
        error, chunks = failure(engine, timeout_s=0.3)
    finally:
        engine.close()
    assert error.error_class == ERROR_TIMEOUT
    assert sum(c.n_tokens for c in chunks) == 8 and not any(c.done for c in chunks)


def test_stall_is_caught_by_the_read_timeout_of_the_engine(calibration_server):
    # stall_s is 30 s: only the engine's own read timeout can end this one early
    engine = OllamaEngine(MODEL, host=calibration_server.url, timeout_s=0.4)
    calibration_server.inject_fault("stall_after:2")
    t0 = time.perf_counter()
    try:
        error, chunks = failure(engine)
    finally:
        engine.close()
    assert error.error_class == ERROR_TIMEOUT
    assert sum(c.n_tokens for c in chunks) == 2
    assert 0.35 <= time.perf_counter() - t0 < 2.0


def test_host_without_scheme_or_port():
    assert base_url("127.0.0.1:1234") == "http://127.0.0.1:1234"
    assert base_url("example.org") == "http://example.org:11434"
    assert base_url("http://example.org") == "http://example.org:80"
    assert base_url("https://example.org/ollama/") == "https://example.org:443/ollama"
    assert base_url("[::1]:8080") == "http://[::1]:8080"


def test_preflight_with_a_host_without_scheme(calibration_server):
    engine = OllamaEngine(MODEL, host=calibration_server.url.removeprefix("http://"))
    try:
        assert engine.preflight()["engine_version"] == calibration_server.timing.version
    finally:
        engine.close()


# -- classification of what httpx and the client raise ----------------------------

REQUEST = httpx.Request("POST", "http://127.0.0.1:1/api/generate")


@pytest.mark.parametrize(
    ("exc", "error_class"),
    [
        (httpx.ConnectError("refused", request=REQUEST), ERROR_CONNECT),
        (httpx.ConnectTimeout("slow", request=REQUEST), ERROR_CONNECT),
        (ConnectionError("Failed to connect to Ollama."), ERROR_CONNECT),
        (ConnectionRefusedError(111, "refused"), ERROR_CONNECT),
        (httpx.ReadTimeout("slow", request=REQUEST), ERROR_TIMEOUT),
        (httpx.WriteTimeout("slow", request=REQUEST), ERROR_TIMEOUT),
        (httpx.PoolTimeout("busy", request=REQUEST), ERROR_TIMEOUT),
        (httpx.RemoteProtocolError("incomplete chunked read", request=REQUEST), ERROR_DROPPED),
        (httpx.ReadError("reset", request=REQUEST), ERROR_DROPPED),
        (httpx.WriteError("broken pipe", request=REQUEST), ERROR_DROPPED),
        (httpx.CloseError("close", request=REQUEST), ERROR_DROPPED),
        (httpx.ProxyError("proxy", request=REQUEST), ERROR_DROPPED),
        (ConnectionResetError(104, "reset by peer"), ERROR_DROPPED),
        (BrokenPipeError(32, "broken pipe"), ERROR_DROPPED),
        (ollama.ResponseError("boom", 500), ERROR_HTTP_STATUS),
        (ollama.ResponseError("CUDA error"), ERROR_SERVER),
        (json.JSONDecodeError("Expecting value", "{", 1), ERROR_PROTOCOL),
        (KeyError("done"), ERROR_PROTOCOL),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else value,
)
def test_classify(exc, error_class):
    assert classify(exc).error_class == error_class


# -- preflight against a server that answers wrongly --------------------------------


class _Stub(ThreadingHTTPServer):
    daemon_threads = True


def stub_server(upstream: str, overrides: dict[str, tuple[int, str, bytes]]):
    """Answer the paths in ``overrides`` with (status, content type, body); pass the rest on."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def answer(self, method: str) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path in overrides:
                status, content_type, payload = overrides[self.path]
            else:
                response = httpx.request(method, upstream + self.path, content=body)
                status, payload = response.status_code, response.content
                content_type = response.headers.get("content-type", "application/json")
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            self.answer("GET")

        def do_POST(self) -> None:
            self.answer("POST")

    server = _Stub(("127.0.0.1", 0), Handler)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    return server


@pytest.fixture
def stub(calibration_server):
    servers = []

    def make(overrides):
        server = stub_server(calibration_server.url, overrides)
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


JSON = "application/json"


def test_the_stub_passes_everything_else_on(stub):
    engine = OllamaEngine(MODEL, host=stub({}), timeout_s=5)
    try:
        assert engine.preflight()["model_details"]["family"] == "llama"
    finally:
        engine.close()


@pytest.mark.parametrize(
    ("path", "answer", "expected"),
    [
        ("/api/version", (200, "text/html", b"<html>welcome</html>"), "not JSON"),
        ("/api/version", (200, JSON, b"[1, 2]"), "expected a JSON object"),
        ("/api/version", (404, "text/plain", b"404 page not found"), "HTTP 404"),
        ("/api/tags", (500, JSON, b'{"error": "disk full"}'), "HTTP 500: disk full"),
        ("/api/tags", (200, "text/plain", b"hello"), "/api/tags"),
        ("/api/tags", (200, JSON, b'{"models": 3}'), "/api/tags"),
        ("/api/show", (500, JSON, b'{"error": "blob missing"}'), "HTTP 500: blob missing"),
        ("/api/show", (404, JSON, b'{"error": "not found"}'), "HTTP 404"),
        ("/api/show", (200, JSON, b"not json"), "/api/show"),
    ],
)
def test_preflight_names_the_host_and_the_fix(stub, path, answer, expected):
    host = stub({path: answer})
    engine = OllamaEngine(MODEL, host=host, timeout_s=5)
    try:
        with pytest.raises(PreflightError) as info:
            engine.preflight()
    finally:
        engine.close()
    message = str(info.value)
    assert host in message and expected in message, message
    fixes = {
        "/api/version": "OLLAMA_HOST points at `ollama serve`",
        "/api/tags": "`ollama serve` log",
        "/api/show": f"ollama pull {MODEL}",
    }
    assert fixes[path] in message, message
