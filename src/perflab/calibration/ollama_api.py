"""Ollama's API over the scheduler: ``/api/generate`` and ``/api/chat``
(NDJSON streaming with chunked transfer encoding, or one JSON object),
``/api/tags``, ``/api/show``, ``/api/ps``, ``/api/version`` and ``GET /``."""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from datetime import datetime, timedelta, timezone

from perflab.calibration.http import FAULT_HEADER, Handler, StreamResponder
from perflab.calibration.request import GenerationRequest, RequestLog

FAULT_OPTION = "calibration_fault"
NS_PER_S = 1_000_000_000


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _ns(seconds: float) -> int:
    return int(round(seconds * NS_PER_S))


def parameter_count(name: str) -> int:
    match = re.search(r"(\d+(?:\.\d+)?)([bm])\b", name.lower().rsplit(":", 1)[-1])
    if not match:
        return 8_000_000_000
    scale = 1e9 if match.group(2) == "b" else 1e6
    return int(float(match.group(1)) * scale)


def details(name: str) -> dict:
    base = name.rsplit("/", 1)[-1].split(":", 1)[0]
    family = re.match(r"[a-zA-Z]+", base)
    family_name = family.group(0).lower() if family else "llama"
    params = parameter_count(name)
    size = f"{params / 1e9:.1f}B" if params >= 1e9 else f"{params / 1e6:.0f}M"
    return {
        "parent_model": "",
        "format": "gguf",
        "family": family_name,
        "families": [family_name],
        "parameter_size": size,
        "quantization_level": "Q4_K_M",
    }


def model_entry(name: str, started_at: datetime) -> dict:
    params = parameter_count(name)
    return {
        "name": name,
        "model": name,
        "modified_at": started_at.isoformat().replace("+00:00", "Z"),
        "size": int(params * 0.6),
        "digest": hashlib.sha256(f"perflab-calibration:{name}".encode()).hexdigest(),
        "details": details(name),
    }


class OllamaResponder(StreamResponder):
    """NDJSON lines, Ollama's final chunk with nanosecond durations."""

    content_type = "application/x-ndjson"

    def __init__(self, handler: Handler, stream: bool, chat: bool):
        super().__init__(handler, stream)
        self.chat = chat

    def piece(self, text: str, done: bool = False, thinking: str | None = None, **extra) -> dict:
        """One line; a thinking model's reasoning token goes in ``thinking`` (the answer's
        field then empty), as Ollama streams it."""
        out: dict = {"model": self.entry.model, "created_at": now_iso()}
        answer = "" if thinking is not None else text
        if self.chat:
            out["message"] = {"role": "assistant", "content": answer}
            if thinking is not None:
                out["message"]["thinking"] = thinking
        else:
            out["response"] = answer
            if thinking is not None:
                out["thinking"] = thinking
        out["done"] = done
        out.update(extra)
        return out

    @staticmethod
    def line(payload: dict) -> bytes:
        return json.dumps(payload).encode() + b"\n"

    def token_frames(self, text: str, reasoning: bool = False) -> list[bytes]:
        return [self.line(self.piece(text, thinking=text if reasoning else None))]

    def malformed_bytes(self) -> bytes:
        return b'{"model": "' + self.entry.model.encode() + b'", "created_at": "20\n'

    def error_frame(self, message: str) -> bytes:
        return self.line({"error": message})

    def finish(self, entry: RequestLog, text: str) -> None:
        # prompt_eval_count is the whole prompt, cached or not; the duration
        # covers only what was evaluated (as Ollama's llama-server backend does)
        final = {
            "done_reason": entry.done_reason,
            "total_duration": _ns(entry.total_s),
            "load_duration": _ns(entry.load_s),
            "prompt_eval_count": entry.prompt_tokens,
            "prompt_eval_duration": _ns(entry.prefill_s),
            "eval_count": entry.tokens_sent,
            "eval_duration": _ns(entry.decode_s),
        }
        if not self.chat:
            context = list(range(entry.prompt_tokens + entry.tokens_sent))
            final = {"done_reason": entry.done_reason, "context": context, **final}
        if self.stream:
            self.write(self.line(self.piece("", done=True, **final)))
            self.end()
        else:
            self.send_json(200, self.piece(text, done=True, **final))

    def load_answer(self, entry: RequestLog) -> None:
        self.send_json(200, self.piece("", done=True, done_reason=entry.done_reason))


