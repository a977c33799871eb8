"""Measured decode speed against the range the log expects."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from perflab.analyse.findings.frame import Condition, unsettled


class Position(str, Enum):
    BELOW = "below"
    WITHIN = "within"
    ABOVE = "above"


@dataclass(frozen=True)
class ExpectationFinding:
    expected_low_tps: float
    expected_high_tps: float
    actual_tps: float | None  # mean decode tok/s, weighted by ok requests
    output_tokens_mean: float | None
    n: int
    position: Position | None
    ratio: float | None  # actual over the nearest end of the range; 1 within it
    tps_low: float | None  # slowest and fastest condition
    tps_high: float | None
    source: str  # "basic" or "all"
    disturbed: tuple[str, ...] = ()  # disturbed experiments the trials do not settle


def _weighted(items: list[Condition], figure) -> float | None:
    pairs = [(figure(c), c.n_ok) for c in items if figure(c) is not None]
    weight = sum(n for _, n in pairs)
    return sum(v * n for v, n in pairs) / weight if weight else None


def summary(
    basic: list[Condition], every: list[Condition], expected: tuple[float, float]
) -> ExpectationFinding:
    """Over the basic suite's conditions, or every condition when it has none."""
    low, high = float(expected[0]), float(expected[1])
    items, source = [c for c in basic if c.n_ok and c.tps.mean is not None], "basic"
    if not items:
        items, source = [c for c in every if c.n_ok and c.tps.mean is not None], "all"
    actual = _weighted(items, lambda c: c.tps.mean)
    position = ratio = None
    if actual is not None:
        if actual < low:
            position, ratio = Position.BELOW, actual / low
        elif actual > high:
            position, ratio = Position.ABOVE, actual / high
        else:
            position, ratio = Position.WITHIN, 1.0
    speeds = [c.tps.mean for c in items]
    return ExpectationFinding(
        expected_low_tps=low,
        expected_high_tps=high,
        actual_tps=actual,
        output_tokens_mean=_weighted(items, lambda c: c.output_tokens_mean),
        n=sum(c.n_ok for c in items),
        position=position,
        ratio=ratio,
        tps_low=min(speeds, default=None),
        tps_high=max(speeds, default=None),
        source=source,
        disturbed=unsettled(items),
    )
