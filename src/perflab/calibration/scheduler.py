"""The calibration server's scheduler: what a generation request costs, with no HTTP.

It loads models, keeps them alive, queues requests FIFO for a model's
parallel slots, remembers each slot's prompt (the prompt cache), acts out
faults and times everything against the :class:`TimingModel`. A protocol
adapter (Ollama NDJSON, OpenAI SSE) parses a request into a
:class:`GenerationRequest` and hands the scheduler a :class:`Responder` that
writes what the scheduler decides, when it decides it.

Every generation request ends as one :class:`RequestLog` (the ground truth).
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Protocol

from perflab.calibration.faults import BUSY_MESSAGE, Fault, parse_fault
from perflab.calibration.model import TimingModel, normalize_model_name, parse_duration

logger = logging.getLogger("perflab.calibration")

# fmt: off
_WORDS = (
    "the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while",
    "calibration", "tokens", "arrive", "at", "steady", "known", "pace", "so", "that",
    "every", "client", "measurement", "can", "be", "checked", "against", "ground",
    "truth", "recorded", "by", "server", "itself",
)
# fmt: on


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

    def token(self, text: str) -> None:
        """One output token, written now when streaming."""

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


@dataclass
class Slot:
    """One of a model's parallel slots and the tokens in its KV cache (as words)."""

    index: int
    busy: bool = False
    cached: tuple[str, ...] = ()


