"""The ``ollama`` engine over real HTTP.

The official ``ollama`` client does preflight and model management. The
measured stream goes through httpx directly (``ollama_stream``): the client's
request building and per-chunk validation would otherwise be timed as the
server's latency and add client CPU to every token. The clock of a request
starts when httpx's transport starts sending it (its ``trace`` extension);
what came before is ``prep_s``.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import TypeVar

import httpx
import ollama

from perflab.core.records import (
    ERROR_HTTP_STATUS,
    ERROR_SERVER,
)
from perflab.engines import base
from perflab.engines.base import Chunk, EngineError, GenerationOptions, PreflightError
from perflab.engines.http_stream import brief, classify_transport, stream_request
from perflab.engines.ollama_ps import ModelPlacement, placement_of
from perflab.engines.ollama_stream import read_stream, stream_headers
from perflab.engines.ollama_stream import timings_from_final as timings_from_final

DEFAULT_HOST = "http://127.0.0.1:11434"
DEFAULT_PORT = 11434
PS_TIMEOUT_S = 5.0  # /api/ps answers from the scheduler's memory: a slow answer is no answer

T = TypeVar("T")


def resolve_host(host: str | None) -> str:
    return host or os.environ.get("OLLAMA_HOST") or DEFAULT_HOST


def base_url(host: str) -> str:
    """``host`` as a full base URL, read the way the ollama client reads OLLAMA_HOST:
    no scheme means http, no port means 11434 (80/443 for an explicit http/https)."""
    scheme, _, hostport = host.partition("://")
    port = DEFAULT_PORT
    if not hostport:
        scheme, hostport = "http", host
    elif scheme == "http":
        port = 80
    elif scheme == "https":
        port = 443
    split = urllib.parse.urlsplit(f"{scheme}://{hostport}")
    name = split.hostname or "127.0.0.1"
    if ":" in name:  # IPv6 literal
        name = f"[{name}]"
    path = split.path.strip("/")
    url = f"{scheme}://{name}:{split.port or port}"
    return f"{url}/{path}" if path else url


def classify(exc: BaseException) -> EngineError:
    """Map what the client and httpx raise onto perflab's error classes."""
    if isinstance(exc, ollama.ResponseError):
        if exc.status_code and exc.status_code > 0:
            return EngineError(ERROR_HTTP_STATUS, f"HTTP {exc.status_code}: {exc.error}")
        return EngineError(ERROR_SERVER, f"server error mid-stream: {exc.error}")
    return classify_transport(exc)


