"""The OpenAI API over the scheduler: ``POST /v1/chat/completions`` and
``POST /v1/completions`` (server-sent events with ``stream: true``, usage in a
last chunk with ``stream_options.include_usage``, or one JSON object) and
``GET /v1/models``.

The final choice chunk (or body) also carries llama-server's ``timings``
object (``prompt_n``, ``prompt_ms``, ``cache_n``, ``predicted_n``,
``predicted_ms``), so a client can read what the server measured.
"""

from __future__ import annotations

import json
import time

from perflab.calibration.http import FAULT_HEADER, Handler, StreamResponder
from perflab.calibration.request import GenerationRequest, RequestLog

FAULT_FIELD = "calibration_fault"
DONE = b"data: [DONE]\n\n"


def usage(entry: RequestLog) -> dict:
    return {
        "prompt_tokens": entry.prompt_tokens,
        "completion_tokens": entry.tokens_sent,
        "total_tokens": entry.prompt_tokens + entry.tokens_sent,
        "prompt_tokens_details": {"cached_tokens": entry.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": entry.reasoning_sent},
    }


def timings(entry: RequestLog) -> dict:
    """llama-server's ``timings`` object: what was evaluated, and how long it took."""
    return {
        "cache_n": entry.cached_tokens,
        "prompt_n": entry.prompt_tokens - entry.cached_tokens,
        "prompt_ms": entry.prefill_s * 1e3,
        "predicted_n": entry.tokens_sent,
        "predicted_ms": entry.decode_s * 1e3,
    }


def error_payload(status: int, message: str) -> dict:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": status}}


class OpenAIResponder(StreamResponder):
    """Server-sent events (``data: {...}``), ending with ``data: [DONE]``."""

    content_type = "text/event-stream"

    def __init__(
        self,
        handler: Handler,
        stream: bool,
        chat: bool,
        include_usage: bool,
        running_usage: bool = False,
    ):
        super().__init__(handler, stream)
        self.chat = chat
        self.include_usage = include_usage
        self.running_usage = running_usage  # vLLM's stream_options.continuous_usage_stats
        self.per_event = handler.scheduler.timing.tokens_per_chunk
        self.held: list[str] = []
        self.held_reasoning = False
        self.sent = 0
        self.created = 0
        self.first = True

    def attach(self, entry: RequestLog) -> None:
        super().attach(entry)
        self.created = int(time.time())

    @staticmethod
    def event(payload: dict) -> bytes:
        return b"data: " + json.dumps(payload).encode() + b"\n\n"

    def envelope(self, choices: list[dict], **extra) -> dict:
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        if not self.stream:
            kind = "chat.completion" if self.chat else "text_completion"
        prefix = "chatcmpl" if self.chat else "cmpl"
        out = {
            "id": f"{prefix}-{self.entry.id}",
            "object": kind,
            "created": self.created,
            "model": self.entry.model,
            "system_fingerprint": "perflab-calibration",
            "choices": choices,
        }
        if self.stream and self.include_usage:
            out["usage"] = None
        out.update(extra)
        return out

    def choice(self, text: str | None, finish_reason: str | None = None, role: bool = False):
        if self.chat:
            delta: dict = {"role": "assistant"} if role else {}
            if text is not None:
                delta["content"] = text
            key = "delta" if self.stream else "message"
            return {"index": 0, key: delta, "logprobs": None, "finish_reason": finish_reason}
        return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish_reason}

    # -- frames ---------------------------------------------------------------

    def error_payload(self, status: int, message: str) -> dict:
        return error_payload(status, message)

    def token_frames(self, text: str, reasoning: bool = False) -> list[bytes]:
        """One event per ``tokens_per_chunk`` tokens, sent when the last of them is due;
        reasoning and answer tokens never share an event."""
        frames = self.release() if self.held and reasoning != self.held_reasoning else []
        self.held.append(text)
        self.held_reasoning = reasoning
        if len(self.held) < self.per_event:
            return frames
        return frames + self.release()

    def release(self) -> list[bytes]:
        """The held tokens as one event (after the role, first in a chat stream)."""
        frames = []
        if self.first and self.chat:  # OpenAI opens a chat stream with the role alone
            frames.append(self.event(self.envelope([self.choice("", role=True)])))
        self.first = False
        if self.held:
            self.sent += len(self.held)
            extra = {}
            if self.running_usage:
                prompt = self.entry.prompt_tokens
                extra["usage"] = {
                    "prompt_tokens": prompt,
                    "completion_tokens": self.sent,
                    "total_tokens": prompt + self.sent,
                }
            text = "".join(self.held)
            choice = self.reasoning_choice(text) if self.held_reasoning else self.choice(text)
            frames.append(self.event(self.envelope([choice], **extra)))
            self.held = []
        return frames

    def reasoning_choice(self, text: str) -> dict:
        """A chat delta of reasoning (the completions API has no place for it)."""
        if not self.chat:
            return self.choice(text)
        field = self.h.scheduler.timing.reasoning_field
        delta = {field: text} if self.stream else {"content": "", field: text}
        key = "delta" if self.stream else "message"
        return {"index": 0, key: delta, "logprobs": None, "finish_reason": None}

    def malformed_bytes(self) -> bytes:
        return b'data: {"id": "cmpl-' + str(self.entry.id).encode() + b'", "choi\n\n'

    def error_frame(self, message: str) -> bytes:
        return self.event(error_payload(500, message))

    def finish(self, entry: RequestLog, text: str) -> None:
        if not self.stream:
            choice = self.choice(text, entry.done_reason, role=True)
            self.send_json(200, self.envelope([choice], usage=usage(entry), timings=timings(entry)))
            return
        for frame in self.release():
            self.write(frame)
        last = self.envelope([self.choice(None, entry.done_reason)], timings=timings(entry))
        self.write(self.event(last))
        if self.include_usage:
            self.write(self.event(self.envelope([], usage=usage(entry))))
        self.write(DONE)
        self.end()

    def load_answer(self, entry: RequestLog) -> None:  # pragma: no cover - never a None prompt
        raise AssertionError("the OpenAI API has no load-only request")


