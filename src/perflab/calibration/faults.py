"""Fault specs for the calibration server.

A fault is a short string, given per request (header ``X-Calibration-Fault``
or ``options.calibration_fault``), queued on the server
(:meth:`CalibrationServer.inject_fault`), scheduled by request index, or drawn
at a seeded rate. The grammar:

==========================  ==========================================================
spec                        what the server does
==========================  ==========================================================
``http_500[:message]``      answers HTTP 500 ``{"error": message}`` at once
``http_503`` / ``busy``     answers HTTP 503 "server busy, please try again. ..."
``http_<code>[:message]``   any other status code, same shape
``disconnect``              closes the connection without sending a response
``drop_after:K``            streams K tokens, then closes the socket mid-body
``malformed_after:K``       after K tokens sends a line that is not JSON, then goes on
``error_after:K[:message]`` after K tokens sends ``{"error": message}`` and ends
``stall[:SECONDS]``         waits SECONDS before sending anything (default stall_s)
``stall_after:K[:SECONDS]`` streams K tokens, then waits SECONDS, then goes on
``kill``                    stops the whole server on arrival (no response)
``kill_after:K``            streams K tokens, then stops the whole server
==========================  ==========================================================

"Stops the whole server" means: stop listening (later connections are
refused) and cut every open connection, like a killed ``ollama serve``.
"""

from __future__ import annotations

from dataclasses import dataclass

BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"

FAULT_NAMES = (
    "http_500",
    "http_503",
    "busy",
    "http_<code>",
    "disconnect",
    "drop_after",
    "malformed_after",
    "error_after",
    "stall",
    "stall_after",
    "kill",
    "kill_after",
)


@dataclass(frozen=True)
class Fault:
    """A parsed fault spec (see the module docstring for the grammar)."""

    spec: str
    kind: str  # http | disconnect | drop | malformed | error | stall | kill
    after: int | None = None  # tokens sent before the fault; None = before the response
    status: int | None = None
    message: str | None = None
    seconds: float | None = None


def _count(spec: str, value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        raise ValueError(f"fault {spec!r}: token count {value!r} is not an integer") from None
    if count < 0:
        raise ValueError(f"fault {spec!r}: token count must be >= 0")
    return count


def _seconds(spec: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"fault {spec!r}: {value!r} is not a number of seconds") from None
    if seconds < 0:
        raise ValueError(f"fault {spec!r}: seconds must be >= 0")
    return seconds


def parse_fault(spec: str) -> Fault:
    """Parse a fault spec; raise ``ValueError`` with the grammar on a bad one."""
    text = str(spec).strip()
    name, _, rest = text.partition(":")
    name = name.strip().lower()
    if name == "busy":
        return Fault(text, "http", status=503, message=rest or BUSY_MESSAGE)
    if name.startswith("http_") and name[5:].isdigit():
        status = int(name[5:])
        if not 400 <= status <= 599:
            raise ValueError(f"fault {spec!r}: status must be 4xx or 5xx")
        default = BUSY_MESSAGE if status == 503 else "calibration: injected server error"
        return Fault(text, "http", status=status, message=rest or default)
    if name == "disconnect" and not rest:
        return Fault(text, "disconnect")
    if name == "kill" and not rest:
        return Fault(text, "kill")
    if name == "stall":
        return Fault(text, "stall", seconds=_seconds(text, rest) if rest else None)
    if name in ("drop_after", "malformed_after", "kill_after") and rest:
        return Fault(text, name.split("_")[0], after=_count(text, rest))
    if name == "error_after" and rest:
        count, _, message = rest.partition(":")
        return Fault(
            text,
            "error",
            after=_count(text, count),
            message=message or "calibration: injected error mid-stream",
        )
    if name == "stall_after" and rest:
        count, _, seconds = rest.partition(":")
        return Fault(
            text,
            "stall",
            after=_count(text, count),
            seconds=_seconds(text, seconds) if seconds else None,
        )
    raise ValueError(
        f"unknown fault {spec!r}; expected one of: http_500[:msg], http_503, busy, "
        "http_<code>[:msg], disconnect, drop_after:K, malformed_after:K, "
        "error_after:K[:msg], stall[:S], stall_after:K[:S], kill, kill_after:K"
    )
