"""The calibration server's timing model: what each request should cost.

Everything here is deterministic given the model and the request: prompt
token counts come from a fixed rule, inter-token gaps from a seeded RNG.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import asdict, dataclass, field, fields

from perflab.calibration.faults import parse_fault

DEFAULT_MODEL = "llama3.1:8b"
TOKENS_PER_WORD = 1.3
FOREVER = math.inf
REASONING_FIELDS = ("reasoning_content", "reasoning")

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_S = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def _go_duration(text: str) -> float | None:
    """Seconds for a Go duration string such as ``"1h30m"`` or ``"-5m"``; None if not one."""
    sign = -1.0 if text.startswith("-") else 1.0
    body = text[1:] if text[:1] in "+-" else text
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(body):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNIT_S[match.group(2)]
        pos = match.end()
    if not body or pos != len(body):
        return None
    return sign * total


def parse_duration(value: object, *, strict: bool = False) -> float:
    """An Ollama ``keep_alive`` value as seconds.

    Numbers are seconds; strings are Go-style durations such as ``"5m"``,
    ``"1h30m"``, ``"300ms"``. Negative values mean "keep loaded forever" and
    come back as ``math.inf``; ``0`` means "unload as soon as the request
    finishes". Unless ``strict``, numeric strings (``"300"``) are seconds too;
    with ``strict`` they are rejected, as Ollama's API does (only ``"0"`` is
    allowed without a unit).
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid duration: {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        go = _go_duration(text)
        if go is not None:
            seconds = go
        else:
            try:
                seconds = float(text)
            except ValueError:
                raise ValueError(f"invalid duration: {value!r}") from None
            if strict and text.lstrip("+-") != "0":
                raise ValueError(f'time: missing unit in duration "{text}"')
    else:
        raise ValueError(f"invalid duration: {value!r}")
    if math.isnan(seconds):
        raise ValueError(f"invalid duration: {value!r}")
    return FOREVER if seconds < 0 else seconds


def count_tokens(text: str, tokens_per_word: float = TOKENS_PER_WORD) -> int:
    """The server's prompt token count: whitespace-split words x 1.3, rounded half up.

    Empty or whitespace-only text counts as 0 tokens.
    """
    return words_to_tokens(len(text.split()), tokens_per_word)


def words_to_tokens(words: int, tokens_per_word: float = TOKENS_PER_WORD) -> int:
    return int(words * tokens_per_word + 0.5)


def normalize_model_name(name: str) -> str:
    """Ollama's rule: a name without a tag means ``:latest``."""
    name = name.strip()
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


@dataclass
class TimingModel:
    """What the calibration server does, in seconds and tokens.

    * ``load_time_s``: cold load paid by the first request after start and after
      the keep-alive expired (reported as ``load_duration``).
    * ``keep_alive_s``: default keep-alive after the last request finishes
      (requests may override it with ``keep_alive``); ``inf`` = forever.
    * prefill (TTFT without queue and load) = ``ttft_fixed_s`` +
      ``ttft_per_token_s`` x prompt tokens; the first token is sent when prefill ends.
    * each later token follows a gap of ``itl_s`` (or, when ``itl_sd_s`` > 0,
      a draw from normal(``itl_s``, ``itl_sd_s``) clipped at 0, seeded by
      ``seed`` and the request index).
    * output length: ``output_tokens``, or ``options.num_predict`` when the
      request sets it lower (the smaller of the two; ``num_predict`` < 0 means
      no request limit).
    * ``num_parallel`` requests run at once per model; the rest wait in a FIFO
      queue (at most ``max_queue`` waiting, beyond that HTTP 503).
    * ``reasoning_tokens``: the first this many generated tokens are a thinking
      model's reasoning (Ollama's ``thinking`` field; the OpenAI API's
      ``reasoning_field`` delta, ``reasoning_content`` or ``reasoning``); they
      count in ``eval_count`` / ``completion_tokens`` like the answer's.
    * ``tokens_per_chunk``: tokens per streamed event on the OpenAI API (as
      vLLM under load); each event goes out when its last token is due.
    * ``prompt_cache``: each slot keeps its last prompt (and answer) in its KV
      cache; a request sharing a word prefix with it prefills only the rest
      (at least one token), like llama.cpp's and current Ollama's slots.
    * ``vram_share``: the share of a loaded model in GPU memory that ``/api/ps``
      reports (``size_vram`` = share x ``size``): 1 a model wholly on the GPU,
      below 1 one that spilled to CPU memory, 0 one run on the CPU alone.
    * ``fault_rates``: fault spec -> probability per generation request (seeded).
    * ``fault_schedule``: generation request index (0-based) -> fault spec.
    """

    models: tuple[str, ...] = (DEFAULT_MODEL,)
    load_time_s: float = 0.5
    keep_alive_s: float = 300.0
    ttft_fixed_s: float = 0.05
    ttft_per_token_s: float = 0.001
    itl_s: float = 0.02
    itl_sd_s: float = 0.0
    output_tokens: int = 64
    num_parallel: int = 1
    max_queue: int = 512
    prompt_cache: bool = False
    tokens_per_chunk: int = 1
    reasoning_tokens: int = 0
    reasoning_field: str = "reasoning_content"
    tokens_per_word: float = TOKENS_PER_WORD
    seed: int = 0
    stall_s: float = 600.0
    vram_share: float = 1.0
    fault_rates: dict[str, float] = field(default_factory=dict)
    fault_schedule: dict[int, str] = field(default_factory=dict)
    version: str = "0.0.0-calibration"

    def __post_init__(self) -> None:
        if isinstance(self.models, str):
            self.models = (self.models,)
        self.models = tuple(self.models)
        if not self.models:
            raise ValueError("models: at least one model name is needed")
        self.keep_alive_s = parse_duration(self.keep_alive_s)
        for name in (
            "load_time_s",
            "ttft_fixed_s",
            "ttft_per_token_s",
            "itl_s",
            "itl_sd_s",
            "stall_s",
            "tokens_per_word",
        ):
            value = float(getattr(self, name))
            if value < 0 or math.isnan(value):
                raise ValueError(f"{name} must be >= 0, got {value}")
            setattr(self, name, value)
        self.output_tokens = int(self.output_tokens)
        if self.output_tokens < 0:
            raise ValueError("output_tokens must be >= 0")
        self.num_parallel = int(self.num_parallel)
        if self.num_parallel < 1:
            raise ValueError("num_parallel must be >= 1")
        self.max_queue = int(self.max_queue)
        if self.max_queue < 0:
            raise ValueError("max_queue must be >= 0")
        self.seed = int(self.seed)
        self.vram_share = float(self.vram_share)
        if not 0.0 <= self.vram_share <= 1.0:
            raise ValueError(f"vram_share must be in [0, 1], got {self.vram_share}")
        self.reasoning_tokens = int(self.reasoning_tokens)
        if self.reasoning_tokens < 0:
            raise ValueError("reasoning_tokens must be >= 0")
        if self.reasoning_field not in REASONING_FIELDS:
            raise ValueError(
                f"reasoning_field must be one of {', '.join(REASONING_FIELDS)}, "
                f"got {self.reasoning_field!r}"
            )
        self.tokens_per_chunk = int(self.tokens_per_chunk)
        if self.tokens_per_chunk < 1:
            raise ValueError("tokens_per_chunk must be >= 1")
        if not isinstance(self.prompt_cache, bool):
            raise ValueError(f"prompt_cache must be true or false, got {self.prompt_cache!r}")
        rates = {str(k): float(v) for k, v in dict(self.fault_rates).items()}
        for spec, rate in rates.items():
            parse_fault(spec)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault rate for {spec!r} must be in [0, 1], got {rate}")
        if sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError("fault rates add up to more than 1")
        self.fault_rates = rates
        schedule = {int(k): str(v) for k, v in dict(self.fault_schedule).items()}
        for spec in schedule.values():
            parse_fault(spec)
        self.fault_schedule = schedule

    # -- construction -------------------------------------------------------

    @classmethod
    def from_dict(cls, data: dict | None) -> TimingModel:
        """Build from a config block; keys are the field names (``-`` or ``_``).

        ``model`` (a single name) is accepted for ``models``. Unknown keys raise
        ``ValueError`` so typos do not pass silently.
        """
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        kwargs: dict = {}
        for key, value in data.items():
            name = str(key).replace("-", "_")
            if name == "model":
                name = "models"
            if name not in known:
                raise ValueError(f"unknown calibration setting {key!r}; known: {sorted(known)}")
            kwargs[name] = value
        return cls(**kwargs)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["models"] = list(self.models)
        if math.isinf(self.keep_alive_s):
            out["keep_alive_s"] = -1
        return out

    # -- derived quantities -------------------------------------------------

    def serves(self, name: str) -> str | None:
        """The served model name that ``name`` refers to, or None."""
        wanted = normalize_model_name(name)
        for served in self.models:
            if normalize_model_name(served) == wanted:
                return served
        return None

    def prompt_tokens(self, text: str) -> int:
        return count_tokens(text, self.tokens_per_word)

    def word_tokens(self, words: int) -> int:
        """Tokens of ``words`` whitespace-separated words (the prompt rule)."""
        return words_to_tokens(words, self.tokens_per_word)

    def prefill_s(self, prompt_tokens: int) -> float:
        return self.ttft_fixed_s + self.ttft_per_token_s * prompt_tokens

    def n_output(self, num_predict: int | None) -> tuple[int, str]:
        """Tokens to generate and the ``done_reason`` that ends them."""
        if num_predict is not None and 0 <= num_predict < self.output_tokens:
            return num_predict, "length"
        return self.output_tokens, "stop"

    def rng(self, request_index: int, purpose: str) -> random.Random:
        return random.Random(f"{self.seed}:{purpose}:{request_index}")

    def gaps(self, request_index: int, n_tokens: int) -> list[float]:
        """The scheduled gaps before tokens 2..n (``n - 1`` values)."""
        count = max(0, n_tokens - 1)
        if self.itl_sd_s <= 0:
            return [self.itl_s] * count
        rng = self.rng(request_index, "itl")
        return [max(0.0, rng.gauss(self.itl_s, self.itl_sd_s)) for _ in range(count)]

    def draw_fault(self, request_index: int) -> str | None:
        """The fault for a request: the schedule first, then the seeded rates."""
        if request_index in self.fault_schedule:
            return self.fault_schedule[request_index]
        if not self.fault_rates:
            return None
        u = self.rng(request_index, "fault").random()
        acc = 0.0
        for spec, rate in self.fault_rates.items():
            acc += rate
            if u < acc:
                return spec
        return None
