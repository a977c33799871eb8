"""The per-request record: one per request, ok or not, written as a JSON line.

Times are seconds. ``t_*`` are wall-clock epoch seconds (for aligning with
resource samples); durations come from a monotonic clock. An HTTP engine's
request is timed from when its transport took the request (``t_submit``); the
client's own work before that is ``prep_s``.

Under open-loop load (a request schedule) a request also has the time it was due,
``t_scheduled``; ``send_lag_s`` is how late it left (the client's own lag, and any
wait for the bound on requests in flight, ``held_s``), and ``ttft_sched_s`` and
``e2e_sched_s`` count from when it was due. A request the bound made the client
skip is a record with status ``dropped``: never sent, never an error of the server.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATUS_OK = "ok"
STATUS_ERROR = "error"
STATUS_TIMEOUT = "timeout"
STATUS_DROPPED = "dropped"  # open loop: not sent, the bound on requests in flight was reached

# finish_reason values (an engine may report others)
FINISH_STOP = "stop"
FINISH_LENGTH = "length"

# error_class values
ERROR_CONNECT = "connect"
ERROR_HTTP_STATUS = "http_status"
ERROR_PROTOCOL = "protocol"
ERROR_TIMEOUT = "timeout"
ERROR_DROPPED = "dropped"
ERROR_SERVER = "server"
ERROR_ENGINE = "engine"
ERROR_CLASSES = (
    ERROR_CONNECT,
    ERROR_HTTP_STATUS,
    ERROR_PROTOCOL,
    ERROR_TIMEOUT,
    ERROR_DROPPED,
    ERROR_SERVER,
    ERROR_ENGINE,
)


@dataclass
class ServerTimings:
    """What the engine says about its own work, in seconds and tokens."""

    load_s: float | None = None
    prefill_s: float | None = None
    decode_s: float | None = None
    total_s: float | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    raw: dict = field(default_factory=dict)
    finish_reason: str | None = None
    reasoning_tokens: int | None = None  # of output_tokens, when the server counts them
    # of prompt_tokens: those the server evaluated (prefill_s is their time) and those it
    # reused from its prompt cache (llama-server's timings.prompt_n and cache_n)
    prefill_tokens: int | None = None
    cached_tokens: int | None = None


@dataclass
class RequestRecord:
    experiment_id: str
    request_index: int
    worker: int
    is_warmup: bool
    status: str
    error_class: str | None
    error: str | None
    t_submit: float
    t_first_token: float | None
    t_end: float
    ttft_s: float | None
    e2e_s: float
    itl_s: list[float]
    prompt_tokens: int | None
    output_tokens: int
    tps: float | None
    queue_s: float | None = None
    load_s: float | None = None
    prefill_s: float | None = None
    decode_s: float | None = None
    server_total_s: float | None = None
    unaccounted_s: float | None = None
    server_prompt_tokens: int | None = None
    server_output_tokens: int | None = None
    server_raw: dict = field(default_factory=dict)
    finish_reason: str | None = None
    prep_s: float | None = None
    t_scheduled: float | None = None
    send_lag_s: float | None = None
    held_s: float | None = None
    ttft_sched_s: float | None = None
    e2e_sched_s: float | None = None
    turn: int | None = None  # open-loop chats: the turn of its conversation, 0 first
    answer_ttft_s: float | None = None  # send → first answer token (after any reasoning)
    reasoning_tokens: int | None = None  # of output_tokens; None: the stream had none
    server_prefill_tokens: int | None = None
    server_cached_tokens: int | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


@dataclass(frozen=True)
class ColdStart:
    """The model load that one request paid: the server's account and the client's.

    ``source`` is ``preflight`` (the pre-flight check's timed request) or the id of
    the experiment whose warm-up request paid it."""

    source: str
    load_s: float | None  # the server's own load time (Ollama's load_duration)
    ttft_s: float | None  # the client's view: that request's send → first token
    e2e_s: float | None  # the client's view: that request's send → last chunk
    in_process: bool = False  # load_s is the embedded engine's model open, not a server's

    @classmethod
    def of(cls, record: RequestRecord, source: str) -> ColdStart:
        return cls(source, record.load_s, record.ttft_s, record.e2e_s)

    @classmethod
    def after_open(cls, open_s: float, record: RequestRecord, source: str) -> ColdStart:
        """An in-process engine opens the model before its first request can start: that
        open is the load the request waited for, and the client's view counts from it."""
        ttft = None if record.ttft_s is None else open_s + record.ttft_s
        return cls(source, open_s, ttft, open_s + record.e2e_s, in_process=True)


def decode_tps(output_tokens: int, ttft_s: float | None, e2e_s: float) -> float | None:
    """Decode tokens/s: tokens after the first over the time after the first."""
    if ttft_s is None or output_tokens < 2 or e2e_s <= ttft_s:
        return None
    return (output_tokens - 1) / (e2e_s - ttft_s)


def write_text_atomic(path: Path, text: str) -> None:
    """Write to a temp file, flush it to disk, then rename it into place."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_jsonl_atomic(path: Path, records: Iterable[RequestRecord]) -> None:
    write_text_atomic(path, "".join(record.to_json() + "\n" for record in records))


def write_lines_atomic(path: Path, rows: Iterable[dict]) -> None:
    """Plain dicts as JSON lines, written atomically."""
    write_text_atomic(path, "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows))


def write_json_atomic(path: Path, payload: object) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]
