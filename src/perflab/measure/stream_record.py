"""What one request's stream came to: the client's times and the server's counts, as
the request's record."""

from __future__ import annotations

from dataclasses import dataclass

from perflab.core.records import (
    ERROR_ENGINE,
    ERROR_TIMEOUT,
    STATUS_ERROR,
    STATUS_OK,
    STATUS_TIMEOUT,
    RequestRecord,
    ServerTimings,
    decode_tps,
)
from perflab.engines.base import EngineError
from perflab.measure.clock import Clock


@dataclass(frozen=True)
class StreamOutcome:
    """What the client saw of one stream, in perf-counter seconds, before it is a record."""

    status: str
    error_class: str | None
    error: str | None
    started: float
    ended: float
    first: float | None  # the first token of any kind
    first_answer: float | None  # the first token that is not reasoning
    prep: float | None  # from the call to when the request left
    gaps: list[float]
    tokens: int
    reasoning: int
    timings: ServerTimings | None

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    @property
    def ttft(self) -> float | None:
        return None if self.first is None else self.first - self.started

    @property
    def e2e(self) -> float:
        return self.ended - self.started


def failure(exc: Exception) -> tuple[str, str, str]:
    """Status, error class and message of a request that raised."""
    if isinstance(exc, EngineError):
        status = STATUS_TIMEOUT if exc.error_class == ERROR_TIMEOUT else STATUS_ERROR
        return status, exc.error_class, str(exc)
    return STATUS_ERROR, ERROR_ENGINE, f"{type(exc).__name__}: {exc}"


def _output_tokens(stream: StreamOutcome) -> int:
    """The server's count of output tokens when it gives one, else the stream's."""
    timings = stream.timings
    if stream.ok and timings and timings.output_tokens:
        return timings.output_tokens
    return stream.tokens


def _queue_s(stream: StreamOutcome) -> float | None:
    return stream.timings.raw.get("queue_s") if stream.timings else None


def _unaccounted_s(stream: StreamOutcome) -> float | None:
    """End-to-end time the server's phases do not explain."""
    timings = stream.timings
    if not (
        stream.ok and timings and timings.prefill_s is not None and timings.decode_s is not None
    ):
        return None
    # client, HTTP and sampling overhead; for Ollama also the queue wait it does not report
    queue = _queue_s(stream)
    known = (queue or 0.0) + (timings.load_s or 0.0) + timings.prefill_s + timings.decode_s
    return stream.e2e - known


def request_record(
    stream: StreamOutcome,
    *,
    experiment_id: str,
    request_index: int,
    worker: int,
    is_warmup: bool,
    clock: Clock,
) -> RequestRecord:
    timings, ttft, e2e = stream.timings, stream.ttft, stream.e2e
    output_tokens = _output_tokens(stream)
    return RequestRecord(
        experiment_id=experiment_id,
        request_index=request_index,
        worker=worker,
        is_warmup=is_warmup,
        status=stream.status,
        error_class=stream.error_class,
        error=stream.error,
        t_submit=clock.epoch(stream.started),
        t_first_token=None if stream.first is None else clock.epoch(stream.first),
        t_end=clock.epoch(stream.ended),
        ttft_s=ttft,
        e2e_s=e2e,
        itl_s=stream.gaps,
        prompt_tokens=timings.prompt_tokens if timings else None,
        output_tokens=output_tokens,
        tps=decode_tps(output_tokens, ttft, e2e) if stream.ok else None,
        queue_s=_queue_s(stream),
        load_s=timings.load_s if timings else None,
        prefill_s=timings.prefill_s if timings else None,
        decode_s=timings.decode_s if timings else None,
        server_total_s=timings.total_s if timings else None,
        unaccounted_s=_unaccounted_s(stream),
        server_prompt_tokens=timings.prompt_tokens if timings else None,
        server_output_tokens=timings.output_tokens if timings else None,
        server_raw=timings.raw if timings else {},
        finish_reason=timings.finish_reason if stream.ok and timings else None,
        prep_s=stream.prep,
        answer_ttft_s=None if stream.first_answer is None else stream.first_answer - stream.started,
        reasoning_tokens=_reasoning_tokens(timings, stream.reasoning, stream.status),
        server_prefill_tokens=timings.prefill_tokens if timings else None,
        server_cached_tokens=timings.cached_tokens if timings else None,
    )


def _reasoning_tokens(timings, counted: int, status: str) -> int | None:
    """The server's count of reasoning tokens when it gives one, else the stream's."""
    if status == STATUS_OK and timings and timings.reasoning_tokens is not None:
        return timings.reasoning_tokens
    return counted or None