def _common_prefix(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class ModelSlots:
    """Load state, keep-alive, slots and the FIFO queue of one served model.

    Every field is guarded by ``cond``.
    """

    def __init__(self, name: str, keep_alive_s: float):
        self.name = name
        self.cond = threading.Condition()
        self.loaded = False
        self.loading = False
        self.active = 0  # requests holding a load reference
        self.expires_at: float | None = None  # perf_counter; None while in use or forever
        self.keep_alive_s = keep_alive_s
        self.running = 0
        self.pending = 0
        self.queue: deque[object] = deque()
        self.slots: list[Slot] = []

    def unload(self) -> None:
        """The one unload transition: weights and every slot's cache go."""
        self.loaded = False
        self.expires_at = None
        for slot in self.slots:
            slot.cached = ()

    def unload_if_idle(self) -> None:
        if self.active == 0:
            self.unload()

    def expire_if_due(self, now: float) -> None:
        expired = self.expires_at is not None and now >= self.expires_at
        if self.loaded and expired:
            self.unload_if_idle()

    def release(self, keep_alive: float, now: float) -> None:
        """Drop one load reference; the last one starts the keep-alive clock."""
        self.active -= 1
        self.keep_alive_s = keep_alive
        if self.active or not self.loaded:
            return
        if keep_alive == 0:
            self.unload()
        else:
            self.expires_at = None if math.isinf(keep_alive) else now + keep_alive

    def take_slot(self, words: tuple[str, ...], num_parallel: int, reuse: bool) -> tuple[Slot, int]:
        """A free slot and how many leading words of ``words`` its cache holds.

        With ``reuse`` the slot with the longest shared prefix wins; on a tie the
        one caching least, so a useful cache is not overwritten needlessly.
        """
        while len(self.slots) < num_parallel:
            self.slots.append(Slot(len(self.slots)))
        free = [slot for slot in self.slots if not slot.busy]
        if reuse:
            best = max(
                free,
                key=lambda s: (_common_prefix(s.cached, words), -len(s.cached), -s.index),
            )
            prefix = _common_prefix(best.cached, words)
        else:
            best, prefix = free[0], 0
        best.busy = True
        return best, prefix


class Scheduler:
    """Serves generation requests against a :class:`TimingModel`, for any protocol.

    ``on_kill`` stops the whole server (a ``kill`` fault); ``on_request`` is
    called with each finished :class:`RequestLog`.
    """

    def __init__(
        self,
        timing: TimingModel,
        *,
        on_kill: Callable[[], None] | None = None,
        on_request: Callable[[RequestLog], None] | None = None,
    ):
        self.timing = timing
        self.on_kill = on_kill
        self.on_request = on_request
        self._log: list[RequestLog] = []
        self._log_cond = threading.Condition()
        self._ids = itertools.count()
        self._ids_lock = threading.Lock()
        self._injected: deque[str] = deque()
        self._injected_lock = threading.Lock()
        self._models_lock = threading.Lock()
        self.reset()

    # -- lifecycle ------------------------------------------------------------

    def reset(self) -> None:
        """Start afresh: every model unloaded, nothing stopping. The log and ids go on."""
        self.stop_event = threading.Event()
        with self._models_lock:
            self.models = {
                name: ModelSlots(name, self.timing.keep_alive_s) for name in self.timing.models
            }

    def stop(self) -> None:
        """Make every request in progress give up (see :class:`Aborted`)."""
        self.stop_event.set()
        for state in list(self.models.values()):
            with state.cond:
                state.cond.notify_all()

    def _state(self, served: str) -> ModelSlots:
        with self._models_lock:
            if served not in self.models:  # the timing model was swapped for one with new names
                self.models[served] = ModelSlots(served, self.timing.keep_alive_s)
            return self.models[served]

    # -- faults ---------------------------------------------------------------

    def inject_fault(self, spec: str, count: int = 1) -> None:
        parse_fault(spec)
        with self._injected_lock:
            self._injected.extend([spec] * count)

    def clear_faults(self) -> None:
        with self._injected_lock:
            self._injected.clear()

    def _next_injected(self) -> str | None:
        with self._injected_lock:
            return self._injected.popleft() if self._injected else None

    def _fault_for(self, index: int, requested: str | None) -> Fault | None:
        spec = requested or self._next_injected() or self.timing.draw_fault(index)
        try:
            return parse_fault(spec) if spec else None
        except ValueError as exc:
            raise BadRequest(str(exc)) from None

    # -- models ---------------------------------------------------------------

    def loaded_models(self) -> list[str]:
        return [state.name for state in self.loaded_states()]

    def unload(self, model: str | None = None) -> None:
        """Unload ``model`` (or every model) unless in use, so the next request pays the load."""
        for state in list(self.models.values()):
            if model is None or normalize_model_name(model) == normalize_model_name(state.name):
                with state.cond:
                    state.unload_if_idle()

    def loaded_states(self) -> list[ModelSlots]:
        """The loaded models' states, after lazy keep-alive expiry."""
        now = time.perf_counter()
        out = []
        for state in list(self.models.values()):
            with state.cond:
                state.expire_if_due(now)
                if state.loaded:
                    out.append(state)
        return out

    # -- the log --------------------------------------------------------------

    @property
    def log(self) -> list[RequestLog]:
        with self._log_cond:
            return list(self._log)

    def clear_log(self) -> None:
        with self._log_cond:
            self._log.clear()

    def wait_for_log(self, n: int, timeout: float = 10.0) -> list[RequestLog]:
        deadline = time.monotonic() + timeout
        with self._log_cond:
            while len(self._log) < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{len(self._log)} of {n} requests recorded")
                self._log_cond.wait(remaining)
            return sorted(self._log, key=lambda entry: entry.id)

    def _record(self, entry: RequestLog) -> None:
        with self._log_cond:
            self._log.append(entry)
            self._log_cond.notify_all()
        if self.on_request is not None:
            try:
                self.on_request(entry)
            except Exception:  # noqa: BLE001 - a logging hook must not break serving
                logger.exception("calibration server: on_request hook failed")

    # -- one request ----------------------------------------------------------

    def handle(
        self, request: GenerationRequest, responder: Responder, t_arrival: float | None = None
    ) -> RequestLog:
        """Serve ``request`` through ``responder``; record and return its log entry.

        Raises :class:`Aborted` when the server stops meanwhile (the adapter
        cuts the connection); every other ending is answered here.
        """
        with self._ids_lock:
            index = next(self._ids)
        entry = RequestLog(
            id=index,
            endpoint=request.endpoint,
            model=request.model,
            stream=request.stream,
            t_arrival=time.perf_counter() if t_arrival is None else t_arrival,
        )
        responder.attach(entry)
        try:
            _Run(self, request, responder, entry).execute()
        except ClientGone as exc:
            gone = str(exc) or "client went away"
            if entry.outcome == "fault":
                entry.error = f"{entry.error}; {gone}"
            else:
                entry.outcome, entry.error = "client_gone", gone
            responder.cut()
        except Aborted:
            entry.outcome = "killed" if entry.outcome == "pending" else entry.outcome
            entry.error = entry.error or "server stopped"
            raise
        except BadRequest as exc:
            entry.outcome, entry.error = "bad_request", str(exc)
            if not responder.headers_sent:
                responder.reject(400, str(exc))
        finally:
            entry.t_end = time.perf_counter()
            if not entry.total_s:
                entry.total_s = entry.t_end - entry.t_arrival
            self._record(entry)
        return entry


class _Run:
    """One generation request, from arrival to its last byte."""

    def __init__(
        self,
        scheduler: Scheduler,
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
        state = self.scheduler._state(served)
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

        fault = self.scheduler._fault_for(entry.id, request.fault)
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
            self.out.token(text)
            pieces.append(text)
            t_last = time.perf_counter()
            entry.tokens_sent += 1
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
