"""Open-loop arrival schedules: when each request is due, fixed before the first is sent.

``constant`` spaces requests exactly ``1 / rate`` apart. ``poisson`` draws the gaps
from a gamma distribution with shape ``burstiness`` and mean ``1 / rate`` (as vLLM's
``--burstiness`` and AIPerf do): shape 1 is a Poisson process (exponential gaps),
below 1 the requests come in bursts, above 1 more evenly. Draws are seeded, so a
schedule can be made again from its seed; each trial draws its own schedule.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

ARRIVALS = ("constant", "poisson")


@dataclass(frozen=True)
class ArrivalPlan:
    """How requests arrive: ``rate`` requests/s offered, ``requests`` of them in all."""

    rate: float
    requests: int
    arrival: str = "poisson"
    burstiness: float = 1.0
    seed: int = 0
    trial: int = 1

    def __post_init__(self):
        if self.rate <= 0:
            raise ValueError(f"rate must be positive, got {self.rate}")
        if self.requests < 1:
            raise ValueError(f"requests must be at least 1, got {self.requests}")
        if self.arrival not in ARRIVALS:
            raise ValueError(f"arrival must be one of {ARRIVALS}, got {self.arrival!r}")
        if self.burstiness <= 0:
            raise ValueError(f"burstiness must be positive, got {self.burstiness}")
        if self.arrival == "constant" and self.burstiness != 1.0:
            raise ValueError("burstiness applies to poisson arrivals only; leave it at 1")

    def offsets(self) -> list[float]:
        """Seconds from the start at which each request is due; the first after one gap."""
        if self.arrival == "constant":
            return [(i + 1) / self.rate for i in range(self.requests)]
        rng = random.Random(f"{self.seed}:{self.trial}")
        shape, scale = self.burstiness, 1.0 / (self.rate * self.burstiness)
        total, out = 0.0, []
        for _ in range(self.requests):
            total += rng.gammavariate(shape, scale)
            out.append(total)
        return out


def schedule_rate(offsets: list[float]) -> float:
    """The rate a schedule itself offers: its requests over the time to its last one.

    A Poisson schedule of 50 requests differs from its target rate by about 14 % by
    chance; the client keeping the schedule is judged against this rate, not the target.
    """
    return len(offsets) / offsets[-1] if offsets and offsets[-1] > 0 else float("inf")


@dataclass(frozen=True)
class LengthPlan:
    """Prompt and output lengths drawn per request: normal(mean, sd) in tokens, rounded,
    at least 1; seeded, each trial its own draw. A prompt of L tokens is the suite's
    prompt's words, repeated or cut, to round(L / TOKENS_PER_WORD) words: Llama 3's
    tokenizer (and the calibration server's rule) give about 1.3 tokens per English
    word, and the server's own count is recorded in ``prompt_tokens``."""

    prompt_mean: float | None = None  # None: the prompt as it is
    prompt_sd: float = 0.0
    output_mean: float | None = None  # None: generation.max_tokens
    output_sd: float = 0.0
    seed: int = 0
    trial: int = 1

    def draws(self, requests: int) -> list[tuple[int | None, int | None]]:
        rng = random.Random(f"lengths:{self.seed}:{self.trial}")

        def draw(mean: float | None, sd: float) -> int | None:
            if mean is None:
                return None
            return max(1, round(rng.gauss(mean, sd) if sd > 0 else mean))

        return [
            (draw(self.prompt_mean, self.prompt_sd), draw(self.output_mean, self.output_sd))
            for _ in range(requests)
        ]


TOKENS_PER_WORD = 1.3


def sized_prompt(prompt: str, tokens: int) -> str:
    """``prompt``'s words repeated or cut to about ``tokens`` tokens (at least one word)."""
    words = prompt.split() or ["hello"]
    count = max(1, round(tokens / TOKENS_PER_WORD))
    return " ".join(words[i % len(words)] for i in range(count))
