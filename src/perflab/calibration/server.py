"""An Ollama-API HTTP server with scripted, known timings and faults on demand.

Standard library only. It speaks enough of Ollama's API for the official
``ollama`` Python client (and perflab's ``ollama`` engine) to run against it:
``POST /api/generate``, ``POST /api/chat`` (NDJSON streaming with chunked
transfer encoding, or one JSON object), ``GET /api/tags``, ``POST /api/show``,
``GET /api/ps``, ``GET /api/version`` and ``GET /``.

Every generation request follows the :class:`~perflab.calibration.model.TimingModel`
and is recorded in :attr:`CalibrationServer.log` (a :class:`RequestLog` each),
so a client's measurements can be compared with what the server really did.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import math
import re
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from urllib.parse import urlsplit

from perflab.calibration.faults import BUSY_MESSAGE, Fault, parse_fault
from perflab.calibration.model import TimingModel, normalize_model_name, parse_duration

logger = logging.getLogger("perflab.calibration")

FAULT_HEADER = "X-Calibration-Fault"
REQUEST_ID_HEADER = "X-Calibration-Request-Id"
FAULT_OPTION = "calibration_fault"
NS_PER_S = 1_000_000_000

# fmt: off
_WORDS = (
    "the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while",
    "calibration", "tokens", "arrive", "at", "steady", "known", "pace", "so", "that",
    "every", "client", "measurement", "can", "be", "checked", "against", "ground",
    "truth", "recorded", "by", "server", "itself",
)
# fmt: on


def unused_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` with nothing listening (connecting is refused)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def refused_url(host: str = "127.0.0.1") -> str:
    """A base URL where connections are refused (nothing listens there)."""
    return _base_url(host, unused_port(host))


def _base_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _ns(seconds: float) -> int:
    return int(round(seconds * NS_PER_S))


@dataclass
class RequestLog:
    """Ground truth for one ``/api/generate`` or ``/api/chat`` request.

    Times are seconds; ``t_*`` are ``time.perf_counter()`` values (the same
    clock a test in the same process reads): ``t_arrival`` when the request
    body was parsed, ``t_queued`` when it joined the slot queue (after any
    load), ``t_started`` when its prefill began, ``t_end`` when the server was
    done with it. ``token_times`` are offsets from ``t_arrival`` at which each
    token's line was written to the socket. ``outcome`` is one of ``ok``,
    ``fault``, ``busy``, ``not_found``, ``bad_request``, ``client_gone``, ``killed``.
    """

    id: int
    endpoint: str
    model: str
    stream: bool
    t_arrival: float
    prompt_tokens: int = 0
    output_tokens: int = 0
    tokens_sent: int = 0
    done_reason: str | None = None
    fault: str | None = None
    status: int = 0
    outcome: str = "pending"
    loaded: bool = False
    keep_alive_s: float | None = None
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


class _Aborted(Exception):
    """The server is stopping: give up on this request without a response."""


class _ClientGone(Exception):
    """Writing to the client failed."""


class _BadRequest(Exception):
    """The request cannot be served as sent (HTTP 400)."""


class _ModelState:
    """Load state and the FIFO slot queue of one served model."""

    def __init__(self, name: str, keep_alive_s: float):
        self.name = name
        self.cond = threading.Condition()
        self.loaded = False
        self.loading = False
        self.active = 0
        self.expires_at: float | None = None  # perf_counter; None while in use or forever
        self.keep_alive_s = keep_alive_s
        self.running = 0
        self.pending = 0
        self.queue: deque[object] = deque()

    def expire_if_due(self, now: float) -> None:
        expired = self.expires_at is not None and now >= self.expires_at
        if self.loaded and self.active == 0 and expired:
            self.loaded = False
            self.expires_at = None


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address, calibration: CalibrationServer):
        self.calibration = calibration
        self.stop_event = threading.Event()
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        self.states = {
            name: _ModelState(name, calibration.timing.keep_alive_s)
            for name in calibration.timing.models
        }
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup; skip it.
        TCPServer.server_bind(self)
        self.server_name = self.server_address[0]
        self.server_port = self.server_address[1]

    def process_request(self, request, client_address) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def abort_connections(self) -> None:
        with self.connections_lock:
            conns = list(self.connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request, client_address) -> None:
        logger.debug("calibration server: error handling %s", client_address, exc_info=True)


class CalibrationServer:
    """An Ollama look-alike with scripted timings, run in a background thread.

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
        self.timing = model
        self.host = host
        self.port = port
        self.on_request = on_request
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lifecycle = threading.Lock()
        self._log: list[RequestLog] = []
        self._log_cond = threading.Condition()
        self._ids = itertools.count()
        self._ids_lock = threading.Lock()
        self._injected: deque[str] = deque()
        self._injected_lock = threading.Lock()
        self.started_at = datetime.now(timezone.utc)

    # -- lifecycle ----------------------------------------------------------

    @property
    def url(self) -> str:
        return _base_url(self.host, self.port)

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def start(self) -> CalibrationServer:
        """Listen and serve in a daemon thread. After a stop, listens on the same port again."""
        with self._lifecycle:
            if self._httpd is not None:
                return self
            httpd = _HTTPServer((self.host, self.port), self)
            self.port = httpd.server_address[1]
            self.started_at = datetime.now(timezone.utc)
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
        httpd.stop_event.set()
        httpd.shutdown()
        httpd.server_close()
        httpd.abort_connections()
        for state in httpd.states.values():
            with state.cond:
                state.cond.notify_all()
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

    # -- faults and state ---------------------------------------------------

    def inject_fault(self, spec: str, count: int = 1) -> None:
        """Apply ``spec`` to the next ``count`` generation requests that set no fault themselves."""
        parse_fault(spec)
        with self._injected_lock:
            self._injected.extend([spec] * count)

    def clear_faults(self) -> None:
        with self._injected_lock:
            self._injected.clear()

    def _next_injected(self) -> str | None:
        with self._injected_lock:
            return self._injected.popleft() if self._injected else None

    def loaded_models(self) -> list[str]:
        httpd = self._httpd
        if httpd is None:
            return []
        now = time.perf_counter()
        names = []
        for state in httpd.states.values():
            with state.cond:
                state.expire_if_due(now)
                if state.loaded:
                    names.append(state.name)
        return names

    def unload(self, model: str | None = None) -> None:
        """Mark ``model`` (or every model) unloaded, so the next request pays the load."""
        httpd = self._httpd
        if httpd is None:
            return
        for state in httpd.states.values():
            if model is None or normalize_model_name(model) == normalize_model_name(state.name):
                with state.cond:
                    if state.active == 0:
                        state.loaded = False
                        state.expires_at = None

    # -- the log ------------------------------------------------------------

    @property
    def log(self) -> list[RequestLog]:
        """A copy of the finished requests' records, in finishing order."""
        with self._log_cond:
            return list(self._log)

    def clear_log(self) -> None:
        with self._log_cond:
            self._log.clear()

    def wait_for_log(self, n: int, timeout: float = 10.0) -> list[RequestLog]:
        """Wait until at least ``n`` requests are recorded; return the log (sorted by id)."""
        deadline = time.monotonic() + timeout
        with self._log_cond:
            while len(self._log) < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{len(self._log)} of {n} requests recorded")
                self._log_cond.wait(remaining)
            return sorted(self._log, key=lambda entry: entry.id)

    def _next_id(self) -> int:
        with self._ids_lock:
            return next(self._ids)

    def _record(self, entry: RequestLog) -> None:
        with self._log_cond:
            self._log.append(entry)
            self._log_cond.notify_all()
        if self.on_request is not None:
            try:
                self.on_request(entry)
            except Exception:  # noqa: BLE001 - a logging hook must not break serving
                logger.exception("calibration server: on_request hook failed")

    # -- descriptions -------------------------------------------------------

    def model_entry(self, name: str) -> dict:
        params = _parameter_count(name)
        return {
            "name": name,
            "model": name,
            "modified_at": self.started_at.isoformat().replace("+00:00", "Z"),
            "size": int(params * 0.6),
            "digest": hashlib.sha256(f"perflab-calibration:{name}".encode()).hexdigest(),
            "details": _details(name),
        }


