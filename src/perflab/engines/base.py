"""The engine interface: stream a prompt, say what the server measured."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from perflab.records import ServerTimings


@dataclass(frozen=True)
class GenerationOptions:
    temperature: float = 0.7
    max_tokens: int = 128
    seed: int | None = 42
    timeout_s: float = 120.0
    keep_alive: str | None = None
    ignore_eos: bool = False


@dataclass
class Chunk:
    """One streamed piece. The last chunk has ``done=True`` and the timings.

    ``sent_at`` (``time.perf_counter()``) is set on a chunk (with no tokens) by an
    engine that knows when its request left: the runner times from there and
    counts the time before it as the client's preparation (``prep_s``).
    ``arrived_at`` (``time.perf_counter()``), when set, is when the bytes that
    carried the chunk were received; without it the runner stamps the chunk
    when it gets it.
    """

    text: str = ""
    n_tokens: int = 0
    done: bool = False
    timings: ServerTimings | None = None
    extra: dict = field(default_factory=dict)
    sent_at: float | None = None
    arrived_at: float | None = None


class EngineError(Exception):
    """A request failed; ``error_class`` is one of perflab.records.ERROR_CLASSES."""

    def __init__(self, error_class: str, message: str):
        super().__init__(message)
        self.error_class = error_class


class PreflightError(Exception):
    """The engine cannot run at all; the message says how to fix it."""


class Engine(Protocol):
    name: str

    def preflight(self) -> dict:
        """Check the engine can serve the model; return provenance metadata."""

    def stream(self, prompt: str, options: GenerationOptions) -> Iterator[Chunk]:
        """Yield chunks as they arrive; raise EngineError on failure."""

    def close(self) -> None: ...
