"""What the HTTP engines share: the clock that starts when the transport takes
a request, the streamed send, and the error classes of transport failures.

The ``ollama`` and ``openai`` engines differ in their wire format only; how a
request is sent, stamped and classified is the same code for both.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator

import httpx

from perflab.core.records import ERROR_CONNECT, ERROR_DROPPED, ERROR_PROTOCOL, ERROR_TIMEOUT
from perflab.engines.base import Chunk, EngineError

# The first thing the transport does with a request: open a connection for it,
# or write its headers on a pooled one.
SEND_EVENTS = frozenset(
    {
        "connection.connect_tcp.started",
        "connection.connect_unix_socket.started",
        "http11.send_request_headers.started",
        "http2.send_request_headers.started",
    }
)


class SendStamp:
    """An httpx ``trace`` callback noting when the transport took the request:
    the connection attempt, or the headers on a pooled connection."""

    __slots__ = ("sent_at",)

    def __init__(self):
        self.sent_at: float | None = None

    def __call__(self, event: str, info: dict) -> None:
        if self.sent_at is None and event in SEND_EVENTS:
            self.sent_at = time.perf_counter()


def brief(text: str, limit: int = 200) -> str:
    """One line of at most ``limit`` characters, for an error message."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def is_connect_failure(exc: BaseException) -> bool:
    """Nothing accepted the connection (as opposed to one that broke later)."""
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, ConnectionRefusedError)):
        return True
    # the ollama client turns httpx.ConnectError into a plain ConnectionError
    return type(exc) is ConnectionError


def classify_transport(exc: BaseException) -> EngineError:
    """Map what httpx and a stream parser raise onto perflab's error classes."""
    if isinstance(exc, EngineError):
        return exc
    if is_connect_failure(exc):
        return EngineError(ERROR_CONNECT, f"cannot connect: {type(exc).__name__}: {exc}")
    if isinstance(exc, (httpx.TimeoutException, TimeoutError)):
        return EngineError(ERROR_TIMEOUT, f"timed out: {type(exc).__name__}")
    if isinstance(exc, (httpx.TransportError, OSError)):
        # RemoteProtocolError (a cut chunked body), ReadError, WriteError, reset sockets...
        return EngineError(ERROR_DROPPED, f"connection dropped: {type(exc).__name__}: {exc}")
    if isinstance(exc, (json.JSONDecodeError, TypeError, ValueError, KeyError, IndexError)):
        return EngineError(ERROR_PROTOCOL, f"malformed response: {type(exc).__name__}: {exc}")
    return EngineError(ERROR_PROTOCOL, f"{type(exc).__name__}: {exc}")


def stream_request(
    client: httpx.Client,
    method: str,
    url: str,
    read: Callable[[httpx.Response], Iterator[Chunk]],
    classify: Callable[[BaseException], EngineError] = classify_transport,
    **request: object,
) -> Iterator[Chunk]:
    """Send one streamed request and yield its chunks, the first (no tokens)
    carrying ``sent_at``: when the transport took the request, so the
    client's own preparation is not timed as the server's latency.

    Every failure is raised as a classified ``EngineError``; the response is
    closed either way (a fully read connection goes back to the pool)."""
    stamp = SendStamp()
    built = client.build_request(method, url, extensions={"trace": stamp}, **request)
    try:
        response = client.send(built, stream=True)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a classified record
        if stamp.sent_at is not None:
            yield Chunk(sent_at=stamp.sent_at)
        raise classify(exc) from exc
    try:
        yield Chunk(sent_at=stamp.sent_at)
        yield from read(response)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a classified record
        raise classify(exc) from exc
    finally:
        with contextlib.suppress(Exception):
            response.close()
