"""The ``openai`` engine: any OpenAI-compatible server (llama.cpp's
``llama-server``, vLLM, SGLang, LM Studio, Ollama's ``/v1``), streaming
``/v1/chat/completions`` or ``/v1/completions`` over httpx.

httpx with the small server-sent-events reader below rather than the
``openai`` package: httpx is already loaded for the ``ollama`` engine, while
the ``openai`` package adds its own import (pydantic models for the whole
API) and builds a model object per streamed chunk; here a chunk costs one
``json.loads``. Token counts come from the ``usage`` the server sends with
``stream_options.include_usage``; chunks are counted only when it sends none.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
from collections.abc import Iterator

import httpx

from perflab.core.records import (
    ERROR_DROPPED,
    ERROR_HTTP_STATUS,
    ERROR_SERVER,
    ERROR_TIMEOUT,
    ServerTimings,
)
from perflab.engines import base
from perflab.engines.base import Chunk, EngineError, GenerationOptions, PreflightError
from perflab.engines.http_stream import brief, stream_request

DEFAULT_BASE_URL = "http://127.0.0.1:8080/v1"
ENDPOINTS = {"chat": "/chat/completions", "completions": "/completions"}
MS = 1e-3


def base_url(host: str | None) -> str:
    """The API root: ``host``, else ``OPENAI_BASE_URL``, else llama-server's default.

    A URL without a path gets ``/v1`` (``http://127.0.0.1:8080`` →
    ``http://127.0.0.1:8080/v1``); one with a path is used as it is.
    """
    url = (host or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    if not urllib.parse.urlsplit(url).path:
        url += "/v1"
    return url


def error_message(payload: object, fallback: str) -> str:
    """The message in an OpenAI-style error (``{"error": {"message": ...}}`` or a string)."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error)
    if error:
        return str(error)
    return fallback


def sse_data(lines: Iterator[str]) -> Iterator[str]:
    """The ``data`` of each server-sent event (multi-line data joined by newlines)."""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value[1:] if value.startswith(" ") else value)
        # comments (":"), "event", "id" and "retry" carry nothing perflab reads
    if data:
        yield "\n".join(data)


class OpenAIEngine:
    name = "openai"
    capabilities = base.OPENAI

    def __init__(
        self,
        model: str,
        host: str | None = None,
        timeout_s: float = 120.0,
        endpoint: str = "chat",
        api_key_env: str | None = None,
    ):
        if endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {sorted(ENDPOINTS)}, got {endpoint!r}")
        self.model = model
        self.base_url = base_url(host)
        self.timeout_s = timeout_s
        self.endpoint = endpoint
        self.api_key_env = api_key_env
        headers = {}
        api_key = os.environ.get(api_key_env) if api_key_env else None
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.client = httpx.Client(
            base_url=self.base_url,
            timeout=timeout_s,
            headers=headers,
        )

    # -- preflight ------------------------------------------------------------

    def _missing_key(self) -> PreflightError | None:
        if self.api_key_env and not os.environ.get(self.api_key_env):
            return PreflightError(
                f"engine.api_key_env names the environment variable {self.api_key_env!r}, "
                "which is not set. Export it with the server's API key, or set "
                "engine.api_key_env to null for a server without one."
            )
        return None

    def _models(self) -> list[dict]:
        url = f"{self.base_url}/models"
        try:
            response = self.client.get("/models")
        except httpx.HTTPError as exc:
            raise PreflightError(
                f"No OpenAI-compatible server answers at {url} ({type(exc).__name__}: {exc}). "
                "Start it (for example `llama-server -m MODEL.gguf`), or set engine.host "
                "(or OPENAI_BASE_URL) to where it listens."
            ) from None
        if response.status_code in (401, 403):
            fix = (
                f"Check the key in ${self.api_key_env}."
                if self.api_key_env
                else "Set engine.api_key_env to the name of an environment variable holding it."
            )
            raise PreflightError(
                f"The server at {url} wants an API key (HTTP {response.status_code}). {fix}"
            )
        if response.status_code != 200:
            raise PreflightError(
                f"The server at {url} answered HTTP {response.status_code}: "
                f"{brief(response.text)}. Check that engine.host points at an "
                "OpenAI-compatible API root (it ends in /v1 on most servers)."
            )
        try:
            data = response.json()["data"]
            return [m for m in data if isinstance(m, dict) and m.get("id")]
        except (ValueError, KeyError, TypeError):
            raise PreflightError(
                f"The server at {url} does not list models like the OpenAI API "
                f"({brief(response.text)!r}). Check that engine.host points at its /v1 root."
            ) from None

    def preflight(self) -> dict:
        missing = self._missing_key()
        if missing is not None:
            raise missing
        models = self._models()
        served = next((m for m in models if m["id"] == self.model), None)
        if served is None:
            available = ", ".join(sorted(str(m["id"]) for m in models)) or "none"
            raise PreflightError(
                f"Model {self.model!r} is not served at {self.base_url} (it serves: "
                f"{available}). Set engine.model to one of those, or start the server with it."
            )
        return {
            "engine": self.name,
            "engine_version": None,
            "host": self.base_url,
            "model": self.model,
            "model_digest": None,
            "model_details": {k: v for k, v in served.items() if k != "id"},
            "endpoint": ENDPOINTS[self.endpoint],
        }

    # -- generation -----------------------------------------------------------

    def _body(self, prompt: str, options: GenerationOptions) -> dict:
        body: dict = {
            "model": self.model,
            "stream": True,
            # the running count (vLLM, SGLang) tells how many tokens each chunk brings
            "stream_options": {"include_usage": True, "continuous_usage_stats": True},
            "max_tokens": options.max_tokens,
            "temperature": options.temperature,
        }
        if options.seed is not None:
            body["seed"] = options.seed
        if self.endpoint == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        return body

    def stream(self, prompt: str, options: GenerationOptions) -> Iterator[Chunk]:
        """Yield chunks as they arrive, the first one (no tokens) carrying ``sent_at``.

        ``options.timeout_s`` bounds the whole request (checked as each event
        arrives), the client's read timeout a silent server."""
        deadline = time.perf_counter() + options.timeout_s
        yield from stream_request(
            self.client,
            "POST",
            ENDPOINTS[self.endpoint],
            lambda response: self._read(response, deadline, options.timeout_s),
            json=self._body(prompt, options),
        )

    def _read(self, response: httpx.Response, deadline: float, limit: float) -> Iterator[Chunk]:
        if response.status_code >= 400:
            raise self._status_error(response)
        yield from self._events(response, deadline, limit)

    @staticmethod
    def _status_error(response: httpx.Response) -> EngineError:
        text = response.read().decode("utf-8", errors="replace")
        try:
            message = error_message(json.loads(text), brief(text))
        except ValueError:
            message = brief(text)
        return EngineError(ERROR_HTTP_STATUS, f"HTTP {response.status_code}: {message}")

    def _events(self, response: httpx.Response, deadline: float, limit: float) -> Iterator[Chunk]:
        reader = _StreamState(self.endpoint == "chat")
        for data in sse_data(response.iter_lines()):
            if time.perf_counter() > deadline:
                raise EngineError(ERROR_TIMEOUT, f"request exceeded its {limit:g} s timeout")
            if data.strip() == "[DONE]":
                yield reader.final()
                return
            chunk = reader.read(json.loads(data))
            if chunk is not None:
                yield chunk
        raise EngineError(ERROR_DROPPED, "stream ended without data: [DONE]")

    def close(self) -> None:
        self.client.close()


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and value >= 0 else None


