"""Where the mean latency goes (basic suite, weighted by ok requests).

TTFT share = mean TTFT / mean latency; decode share = 100 − TTFT share. Where
the engine reports its timings, also queue / load / prefill / decode / other,
other = e2e − their sum clipped at 0; when the phases add up to more than e2e
the shares are of their sum, so they still add to 100.
"""

from __future__ import annotations

from dataclasses import dataclass

from perflab.analyse.findings.frame import Condition

PARTS = ("queue", "load", "prefill", "decode")
DECODE_DOMINATES = 50.0  # TTFT share below this: decode dominates


@dataclass(frozen=True)
class Phase:
    name: str  # queue, load, prefill, decode, other
    seconds: float
    percent: float


@dataclass(frozen=True)
class BreakdownFinding:
    e2e_mean_s: float | None
    ttft_mean_s: float | None
    ttft_percent: float | None
    decode_percent: float | None
    n: int
    phases: tuple[Phase, ...]
    phases_exceed_e2e: float | None  # their sum as % of e2e, when above 100
    prep_mean_s: float | None  # client preparation before the request left (not in e2e)
    source: str

    @property
    def decode_dominates(self) -> bool | None:
        return None if self.ttft_percent is None else self.ttft_percent < DECODE_DOMINATES


def phase_seconds(condition: Condition) -> dict[str, float]:
    """The engine-reported phases of one condition, with ``other``."""
    seconds = {
        part: getattr(condition, f"{part}_mean_s")
        for part in PARTS
        if getattr(condition, f"{part}_mean_s") is not None
    }
    if seconds and condition.e2e.mean is not None:
        seconds["other"] = max(0.0, condition.e2e.mean - sum(seconds.values()))
    return seconds


def _weighted(items: list[Condition], figure) -> float | None:
    pairs = [(figure(c), c.n_ok) for c in items if figure(c) is not None]
    weight = sum(n for _, n in pairs)
    return sum(v * n for v, n in pairs) / weight if weight else None


def summary(basic: list[Condition], every: list[Condition]) -> BreakdownFinding:
    items, source = [c for c in basic if c.n_ok and c.e2e.mean is not None], "basic"
    if not items:
        items, source = [c for c in every if c.n_ok and c.e2e.mean is not None], "all"
    e2e = _weighted(items, lambda c: c.e2e.mean)
    ttft = _weighted(items, lambda c: c.ttft.mean)
    ttft_percent = 100 * ttft / e2e if ttft is not None and e2e else None
    seconds = {p: _weighted(items, lambda c, p=p: getattr(c, f"{p}_mean_s")) for p in PARTS}
    seconds = {p: v for p, v in seconds.items() if v is not None}
    phases: tuple[Phase, ...] = ()
    exceed = None
    if seconds and e2e:
        known = sum(seconds.values())
        seconds["other"] = max(0.0, e2e - known)
        total = max(e2e, known)
        phases = tuple(Phase(p, v, 100 * v / total) for p, v in seconds.items())
        exceed = 100 * known / e2e if known > e2e else None
    return BreakdownFinding(
        e2e_mean_s=e2e,
        ttft_mean_s=ttft,
        ttft_percent=ttft_percent,
        decode_percent=100 - ttft_percent if ttft_percent is not None else None,
        n=sum(c.n_ok for c in items),
        phases=phases,
        phases_exceed_e2e=exceed,
        prep_mean_s=_weighted(items, lambda c: c.prep_mean_s),
        source=source,
    )
