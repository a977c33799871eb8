"""The calibration server's OpenAI API and perflab's ``openai`` engine, over real HTTP."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise

import httpx
import pytest
from conftest import refused_url

from perflab.calibration import FAULT_HEADER
from perflab.core.records import ERROR_CLASSES
from perflab.engines import make_engine
from perflab.engines.base import EngineError, GenerationOptions, PreflightError
from perflab.engines.openai_engine import OpenAIEngine, base_url, sse_data

MODEL = "llama3.1:8b"


def events(response: httpx.Response) -> list:
    assert response.headers["content-type"].startswith("text/event-stream")
    data = list(sse_data(iter(response.text.splitlines())))
    assert data[-1] == "[DONE]"
    return [json.loads(item) for item in data[:-1]]


def post(server, path: str, **body) -> httpx.Response:
    return httpx.post(server.url + path, json={"model": MODEL, **body}, timeout=10)


# -- the server's side of the protocol -----------------------------------------


def test_chat_stream_is_server_sent_events_with_usage(calibration_server):
    response = post(
        calibration_server,
        "/v1/chat/completions",
        messages=[{"role": "user", "content": "one two three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = events(response)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    texts = [c["choices"][0]["delta"].get("content") for c in chunks[1:-2]]
    assert len(texts) == 8 and all(texts)
    assert all(c["object"] == "chat.completion.chunk" and c["usage"] is None for c in chunks[:-1])
    finish = chunks[-2]["choices"][0]
    assert finish["finish_reason"] == "stop" and finish["delta"] == {}
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 4,
        "completion_tokens": 8,
        "total_tokens": 12,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    entry = calibration_server.wait_for_log(1)[0]
    assert (entry.endpoint, entry.prompt_tokens, entry.tokens_sent) == ("v1/chat/completions", 4, 8)
    timings = chunks[-2]["timings"]
    assert timings["prompt_n"] == 4 and timings["predicted_n"] == 8
    assert timings["prompt_ms"] == pytest.approx(entry.prefill_s * 1e3)


def test_completions_stream_and_whole_answers(calibration_server):
    response = post(calibration_server, "/v1/completions", prompt="hi", stream=True, max_tokens=3)
    chunks = events(response)
    assert [c["choices"][0]["text"] for c in chunks[:3]] and all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    whole = post(calibration_server, "/v1/completions", prompt="hi").json()
    assert whole["object"] == "text_completion" and whole["choices"][0]["finish_reason"] == "stop"
    assert len(whole["choices"][0]["text"].split()) == whole["usage"]["completion_tokens"] == 8
    chat = post(
        calibration_server, "/v1/chat/completions", messages=[{"role": "user", "content": "x"}]
    ).json()
    assert chat["object"] == "chat.completion"
    assert chat["choices"][0]["message"]["role"] == "assistant"
    assert len(chat["choices"][0]["message"]["content"].split()) == 8


def test_models_errors_and_faults_in_openai_shape(calibration_server):
    listing = httpx.get(calibration_server.url + "/v1/models").json()
    assert listing["object"] == "list" and [m["id"] for m in listing["data"]] == [MODEL]
    missing = httpx.post(
        calibration_server.url + "/v1/chat/completions",
        json={"model": "nope:1b", "messages": [{"role": "user", "content": "x"}]},
    )
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "model 'nope:1b' not found"
    empty = post(calibration_server, "/v1/chat/completions", messages=[])
    assert empty.status_code == 400 and "messages" in empty.json()["error"]["message"]
    garbled = httpx.post(calibration_server.url + "/v1/completions", content=b"{not json")
    assert garbled.status_code == 400 and "invalid JSON" in garbled.json()["error"]["message"]
    faulted = httpx.post(
        calibration_server.url + "/v1/completions",
        json={"model": MODEL, "prompt": "x"},
        headers={FAULT_HEADER: "http_500:boom"},
    )
    assert faulted.status_code == 500 and faulted.json()["error"]["message"] == "boom"
    by_field = post(
        calibration_server, "/v1/completions", prompt="x", calibration_fault="http_429:slow"
    )
    assert by_field.status_code == 429


def test_cached_prompt_tokens_are_reported_like_openai(make_calibration_server):
    server = make_calibration_server(prompt_cache=True, ttft_per_token_s=0.002)
    prompt = " ".join(f"w{i}" for i in range(40))  # 52 tokens
    usages = [
        events(
            post(
                server,
                "/v1/completions",
                prompt=prompt,
                stream=True,
                stream_options={"include_usage": True},
            )
        )[-1]["usage"]
        for _ in range(2)
    ]
    assert [u["prompt_tokens"] for u in usages] == [52, 52]
    assert [u["prompt_tokens_details"]["cached_tokens"] for u in usages] == [0, 51]


# -- the engine ------------------------------------------------------------------


@pytest.fixture
def engine(calibration_server):
    eng = OpenAIEngine(MODEL, host=calibration_server.url, timeout_s=10)
    yield eng
    eng.close()


def test_base_url_rules(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert base_url(None) == "http://127.0.0.1:8080/v1"
    assert base_url("http://h:9000") == "http://h:9000/v1"
    assert base_url("h:9000/") == "http://h:9000/v1"
    assert base_url("http://h:9000/api/v1/") == "http://h:9000/api/v1"
    monkeypatch.setenv("OPENAI_BASE_URL", "http://other:1234/v1")
    assert base_url(None) == "http://other:1234/v1"


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_streams_the_scripted_tokens_with_usage_counts(make_calibration_server, endpoint):
    server = make_calibration_server(ttft_fixed_s=0.03, itl_s=0.01)
    engine = OpenAIEngine(MODEL, host=server.url, timeout_s=10, endpoint=endpoint)
    try:
        t0 = time.perf_counter()
        arrivals, chunks = [], []
        for chunk in engine.stream("one two three", GenerationOptions(max_tokens=6)):
            arrivals.append(time.perf_counter() - t0)
            chunks.append(chunk)
    finally:
        engine.close()
    sent, *tokens, final = chunks
    assert sent.n_tokens == 0 and sent.sent_at is not None
    assert len(tokens) == 6 and all(c.n_tokens == 1 and c.text for c in tokens)
    assert final.done and final.timings.output_tokens == 6 and final.timings.prompt_tokens == 4
    assert final.timings.finish_reason == "length"
    entry = server.wait_for_log(1)[0]
    assert entry.endpoint == f"v1/{'chat/completions' if endpoint == 'chat' else 'completions'}"
    assert final.timings.prefill_s == pytest.approx(entry.prefill_s, abs=1e-6)
    assert final.timings.decode_s == pytest.approx(entry.decode_s, abs=1e-6)
    # the request left after the call began and well before its first token
    assert 0 < sent.sent_at - t0 < arrivals[1] - entry.scheduled_prefill_s + 0.005
    # tokens arrive one by one at the scripted 10 ms: on a busy machine two may land
    # together, so the five gaps are checked as a whole, each only against a stall
    gaps = [b - a for a, b in pairwise(arrivals[1:7])]
    # a late first token shortens the first gap (the rest keep their deadlines)
    assert 4 * 0.01 * 0.8 <= sum(gaps) <= 5 * 0.05, gaps
    assert max(gaps) <= 0.1, gaps
    assert entry.scheduled_prefill_s <= arrivals[1] <= entry.scheduled_prefill_s + 0.1


def test_preflight_lists_models(engine, calibration_server):
    info = engine.preflight()
    assert info["engine"] == "openai" and info["model"] == MODEL
    assert info["host"] == calibration_server.url + "/v1"
    assert info["model_details"]["owned_by"] == "perflab-calibration"


def test_preflight_names_the_fix(calibration_server, monkeypatch):
    wrong = OpenAIEngine("nope:1b", host=calibration_server.url)
    with pytest.raises(PreflightError, match=r"serves: llama3\.1:8b"):
        wrong.preflight()
    nobody = OpenAIEngine(MODEL, host=refused_url(), timeout_s=2)
    with pytest.raises(PreflightError, match="No OpenAI-compatible server answers"):
        nobody.preflight()
    monkeypatch.delenv("PERFLAB_TEST_KEY", raising=False)
    keyless = OpenAIEngine(MODEL, host=calibration_server.url, api_key_env="PERFLAB_TEST_KEY")
    with pytest.raises(PreflightError, match="PERFLAB_TEST_KEY"):
        keyless.preflight()
    not_openai = OpenAIEngine(MODEL, host=calibration_server.url + "/api")
    with pytest.raises(PreflightError, match="HTTP 404"):
        not_openai.preflight()


def test_an_http_status_is_classified_with_the_servers_message(engine, calibration_server):
    calibration_server.inject_fault("http_503")
    with pytest.raises(EngineError) as info:
        list(engine.stream("x", GenerationOptions()))
    assert info.value.error_class == "http_status"
    assert "HTTP 503" in str(info.value) and "server busy" in str(info.value)


def test_make_engine_builds_it_from_a_config():
    config = {
        "engine": {"name": "openai", "model": MODEL, "host": "http://h:1", "api_key_env": None},
        "generation": {"timeout_s": 3},
    }
    engine = make_engine(config)
    assert isinstance(engine, OpenAIEngine)
    assert (engine.base_url, engine.endpoint, engine.timeout_s) == ("http://h:1/v1", "chat", 3)
    engine.close()


# -- a scripted stand-in for servers that batch tokens or want a key --------------


class _Scripted(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list = []

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        type(self).seen.append(dict(self.headers))
        if self.headers.get("Authorization") != "Bearer s3cret":
            body = b'{"error": {"message": "invalid api key"}}'
            self.send_response(401)
        else:
            body = json.dumps({"object": "list", "data": [{"id": MODEL}]}).encode()
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        events = []
        for n, text in enumerate(["a b", "c d", "e"], start=1):
            choice = {"index": 0, "delta": {"content": text}, "finish_reason": None}
            usage = {"prompt_tokens": 3, "completion_tokens": min(2 * n, 5)}
            events.append({"choices": [choice], "usage": usage})
        events.append({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 5}})
        body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
        body += b": keep-alive comment\n\ndata: [DONE]\n\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def scripted():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    _Scripted.seen = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_several_tokens_per_chunk_are_counted_from_running_usage(scripted):
    engine = OpenAIEngine(MODEL, host=scripted)
    chunks = list(engine.stream("x", GenerationOptions()))
    engine.close()
    assert [c.n_tokens for c in chunks if not c.done] == [0, 2, 2, 1]
    assert chunks[-1].timings.output_tokens == 5 and chunks[-1].timings.prefill_s is None


def test_the_api_key_comes_from_the_named_variable(scripted, monkeypatch):
    monkeypatch.setenv("PERFLAB_TEST_KEY", "s3cret")
    engine = OpenAIEngine(MODEL, host=scripted, api_key_env="PERFLAB_TEST_KEY")
    assert engine.preflight()["model"] == MODEL
    assert _Scripted.seen[-1]["Authorization"] == "Bearer s3cret"
    monkeypatch.setenv("PERFLAB_TEST_KEY", "wrong")
    wrong = OpenAIEngine(MODEL, host=scripted, api_key_env="PERFLAB_TEST_KEY")
    with pytest.raises(PreflightError, match=r"wants an API key \(HTTP 401\).*PERFLAB_TEST_KEY"):
        wrong.preflight()
    anonymous = OpenAIEngine(MODEL, host=scripted)
    with pytest.raises(PreflightError, match="engine.api_key_env"):
        anonymous.preflight()
    for eng in (engine, wrong, anonymous):
        eng.close()


def test_every_failure_has_an_error_class(engine, calibration_server):
    for fault in ("drop_after:1", "malformed_after:1", "error_after:1:oom", "disconnect"):
        calibration_server.inject_fault(fault)
        with pytest.raises(EngineError) as info:
            list(engine.stream("x", GenerationOptions()))
        assert info.value.error_class in ERROR_CLASSES


def test_itl_is_per_token_when_a_chunk_brings_several(scripted):
    from perflab.measure.runner import Clock, measure_request

    engine = OpenAIEngine(MODEL, host=scripted)
    record = measure_request(
        engine,
        "x",
        GenerationOptions(),
        experiment_id="batched",
        request_index=0,
        worker=0,
        is_warmup=False,
        clock=Clock(),
    )
    engine.close()
    assert record.status == "ok" and record.output_tokens == record.server_output_tokens == 5
    # chunks of 2, 2 and 1 tokens: the first chunk's second token came with the first
    # (a gap of 0), the second chunk's gap is shared by its two tokens; one gap a token
    assert len(record.itl_s) == record.output_tokens - 1 == 4
    assert record.itl_s[0] == 0.0 and record.itl_s[1] == record.itl_s[2] > 0


def test_several_tokens_per_event_give_the_scripted_itl_per_token(make_calibration_server):
    from perflab.measure.runner import Clock, measure_request

    server = make_calibration_server(tokens_per_chunk=3, itl_s=0.01, output_tokens=8)
    raw = events(
        post(
            server,
            "/v1/completions",
            prompt="x",
            stream=True,
            stream_options={"include_usage": True, "continuous_usage_stats": True},
        )
    )
    content = [c for c in raw if c["choices"] and c["choices"][0]["text"]]
    assert [len(c["choices"][0]["text"].split()) for c in content] == [3, 3, 2]
    assert [c["usage"]["completion_tokens"] for c in content] == [3, 6, 8]

    engine = OpenAIEngine(MODEL, host=server.url)
    record = measure_request(
        engine,
        "x",
        GenerationOptions(),
        experiment_id="batched",
        request_index=0,
        worker=0,
        is_warmup=False,
        clock=Clock(),
    )
    engine.close()
    assert record.status == "ok" and record.output_tokens == 8
    # events of 3, 3 and 2 tokens, 30 and 20 ms apart: the first event's 2 later tokens
    # came with the first (gaps of 0), then 5 gaps, each the scripted 10 ms
    assert len(record.itl_s) == 7 and record.itl_s[:2] == [0.0, 0.0]
    assert sum(record.itl_s[2:]) / 5 == pytest.approx(0.01, abs=0.006)