class OllamaEngine:
    name = "ollama"
    capabilities = base.OLLAMA

    def __init__(self, model: str, host: str | None = None, timeout_s: float = 120.0):
        self.model = model
        self.host = resolve_host(host)
        self.base_url = base_url(self.host)
        self.timeout_s = timeout_s
        # the official client for preflight and model management
        self.client = ollama.Client(host=self.host, timeout=timeout_s)
        # the measured stream: its read timeout catches stalls, stream() bounds
        # each whole request; one pooled connection per concurrent worker
        self.http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout_s,
            follow_redirects=True,
            headers=stream_headers(),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
        )
        self._placement: ModelPlacement | None = None

    # -- preflight ------------------------------------------------------------

    def _unreachable(self, exc: BaseException) -> PreflightError:
        if isinstance(exc, httpx.TimeoutException):
            why = f"no answer within {self.timeout_s:g} s ({type(exc).__name__})"
        else:
            why = f"{type(exc).__name__}: {exc}"
        return PreflightError(
            f"No Ollama server answers at {self.host} ({why}). "
            "Start it with `ollama serve`, or set OLLAMA_HOST to where it listens."
        )

    def _call(self, endpoint: str, fix: str, call: Callable[[], T]) -> T:
        """Run one preflight request; any failure becomes a PreflightError naming the fix."""
        try:
            return call()
        except (httpx.TransportError, ConnectionError) as exc:
            raise self._unreachable(exc) from None
        except ollama.ResponseError as exc:
            raise PreflightError(
                f"The server at {self.host} answered {endpoint} with HTTP {exc.status_code}: "
                f"{brief(exc.error)}. {fix}"
            ) from None
        except httpx.HTTPStatusError as exc:
            raise PreflightError(
                f"The server at {self.host} answered {endpoint} with HTTP "
                f"{exc.response.status_code}: {brief(exc.response.text)}. {fix}"
            ) from None
        except (ValueError, TypeError, AttributeError) as exc:
            raise PreflightError(
                f"The server at {self.host} does not answer {endpoint} like Ollama "
                f"({type(exc).__name__}: {brief(str(exc))}). {fix}"
            ) from None

    def _version(self) -> str | None:
        response = httpx.get(
            f"{self.base_url}/api/version", timeout=self.timeout_s, follow_redirects=True
        )
        response.raise_for_status()
        try:
            payload = response.json()
        except ValueError:
            raise ValueError(f"not JSON: {brief(response.text)!r}") from None
        if not isinstance(payload, dict):
            raise ValueError(f"expected a JSON object, got {payload!r:.200}")
        return payload.get("version")

    def _running(self) -> list[dict]:
        """/api/ps: loaded models and how much of each sits in VRAM."""
        try:
            return [
                {"model": m.model, "size": m.size, "size_vram": m.size_vram}
                for m in self.client.ps().models
            ]
        except (httpx.HTTPError, ollama.ResponseError, ConnectionError, ValueError):
            return []

    def preflight(self) -> dict:
        version = self._call(
            "/api/version",
            "Check that OLLAMA_HOST points at `ollama serve`, not another service.",
            self._version,
        )
        tags = self._call(
            "/api/tags",
            "It cannot list its models: check the `ollama serve` log and restart it, "
            "and check that OLLAMA_HOST points at it.",
            self.client.list,
        )
        names = {m.model for m in tags.models}
        if self.model not in names and f"{self.model}:latest" not in names:
            available = ", ".join(sorted(n for n in names if n)) or "none"
            raise PreflightError(
                f"Model {self.model!r} is not on the Ollama server at {self.host} "
                f"(it has: {available}). Run `ollama pull {self.model}`."
            )
        show = self._call(
            "/api/show",
            f"It lists {self.model!r} but cannot describe it: run `ollama pull {self.model}` "
            "again, or check the `ollama serve` log.",
            lambda: self.client.show(self.model),
        )
        details = show.details.model_dump() if show.details else {}
        details["running"] = self._running()
        listed = [m for m in tags.models if m.model in (self.model, f"{self.model}:latest")]
        digest = listed[0].digest if listed else None
        size = listed[0].size if listed else None
        return {
            "engine": self.name,
            "engine_version": version,
            "host": self.host,
            "model": self.model,
            "model_digest": digest,
            # the weights' size as /api/tags lists it; not model_size_gb, which the memory
            # rule compares with this machine's RAM (the server may be another machine)
            "listed_size_gb": size / 1e9 if size else None,
            "model_details": details,
            "stream_client": f"httpx {httpx.__version__}",
        }

    # -- where the model lives ------------------------------------------------

    @property
    def placement(self) -> ModelPlacement | None:
        """Where the model was when last read (``read_placement``); None before."""
        return self._placement

    def read_placement(self) -> ModelPlacement | None:
        """Read ``/api/ps`` now: the model's size, its share in GPU memory, its context
        and expiry. None when the server does not list it (not loaded, or no such API)."""
        try:
            response = self.http.get("/api/ps", timeout=min(self.timeout_s, PS_TIMEOUT_S))
            response.raise_for_status()
            found = placement_of(response.json(), self.model)
        except (httpx.HTTPError, ValueError):
            return None
        if found is not None:
            self._placement = found
        return found

    # -- generation -----------------------------------------------------------

    def _body(self, prompt: str, options: GenerationOptions) -> bytes:
        request_options = {"temperature": options.temperature, "num_predict": options.max_tokens}
        if options.seed is not None:
            request_options["seed"] = options.seed
        body = {"model": self.model, "prompt": prompt, "stream": True, "options": request_options}
        if options.keep_alive is not None:
            body["keep_alive"] = options.keep_alive
        return json.dumps(body, separators=(",", ":")).encode()

    def stream(self, prompt: str, options: GenerationOptions) -> Iterator[Chunk]:
        """Yield chunks as they arrive, the first one (no tokens) carrying ``sent_at``.

        ``options.timeout_s`` bounds the whole request, checked as each block of
        the body arrives; a silent server is caught by the read timeout (the
        engine's ``timeout_s``)."""
        deadline = time.perf_counter() + options.timeout_s
        yield from stream_request(
            self.http,
            "POST",
            "/api/generate",
            lambda response: read_stream(response, deadline, options.timeout_s),
            classify,
            content=self._body(prompt, options),
        )

    def close(self) -> None:
        self.http.close()
        self.client.close()
