"""HTTP plumbing shared by the protocol adapters: the threaded server, the
request handler with its routing table, and a chunked-stream responder.

Standard library only. The adapters (:mod:`~perflab.calibration.ollama_api`,
:mod:`~perflab.calibration.openai_api`) add their routes and their framing;
the :class:`~perflab.calibration.scheduler.Scheduler` decides what to send.
"""

from __future__ import annotations

import contextlib
import json
import logging
import select
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from urllib.parse import urlsplit

from perflab.calibration.request import Aborted, ClientGone, GenerationRequest, RequestLog
from perflab.calibration.scheduler import Scheduler

logger = logging.getLogger("perflab.calibration")

FAULT_HEADER = "X-Calibration-Fault"
REQUEST_ID_HEADER = "X-Calibration-Request-Id"

GetRoute = Callable[["Handler"], None]
# a POST route: what serves the JSON body, and the protocol's error body (status, message)
PostRoute = tuple[Callable[["Handler", dict], None], Callable[[int, str], dict]]


class CalibrationHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self,
        address,
        scheduler: Scheduler,
        started_at: datetime,
        get_routes: dict[str, GetRoute],
        post_routes: dict[str, PostRoute],
    ):
        self.scheduler = scheduler
        self.started_at = started_at  # when the server started listening, as its models list it
        self.get_routes = get_routes
        self.post_routes = post_routes
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)

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


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "perflab-calibration"
    sys_version = ""
    disable_nagle_algorithm = True
    server: CalibrationHTTPServer

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        logger.debug("%s - %s", self.address_string(), format % args)

    @property
    def started_at(self) -> datetime:
        return self.server.started_at

    @property
    def scheduler(self) -> Scheduler:
        return self.server.scheduler

    def path_only(self) -> str:
        path = urlsplit(self.path).path
        return path.rstrip("/") or "/"

    # -- writing --------------------------------------------------------------

    def send_body(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, payload: object) -> None:
        self.send_body(status, json.dumps(payload).encode(), "application/json; charset=utf-8")

    def cut(self) -> None:
        """Close the connection abruptly (no more bytes, no chunked terminator)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def client_gone(self) -> bool:
        """True when the client closed its end (checked without consuming data)."""
        sock = self.connection
        try:
            if hasattr(socket, "MSG_DONTWAIT"):
                return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    # -- reading --------------------------------------------------------------

    def read_body(self) -> bytes:
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

    def read_json(self) -> str | dict:
        """The JSON object sent, or a message saying why the body is not one."""
        raw = self.read_body()
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return f"invalid JSON body: {exc}"
        if not isinstance(body, dict):
            return "request body must be a JSON object"
        return body

    # -- routing --------------------------------------------------------------

    def handle_one_request(self) -> None:
        if self.scheduler.stop_event.is_set():
            self.cut()
            return
        super().handle_one_request()

    def not_found(self) -> None:
        self.send_body(404, b"404 page not found", "text/plain")

    def do_HEAD(self) -> None:
        if self.path_only() == "/":
            self.send_body(200, b"Ollama is running", "text/plain; charset=utf-8")
        else:
            self.not_found()

    def do_GET(self) -> None:
        path = self.path_only()
        route = self.server.get_routes.get(path)
        if route is not None:
            route(self)
        elif path in self.server.post_routes:
            self.send_body(405, b"405 method not allowed", "text/plain")
        else:
            self.not_found()

    def do_POST(self) -> None:
        route = self.server.post_routes.get(self.path_only())
        if route is None:
            self.read_body()
            self.not_found()
            return
        serve, error_payload = route
        body = self.read_json()
        if isinstance(body, str):
            self.send_json(400, error_payload(400, body))
            return
        serve(self, body)

    def generate(self, request: GenerationRequest, responder: StreamResponder) -> RequestLog:
        """Hand a parsed request to the scheduler; cut the connection if the server stops."""
        t_arrival = time.perf_counter()
        try:
            return self.scheduler.handle(request, responder, t_arrival)
        except Aborted:
            self.cut()
            return responder.entry


class StreamResponder:
    """Writes a response as the scheduler decides: one chunked stream of frames,
    or one JSON body. Subclasses give the protocol's frames and payloads."""

    content_type = "application/x-ndjson"

    def __init__(self, handler: Handler, stream: bool):
        self.h = handler
        self.stream = stream
        self.stop_event = handler.scheduler.stop_event
        self.headers_sent = False
        self.entry: RequestLog | None = None

    def attach(self, entry: RequestLog) -> None:
        self.entry = entry

    # -- protocol: subclasses -------------------------------------------------

    def error_payload(self, status: int, message: str) -> dict:
        return {"error": message}

    def token_frames(self, text: str, reasoning: bool = False) -> list[bytes]:
        raise NotImplementedError

    def malformed_bytes(self) -> bytes:
        raise NotImplementedError

    def error_frame(self, message: str) -> bytes:
        raise NotImplementedError

    # -- transport ------------------------------------------------------------

    def _broken(self, exc: OSError) -> Exception:
        if self.stop_event.is_set():
            return Aborted()
        return ClientGone(str(exc))

    def begin(self) -> None:
        if self.headers_sent:
            return
        h = self.h
        try:
            h.send_response(200)
            h.send_header("Content-Type", self.content_type)
            h.send_header("Transfer-Encoding", "chunked")
            h.send_header(REQUEST_ID_HEADER, str(self.entry.id))
            h.end_headers()
        except OSError as exc:
            raise self._broken(exc) from None
        self.headers_sent = True
        self.entry.status = 200

    def write(self, frame: bytes) -> None:
        """One frame as one HTTP chunk, flushed at once."""
        self.begin()
        try:
            self.h.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
        except OSError as exc:
            raise self._broken(exc) from None

    def end(self) -> None:
        try:
            self.h.wfile.write(b"0\r\n\r\n")
        except OSError as exc:
            raise ClientGone(str(exc)) from None

    def send_json(self, status: int, payload: dict) -> None:
        self.send_raw(status, json.dumps(payload).encode())

    def send_raw(self, status: int, body: bytes) -> None:
        h = self.h
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json; charset=utf-8")
            h.send_header("Content-Length", str(len(body)))
            h.send_header(REQUEST_ID_HEADER, str(self.entry.id))
            h.end_headers()
            h.wfile.write(body)
        except OSError as exc:
            raise ClientGone(str(exc)) from None
        self.headers_sent = True
        self.entry.status = status

    # -- the scheduler's Responder --------------------------------------------

    def reject(self, status: int, message: str) -> None:
        self.send_json(status, self.error_payload(status, message))

    def cut(self) -> None:
        self.h.cut()

    def client_gone(self) -> bool:
        return self.h.client_gone()

    def token(self, text: str, reasoning: bool = False) -> None:
        if self.stream:
            for frame in self.token_frames(text, reasoning):
                self.write(frame)

    def malformed(self) -> bool:
        if self.stream:
            self.write(self.malformed_bytes())
            return False
        self.send_raw(200, self.malformed_bytes())
        return True

    def fail(self, message: str) -> None:
        if self.stream:
            self.write(self.error_frame(message))
            self.end()
        else:
            self.send_json(500, self.error_payload(500, message))

    def load_answer(self, entry: RequestLog) -> None:
        raise NotImplementedError
