"""How close decode and prefill run to the machine's own ceilings.

Decode ceiling: bandwidth ÷ bytes read per decoded token (every weight once, plus
the KV cache of the context so far). Prefill ceiling: compute ÷ FLOPs per prompt
token. Each measured rate is given as a fraction of its ceiling, with the rate's
95 % CI divided by the ceiling's mean and the ceiling's own CI stated beside it. A
decode rate's CI is taken on the log scale (``positive_interval``): a rate, and so
its share of a ceiling, cannot be negative, but mean ± t·s/√n of three noisy trials
can reach below zero.
Decode at or above ``NEAR_CEILING`` of its ceiling is bandwidth-bound: more
threads cannot help, fewer bytes per token (a smaller quantization) can.

A measured rate above its ceiling cannot be: the ceiling's measurement was wrong
(other work slowed the bandwidth or matmul run, or the buffer was not what the
model reads). Such a ceiling is ``unreliable``: no fraction of it is a finding,
and decode is never called bandwidth-bound against it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from perflab.analyse.findings.frame import Condition
from perflab.measure.machine import MachineCeilings, Rate
from perflab.models.gguf_facts import ModelFacts

NEAR_CEILING = 0.7


@dataclass(frozen=True)
class Efficiency:
    label: str  # the prompt, or "prefill"
    rate_tps: float
    rate_low: float | None
    rate_high: float | None
    ceiling_tps: float
    ceiling_ci95: float | None
    context_tokens: float
    tokens_mean: float | None = None  # per request: output tokens (decode), prompt (prefill)

    @property
    def fraction(self) -> float:
        return self.rate_tps / self.ceiling_tps

    @property
    def fraction_low(self) -> float | None:
        return None if self.rate_low is None else within_share(self.rate_low / self.ceiling_tps)

    @property
    def fraction_high(self) -> float | None:
        return None if self.rate_high is None else within_share(self.rate_high / self.ceiling_tps)


def within_share(fraction: float) -> float:
    """A CI end of a share of a ceiling, clipped to 0–100 %: a wide spread reaches past
    either, where no true share can be (a rate above its ceiling says the ceiling is wrong)."""
    return min(max(fraction, 0.0), 1.0)


@dataclass(frozen=True)
class RooflineFinding:
    machine: MachineCeilings
    model: ModelFacts
    kv_cache_type: str
    decode: tuple[Efficiency, ...]  # one per basic prompt
    prefill: Efficiency | None
    bandwidth_bound: bool  # decode at NEAR_CEILING of its ceiling or more
    # a measured rate above the ceiling: the bandwidth (decode) or compute (prefill)
    # measurement was disturbed, and its fractions mean nothing
    bandwidth_unreliable: bool = False
    compute_unreliable: bool = False


def _ceiling(capacity: Rate, cost: float) -> tuple[float, float | None]:
    """Tokens per second a capacity in giga-units per second allows at ``cost`` units
    per token, and that ceiling's CI half-width."""
    half = None if capacity.ci95 is None else capacity.ci95 * 1e9 / cost
    return capacity.mean * 1e9 / cost, half


def positive_interval(mean: float, half: float | None) -> tuple[float | None, float | None]:
    """A 95 % CI of a positive rate that cannot reach below zero: the CI of its log by
    the delta method (half-width ``half / mean``), exponentiated, so
    mean × exp(∓half / mean). Close to mean ∓ half when the spread is small; wide and
    lopsided, never negative, when it is not. (None, None) without a CI."""
    if half is None or mean <= 0:
        return None, None
    factor = math.exp(half / mean)
    return mean / factor, mean * factor


def _decode(
    condition: Condition, machine: MachineCeilings, model: ModelFacts, cache: str
) -> Efficiency | None:
    if condition.tps.mean is None:
        return None
    context = (condition.prompt_tokens_mean or 0) + (condition.output_tokens_mean or 0) / 2
    read = model.bytes_per_token + model.kv_bytes_at(context, cache)
    ceiling, half = _ceiling(machine.bandwidth_gbs, read)
    low, high = positive_interval(condition.tps.mean, condition.tps.ci95)
    label = condition.prompt_name or condition.condition_id
    return Efficiency(
        label, condition.tps.mean, low, high, ceiling, half, context, condition.output_tokens_mean
    )


def _prefill(
    prefill_tps: tuple[float | None, float | None, float | None],
    prompt_tokens: float,
    machine: MachineCeilings,
    model: ModelFacts,
) -> Efficiency | None:
    rate, low, high = prefill_tps
    if rate is None:
        return None
    flops = model.flops_at(prompt_tokens / 2)  # the average context while the prompt runs
    ceiling, half = _ceiling(machine.matmul_gflops, flops)
    return Efficiency("prefill", rate, low, high, ceiling, half, prompt_tokens / 2, prompt_tokens)


def summary(
    machine: MachineCeilings,
    model: ModelFacts,
    basic: list[Condition],
    prefill_tps: tuple[float | None, float | None, float | None],
    kv_cache_type: str = "f16",
) -> RooflineFinding:
    decode = tuple(e for c in basic if (e := _decode(c, machine, model, kv_cache_type)) is not None)
    tokens = [c.prompt_tokens_mean for c in basic if c.prompt_tokens_mean]
    prompt_tokens = max(tokens, default=0.0)
    prefill = _prefill(prefill_tps, prompt_tokens, machine, model)
    unreliable = above_ceiling(decode)
    return RooflineFinding(
        machine=machine,
        model=model,
        kv_cache_type=kv_cache_type,
        decode=decode,
        prefill=prefill,
        bandwidth_bound=not unreliable and any(e.fraction >= NEAR_CEILING for e in decode),
        bandwidth_unreliable=unreliable,
        compute_unreliable=above_ceiling((prefill,) if prefill else ()),
    )


def above_ceiling(rates: tuple[Efficiency, ...]) -> bool:
    """Any measured rate above its ceiling: the ceiling, not the rate, is wrong."""
    return any(e.fraction > 1 for e in rates)
