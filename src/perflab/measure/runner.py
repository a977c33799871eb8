"""Closed-loop load generation: N workers, each sends its next request when
its last one ends, for a request count or a duration. Every request ends as
exactly one record, ok or error; warm-up requests are recorded and flagged.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from perflab.core.records import (
    ERROR_PROTOCOL,
    STATUS_DROPPED,
    STATUS_ERROR,
    STATUS_OK,
    RequestRecord,
)
from perflab.engines.base import Engine, GenerationOptions
from perflab.measure.clock import Clock
from perflab.measure.stream_record import StreamOutcome, failure, request_record


@dataclass(frozen=True)
class LoadPlan:
    workers: int = 1
    requests: int | None = None
    duration_s: float | None = None
    warmup_requests: int = 0

    def __post_init__(self):
        if (self.requests is None) == (self.duration_s is None):
            raise ValueError("a load plan needs exactly one of requests or duration_s")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.requests is not None and self.requests < 1:
            raise ValueError("requests must be at least 1")
        if self.duration_s is not None and self.duration_s <= 0:
            raise ValueError("duration_s must be positive")
        if self.warmup_requests < 0:
            raise ValueError("warmup_requests must not be negative")


NONCE_SPACE = 1_000_000  # six digits: two tokens in Llama 3's tokenizer, whatever the value
# Coprime with NONCE_SPACE, so request i -> nonce is one-to-one; at least 1000, so the
# leading three digits (the first token) differ between consecutive requests.
NONCE_STRIDE = 1001


class PromptNonce:
    """Puts a short prefix, unique per request, in front of a prompt: ``042137: <prompt>``.

    A server's prompt cache reuses the longest prefix a new prompt shares with the one
    it processed before; a prefix that differs from its first token on leaves nothing
    to reuse (beyond a BOS token), so every request pays its whole prefill. Nonces are
    one-to-one with the request index (below a million requests) from a random start,
    so another experiment starts elsewhere.
    """

    def __init__(self, start: int | None = None):
        self.start = secrets.randbelow(NONCE_SPACE) if start is None else start

    def nonce(self, request_index: int) -> str:
        value = (self.start + request_index * NONCE_STRIDE) % NONCE_SPACE
        return f"{value:06d}:"

    def apply(self, prompt: str, request_index: int) -> str:
        return f"{self.nonce(request_index)} {prompt}"


def prompt_for_request(
    prompt: str, prompt_cache: str, nonce: PromptNonce, request_index: int
) -> str:
    """The text sent: ``bust`` gives every request its own prefix, ``reuse`` the same prompt."""
    if prompt_cache == "reuse":
        return prompt
    if prompt_cache == "bust":
        return nonce.apply(prompt, request_index)
    raise ValueError(f"prompt_cache must be 'bust' or 'reuse', not {prompt_cache!r}")


def measure_request(
    engine: Engine,
    prompt: str,
    options: GenerationOptions,
    *,
    experiment_id: str,
    request_index: int,
    worker: int,
    is_warmup: bool,
    clock: Clock,
    text_out: list[str] | None = None,
) -> RequestRecord:
    """Send one request and time it from the client's side: from when the request
    left (an engine's ``sent_at``, else the call) to its final chunk, each chunk
    at its ``arrived_at`` (else when the engine yields it)."""
    called = started = clock.now()
    prep = None
    first = first_answer = last = ended = None
    gaps: list[float] = []
    tokens = reasoning = 0
    timings = None
    status, error_class, error = STATUS_OK, None, None
    try:
        for chunk in engine.stream(prompt, options):
            if text_out is not None and chunk.text:
                text_out.append(chunk.text)
            arrived = chunk.arrived_at
            if arrived is None:
                arrived = clock.now()
            if chunk.sent_at is not None:
                started, prep = chunk.sent_at, chunk.sent_at - called
            if chunk.n_tokens:
                if first is None:  # the first token of any kind; the rest arrived with it
                    first = arrived
                    gaps.extend([0.0] * (chunk.n_tokens - 1))
                else:  # a chunk of k tokens: its gap shared evenly, one ITL per token
                    gaps.extend([(arrived - last) / chunk.n_tokens] * chunk.n_tokens)
                if first_answer is None and chunk.n_tokens > chunk.n_reasoning:
                    first_answer = arrived
                last = arrived
                tokens += chunk.n_tokens
                reasoning += chunk.n_reasoning
            if chunk.done:
                timings, ended = chunk.timings, arrived
    except Exception as exc:  # noqa: BLE001 - never lose a request to an unexpected error
        status, error_class, error = failure(exc)
    if status == STATUS_OK and timings is None:
        status, error_class = STATUS_ERROR, ERROR_PROTOCOL
        error = "stream ended without a final chunk"
    if status != STATUS_OK or ended is None:
        ended = clock.now()
    stream = StreamOutcome(
        status=status,
        error_class=error_class,
        error=error,
        started=started,
        ended=ended,
        first=first,
        first_answer=first_answer,
        prep=prep,
        gaps=gaps,
        tokens=tokens,
        reasoning=reasoning,
        timings=timings,
    )
    return request_record(
        stream,
        experiment_id=experiment_id,
        request_index=request_index,
        worker=worker,
        is_warmup=is_warmup,
        clock=clock,
    )


@dataclass
class RunResult:
    records: list[RequestRecord]
    started: float
    ended: float
    measured_started: float
    measured_ended: float

    @property
    def measured_wall_s(self) -> float:
        return self.measured_ended - self.measured_started


class RecordKeeper:
    """The records of a run, kept as each request ends (from any thread) and handed to
    ``on_record``; one it fails to take is kept all the same, with a warning."""

    def __init__(self, on_record: Callable[[RequestRecord], None] | None = None) -> None:
        self.lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._on_record = on_record

    def __call__(self, record: RequestRecord) -> None:
        with self.lock:
            self._records.append(record)
            if self._on_record:
                try:
                    self._on_record(record)
                except Exception as exc:  # noqa: BLE001 - the record is kept in memory all the same
                    warnings.warn(
                        f"could not hand over record {record.request_index}: {exc}", stacklevel=1
                    )

    def in_order(self) -> list[RequestRecord]:
        """The records kept so far, in request order."""
        with self.lock:
            return sorted(self._records, key=lambda r: r.request_index)


def run_load(
    engine: Engine,
    prompt: str,
    options: GenerationOptions,
    plan: LoadPlan,
    *,
    experiment_id: str,
    on_record: Callable[[RequestRecord], None] | None = None,
    stop: threading.Event | None = None,
    prompt_cache: str = "bust",
) -> RunResult:
    """Warm up, then drive ``plan.workers`` closed-loop workers.

    ``on_record`` sees each record as it ends (progress, the partial file);
    setting ``stop`` sends no new request (requests in flight finish).
    ``prompt_cache`` is ``bust`` (each request's prompt gets a unique prefix, see
    PromptNonce) or ``reuse`` (every request sends ``prompt`` as it is).
    """
    stop = stop or threading.Event()
    prompt_for_request(prompt, prompt_cache, PromptNonce(0), 0)  # reject a bad mode up front
    clock = Clock()
    keep = RecordKeeper(on_record)
    sender = ClosedLoopSender(
        engine, prompt, options, experiment_id, prompt_cache, PromptNonce(), clock, keep
    )
    started = clock.now()
    warm_up(sender.send, plan.warmup_requests, stop)
    measured_started = clock.now()
    has_work = _work_left(plan, stop, clock, keep.lock, measured_started)
    _run_workers(plan.workers, lambda worker: _closed_loop(sender, worker, has_work))
    return run_result(keep, clock, started, measured_started, clock.now())


@dataclass(frozen=True)
class ClosedLoopSender:
    """Sends request after request of one run, each numbered in turn and kept as it ends."""

    engine: Engine
    prompt: str
    options: GenerationOptions
    experiment_id: str
    prompt_cache: str
    nonce: PromptNonce
    clock: Clock
    keep: RecordKeeper
    numbers: Iterator[int] = field(default_factory=itertools.count)

    def send(self, worker: int, is_warmup: bool) -> None:
        request_index = next(self.numbers)
        self.keep(
            measure_request(
                self.engine,
                prompt_for_request(self.prompt, self.prompt_cache, self.nonce, request_index),
                self.options,
                experiment_id=self.experiment_id,
                request_index=request_index,
                worker=worker,
                is_warmup=is_warmup,
                clock=self.clock,
            )
        )


def warm_up(send: Callable[[int, bool], None], requests: int, stop: threading.Event) -> None:
    """Warm-up requests one at a time, on worker 0, until ``stop`` is set."""
    for _ in range(requests):
        if stop.is_set():
            break
        send(0, True)


def _work_left(
    plan: LoadPlan,
    stop: threading.Event,
    clock: Clock,
    count_lock: threading.Lock,
    measured_started: float,
) -> Callable[[], bool]:
    """Whether a worker may send another request: until ``stop``, the deadline or the count."""
    remaining = itertools.count(plan.requests, -1) if plan.requests is not None else None
    deadline = None if plan.duration_s is None else measured_started + plan.duration_s

    def has_work() -> bool:
        if stop.is_set():
            return False
        if deadline is not None:
            return clock.now() < deadline
        with count_lock:
            return next(remaining) > 0

    return has_work


def _closed_loop(sender: ClosedLoopSender, worker: int, has_work: Callable[[], bool]) -> None:
    while has_work():
        sender.send(worker, is_warmup=False)


def _run_workers(workers: int, work: Callable[[int], None]) -> None:
    threads = [
        threading.Thread(target=work, args=(w,), name=f"perflab-worker-{w}", daemon=True)
        for w in range(workers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def run_result(
    keep: RecordKeeper, clock: Clock, started: float, measured_started: float, ended: float
) -> RunResult:
    """The run's records in order and its spans, from perf-counter times."""
    return RunResult(
        records=keep.in_order(),
        started=clock.epoch(started),
        ended=clock.epoch(ended),
        measured_started=clock.epoch(measured_started),
        measured_ended=clock.epoch(ended),
    )


def error_rate(records: list[RequestRecord]) -> float:
    """Failed requests among those sent (a request the client dropped was never sent)."""
    measured = [r for r in records if not r.is_warmup and r.status != STATUS_DROPPED]
    if not measured:
        return 0.0
    return sum(r.status != STATUS_OK for r in measured) / len(measured)