def _content(value: object) -> str:
    """A message's content: a string, or a list of parts whose text parts count."""
    if isinstance(value, list):
        return " ".join(
            str(part.get("text") or "")
            for part in value
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return "" if value is None else str(value)


def _prompt(body: dict, chat: bool) -> tuple[str, str | None]:
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "", "messages must be a non-empty list"
        return "\n".join(_content(m.get("content")) for m in messages if isinstance(m, dict)), None
    prompt = body.get("prompt", "")
    if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        return "", "prompt must be a string (one prompt per request)"
    return prompt, None


def _generation(handler: Handler, body: dict, chat: bool) -> None:
    prompt, problem = _prompt(body, chat)
    stream = body.get("stream") is True
    options = body.get("stream_options")
    options = options if stream and isinstance(options, dict) else {}
    include_usage = options.get("include_usage") is True
    running_usage = options.get("continuous_usage_stats") is True
    key = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
    request = GenerationRequest(
        endpoint="v1/chat/completions" if chat else "v1/completions",
        model=str(body.get("model") or ""),
        stream=stream,
        prompt=prompt,
        max_tokens=body.get(key),
        max_tokens_key=key,
        fault=handler.headers.get(FAULT_HEADER) or body.get(FAULT_FIELD),
        problem=problem,
    )
    responder = OpenAIResponder(handler, stream, chat, include_usage, running_usage)
    handler.generate(request, responder)


def chat_completions(handler: Handler, body: dict) -> None:
    _generation(handler, body, chat=True)


def completions(handler: Handler, body: dict) -> None:
    _generation(handler, body, chat=False)


def models(handler: Handler) -> None:
    created = int(handler.started_at.timestamp())
    data = [
        {"id": name, "object": "model", "created": created, "owned_by": "perflab-calibration"}
        for name in handler.scheduler.timing.models
    ]
    handler.send_json(200, {"object": "list", "data": data})


GET_ROUTES = {"/v1/models": models}
POST_ROUTES = {
    "/v1/chat/completions": (chat_completions, error_payload),
    "/v1/completions": (completions, error_payload),
}