class _StreamState:
    """What one streamed response has said so far."""

    def __init__(self, chat: bool):
        self.chat = chat
        self.tokens = 0
        self.usage: dict | None = None
        self.timings: dict | None = None
        self.finish_reason: str | None = None

    def read(self, payload: object) -> Chunk | None:
        """The chunk an event carries, if it carries text."""
        if not isinstance(payload, dict):
            raise ValueError(f"expected a JSON object, got {payload!r:.100}")
        if "error" in payload:
            raise EngineError(
                ERROR_SERVER, f"server error mid-stream: {error_message(payload, 'error')}"
            )
        if isinstance(payload.get("timings"), dict):  # llama-server
            self.timings = payload["timings"]
        usage = payload.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        choices = payload.get("choices") or []
        if not choices:
            return None
        choice = choices[0]
        self.finish_reason = choice.get("finish_reason") or self.finish_reason
        delta = (choice.get("delta") or {}) if self.chat else {}
        text = delta.get("content") if self.chat else choice.get("text")
        # a reasoning model's thought: llama-server, DeepSeek and vLLM say reasoning_content,
        # OpenRouter and newer vLLM reasoning
        thought = delta.get("reasoning_content") or delta.get("reasoning")
        if not text and not thought:
            return None
        tokens = self._tokens_in(usage)
        reasoning = tokens if not text else min(1, tokens - 1) if thought else 0
        return Chunk(text=text or "", n_tokens=tokens, n_reasoning=reasoning)

    def _tokens_in(self, usage: object) -> int:
        """Tokens this chunk brings: from a running usage count when the server sends
        one with every chunk (vLLM's ``continuous_usage_stats``), else one."""
        count = usage.get("completion_tokens") if isinstance(usage, dict) else None
        new = count - self.tokens if isinstance(count, int) and count > self.tokens else 1
        self.tokens += new
        return new

    def final(self) -> Chunk:
        usage = self.usage or {}
        timings = self.timings or {}
        prompt_ms, predicted_ms = timings.get("prompt_ms"), timings.get("predicted_ms")
        raw = {}
        if self.usage:
            raw["usage"] = self.usage
        if self.timings:
            raw["timings"] = self.timings
        return Chunk(
            done=True,
            timings=ServerTimings(
                prefill_s=None if prompt_ms is None else prompt_ms * MS,
                decode_s=None if predicted_ms is None else predicted_ms * MS,
                prompt_tokens=usage.get("prompt_tokens"),
                output_tokens=usage.get("completion_tokens"),
                raw=raw,
                finish_reason=self.finish_reason,
                reasoning_tokens=_reasoning_count(usage),
                prefill_tokens=_count(timings.get("prompt_n")),
                cached_tokens=_count(timings.get("cache_n")),
            ),
        )


def _reasoning_count(usage: dict) -> int | None:
    """``usage.completion_tokens_details.reasoning_tokens`` (part of completion_tokens)."""
    details = usage.get("completion_tokens_details")
    count = details.get("reasoning_tokens") if isinstance(details, dict) else None
    return count if isinstance(count, int) and count >= 0 else None
