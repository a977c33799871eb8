"""The engine interface: stream a prompt, say what the server measured."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from perflab.core.records import ServerTimings


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
    when it gets it. ``n_tokens`` counts every generated token the chunk brings,
    ``n_reasoning`` those of them that are reasoning (a thinking model's
    ``thinking`` / ``reasoning_content``), not answer.
    """

    text: str = ""
    n_tokens: int = 0
    n_reasoning: int = 0
    done: bool = False
    timings: ServerTimings | None = None
    extra: dict = field(default_factory=dict)
    sent_at: float | None = None
    arrived_at: float | None = None


@dataclass(frozen=True)
class Capabilities:
    """What an engine can tell us, which decides how its numbers are read.

    ``in_process``: client and server share one process (their CPU cannot be
    split). ``reports_queue_time``: ``queue_s`` is the engine's own queue wait;
    otherwise the wait hides in ``unaccounted_s``. ``reports_server_timings``:
    the engine reports load / prefill / decode durations. ``parallel_setting``:
    the server setting that decides how many requests run at once, if any.
    ``slots``: how many requests it serves at once by its own design, when that is
    fixed (the embedded llama.cpp: one, behind the model's lock); None: a setting
    or unknown. ``default_port``: where its server listens when the URL names no port;
    ``server_command``: the process name and arguments that identify its server
    when the listener on the port cannot be seen (another user's process).
    ``thread_setting``: the engine key (dotted, under ``engine``) that sets how many
    compute threads the server runs, if perflab can set it (the threads suite).
    """

    label: str
    in_process: bool
    reports_queue_time: bool
    reports_server_timings: bool
    parallel_setting: str | None = None
    slots: int | None = None
    default_port: int | None = None
    server_command: tuple[str, ...] | None = None
    thread_setting: str | None = None


OLLAMA = Capabilities(
    label="Ollama",
    in_process=False,
    reports_queue_time=False,
    reports_server_timings=True,
    parallel_setting="OLLAMA_NUM_PARALLEL",
    default_port=11434,
    server_command=("ollama", "serve"),
)
CALIBRATION = Capabilities(
    label="calibration server (Ollama API)",
    in_process=True,
    reports_queue_time=False,
    reports_server_timings=True,
    parallel_setting="calibration.num_parallel",
)
LLAMACPP = Capabilities(
    label="llama.cpp (embedded)",
    in_process=True,
    reports_queue_time=True,
    reports_server_timings=True,
    thread_setting="n_threads",
    slots=1,
)
OPENAI = Capabilities(
    label="the OpenAI-compatible server",
    in_process=False,
    reports_queue_time=False,
    reports_server_timings=False,
)
UNKNOWN = Capabilities(
    label="unknown engine",
    in_process=False,
    reports_queue_time=False,
    reports_server_timings=False,
)


class EngineError(Exception):
    """A request failed; ``error_class`` is one of perflab.core.records.ERROR_CLASSES."""

    def __init__(self, error_class: str, message: str):
        super().__init__(message)
        self.error_class = error_class


class PreflightError(Exception):
    """The engine cannot run at all; the message says how to fix it."""


class Engine(Protocol):
    name: str
    capabilities: Capabilities

    def preflight(self) -> dict:
        """Check the engine can serve the model; return provenance metadata."""

    def stream(self, prompt: str, options: GenerationOptions) -> Iterator[Chunk]:
        """Yield chunks as they arrive; raise EngineError on failure."""

    def close(self) -> None: ...