def _parameter_count(name: str) -> int:
    match = re.search(r"(\d+(?:\.\d+)?)([bm])\b", name.lower().rsplit(":", 1)[-1])
    if not match:
        return 8_000_000_000
    scale = 1e9 if match.group(2) == "b" else 1e6
    return int(float(match.group(1)) * scale)


def _details(name: str) -> dict:
    base = name.rsplit("/", 1)[-1].split(":", 1)[0]
    family = re.match(r"[a-zA-Z]+", base)
    family_name = family.group(0).lower() if family else "llama"
    params = _parameter_count(name)
    size = f"{params / 1e9:.1f}B" if params >= 1e9 else f"{params / 1e6:.0f}M"
    return {
        "parent_model": "",
        "format": "gguf",
        "family": family_name,
        "families": [family_name],
        "parameter_size": size,
        "quantization_level": "Q4_K_M",
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "perflab-calibration"
    sys_version = ""
    disable_nagle_algorithm = True
    server: _HTTPServer

    # -- plumbing -----------------------------------------------------------

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        logger.debug("%s - %s", self.address_string(), format % args)

    @property
    def calibration(self) -> CalibrationServer:
        return self.server.calibration

    def _path(self) -> str:
        path = urlsplit(self.path).path
        return path.rstrip("/") or "/"

    def _send_body(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, payload: object) -> None:
        body = json.dumps(payload).encode()
        self._send_body(status, body, "application/json; charset=utf-8")

    def _send_error_json(self, status: int, message: str) -> None:
        self._send_json(status, {"error": message})

    def _cut(self) -> None:
        """Close the connection abruptly (no more bytes, no chunked terminator)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _read_json(self) -> dict | None:
        raw = self._read_body()
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            self._send_error_json(400, f"invalid JSON body: {exc}")
            return None
        if not isinstance(body, dict):
            self._send_error_json(400, "request body must be a JSON object")
            return None
        return body

    # -- routing ------------------------------------------------------------

    def handle_one_request(self) -> None:
        if self.server.stop_event.is_set():
            self._cut()
            return
        super().handle_one_request()

    def do_HEAD(self) -> None:
        if self._path() == "/":
            self._send_body(200, b"Ollama is running", "text/plain; charset=utf-8")
        else:
            self._send_body(404, b"404 page not found", "text/plain")

    def do_GET(self) -> None:
        path = self._path()
        if path == "/":
            self._send_body(200, b"Ollama is running", "text/plain; charset=utf-8")
        elif path == "/api/version":
            self._send_json(200, {"version": self.calibration.timing.version})
        elif path == "/api/tags":
            models = [self.calibration.model_entry(n) for n in self.calibration.timing.models]
            self._send_json(200, {"models": models})
        elif path == "/api/ps":
            self._send_json(200, {"models": self._ps()})
        elif path in ("/api/generate", "/api/chat", "/api/show"):
            self._send_body(405, b"405 method not allowed", "text/plain")
        else:
            self._send_body(404, b"404 page not found", "text/plain")

    def do_POST(self) -> None:
        path = self._path()
        if path not in ("/api/generate", "/api/chat", "/api/show"):
            self._read_body()
            self._send_body(404, b"404 page not found", "text/plain")
            return
        body = self._read_json()
        if body is None:
            return
        if path == "/api/show":
            self._show(body)
            return
        try:
            self._generate(body, chat=path == "/api/chat")
        except _Aborted:
            self._cut()

    # -- small endpoints ----------------------------------------------------

    def _ps(self) -> list[dict]:
        now = time.perf_counter()
        out = []
        for state in self.server.states.values():
            with state.cond:
                state.expire_if_due(now)
                if not state.loaded:
                    continue
                if state.expires_at is not None:
                    remaining = state.expires_at - now
                elif math.isinf(state.keep_alive_s):
                    remaining = 9e9  # "forever": Ollama shows a far-future date too
                else:
                    remaining = state.keep_alive_s  # in use: expires keep_alive after it ends
            entry = self.calibration.model_entry(state.name)
            expires = datetime.now().astimezone() + timedelta(seconds=min(remaining, 9e9))
            out.append(
                {
                    "name": entry["name"],
                    "model": entry["model"],
                    "size": entry["size"],
                    "digest": entry["digest"],
                    "details": entry["details"],
                    "expires_at": expires.isoformat(),
                    "size_vram": entry["size"],
                    "context_length": 4096,
                }
            )
        return out

    def _show(self, body: dict) -> None:
        requested = body.get("model") or body.get("name") or ""
        served = self.calibration.timing.serves(requested) if requested else None
        if served is None:
            self._send_error_json(404, f"model '{requested}' not found")
            return
        entry = self.calibration.model_entry(served)
        details = entry["details"]
        params = _parameter_count(served)
        family = details["family"]
        self._send_json(
            200,
            {
                "license": "calibration model: no weights, scripted timings",
                "modelfile": f"# perflab calibration server\nFROM {served}\n",
                "parameters": f"num_predict {self.calibration.timing.output_tokens}",
                "template": "{{ .Prompt }}",
                "details": details,
                "model_info": {
                    "general.architecture": family,
                    "general.parameter_count": params,
                    "general.file_type": 15,
                    "general.quantization_version": 2,
                    f"{family}.context_length": 4096,
                },
                "capabilities": ["completion"],
                "modified_at": entry["modified_at"],
            },
        )

    # -- generation ---------------------------------------------------------

    def _fault_for(self, index: int, body: dict) -> Fault | None:
        options = body.get("options") if isinstance(body.get("options"), dict) else {}
        spec = (
            self.headers.get(FAULT_HEADER)
            or options.get(FAULT_OPTION)
            or self.calibration._next_injected()
            or self.calibration.timing.draw_fault(index)
        )
        try:
            return parse_fault(spec) if spec else None
        except ValueError as exc:
            raise _BadRequest(str(exc)) from None

    def _generate(self, body: dict, chat: bool) -> None:
        t_arrival = time.perf_counter()
        cal = self.calibration
        index = cal._next_id()
        requested = str(body.get("model") or "")
        stream = body.get("stream", True) is not False
        entry = RequestLog(
            id=index,
            endpoint="chat" if chat else "generate",
            model=requested,
            stream=stream,
            t_arrival=t_arrival,
        )
        run = _Run(self, body, chat, entry)
        try:
            run.execute()
        except _ClientGone as exc:
            gone = str(exc) or "client went away"
            if entry.outcome == "fault":
                entry.error = f"{entry.error}; {gone}"
            else:
                entry.outcome, entry.error = "client_gone", gone
            self.close_connection = True
        except _Aborted:
            entry.outcome = "killed" if entry.outcome == "pending" else entry.outcome
            entry.error = entry.error or "server stopped"
            raise
        except _BadRequest as exc:
            entry.outcome, entry.error = "bad_request", str(exc)
            if not run.headers_sent:
                self._send_error_json(400, str(exc))
        finally:
            entry.t_end = time.perf_counter()
            if not entry.total_s:
                entry.total_s = entry.t_end - t_arrival
            cal._record(entry)


class _Run:
    """One generation request, from arrival to the final chunk."""

    def __init__(self, handler: _Handler, body: dict, chat: bool, entry: RequestLog):
        self.h = handler
        self.body = body
        self.chat = chat
        self.entry = entry
        self.cal = handler.calibration
        self.timing = self.cal.timing
        self.stop_event = handler.server.stop_event
        self.headers_sent = False
        self.model = entry.model
        self.text_rng = self.timing.rng(entry.id, "text")

    # -- timing helpers -----------------------------------------------------

    def sleep_until(self, deadline: float) -> None:
        remaining = deadline - time.perf_counter()
        if remaining > 0 and self.stop_event.wait(remaining):
            raise _Aborted()
        if self.stop_event.is_set():
            raise _Aborted()

    def client_gone(self) -> bool:
        """True when the client closed its end (checked without consuming data)."""
        sock = self.h.connection
        try:
            if hasattr(socket, "MSG_DONTWAIT"):
                return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

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
                if self.client_gone():
                    raise _ClientGone("client went away during a stall")
        finally:
            self.entry.stall_s += time.perf_counter() - t0

    def kill(self) -> None:
        self.entry.outcome = "killed"
        self.entry.error = "server killed by fault"
        self.cal.stop()
        raise _Aborted()

    # -- output helpers -----------------------------------------------------

    def begin_stream(self) -> None:
        if self.headers_sent:
            return
        h = self.h
        try:
            h.send_response(200)
            h.send_header("Content-Type", "application/x-ndjson")
            h.send_header("Transfer-Encoding", "chunked")
            h.send_header(REQUEST_ID_HEADER, str(self.entry.id))
            h.end_headers()
        except OSError as exc:
            if self.stop_event.is_set():
                raise _Aborted() from None
            raise _ClientGone(str(exc)) from None
        self.headers_sent = True
        self.entry.status = 200

    def write_line(self, payload: bytes) -> None:
        self.begin_stream()
        data = payload + b"\n"
        try:
            self.h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        except OSError as exc:
            if self.stop_event.is_set():
                raise _Aborted() from None
            raise _ClientGone(str(exc)) from None

    def end_stream(self) -> None:
        try:
            self.h.wfile.write(b"0\r\n\r\n")
        except OSError as exc:
            raise _ClientGone(str(exc)) from None

    def send_json(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        h = self.h
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json; charset=utf-8")
            h.send_header("Content-Length", str(len(body)))
            h.send_header(REQUEST_ID_HEADER, str(self.entry.id))
            h.end_headers()
            h.wfile.write(body)
        except OSError as exc:
            raise _ClientGone(str(exc)) from None
        self.headers_sent = True
        self.entry.status = status

    def piece(self, text: str, done: bool = False, **extra) -> dict:
        out: dict = {"model": self.model, "created_at": _now_iso()}
        if self.chat:
            out["message"] = {"role": "assistant", "content": text}
        else:
            out["response"] = text
        out["done"] = done
        out.update(extra)
        return out

    def token_text(self, i: int) -> str:
        word = self.text_rng.choice(_WORDS)
        return word if i == 0 else " " + word

    # -- the request --------------------------------------------------------

    def prompt_text(self) -> str | None:
        """The text whose tokens are counted; None for a load/unload-only request."""
        body = self.body
        if self.chat:
            messages = body.get("messages") or []
            if not isinstance(messages, list):
                raise _BadRequest("messages must be a list")
            if not messages:
                return None
            return "\n".join(str(m.get("content") or "") for m in messages if isinstance(m, dict))
        prompt = body.get("prompt")
        if not prompt and not body.get("images"):
            return None
        return " ".join(str(part) for part in (body.get("system"), prompt) if part)

    def execute(self) -> None:
        entry, timing, body = self.entry, self.timing, self.body
        if not entry.model:
            entry.outcome, entry.error = "bad_request", "model is required"
            self.send_json(400, {"error": "model is required"})
            return
        served = timing.serves(entry.model)
        if served is None:
            message = f"model '{entry.model}' not found"
            entry.outcome, entry.error = "not_found", message
            self.send_json(404, {"error": message})
            return
        self.model = entry.model = served
        state = self.h.server.states[served]
        options = body.get("options") if isinstance(body.get("options"), dict) else {}
        keep_alive = timing.keep_alive_s
        if body.get("keep_alive") is not None:
            try:
                keep_alive = parse_duration(body["keep_alive"], strict=True)
            except ValueError as exc:
                raise _BadRequest(str(exc)) from None
        entry.keep_alive_s = keep_alive

        text = self.prompt_text()
        if text is None:
            self.load_only(state, keep_alive)
            return

        fault = self.h._fault_for(entry.id, body)
        if fault is not None:
            entry.fault = fault.spec
        if fault is not None and fault.after is None:
            if fault.kind == "http":
                entry.outcome, entry.error = "fault", fault.message
                self.send_json(fault.status, {"error": fault.message})
                return
            if fault.kind == "disconnect":
                entry.outcome, entry.error = "fault", "disconnected before responding"
                self.h._cut()
                return
            if fault.kind == "kill":
                self.kill()
            if fault.kind == "stall":
                self.stall(fault)

        entry.prompt_tokens = timing.prompt_tokens(text)
        num_predict = options.get("num_predict")
        if num_predict is not None and not isinstance(num_predict, (int, float)):
            raise _BadRequest(f"options.num_predict must be a number, got {num_predict!r}")
        n_tokens, done_reason = timing.n_output(None if num_predict is None else int(num_predict))
        entry.output_tokens = n_tokens
        entry.scheduled_prefill_s = timing.prefill_s(entry.prompt_tokens)
        entry.scheduled_gaps = timing.gaps(entry.id, n_tokens)

        with state.cond:
            if state.running + state.pending >= timing.num_parallel + timing.max_queue:
                busy = True
            else:
                busy = False
                state.pending += 1
        if busy:
            entry.outcome, entry.error = "busy", BUSY_MESSAGE
            self.send_json(503, {"error": BUSY_MESSAGE})
            return

        in_slot = False
        loaded_ref = False
        try:
            loaded_ref = True  # ensure_loaded takes a reference before it can fail
            entry.load_s, entry.loaded = self.ensure_loaded(state)
            ticket = object()
            with state.cond:
                t_queue = entry.t_queued = time.perf_counter()
                state.queue.append(ticket)
                try:
                    while state.queue[0] is not ticket or state.running >= timing.num_parallel:
                        if self.stop_event.is_set():
                            raise _Aborted()
                        if self.client_gone():
                            raise _ClientGone("client went away while queued")
                        state.cond.wait(0.05)
                finally:
                    state.queue.remove(ticket)
                    state.cond.notify_all()
                state.running += 1
                state.pending -= 1
                in_slot = True
            entry.queue_s = time.perf_counter() - t_queue
            self.generate_tokens(fault, n_tokens, done_reason)
        finally:
            with state.cond:
                if in_slot:
                    state.running -= 1
                else:
                    state.pending -= 1
                if loaded_ref:
                    self.release_model(state, keep_alive)
                state.cond.notify_all()

    def ensure_loaded(self, state: _ModelState) -> tuple[float, bool]:
        """Wait until ``state`` is loaded, loading it if nobody is; (seconds, did_load)."""
        t0 = time.perf_counter()
        do_load = False
        with state.cond:
            state.expire_if_due(t0)
            state.active += 1
            state.expires_at = None
            while state.loading:
                if self.stop_event.is_set():
                    raise _Aborted()
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

    def release_model(self, state: _ModelState, keep_alive: float) -> None:
        """Called with ``state.cond`` held, once per ``ensure_loaded``."""
        state.active -= 1
        state.keep_alive_s = keep_alive
        if state.active == 0 and state.loaded:
            if keep_alive == 0:
                state.loaded = False
                state.expires_at = None
            elif math.isinf(keep_alive):
                state.expires_at = None
            else:
                state.expires_at = time.perf_counter() + keep_alive

    def load_only(self, state: _ModelState, keep_alive: float) -> None:
        """Ollama's empty-prompt request: load (or with keep_alive 0, unload) the model."""
        entry = self.entry
        if keep_alive == 0:
            with state.cond:
                if state.active == 0:
                    state.loaded = False
                    state.expires_at = None
            entry.done_reason = "unload"
        else:
            entry.load_s, entry.loaded = self.ensure_loaded(state)
            with state.cond:
                self.release_model(state, keep_alive)
                state.cond.notify_all()
            entry.done_reason = "load"
        entry.outcome = "ok"
        entry.total_s = time.perf_counter() - entry.t_arrival
        self.send_json(200, self.piece("", done=True, done_reason=entry.done_reason))

    def generate_tokens(self, fault: Fault | None, n_tokens: int, done_reason: str) -> None:
        entry = self.entry
        stream = entry.stream
        t_prefill = entry.t_started = time.perf_counter()
        self.sleep_until(t_prefill + entry.scheduled_prefill_s)
        t_gen = time.perf_counter()
        entry.prefill_s = t_gen - t_prefill
        t_last = t_gen
        anchor = t_gen
        pieces: list[str] = []
        gaps = entry.scheduled_gaps
        fault_at = None if fault is None or fault.after is None else min(fault.after, n_tokens)
        for i in range(n_tokens + 1):
            if fault is not None and fault_at == i:
                if self.apply_midstream_fault(fault, pieces):
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
            if stream:
                self.write_line(json.dumps(self.piece(text)).encode())
            pieces.append(text)
            t_last = time.perf_counter()
            entry.tokens_sent += 1
            entry.token_times.append(t_last - entry.t_arrival)
        entry.decode_s = t_last - t_gen
        t_done = time.perf_counter()
        entry.total_s = t_done - entry.t_arrival
        entry.done_reason = done_reason
        final = {
            "done_reason": done_reason,
            "total_duration": _ns(entry.total_s),
            "load_duration": _ns(entry.load_s),
            "prompt_eval_count": entry.prompt_tokens,
            "prompt_eval_duration": _ns(entry.prefill_s),
            "eval_count": entry.tokens_sent,
            "eval_duration": _ns(entry.decode_s),
        }
        if not self.chat:
            context = list(range(entry.prompt_tokens + entry.tokens_sent))
            final = {"done_reason": done_reason, "context": context, **final}
        final_text = "".join(pieces) if not stream else ""
        payload = self.piece(final_text, done=True, **final)
        entry.outcome = "ok" if entry.outcome == "pending" else entry.outcome
        if stream:
            self.write_line(json.dumps(payload).encode())
            self.end_stream()
        else:
            self.send_json(200, payload)

    def apply_midstream_fault(self, fault: Fault, pieces: list[str]) -> bool:
        """Act out a fault after ``len(pieces)`` tokens; True when the request ends here."""
        entry = self.entry
        stream = entry.stream
        if fault.kind == "stall":
            return False
        if fault.kind == "kill":
            if stream:
                self.begin_stream()
            self.kill()
        if fault.kind == "drop":
            if stream:
                self.begin_stream()
            entry.outcome, entry.error = "fault", f"connection dropped after {len(pieces)} tokens"
            self.h._cut()
            return True
        if fault.kind == "malformed":
            entry.outcome = "fault"
            entry.error = f"malformed line after {len(pieces)} tokens"
            bad = b'{"model": "' + self.model.encode() + b'", "created_at": "20'
            if stream:
                self.write_line(bad)
                return False
            try:
                self.h.send_response(200)
                self.h.send_header("Content-Type", "application/json; charset=utf-8")
                self.h.send_header("Content-Length", str(len(bad)))
                self.h.end_headers()
                self.h.wfile.write(bad)
            except OSError as exc:
                raise _ClientGone(str(exc)) from None
            self.headers_sent = True
            entry.status = 200
            return True
        if fault.kind == "error":
            entry.outcome, entry.error = "fault", fault.message
            if stream:
                self.write_line(json.dumps({"error": fault.message}).encode())
                self.end_stream()
            else:
                self.send_json(500, {"error": fault.message})
            return True
        return False
