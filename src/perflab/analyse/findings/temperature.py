"""Does temperature change speed, or only how much the model writes?

Latency differs between temperatures only when the intervals of mean latency
(``Spread``: between trials with repeats ≥ 2) do not overlap and the
difference is at least ``PRACTICAL_DIFFERENCE``. Then per-token decode speed
decides: the same speed with different output lengths is ``length_only``; a
different speed is ``speed_effect`` — but never from one pass, where drift
between experiments was not measured (``inconclusive``), nor from a disturbed
experiment that trials do not settle.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import polars as pl

from perflab.analyse.findings.frame import (
    Condition,
    conditions,
    differ,
    measured,
    one_pass,
    overlap,
    relative_range,
    rests_on_disturbed,
    same,
    suite_rows,
)


class TemperatureVerdict(str, Enum):
    NO_EFFECT = "no_effect"
    LENGTH_ONLY = "length_only"
    SPEED_EFFECT = "speed_effect"
    INCONCLUSIVE = "inconclusive"


class TemperatureReason(str, Enum):
    ONE_PASS = "one_pass"  # a speed difference from one pass: drift not measured
    DISTURBED = "disturbed"


@dataclass(frozen=True)
class TemperatureFinding:
    verdict: TemperatureVerdict | None  # None: fewer than 2 temperatures measured
    reason: TemperatureReason | None
    conditions: tuple[Condition, ...]  # by temperature
    slowest: Condition | None
    fastest: Condition | None
    latency_difference: float | None  # slowest / fastest mean latency − 1
    speed_difference: float | None  # (fastest − slowest decode tok/s) / fastest
    latency_measurable: bool  # the latency intervals do not overlap
    latency_differs: bool  # measurable and at least PRACTICAL_DIFFERENCE
    speed_differs: bool
    same_output_length: bool
    truncated: tuple[Condition, ...]  # conditions with answers cut at max_tokens
    one_pass: bool
    disturbed: tuple[str, ...]


def _verdict(latency_differs, speed_differs, length_differs, single, disturbed):
    if disturbed:
        return TemperatureVerdict.INCONCLUSIVE, TemperatureReason.DISTURBED
    if not latency_differs:
        return TemperatureVerdict.NO_EFFECT, None
    if not speed_differs and length_differs:
        return TemperatureVerdict.LENGTH_ONLY, None
    if single:
        return TemperatureVerdict.INCONCLUSIVE, TemperatureReason.ONE_PASS
    return TemperatureVerdict.SPEED_EFFECT, None


def summary(frame: pl.DataFrame, disturbed: tuple[str, ...] = ()) -> TemperatureFinding:
    found = sorted(
        (c for c in measured(conditions(suite_rows(frame, "temperature"), disturbed))),
        key=lambda c: (c.temperature is None, c.temperature),
    )
    truncated = tuple(c for c in found if c.n_truncated)
    empty = TemperatureFinding(
        None, None, tuple(found), None, None, None, None, False, False, False, True, truncated,
        one_pass(found), (),
    )  # fmt: skip
    if len(found) < 2:
        return empty
    slow = max(found, key=lambda c: c.e2e.mean)
    fast = min(found, key=lambda c: c.e2e.mean)
    latency_difference = slow.e2e.mean / fast.e2e.mean - 1
    speeds = [c.tps for c in found if c.tps.mean is not None]
    speed_difference = relative_range([s.mean for s in speeds])
    measurable = not overlap([c.e2e for c in found])
    latency_differs = differ([c.e2e for c in found], latency_difference)
    speed_differs = differ(speeds, speed_difference)
    same_length = same([c.output_tokens_mean for c in found])
    unsettled = rests_on_disturbed(found)
    verdict, reason = _verdict(
        latency_differs, speed_differs, not same_length, one_pass(found), unsettled
    )
    return TemperatureFinding(
        verdict=verdict,
        reason=reason,
        conditions=tuple(found),
        slowest=slow,
        fastest=fast,
        latency_difference=latency_difference,
        speed_difference=speed_difference,
        latency_measurable=measurable,
        latency_differs=latency_differs,
        speed_differs=speed_differs,
        same_output_length=same_length,
        truncated=truncated,
        one_pass=one_pass(found),
        disturbed=unsettled,
    )
