"""One generation request's course through the scheduler, from arrival to its
last byte: faults on arrival, the queue limit, load, the wait for a slot, the
prompt cache, prefill, each token on its deadline, faults mid-stream."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

from perflab.calibration.faults import BUSY_MESSAGE, Fault
from perflab.calibration.model import TimingModel, parse_duration
from perflab.calibration.request import (
    Aborted,
    BadRequest,
    ClientGone,
    GenerationRequest,
    RequestLog,
    Responder,
)
from perflab.calibration.slots import ModelSlots, Slot


class Serving(Protocol):
    """What a request's course needs of the scheduler that runs it."""

    timing: TimingModel
    stop_event: threading.Event
    on_kill: Callable[[], None] | None

    def slots_for(self, served: str) -> ModelSlots: ...

    def fault_for(self, index: int, requested: str | None) -> Fault | None: ...


# fmt: off
_WORDS = (
    "the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while",
    "calibration", "tokens", "arrive", "at", "steady", "known", "pace", "so", "that",
    "every", "client", "measurement", "can", "be", "checked", "against", "ground",
    "truth", "recorded", "by", "server", "itself",
)
# fmt: on


class RequestRun:
    """One generation request, from arrival to its last byte."""

    def __init__(
        self,
        scheduler: Serving,
        request: GenerationRequest,
        responder: Responder,
        entry: RequestLog,
    ):
        self.scheduler = scheduler
        self.request = request
        self.out = responder
        self.entry = entry
        self.timing = scheduler.timing
        self.stop_event = scheduler.stop_event
        self.text_rng = self.timing.rng(entry.id, "text")

    # -- time -----------------------------------------------------------------

    def sleep_until(self, deadline: float) -> None:
        remaining = deadline - time.perf_counter()
        if remaining > 0 and self.stop_event.wait(remaining):
            raise Aborted()
        if self.stop_event.is_set():
            raise Aborted()

    def stall(self, fault: Fault) -> None:
        """Hang for the fault's seconds; like Ollama, give up when the client leaves."""
        seconds = self.timing.stall_s if fault.seconds is None else fault.seconds
        t0 = time.perf_counter()
        deadline = t0 + seconds
        self.entry.outcome, self.entry.error = "fault", f"stalled for up to {seconds:g} s"
        try:
            while True:
                now = time.perf_counter()
                if now >= deadline:
                    break
                self.sleep_until(min(deadline, now + 0.05))
                if self.out.client_gone():
                    raise ClientGone("client went away during a stall")
        finally:
            self.entry.stall_s += time.perf_counter() - t0

    def kill(self) -> None:
        self.entry.outcome = "killed"
        self.entry.error = "server killed by fault"
        if self.scheduler.on_kill is not None:
            self.scheduler.on_kill()
        raise Aborted()

    # -- the request ------------------------------------------------------------

    def execute(self) -> None:
        entry, timing, request = self.entry, self.timing, self.request
        if not entry.model:
            entry.outcome, entry.error = "bad_request", "model is required"
            self.out.reject(400, "model is required")
            return
        served = timing.serves(entry.model)
        if served is None:
            message = f"model '{entry.model}' not found"
            entry.outcome, entry.error = "not_found", message
            self.out.reject(404, message)
            return
        entry.model = served
        state = self.scheduler.slots_for(served)
        keep_alive = timing.keep_alive_s
        if request.keep_alive is not None:
            try:
                keep_alive = parse_duration(request.keep_alive, strict=True)
            except ValueError as exc:
                raise BadRequest(str(exc)) from None
        entry.keep_alive_s = keep_alive
        if request.problem:
            raise BadRequest(request.problem)
        if request.prompt is None:
            self.load_only(state, keep_alive)
            return

        fault = self.scheduler.fault_for(entry.id, request.fault)
        if fault is not None:
            entry.fault = fault.spec
        if fault is not None and fault.after is None and self.fault_on_arrival(fault):
            return

        entry.prompt_tokens = timing.prompt_tokens(request.prompt)
        n_tokens, done_reason = timing.n_output(self.max_tokens())
        entry.output_tokens = n_tokens
        entry.scheduled_prefill_s = timing.prefill_s(entry.prompt_tokens)
        entry.scheduled_gaps = timing.gaps(entry.id, n_tokens)

        with state.cond:
            busy = state.running + state.pending >= timing.num_parallel + timing.max_queue
            if not busy:
                state.pending += 1
        if busy:
            entry.outcome, entry.error = "busy", BUSY_MESSAGE
            self.out.reject(503, BUSY_MESSAGE)
            return
        self.serve(state, keep_alive, fault, n_tokens, done_reason)

    def max_tokens(self) -> int | None:
        value = self.request.max_tokens
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadRequest(f"{self.request.max_tokens_key} must be a number, got {value!r}")
        return int(value)

    def fault_on_arrival(self, fault: Fault) -> bool:
        """Act out a fault due before any output; True when the request ends here."""
        entry = self.entry
        if fault.kind == "http":
            entry.outcome, entry.error = "fault", fault.message
            self.out.reject(fault.status, fault.message)
            return True
        if fault.kind == "disconnect":
            entry.outcome, entry.error = "fault", "disconnected before responding"
            self.out.cut()
            return True
        if fault.kind == "kill":
            self.kill()
        if fault.kind == "stall":
            self.stall(fault)
        return False

    def serve(
        self,
        state: ModelSlots,
        keep_alive: float,
        fault: Fault | None,
        n_tokens: int,
        done_reason: str,
    ) -> None:
        """Load, queue for a slot, generate; every reference is given back on the way out."""
        entry = self.entry
        slot: Slot | None = None
        loaded_ref = False
        words = tuple(self.request.prompt.split())
        try:
            loaded_ref = True  # ensure_loaded takes a reference before it can fail
            entry.load_s, entry.loaded = self.ensure_loaded(state)
            slot, prefix_words = self.wait_for_slot(state, words)
            entry.slot = slot.index
            self.use_prompt_cache(prefix_words)
            self.generate(slot, words, fault, n_tokens, done_reason)
        finally:
            with state.cond:
                if slot is not None:
                    state.running -= 1
                    slot.busy = False
                else:
                    state.pending -= 1
                if loaded_ref:
                    state.release(keep_alive, time.perf_counter())
                state.cond.notify_all()

    def wait_for_slot(self, state: ModelSlots, words: tuple[str, ...]) -> tuple[Slot, int]:
        """Wait, first come first served, for one of the model's slots."""
        ticket = object()
        num_parallel = self.timing.num_parallel
        with state.cond:
            t_queue = self.entry.t_queued = time.perf_counter()
            state.queue.append(ticket)
            try:
                while state.queue[0] is not ticket or state.running >= num_parallel:
                    if self.stop_event.is_set():
                        raise Aborted()
                    if self.out.client_gone():
                        raise ClientGone("client went away while queued")
                    state.cond.wait(0.05)
            finally:
                state.queue.remove(ticket)
                state.cond.notify_all()
            slot, prefix = state.take_slot(words, num_parallel, self.timing.prompt_cache)
            state.running += 1
            state.pending -= 1
        self.entry.queue_s = time.perf_counter() - t_queue
        return slot, prefix

    def use_prompt_cache(self, prefix_words: int) -> None:
        """Prefill only what the slot's cache lacks; at least one token is always evaluated."""
        entry, timing = self.entry, self.timing
        if not timing.prompt_cache or entry.prompt_tokens == 0:
            return
        entry.cached_tokens = min(timing.word_tokens(prefix_words), entry.prompt_tokens - 1)
        entry.scheduled_prefill_s = timing.prefill_s(entry.prompt_tokens - entry.cached_tokens)

    def ensure_loaded(self, state: ModelSlots) -> tuple[float, bool]:
        """Wait until ``state`` is loaded, loading it if nobody is; (seconds, did_load)."""
        t0 = time.perf_counter()
        do_load = False
        with state.cond:
            state.expire_if_due(t0)
            state.active += 1
            state.expires_at = None
            while state.loading:
                if self.stop_event.is_set():
                    raise Aborted()
                state.cond.wait(0.05)
            if not state.loaded:
                state.loading = True
                do_load = True
        if do_load:
            try:
                self.sleep_until(t0 + self.timing.load_time_s)
                with state.cond:
                    state.loaded = True
            finally:
                with state.cond:
                    state.loading = False
                    state.cond.notify_all()
        return time.perf_counter() - t0, do_load

    def load_only(self, state: ModelSlots, keep_alive: float) -> None:
        """Ollama's empty-prompt request: load (or with keep_alive 0, unload) the model."""
        entry = self.entry
        if keep_alive == 0:
            with state.cond:
                state.unload_if_idle()
            entry.done_reason = "unload"
        else:
            entry.load_s, entry.loaded = self.ensure_loaded(state)
            with state.cond:
                state.release(keep_alive, time.perf_counter())
                state.cond.notify_all()
            entry.done_reason = "load"
        entry.outcome = "ok"
        entry.total_s = time.perf_counter() - entry.t_arrival
        self.out.load_answer(entry)

    def token_text(self, i: int) -> str:
        word = self.text_rng.choice(_WORDS)
        return word if i == 0 else " " + word

    def generate(
        self,
        slot: Slot,
        words: tuple[str, ...],
        fault: Fault | None,
        n_tokens: int,
        done_reason: str,
    ) -> None:
        entry = self.entry
        t_prefill = entry.t_started = time.perf_counter()
        self.sleep_until(t_prefill + entry.scheduled_prefill_s)
        t_gen = time.perf_counter()
        entry.prefill_s = t_gen - t_prefill
        slot.cached = words  # the prompt is in the slot's KV cache now
        t_last = anchor = t_gen
        pieces: list[str] = []
        gaps = entry.scheduled_gaps
        fault_at = None if fault is None or fault.after is None else min(fault.after, n_tokens)
        for i in range(n_tokens + 1):
            if fault is not None and fault_at == i:
                if self.fault_midstream(fault, len(pieces)):
                    return
                if fault.kind == "stall":
                    before = entry.stall_s
                    self.stall(fault)
                    anchor += entry.stall_s - before
            if i == n_tokens:
                break
            if i > 0:
                anchor += gaps[i - 1]
                self.sleep_until(anchor)
            text = self.token_text(i)
            thinking = i < self.timing.reasoning_tokens
            self.out.token(text, thinking)
            pieces.append(text)
            t_last = time.perf_counter()
            entry.tokens_sent += 1
            entry.reasoning_sent += thinking
            entry.token_times.append(t_last - entry.t_arrival)
        entry.decode_s = t_last - t_gen
        slot.cached = words + tuple("".join(pieces).split())
        entry.total_s = time.perf_counter() - entry.t_arrival
        entry.done_reason = done_reason
        entry.outcome = "ok" if entry.outcome == "pending" else entry.outcome
        self.out.finish(entry, "".join(pieces))

    def fault_midstream(self, fault: Fault, sent: int) -> bool:
        """Act out a fault after ``sent`` tokens; True when the request ends here."""
        entry = self.entry
        if fault.kind == "kill":
            if entry.stream:
                self.out.begin()
            self.kill()
        if fault.kind == "drop":
            if entry.stream:
                self.out.begin()
            entry.outcome, entry.error = "fault", f"connection dropped after {sent} tokens"
            self.out.cut()
            return True
        if fault.kind == "malformed":
            entry.outcome, entry.error = "fault", f"malformed line after {sent} tokens"
            return self.out.malformed()
        if fault.kind == "error":
            entry.outcome, entry.error = "fault", fault.message
            self.out.fail(fault.message)
            return True
        return False
