"""The calibration server's scheduler: what a generation request costs, with no HTTP.

It loads models, keeps them alive, queues requests FIFO for a model's
parallel slots, remembers each slot's prompt (the prompt cache), acts out
faults and times everything against the :class:`TimingModel`. A protocol
adapter (Ollama NDJSON, OpenAI SSE) parses a request into a
:class:`GenerationRequest` and hands the scheduler a :class:`Responder` that
writes what the scheduler decides, when it decides it
(:mod:`perflab.calibration.request`). One request's course from arrival to
last byte is :class:`perflab.calibration.run.RequestRun`.

Every generation request ends as one :class:`RequestLog` (the ground truth).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from perflab.calibration.faults import Fault, parse_fault
from perflab.calibration.model import TimingModel, normalize_model_name
from perflab.calibration.request import (
    Aborted,
    BadRequest,
    ClientGone,
    GenerationRequest,
    RequestLog,
    Responder,
)
from perflab.calibration.run import RequestRun
from perflab.calibration.slots import ModelSlots

logger = logging.getLogger("perflab.calibration")


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

    def slots_for(self, served: str) -> ModelSlots:
        """The slots of the served model ``served``."""
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

    def fault_for(self, index: int, requested: str | None) -> Fault | None:
        """Request ``index``'s fault: its own, else the next injected one, else a drawn one."""
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
            RequestRun(self, request, responder, entry).execute()
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
