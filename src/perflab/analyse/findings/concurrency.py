"""Throughput and latency per worker count: where throughput stops growing.

The knee is the worker count after which no higher count raises throughput by
``KNEE_GROWTH`` or more (and, with trials, beyond the between-trial spread).
Knee at the fewest workers: ``serial``; at the most: ``scales``; in between:
``saturates``. The server then runs about throughput(knee) / throughput(1)
requests at once.

The queue wait at the most workers is the engine's own queue time when it
reports one; otherwise (Ollama) the growth of unaccounted time over the
fewest-workers baseline, since that is where waiting for a slot hides. A
llama-server that perflab launched also says itself how many requests it ran
at once and kept waiting (``server_running_max``, ``server_deferred_max``):
the server's truth beside the throughput's inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import polars as pl

from perflab.analyse.findings.frame import (
    Condition,
    Spread,
    conditions,
    measured,
    one_pass,
    rests_on_disturbed,
    suite_rows,
)
from perflab.engines.base import Capabilities

KNEE_GROWTH = 0.15  # throughput must grow ≥ 15 % to count as growth


class ConcurrencyVerdict(str, Enum):
    SERIAL = "serial"
    SCALES = "scales"
    SATURATES = "saturates"


class QueueSource(str, Enum):
    REPORTED = "reported"  # the engine's own queue time
    UNACCOUNTED_GROWTH = "unaccounted_growth"  # growth of unaccounted time over the baseline


@dataclass(frozen=True)
class WorkerPoint:
    workers: int
    condition: Condition
    speedup: float  # req/s over the baseline's req/s
    latency_growth: float  # mean latency over the baseline's
    efficiency: float  # speedup × baseline workers / workers


@dataclass(frozen=True)
class ConcurrencyFinding:
    verdict: ConcurrencyVerdict | None  # None: fewer than 2 worker counts measured
    points: tuple[WorkerPoint, ...]
    baseline_workers: int | None
    knee_workers: int | None
    parallel_requests: int | None  # requests the server runs at once, about
    peak_speedup: float | None
    fell_at: int | None  # the first worker count whose throughput fell by KNEE_GROWTH or more
    # below the best of fewer workers
    beyond_workers_at: int | None  # the first count whose speed-up exceeds its share of workers
    queue_wait_s: float | None  # at the most workers
    queue_share: float | None  # queue wait / mean latency at the most workers
    queue_source: QueueSource | None
    one_pass: bool
    disturbed: tuple[str, ...]
    # at the most workers, by the server's own /metrics (a launched llama-server): the most
    # requests it ran at once, and the most it kept waiting for a slot
    server_running_max: int | None = None
    server_deferred_max: int | None = None

    @property
    def trusted(self) -> bool:
        """False when other work may have made the pattern: a disturbed experiment the
        trials do not settle, or a speed-up beyond what the extra workers allow."""
        return not self.disturbed and self.beyond_workers_at is None


def _grows(low: Spread, high: Spread) -> bool:
    if high.mean < low.mean * (1 + KNEE_GROWTH):
        return False
    if low.between_trials and high.between_trials:
        return high.interval[0] > low.interval[1]
    return True


def knee(points: list[Condition]) -> int:
    """The worker count after which throughput stops growing."""
    for i, point in enumerate(points):
        if not any(_grows(point.req_per_s, later.req_per_s) for later in points[i + 1 :]):
            return point.workers
    return points[-1].workers


def _fell_at(points: tuple[WorkerPoint, ...]) -> int | None:
    """The first worker count whose throughput fell by KNEE_GROWTH below the best before it."""
    best = points[0].speedup
    for point in points[1:]:
        if point.speedup * (1 + KNEE_GROWTH) <= best:
            return point.workers
        best = max(best, point.speedup)
    return None


def _queue(base: Condition, most: Condition, capabilities: Capabilities):
    if capabilities.reports_queue_time and most.queue_mean_s is not None:
        return most.queue_mean_s, QueueSource.REPORTED
    if most.unaccounted_mean_s is not None and base.unaccounted_mean_s is not None:
        growth = max(0.0, most.unaccounted_mean_s - base.unaccounted_mean_s)
        return growth, QueueSource.UNACCOUNTED_GROWTH
    return None, None


def summary(
    frame: pl.DataFrame, capabilities: Capabilities, disturbed: tuple[str, ...] = ()
) -> ConcurrencyFinding:
    found = [
        c
        for c in measured(conditions(suite_rows(frame, "concurrency"), disturbed))
        if c.workers and c.req_per_s.mean
    ]
    # one condition per worker count: the one with the most ok requests
    by_workers: dict[int, Condition] = {}
    for c in sorted(found, key=lambda c: -c.n_ok):
        by_workers.setdefault(c.workers, c)
    ordered = [by_workers[w] for w in sorted(by_workers)]
    if len(ordered) < 2:
        return ConcurrencyFinding(
            None, (), None, None, None, None, None, None, None, None, None, one_pass(ordered), ()
        )
    base, most = ordered[0], ordered[-1]
    points = tuple(
        WorkerPoint(
            workers=c.workers,
            condition=c,
            speedup=c.req_per_s.mean / base.req_per_s.mean,
            latency_growth=c.e2e.mean / base.e2e.mean,
            efficiency=c.req_per_s.mean / base.req_per_s.mean * base.workers / c.workers,
        )
        for c in ordered
    )
    knee_workers = knee(ordered)
    if knee_workers == base.workers:
        verdict = ConcurrencyVerdict.SERIAL
    elif knee_workers == most.workers:
        verdict = ConcurrencyVerdict.SCALES
    else:
        verdict = ConcurrencyVerdict.SATURATES
    at_knee = next(p for p in points if p.workers == knee_workers)
    wait, source = _queue(base, most, capabilities)
    return ConcurrencyFinding(
        verdict=verdict,
        points=points,
        baseline_workers=base.workers,
        knee_workers=knee_workers,
        # never more at once than there were requests in flight
        parallel_requests=min(knee_workers, max(1, round(at_knee.speedup * base.workers))),
        peak_speedup=max(p.speedup for p in points),
        fell_at=_fell_at(points),
        beyond_workers_at=next((p.workers for p in points if p.efficiency > 1 + KNEE_GROWTH), None),
        queue_wait_s=wait,
        queue_share=wait / most.e2e.mean if wait is not None and most.e2e.mean else None,
        queue_source=source,
        one_pass=one_pass(ordered),
        disturbed=rests_on_disturbed(ordered),
        server_running_max=_whole(most.server_running_max),
        server_deferred_max=_whole(most.server_deferred_max),
    )


def _whole(value: float | None) -> int | None:
    return None if value is None else round(value)