# -- generation --------------------------------------------------------------


def _prompt(body: dict, chat: bool) -> tuple[str | None, str | None]:
    """(text whose tokens are counted, or None for load/unload only; problem)."""
    if chat:
        messages = body.get("messages") or []
        if not isinstance(messages, list):
            return None, "messages must be a list"
        if not messages:
            return None, None
        text = "\n".join(str(m.get("content") or "") for m in messages if isinstance(m, dict))
        return text, None
    prompt = body.get("prompt")
    if not prompt and not body.get("images"):
        return None, None
    return " ".join(str(part) for part in (body.get("system"), prompt) if part), None


def _generation(handler: Handler, body: dict, chat: bool) -> None:
    options = body.get("options") if isinstance(body.get("options"), dict) else {}
    prompt, problem = _prompt(body, chat)
    stream = body.get("stream", True) is not False
    request = GenerationRequest(
        endpoint="chat" if chat else "generate",
        model=str(body.get("model") or ""),
        stream=stream,
        prompt=prompt,
        max_tokens=options.get("num_predict"),
        max_tokens_key="options.num_predict",
        keep_alive=body.get("keep_alive"),
        fault=handler.headers.get(FAULT_HEADER) or options.get(FAULT_OPTION),
        problem=problem,
    )
    handler.generate(request, OllamaResponder(handler, stream, chat))


def generate(handler: Handler, body: dict) -> None:
    _generation(handler, body, chat=False)


def chat(handler: Handler, body: dict) -> None:
    _generation(handler, body, chat=True)


# -- metadata ----------------------------------------------------------------


def root(handler: Handler) -> None:
    handler.send_body(200, b"Ollama is running", "text/plain; charset=utf-8")


def version(handler: Handler) -> None:
    handler.send_json(200, {"version": handler.scheduler.timing.version})


def tags(handler: Handler) -> None:
    started = handler.started_at
    models = [model_entry(name, started) for name in handler.scheduler.timing.models]
    handler.send_json(200, {"models": models})


def ps(handler: Handler) -> None:
    now = time.perf_counter()
    out = []
    for state in handler.scheduler.loaded_states():
        if state.expires_at is not None:
            remaining = state.expires_at - now
        elif math.isinf(state.keep_alive_s):
            remaining = 9e9  # "forever": Ollama shows a far-future date too
        else:
            remaining = state.keep_alive_s  # in use: expires keep_alive after it ends
        entry = model_entry(state.name, handler.started_at)
        expires = datetime.now().astimezone() + timedelta(seconds=min(remaining, 9e9))
        in_vram = int(round(entry["size"] * handler.scheduler.timing.vram_share))
        out.append(
            {
                "name": entry["name"],
                "model": entry["model"],
                "size": entry["size"],
                "digest": entry["digest"],
                "details": entry["details"],
                "expires_at": expires.isoformat(),
                "size_vram": in_vram,
                "context_length": 4096,
            }
        )
    handler.send_json(200, {"models": out})


def show(handler: Handler, body: dict) -> None:
    timing = handler.scheduler.timing
    requested = body.get("model") or body.get("name") or ""
    served = timing.serves(requested) if requested else None
    if served is None:
        handler.send_json(404, {"error": f"model '{requested}' not found"})
        return
    entry = model_entry(served, handler.started_at)
    family = entry["details"]["family"]
    handler.send_json(
        200,
        {
            "license": "calibration model: no weights, scripted timings",
            "modelfile": f"# perflab calibration server\nFROM {served}\n",
            "parameters": f"num_predict {timing.output_tokens}",
            "template": "{{ .Prompt }}",
            "details": entry["details"],
            "model_info": {
                "general.architecture": family,
                "general.parameter_count": parameter_count(served),
                "general.file_type": 15,
                "general.quantization_version": 2,
                f"{family}.context_length": 4096,
            },
            "capabilities": ["completion"],
            "modified_at": entry["modified_at"],
        },
    )


def error_payload(status: int, message: str) -> dict:
    return {"error": message}


GET_ROUTES = {"/": root, "/api/version": version, "/api/tags": tags, "/api/ps": ps}
POST_ROUTES = {
    "/api/generate": (generate, error_payload),
    "/api/chat": (chat, error_payload),
    "/api/show": (show, error_payload),
}
