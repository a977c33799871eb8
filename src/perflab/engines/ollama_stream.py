"""The measured Ollama stream on the wire: when a request left, its NDJSON
lines as Chunks (each stamped with when its bytes arrived), Ollama's final
timings, and what an error line or status means."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator

import httpx

from perflab import __version__
from perflab.core.records import (
    ERROR_DROPPED,
    ERROR_HTTP_STATUS,
    ERROR_SERVER,
    ERROR_TIMEOUT,
    ServerTimings,
)
from perflab.engines.base import Chunk, EngineError
from perflab.engines.http_stream import brief

NS = 1e-9


def timings_from_final(part: dict) -> ServerTimings:
    """Ollama's final chunk durations (ns) as seconds."""

    def seconds(key: str) -> float | None:
        value = part.get(key)
        return None if value is None else value * NS

    raw_keys = (
        "total_duration",
        "load_duration",
        "prompt_eval_count",
        "prompt_eval_duration",
        "eval_count",
        "eval_duration",
    )
    return ServerTimings(
        load_s=seconds("load_duration"),
        prefill_s=seconds("prompt_eval_duration"),
        decode_s=seconds("eval_duration"),
        total_s=seconds("total_duration"),
        prompt_tokens=part.get("prompt_eval_count"),
        output_tokens=part.get("eval_count"),
        raw={key: part.get(key) for key in raw_keys if part.get(key) is not None},
        finish_reason=part.get("done_reason"),
    )


def stream_headers() -> dict[str, str]:
    """What the official client sends, so the measured request looks the same to a server."""
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": f"perflab/{__version__} (httpx/{httpx.__version__})",
    }
    api_key = os.environ.get("OLLAMA_API_KEY")
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def status_error(response: httpx.Response) -> EngineError:
    response.read()
    try:
        message = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        message = response.text
    return EngineError(ERROR_HTTP_STATUS, f"HTTP {response.status_code}: {brief(message)}")


def part_chunk(part: object, arrived_at: float | None = None) -> Chunk:
    """One parsed line of /api/generate as a Chunk; raises on an error or a malformed line."""
    if not isinstance(part, dict):
        raise ValueError(f"a stream line is not a JSON object: {brief(repr(part))}")
    if error := part.get("error"):
        raise EngineError(ERROR_SERVER, f"server error mid-stream: {brief(error)}")
    text = part.get("response") or ""
    thinking = part.get("thinking") or ""
    if not isinstance(text, str) or not isinstance(thinking, str):
        raise ValueError(f"response or thinking is not text: {brief(repr(part))}")
    # one line is one token: of the answer, or of a thinking model's reasoning
    n_tokens = 1 if text or thinking else 0
    n_reasoning = 1 if thinking and not text else 0
    if part.get("done"):
        timings = timings_from_final(part)
        return Chunk(text, n_tokens, n_reasoning, True, timings, arrived_at=arrived_at)
    return Chunk(text, n_tokens, n_reasoning, arrived_at=arrived_at)


def _blocks(response: httpx.Response) -> Iterator[bytes]:
    """The body as it arrives; without a content encoding, without httpx's decoder layers."""
    if response.headers.get("content-encoding", "identity") == "identity":
        return response.iter_raw()
    return response.iter_bytes()


def read_stream(response: httpx.Response, deadline: float, timeout_s: float) -> Iterator[Chunk]:
    """The chunks of a streamed response, up to and including the final one.

    Each chunk carries the time its bytes were received. The inner loop runs
    once per token: it parses the line and leaves every other check to
    ``part_chunk``; the deadline is checked as each block arrives."""
    if not response.is_success:
        raise status_error(response)
    blocks = _blocks(response)
    pending = b""
    loads, clock = json.loads, time.perf_counter
    for block in blocks:
        arrived = clock()  # every line in this block arrived now
        if arrived > deadline:
            raise EngineError(ERROR_TIMEOUT, f"request exceeded its {timeout_s:g} s timeout")
        lines = (pending + block).split(b"\n") if pending else block.split(b"\n")
        pending = lines.pop()
        for line in lines:
            if not line or line.isspace():
                continue
            part = loads(line)
            if type(part) is dict and not part.get("done") and "error" not in part:
                text = part.get("response")
                if type(text) is str and (text or not part.get("thinking")):
                    yield Chunk(text, 1 if text else 0, arrived_at=arrived)
                    continue
            chunk = part_chunk(part, arrived)
            yield chunk
            if chunk.done:
                # read the rest (the chunked terminator) so the connection can be reused
                with contextlib.suppress(Exception):
                    for _ in blocks:
                        pass
                return
    if pending and not pending.isspace():
        chunk = part_chunk(json.loads(pending), clock())
        yield chunk
        if chunk.done:
            return
    raise EngineError(ERROR_DROPPED, "stream ended without a final done chunk")
