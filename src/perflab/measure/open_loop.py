"""Open-loop load: requests leave on a schedule fixed in advance, whatever the server does.

A closed loop (``runner.run_load``) sends a worker's next request when its last one
ends, so a server that stalls also stalls the load, and the requests that would have
arrived meanwhile are never timed (coordinated omission). Here each request is due at
its scheduled time and is timed from then as well as from when it really left; the gap
is the client's own lag. At most ``max_in_flight`` requests are open at once: past
that the next one waits for a place (``delay``, counted as delayed, its wait in
``held_s``) or is not sent at all (``drop``, a record with status ``dropped``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from perflab.core.records import STATUS_DROPPED, STATUS_OK, RequestRecord
from perflab.engines.base import Engine, GenerationOptions
from perflab.measure.arrivals import ArrivalPlan, LengthPlan, schedule_rate, sized_prompt
from perflab.measure.runner import (
    Clock,
    PromptNonce,
    RecordKeeper,
    RunResult,
    measure_request,
    prompt_for_request,
    run_result,
)

ON_FULL = ("delay", "drop")


@dataclass(frozen=True)
class OpenLoopPlan:
    arrivals: ArrivalPlan
    max_in_flight: int = 64
    on_full: str = "delay"
    warmup_requests: int = 0
    max_send_lag_s: float = 0.05
    min_rate_fraction: float = 0.95
    lengths: LengthPlan | None = None  # None: every request sends the prompt, max_tokens
    shared_prefix: str | None = None  # text before every measured request's own part
    turns: int = 1  # each arrival a chat of this many turns, each sent when the last ends

    def __post_init__(self):
        if self.max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if self.on_full not in ON_FULL:
            raise ValueError(f"on_full must be one of {ON_FULL}, got {self.on_full!r}")
        if self.warmup_requests < 0:
            raise ValueError("warmup_requests must not be negative")


@dataclass(frozen=True)
class ScheduleCheck:
    """Whether the client kept the schedule; a run that did not is invalid, and says why."""

    offered_rate: float  # the target, requests/s
    schedule_rate: float  # what the drawn schedule itself offers
    achieved_rate: float  # requests sent / time from the start to the last send
    n_scheduled: int
    n_sent: int
    n_delayed: int
    n_dropped: int
    send_lag_p50_s: float | None
    send_lag_p99_s: float | None
    send_lag_max_s: float | None
    max_send_lag_s: float
    min_rate_fraction: float
    problems: tuple[str, ...]

    @property
    def valid(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return fields | {"problems": list(self.problems), "valid": self.valid}


def quantile(values: list[float], q: float) -> float | None:
    """Linear interpolation between order statistics (as Polars' ``linear``)."""
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def check_schedule(
    records: list[RequestRecord], plan: OpenLoopPlan, span_s: float
) -> ScheduleCheck:
    """Judge the measured records against the schedule; ``span_s`` is start to last send."""
    measured = [r for r in records if not r.is_warmup and not r.turn]  # arrivals: first turns
    sent = [r for r in measured if r.status != STATUS_DROPPED]
    lags = [r.send_lag_s for r in sent if r.send_lag_s is not None]
    offsets = plan.arrivals.offsets()
    scheduled_rate = schedule_rate(offsets)
    achieved = len(sent) / span_s if span_s > 0 else 0.0
    p99 = quantile(lags, 0.99)
    problems = []
    if p99 is not None and p99 > plan.max_send_lag_s:
        problems.append(
            f"send lag p99 {p99 * 1000:.1f} ms is above the {plan.max_send_lag_s * 1000:g} ms "
            "allowed: the client could not send on time"
        )
    if achieved < plan.min_rate_fraction * scheduled_rate:
        problems.append(
            f"achieved {achieved:.3g} req/s, below {plan.min_rate_fraction:.0%} of the "
            f"{scheduled_rate:.3g} req/s scheduled"
        )
    return ScheduleCheck(
        offered_rate=plan.arrivals.rate,
        schedule_rate=scheduled_rate,
        achieved_rate=achieved,
        n_scheduled=len(offsets),
        n_sent=len(sent),
        n_delayed=sum(1 for r in sent if (r.held_s or 0.0) > 0),
        n_dropped=len(measured) - len(sent),
        send_lag_p50_s=quantile(lags, 0.5),
        send_lag_p99_s=p99,
        send_lag_max_s=max(lags) if lags else None,
        max_send_lag_s=plan.max_send_lag_s,
        min_rate_fraction=plan.min_rate_fraction,
        problems=tuple(problems),
    )


def on_schedule(record: RequestRecord, clock: Clock, due: float, held: float) -> RequestRecord:
    """The record with its scheduled time and the latencies counted from it."""
    started = record.t_submit - clock.epoch(due)  # how late it left
    return replace(
        record,
        t_scheduled=clock.epoch(due),
        send_lag_s=started,
        held_s=held,
        ttft_sched_s=None if record.ttft_s is None else record.ttft_s + started,
        e2e_sched_s=record.e2e_s + started,
    )


def dropped_record(experiment_id: str, index: int, clock: Clock, due: float, bound: int):
    at = clock.epoch(due)
    return RequestRecord(
        experiment_id=experiment_id,
        request_index=index,
        worker=0,
        is_warmup=False,
        status=STATUS_DROPPED,
        error_class=None,
        error=f"not sent: {bound} requests were already in flight",
        t_submit=at,
        t_first_token=None,
        t_end=at,
        ttft_s=None,
        e2e_s=0.0,
        itl_s=[],
        prompt_tokens=None,
        output_tokens=0,
        tps=None,
        t_scheduled=at,
    )


def run_open_loop(
    engine: Engine,
    prompt: str,
    options: GenerationOptions,
    plan: OpenLoopPlan,
    *,
    experiment_id: str,
    on_record: Callable[[RequestRecord], None] | None = None,
    stop: threading.Event | None = None,
    prompt_cache: str = "bust",
) -> tuple[RunResult, ScheduleCheck]:
    """Warm up one request at a time, then send ``plan.arrivals`` on schedule.

    Each request runs on its own thread, so one that hangs holds back no other;
    ``on_record`` and ``stop`` work as in ``run_load``.
    """
    stop = stop or threading.Event()
    prompt_for_request(prompt, prompt_cache, PromptNonce(0), 0)  # reject a bad mode up front
    nonce, clock = PromptNonce(), Clock()
    keep = RecordKeeper(on_record)
    shapes = plan.lengths.draws(plan.arrivals.requests) if plan.lengths else None
    sender = OpenLoopSender(
        engine, prompt, options, plan, experiment_id, prompt_cache, nonce, clock, keep, shapes
    )
    started = clock.now()
    for index in range(plan.warmup_requests):
        if stop.is_set():
            break
        keep(sender.measure(index, is_warmup=True))
    span = _send_on_schedule(sender, stop)
    result = run_result(keep, clock, started, span.t0, clock.now())
    return result, check_schedule(result.records, plan, span.last_send - span.t0)


@dataclass(frozen=True)
class OpenLoopSender:
    """Sends the requests of one open-loop run: each sized as drawn, or a chat of turns."""

    engine: Engine
    prompt: str
    options: GenerationOptions
    plan: OpenLoopPlan
    experiment_id: str
    prompt_cache: str
    nonce: PromptNonce
    clock: Clock
    keep: RecordKeeper
    shapes: list[tuple[int | None, int | None]] | None  # (prompt, output) tokens per arrival

    def measure(self, index: int, is_warmup: bool) -> RequestRecord:
        text, request_options = self._sized(index, is_warmup)
        sent = prompt_for_request(text, self.prompt_cache, self.nonce, index)
        if self.plan.shared_prefix and not is_warmup:  # after the shared part: a cache keeps it
            sent = f"{self.plan.shared_prefix}\n\n{sent}"
        return self._request(sent, request_options, index, is_warmup)

    def _sized(self, index: int, is_warmup: bool) -> tuple[str, GenerationOptions]:
        """The prompt and options of a request, at the lengths drawn for it."""
        text, request_options = self.prompt, self.options
        if self.shapes is not None and not is_warmup:
            prompt_tokens, output_tokens = self.shapes[index - self.plan.warmup_requests]
            if prompt_tokens is not None:
                text = sized_prompt(self.prompt, prompt_tokens)
            if output_tokens is not None:
                request_options = replace(self.options, max_tokens=output_tokens)
        return text, request_options

    def _request(
        self,
        sent: str,
        options: GenerationOptions,
        index: int,
        is_warmup: bool,
        text_out: list[str] | None = None,
    ) -> RequestRecord:
        return measure_request(
            self.engine,
            sent,
            options,
            experiment_id=self.experiment_id,
            request_index=index,
            worker=0,
            is_warmup=is_warmup,
            clock=self.clock,
            text_out=text_out,
        )

    def chat(self, index: int, due: float, held: float) -> None:
        """The turns of one conversation: turn t + 1 is due when turn t's answer ended."""
        history = ""
        for turn in range(self.plan.turns):
            user = prompt_for_request(self.prompt, self.prompt_cache, self.nonce, index + turn)
            sent, said = f"{history}User: {user}\nAssistant:", []
            record = self._request(sent, self.options, index + turn, False, text_out=said)
            record = replace(on_schedule(record, self.clock, due, held), turn=turn)
            self.keep(record)
            if record.status != STATUS_OK:
                return  # the rest of the conversation is not sent
            history = f"{sent} {''.join(said).strip()}\n"  # the next turn's prompt grows by it
            due, held = self.clock.now(), 0.0

    def send(self, index: int, due: float, held: float, places: threading.Semaphore) -> None:
        try:
            if self.plan.turns > 1:
                self.chat(index, due, held)
            else:
                record = self.measure(index, is_warmup=False)
                self.keep(on_schedule(record, self.clock, due, held))
        finally:
            places.release()


@dataclass(frozen=True)
class SendSpan:
    """When the scheduled sending began, and when the last request left (perf seconds)."""

    t0: float
    last_send: float


def _send_on_schedule(sender: OpenLoopSender, stop: threading.Event) -> SendSpan:
    """Each arrival at its time on its own thread, a place taken or the request dropped;
    returns when every request sent has ended."""
    plan, clock = sender.plan, sender.clock
    places = threading.BoundedSemaphore(plan.max_in_flight)
    t0 = clock.now()
    threads, last_send = [], t0
    for number, offset in enumerate(plan.arrivals.offsets()):
        index, due = plan.warmup_requests + number * plan.turns, t0 + offset
        if stop.wait(max(0.0, due - clock.now())):
            break
        held = _take_place(places, plan.on_full, stop, clock)
        if held is None:
            if stop.is_set():
                break
            sender.keep(dropped_record(sender.experiment_id, index, clock, due, plan.max_in_flight))
            continue
        thread = threading.Thread(
            target=sender.send,
            args=(index, due, held, places),
            name=f"perflab-send-{index}",
            daemon=True,
        )
        thread.start()
        threads.append(thread)
        last_send = clock.now()
    for thread in threads:
        thread.join()
    return SendSpan(t0=t0, last_send=last_send)


def _take_place(
    places: threading.BoundedSemaphore, on_full: str, stop: threading.Event, clock: Clock
) -> float | None:
    """Seconds waited for a place among the requests in flight; None when none was taken."""
    if places.acquire(blocking=False):
        return 0.0
    if on_full == "drop":
        return None
    waited_from = clock.now()
    while not places.acquire(timeout=0.05):
        if stop.is_set():
            return None
    return clock.now() - waited_from
