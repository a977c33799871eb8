"""The ollama engine's line reader on bodies cut at awkward places, compressed,
or malformed: httpx's own response machinery, fed by a transport that hands
the body over in the pieces the test chooses."""

from __future__ import annotations

import gzip
import json

import httpx
import pytest

from perflab.engines.base import EngineError, GenerationOptions
from perflab.engines.ollama_engine import OllamaEngine

MODEL = "llama3.1:8b"
WORDS = ["the", " quick", " \u00e9t\u00e9", ' "quoted"', " \\ back"]
FINAL = {
    "response": "",
    "done": True,
    "done_reason": "length",
    "total_duration": 5_000_000,
    "prompt_eval_count": 3,
    "prompt_eval_duration": 1_000_000,
    "eval_count": len(WORDS),
    "eval_duration": 3_000_000,
}


def ndjson(parts: list[dict]) -> bytes:
    return b"".join(json.dumps(part).encode() + b"\n" for part in parts)


BODY = ndjson([{"response": w, "done": False} for w in WORDS] + [FINAL])


class Pieces(httpx.SyncByteStream):
    def __init__(self, body: bytes, size: int):
        self.body, self.size = body, size

    def __iter__(self):
        for start in range(0, len(self.body), self.size):
            yield self.body[start : start + self.size]


def engine_with(body: bytes, size: int = 1 << 20, headers: dict | None = None, status=200):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers=headers or {}, stream=Pieces(body, size))

    engine = OllamaEngine(MODEL, host="http://127.0.0.1:9", timeout_s=5)
    engine.http.close()
    engine.http = httpx.Client(base_url=engine.base_url, transport=httpx.MockTransport(handler))
    return engine


def stream(engine) -> list:
    try:
        return list(engine.stream("hi", GenerationOptions()))
    finally:
        engine.close()


@pytest.mark.parametrize("size", [1, 2, 7, 64, 1 << 20])
def test_lines_cut_anywhere_give_the_same_chunks(size):
    chunks = stream(engine_with(BODY, size))
    assert [c.text for c in chunks if c.n_tokens] == WORDS
    final = chunks[-1]
    assert final.done and final.timings.output_tokens == len(WORDS)
    assert final.timings.finish_reason == "length"
    assert final.timings.decode_s == pytest.approx(0.003)


def test_a_final_line_without_a_newline_is_read():
    chunks = stream(engine_with(BODY.rstrip(b"\n"), size=5))
    assert chunks[-1].done and sum(c.n_tokens for c in chunks) == len(WORDS)


def test_a_compressed_body_is_decoded():
    chunks = stream(engine_with(gzip.compress(BODY), size=9, headers={"content-encoding": "gzip"}))
    assert [c.text for c in chunks if c.n_tokens] == WORDS and chunks[-1].done


@pytest.mark.parametrize(
    ("line", "error_class", "words"),
    [
        (b"[1, 2]", "protocol", "not a JSON object"),
        (b'{"response": 7, "done": false}', "protocol", "not text"),
        (b'{"response": "a", "done": fals', "protocol", "malformed"),
        (b'{"error": "out of memory"}', "server", "out of memory"),
        (b'{"done": true, "eval_duration": "soon"}', "protocol", "malformed"),
    ],
)
def test_a_bad_line_is_classified(line, error_class, words):
    body = ndjson([{"response": "a", "done": False}]) + line + b"\n" + ndjson([FINAL])
    with pytest.raises(EngineError) as info:
        stream(engine_with(body, size=3))
    assert info.value.error_class == error_class
    assert words in str(info.value)


def test_a_body_that_ends_early_is_dropped():
    body = ndjson([{"response": "a", "done": False}])
    with pytest.raises(EngineError, match="without a final done chunk") as info:
        stream(engine_with(body))
    assert info.value.error_class == "dropped"


def test_an_error_status_names_the_servers_message():
    body = json.dumps({"error": "model 'x' not found"}).encode()
    with pytest.raises(EngineError, match="HTTP 404: model 'x' not found") as info:
        stream(engine_with(body, status=404))
    assert info.value.error_class == "http_status"


def test_lines_without_text_are_not_tokens():
    body = ndjson([{"response": "", "done": False}, {"done": False}, FINAL])
    chunks = stream(engine_with(body))
    assert sum(c.n_tokens for c in chunks) == 0 and chunks[-1].done


def test_each_chunk_carries_when_its_bytes_arrived():
    together = stream(engine_with(BODY))  # one block: every line arrived at once
    stamps = {c.arrived_at for c in together if c.n_tokens or c.done}
    assert len(stamps) == 1 and None not in stamps
    apart = [c.arrived_at for c in stream(engine_with(BODY, size=16)) if c.n_tokens or c.done]
    assert None not in apart and apart == sorted(apart) and len(set(apart)) == len(apart)
