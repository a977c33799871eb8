"""The ``ollama`` engine: the official client, streaming, over real HTTP."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import httpx
import ollama

from perflab.engines.base import Chunk, EngineError, GenerationOptions, PreflightError
from perflab.records import (
    ERROR_CONNECT,
    ERROR_DROPPED,
    ERROR_HTTP_STATUS,
    ERROR_PROTOCOL,
    ERROR_SERVER,
    ERROR_TIMEOUT,
    ServerTimings,
)

DEFAULT_HOST = "http://127.0.0.1:11434"
NS = 1e-9


def resolve_host(host: str | None) -> str:
    return host or os.environ.get("OLLAMA_HOST") or DEFAULT_HOST


def timings_from_final(part: dict) -> ServerTimings:
    """Ollama's final chunk durations (ns) as seconds."""

    def seconds(key: str) -> float | None:
        value = part.get(key)
        return None if value is None else value * NS

    raw_keys = (
        "total_duration",
        "load_duration",
        "prompt_eval_count",
        "prompt_eval_duration",
        "eval_count",
        "eval_duration",
    )
    return ServerTimings(
        load_s=seconds("load_duration"),
        prefill_s=seconds("prompt_eval_duration"),
        decode_s=seconds("eval_duration"),
        total_s=seconds("total_duration"),
        prompt_tokens=part.get("prompt_eval_count"),
        output_tokens=part.get("eval_count"),
        raw={key: part.get(key) for key in raw_keys if part.get(key) is not None},
    )


def classify(exc: BaseException) -> EngineError:
    """Map what the client and httpx raise onto perflab's error classes."""
    if isinstance(exc, EngineError):
        return exc
    if isinstance(exc, ollama.ResponseError):
        if exc.status_code and exc.status_code > 0:
            return EngineError(ERROR_HTTP_STATUS, f"HTTP {exc.status_code}: {exc.error}")
        return EngineError(ERROR_SERVER, f"server error mid-stream: {exc.error}")
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, ConnectionError)):
        return EngineError(ERROR_CONNECT, f"cannot connect: {exc}")
    if isinstance(exc, httpx.TimeoutException):
        return EngineError(ERROR_TIMEOUT, f"timed out: {type(exc).__name__}")
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.TransportError)):
        return EngineError(ERROR_DROPPED, f"connection dropped: {exc}")
    if isinstance(exc, (json.JSONDecodeError, TypeError, ValueError)):
        return EngineError(ERROR_PROTOCOL, f"malformed response: {exc}")
    return EngineError(ERROR_PROTOCOL, f"{type(exc).__name__}: {exc}")


class OllamaEngine:
    name = "ollama"

    def __init__(self, model: str, host: str | None = None, timeout_s: float = 120.0):
        self.model = model
        self.host = resolve_host(host)
        self.timeout_s = timeout_s
        self.client = ollama.Client(host=self.host, timeout=timeout_s)
        # the client exposes no per-request timeout; its httpx client carries one
        self._http: httpx.Client = self.client._client

    def _version(self) -> str | None:
        response = self._http.get("/api/version")
        response.raise_for_status()
        return response.json().get("version")

    def _running(self) -> list[dict]:
        """/api/ps: loaded models and how much of each sits in VRAM."""
        try:
            return [
                {"model": m.model, "size": m.size, "size_vram": m.size_vram}
                for m in self.client.ps().models
            ]
        except (httpx.HTTPError, ollama.ResponseError, ValueError):
            return []

    def preflight(self) -> dict:
        try:
            version = self._version()
            tags = self.client.list()
        except (httpx.TransportError, ConnectionError) as exc:
            raise PreflightError(
                f"No Ollama server answers at {self.host} ({exc}). "
                "Start it with `ollama serve`, or set OLLAMA_HOST to where it listens."
            ) from None
        except (httpx.HTTPStatusError, ollama.ResponseError, ValueError) as exc:
            raise PreflightError(
                f"The server at {self.host} does not answer like Ollama ({exc}). "
                "Check that OLLAMA_HOST points at `ollama serve`."
            ) from None
        names = {m.model for m in tags.models}
        if self.model not in names and f"{self.model}:latest" not in names:
            available = ", ".join(sorted(names)) or "none"
            raise PreflightError(
                f"Model {self.model!r} is not on the Ollama server at {self.host} "
                f"(it has: {available}). Run `ollama pull {self.model}`."
            )
        try:
            show = self.client.show(self.model)
        except (httpx.HTTPError, ollama.ResponseError) as exc:
            raise PreflightError(
                f"Ollama at {self.host} lists {self.model!r} but cannot describe it ({exc}). "
                f"Run `ollama pull {self.model}` again."
            ) from None
        details = show.details.model_dump() if show.details else {}
        details["running"] = self._running()
        digest = next(
            (m.digest for m in tags.models if m.model in (self.model, f"{self.model}:latest")), None
        )
        return {
            "engine": self.name,
            "engine_version": version,
            "host": self.host,
            "model": self.model,
            "model_digest": digest,
            "model_details": details,
        }

    def stream(self, prompt: str, options: GenerationOptions) -> Iterator[Chunk]:
        request_options = {"temperature": options.temperature, "num_predict": options.max_tokens}
        if options.seed is not None:
            request_options["seed"] = options.seed
        deadline = time.perf_counter() + options.timeout_s
        # bounds a stall between chunks; the deadline bounds the whole request
        self._http.timeout = httpx.Timeout(min(self.timeout_s, options.timeout_s))
        try:
            parts = self.client.generate(
                model=self.model,
                prompt=prompt,
                stream=True,
                options=request_options,
                keep_alive=options.keep_alive,
            )
            for part in parts:
                if part.done:
                    yield Chunk(
                        text=part.response or "",
                        n_tokens=1 if part.response else 0,
                        done=True,
                        timings=timings_from_final(part.model_dump()),
                    )
                    return
                if part.response:
                    yield Chunk(text=part.response, n_tokens=1)
                if time.perf_counter() > deadline:
                    parts.close()
                    raise EngineError(ERROR_TIMEOUT, f"request exceeded {options.timeout_s}s")
        except Exception as exc:  # noqa: BLE001 - every failure becomes a classified record
            raise classify(exc) from exc
        raise EngineError(ERROR_DROPPED, "stream ended without a final done chunk")

    def close(self) -> None:
        self._http.close()
