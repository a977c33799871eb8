"""The ``llamacpp`` engine: llama-cpp-python in-process, no server.

Workers share one model behind a lock (llama.cpp contexts are not thread
safe); the time spent waiting for it is reported as queue time. Like
llama-server (and Ollama), the engine keeps the KV cache of the previous
request and evaluates only what a new prompt does not share with it; the
runner's ``prompt_cache: bust`` prefix is what makes every request prefill
its whole prompt.

A prompt goes through the GGUF's own chat template (``tokenizer.chat_template``)
as one user message, as llama-cpp-python's ``create_chat_completion``, Ollama
and llama-server do, so a trained instruct model answers it and ends its turn
with its end-of-turn token. ``create_chat_completion`` itself is not used: its
stream merges tokens into text pieces, where ``generate()`` yields every token
id as it is decoded. A GGUF without a template (the tiny random model) gets the
prompt as it is, after BOS.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from perflab.core.records import (
    ERROR_ENGINE,
    ERROR_TIMEOUT,
    FINISH_LENGTH,
    FINISH_STOP,
    ServerTimings,
)
from perflab.engines import base
from perflab.engines.base import Chunk, EngineError, GenerationOptions, PreflightError
from perflab.engines.cpu_kernels import (
    EXTRA_BUFFERS_NOTE,
    extra_buffers_off,
    model_params_for_this_cpu,
)

MS = 1e-3


def chat_formatter(llm):
    """The GGUF's chat template, compiled once (llama-cpp-python's formatter), or None."""
    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        return None
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    def token_text(token: int) -> str:
        return llm._model.token_get_text(token) if token != -1 else ""

    return Jinja2ChatFormatter(
        template=template,
        eos_token=token_text(llm.token_eos()),
        bos_token=token_text(llm.token_bos()),
    )


def prompt_tokens(llm, formatter, prompt: str) -> list[int]:
    """What the engine evaluates for ``prompt``: the user's turn in the chat template,
    ready for the answer; without a template, BOS + the prompt."""
    if formatter is None:
        return llm.tokenize(prompt.encode(), add_bos=True)
    rendered = formatter(messages=[{"role": "user", "content": prompt}])
    return llm.tokenize(rendered.prompt.encode(), add_bos=not rendered.added_special, special=True)


class LlamaCppEngine:
    name = "llamacpp"
    capabilities = base.LLAMACPP

    def __init__(
        self,
        model_path: str | Path,
        n_ctx: int = 4096,
        n_threads: int | None = None,
    ):
        self.model_path = Path(model_path)
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.llm = None
        self.formatter = None
        self._eog: set[int] = set()
        self.load_s: float | None = None
        self._lock = threading.Lock()

    def _load(self):
        if not self.model_path.is_file():
            raise PreflightError(
                f"GGUF model not found at {self.model_path}. Set engine.model_path to a GGUF "
                "file, or leave it empty to let the workflow build the tiny model."
            )
        from llama_cpp import Llama

        started = time.perf_counter()
        try:
            with model_params_for_this_cpu():
                self.llm = Llama(
                    model_path=str(self.model_path),
                    n_ctx=self.n_ctx,
                    n_threads=self.n_threads,
                    verbose=False,
                )
        except (ValueError, RuntimeError) as exc:
            raise PreflightError(f"llama.cpp could not load {self.model_path}: {exc}") from None
        self.load_s = time.perf_counter() - started
        self.formatter = chat_formatter(self.llm)
        self._eog = self._find_eog()

    def preflight(self) -> dict:
        import llama_cpp

        if self.llm is None:
            self._load()
        metadata = dict(self.llm.metadata)
        return {
            "engine": self.name,
            "engine_version": llama_cpp.__version__,
            "model": metadata.get("general.name", self.model_path.stem),
            "model_path": str(self.model_path),
            "model_size_gb": self.model_path.stat().st_size / 1e9,
            "model_details": {
                "architecture": metadata.get("general.architecture"),
                "block_count": metadata.get("llama.block_count"),
                "embedding_length": metadata.get("llama.embedding_length"),
                "file_type": metadata.get("general.file_type"),
                "n_params": self.llm._model.n_params(),
            },
            "n_ctx": self.n_ctx,
            "n_threads": self.llm.n_threads,
            "kv_cache": "keeps the previous request's KV cache and reuses its longest shared prefix",
            "chat_template": self.formatter is not None,
            "extra_buffer_types": EXTRA_BUFFERS_NOTE
            if extra_buffers_off()
            else "llama.cpp's default",
            "load_s": self.load_s,
        }

    def _eos_tokens(self) -> set[int]:
        return self._eog

    def _find_eog(self) -> set[int]:
        """Every end-of-generation token of the vocabulary (EOS, end of turn, …), as
        llama.cpp's own ``llama_vocab_is_eog`` says; found at load, not in a request."""
        import llama_cpp

        vocab = self.llm._model.vocab
        eog = {t for t in range(self.llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t)}
        return eog | {self.llm.token_eos()}

    @staticmethod
    def _forbid(tokens: set[int]):
        from llama_cpp import LogitsProcessorList

        forbidden = sorted(tokens)

        def processor(input_ids, scores):
            scores[forbidden] = -np.inf
            return scores

        return LogitsProcessorList([processor])

    def _perf(self) -> dict:
        import llama_cpp

        data = llama_cpp.llama_perf_context(self.llm._ctx.ctx)
        return {
            "t_p_eval_ms": data.t_p_eval_ms,
            "t_eval_ms": data.t_eval_ms,
            "n_p_eval": data.n_p_eval,
            "n_eval": data.n_eval,
        }

    def _reset_perf(self) -> None:
        import llama_cpp

        llama_cpp.llama_perf_context_reset(self.llm._ctx.ctx)

    def stream(self, prompt: str, options: GenerationOptions) -> Iterator[Chunk]:
        if self.llm is None:
            self._load()
        waited = time.perf_counter()
        with self._lock:
            queue_s = time.perf_counter() - waited
            yield from self._stream_locked(prompt, options, queue_s)

    def _stream_locked(
        self, prompt: str, options: GenerationOptions, queue_s: float
    ) -> Iterator[Chunk]:
        self._reset_perf()
        prompt_ids = prompt_tokens(self.llm, self.formatter, prompt)
        eos = self._eos_tokens()
        processor = self._forbid(eos) if options.ignore_eos else None
        if options.seed is not None:
            self.llm.set_seed(options.seed)
        deadline = time.perf_counter() + options.timeout_s
        generated = 0
        finish_reason = FINISH_LENGTH  # llama.cpp's word when it stops for any limit
        try:
            # generate() yields one token id per decode step, so counts are exact; with
            # reset=True it keeps the KV cache's longest prefix shared with prompt_ids
            for token in self.llm.generate(
                prompt_ids, temp=options.temperature, reset=True, logits_processor=processor
            ):
                if token in eos:
                    finish_reason = FINISH_STOP
                    break
                generated += 1
                text = self.llm.detokenize([token]).decode("utf-8", errors="replace")
                yield Chunk(text=text, n_tokens=1)
                if generated >= options.max_tokens:
                    break
                if time.perf_counter() > deadline:
                    raise EngineError(ERROR_TIMEOUT, f"request exceeded {options.timeout_s}s")
        except EngineError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes a classified record
            raise EngineError(ERROR_ENGINE, f"{type(exc).__name__}: {exc}") from exc
        perf = self._perf()
        yield Chunk(
            done=True,
            timings=ServerTimings(
                load_s=0.0,
                prefill_s=perf["t_p_eval_ms"] * MS,
                decode_s=perf["t_eval_ms"] * MS,
                prompt_tokens=len(prompt_ids),
                # what it evaluated: the KV cache's shared prefix with the last prompt is kept
                prefill_tokens=perf["n_p_eval"] or None,
                output_tokens=generated,
                raw=perf | {"queue_s": queue_s},
                finish_reason=finish_reason,
            ),
        )

    def close(self) -> None:
        if self.llm is not None:
            self.llm.close()
            self.llm = None
