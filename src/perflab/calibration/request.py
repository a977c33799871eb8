"""What passes between the calibration scheduler and a protocol adapter:
the request as any protocol asks for it, the interface the adapter writes
through, the ground-truth record, and the ways a request ends early."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Protocol


@dataclass
class RequestLog:
    """Ground truth for one generation request.

    Times are seconds; ``t_*`` are ``time.perf_counter()`` values (the same
    clock a test in the same process reads): ``t_arrival`` when the request
    body was parsed, ``t_queued`` when it joined the slot queue (after any
    load), ``t_started`` when its prefill began, ``t_end`` when the server was
    done with it. ``token_times`` are offsets from ``t_arrival`` at which each
    token was written to the socket. ``cached_tokens`` is the prompt prefix
    served from the slot's prompt cache (``prompt_cache``), not prefilled.
    ``outcome`` is one of ``ok``, ``fault``, ``busy``, ``not_found``,
    ``bad_request``, ``client_gone``, ``killed``.
    """

    id: int
    endpoint: str
    model: str
    stream: bool
    t_arrival: float
    prompt_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    tokens_sent: int = 0
    reasoning_sent: int = 0  # of tokens_sent: reasoning (a thinking model's)
    done_reason: str | None = None
    fault: str | None = None
    status: int = 0
    outcome: str = "pending"
    loaded: bool = False
    keep_alive_s: float | None = None
    slot: int | None = None
    t_queued: float | None = None
    t_started: float | None = None
    t_end: float | None = None
    load_s: float = 0.0
    queue_s: float = 0.0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    total_s: float = 0.0
    stall_s: float = 0.0
    scheduled_prefill_s: float = 0.0
    scheduled_gaps: list[float] = field(default_factory=list)
    token_times: list[float] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict:
        out = asdict(self)
        if out["keep_alive_s"] is not None and math.isinf(out["keep_alive_s"]):
            out["keep_alive_s"] = -1
        return out


class Aborted(Exception):
    """The server is stopping: give up on this request without a response."""


class ClientGone(Exception):
    """Writing to the client failed, or it closed its end."""


class BadRequest(Exception):
    """The request cannot be served as sent (HTTP 400)."""


@dataclass(frozen=True)
class GenerationRequest:
    """A generation request as any protocol asks for it.

    ``prompt`` None means a load/unload-only request (Ollama's empty prompt).
    ``max_tokens`` and ``keep_alive`` are the raw values sent (None: not
    sent); ``max_tokens_key`` names the field in errors. ``fault`` is the
    spec the request asked for itself; ``problem`` is what the adapter found
    wrong while parsing (answered HTTP 400 once the model is known).
    """

    endpoint: str
    model: str
    stream: bool
    prompt: str | None
    max_tokens: object = None
    max_tokens_key: str = "max_tokens"
    keep_alive: object = None
    fault: str | None = None
    problem: str | None = None


class Responder(Protocol):
    """What a protocol adapter writes when the scheduler says so."""

    headers_sent: bool

    def attach(self, entry: RequestLog) -> None:
        """The request's log entry (its id, model and status are the adapter's to use)."""

    def reject(self, status: int, message: str) -> None:
        """Answer an error status before anything else was sent."""

    def cut(self) -> None:
        """Close the connection at once, whatever was sent."""

    def begin(self) -> None:
        """Send the streaming response's headers (idempotent)."""

    def token(self, text: str, reasoning: bool = False) -> None:
        """One output token (of reasoning, or of the answer), written now when streaming."""

    def malformed(self) -> bool:
        """Send something that does not parse; True when the response is over."""

    def fail(self, message: str) -> None:
        """Report an error after generation began, and end the response."""

    def finish(self, entry: RequestLog, text: str) -> None:
        """The final chunk(s) or the whole body, from the finished entry."""

    def load_answer(self, entry: RequestLog) -> None:
        """Answer a load/unload-only request."""

    def client_gone(self) -> bool:
        """True when the client closed its end."""
