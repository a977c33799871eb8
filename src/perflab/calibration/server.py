"""The calibration server: Ollama's and the OpenAI API over one scheduler,
with scripted, known timings and faults on demand, in a background thread.

Standard library only. On one port it speaks enough of Ollama's API for the
official ``ollama`` client (``/api/generate``, ``/api/chat``, ``/api/tags``,
``/api/show``, ``/api/ps``, ``/api/version``, ``GET /``) and enough of the
OpenAI API for OpenAI-compatible clients (``/v1/chat/completions``,
``/v1/completions``, ``/v1/models``), as Ollama itself does.

Every generation request follows the :class:`~perflab.calibration.model.TimingModel`
(see :mod:`perflab.calibration.scheduler`) and is recorded in
:attr:`CalibrationServer.log` (a :class:`RequestLog` each), so a client's
measurements can be compared with what the server really did.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timezone

from perflab.calibration import ollama_api, openai_api
from perflab.calibration.http import CalibrationHTTPServer
from perflab.calibration.model import TimingModel
from perflab.calibration.request import RequestLog
from perflab.calibration.scheduler import Scheduler

GET_ROUTES = {**ollama_api.GET_ROUTES, **openai_api.GET_ROUTES}
POST_ROUTES = {**ollama_api.POST_ROUTES, **openai_api.POST_ROUTES}


def base_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class CalibrationServer:
    """An Ollama and OpenAI-API look-alike with scripted timings.

    >>> with CalibrationServer(TimingModel(load_time_s=0)) as server:  # doctest: +SKIP
    ...     ollama.Client(host=server.url).generate(model="llama3.1:8b", prompt="hi")
    """

    def __init__(
        self,
        model: TimingModel | dict | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        on_request: Callable[[RequestLog], None] | None = None,
    ):
        if model is None:
            model = TimingModel()
        elif isinstance(model, dict):
            model = TimingModel.from_dict(model)
        self.scheduler = Scheduler(model, on_kill=self.stop, on_request=on_request)
        self.host = host
        self.port = port
        self._httpd: CalibrationHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lifecycle = threading.Lock()
        self.started_at = datetime.now(timezone.utc)

    @property
    def timing(self) -> TimingModel:
        """The timing model, read at each request (it may be replaced between requests)."""
        return self.scheduler.timing

    @timing.setter
    def timing(self, model: TimingModel) -> None:
        self.scheduler.timing = model

    # -- lifecycle ------------------------------------------------------------

    @property
    def url(self) -> str:
        return base_url(self.host, self.port)

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def start(self) -> CalibrationServer:
        """Listen and serve in a daemon thread. After a stop, listens on the same port again."""
        with self._lifecycle:
            if self._httpd is not None:
                return self
            self.scheduler.reset()
            self.started_at = datetime.now(timezone.utc)
            httpd = CalibrationHTTPServer(
                (self.host, self.port), self.scheduler, self.started_at, GET_ROUTES, POST_ROUTES
            )
            self.port = httpd.server_address[1]
            thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"calibration-server-{self.port}",
                daemon=True,
            )
            self._httpd, self._thread = httpd, thread
            thread.start()
        return self

    def stop(self) -> None:
        """Stop like a killed ``ollama serve``: stop listening, cut open connections.

        In-flight requests end without a final chunk; later connections are
        refused. Safe to call twice and from a request handler.
        """
        with self._lifecycle:
            httpd, thread = self._httpd, self._thread
            self._httpd = self._thread = None
        if httpd is None:
            return
        self.scheduler.stop()
        httpd.shutdown()
        httpd.server_close()
        httpd.abort_connections()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    kill = stop

    def restart(self) -> CalibrationServer:
        """Stop, then listen again on the same port (models start unloaded)."""
        self.stop()
        return self.start()

    def __enter__(self) -> CalibrationServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- faults, models and the log: the scheduler's -----------------------------

    def inject_fault(self, spec: str, count: int = 1) -> None:
        """Apply ``spec`` to the next ``count`` generation requests that set no fault themselves."""
        self.scheduler.inject_fault(spec, count)

    def clear_faults(self) -> None:
        self.scheduler.clear_faults()

    def loaded_models(self) -> list[str]:
        return self.scheduler.loaded_models() if self.running else []

    def unload(self, model: str | None = None) -> None:
        """Mark ``model`` (or every model) unloaded, so the next request pays the load."""
        self.scheduler.unload(model)

    @property
    def log(self) -> list[RequestLog]:
        """A copy of the finished requests' records, in finishing order."""
        return self.scheduler.log

    def clear_log(self) -> None:
        self.scheduler.clear_log()

    def model_entry(self, name: str) -> dict:
        """``name`` as ``/api/tags`` lists it."""
        return ollama_api.model_entry(name, self.started_at)

    def wait_for_log(self, n: int, timeout: float = 10.0) -> list[RequestLog]:
        """Wait until at least ``n`` requests are recorded; return the log (sorted by id)."""
        return self.scheduler.wait_for_log(n, timeout)
