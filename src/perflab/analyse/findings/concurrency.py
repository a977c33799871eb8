"""Throughput and latency per worker count: where throughput stops growing.

Throughput of two worker counts is compared trial by trial (``frame.compare``,
the verdict rule of ``perflab.analyse.verdict``). ``test``: the most workers
against the fewest. It decides: ``equivalent`` is ``serial`` (throughput
flat), ``inconclusive`` is ``inconclusive``; ``changed`` upwards is
``scales`` when the knee is at the most workers, else ``saturates``. The knee
is the fewest workers after which no higher count's throughput is
``changed`` upwards; ``knee_high`` the fewest at or after it from which every
higher count is shown not to grow, ``equivalent`` or ``changed`` downwards (the most workers when none is): the
knee lies between the two. The server then runs about
throughput(knee) / throughput(1) requests at once.

The queue wait at the most workers is the engine's own queue time when it
reports one; otherwise (Ollama) the growth of unaccounted time over the
fewest-workers baseline, since that is where waiting for a slot hides. A
llama-server that perflab launched also says itself how many requests it ran
at once and kept waiting (``server_running_max``, ``server_deferred_max``):
the server's truth beside the throughput's inference.

Where throughput stopped growing, ``mode`` says how the extra requests were
served. In a closed loop with P requests served at once and W workers, a
server that queues the rest keeps each request's service time and adds a
queue share of about 1 − P/W (``expected_queue_share``; P is the engine's own
slot count where it has a fixed one, ``slots``, else ``parallel_requests``);
a server that runs
them together on a saturated resource has no queue, and each request is
slower. ``parallel`` when throughput grew (``scales``) at least half as fast
as the workers; otherwise ``queues`` when the queue wait explains at least
half of the latency growth, else ``shares``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

import polars as pl

from perflab.analyse.findings.frame import (
    Condition,
    compare,
    conditions,
    measured,
    one_pass,
    suite_rows,
    unsettled,
)
from perflab.analyse.verdict import Outcome, Verdict
from perflab.engines.base import Capabilities

FELL = 0.15  # throughput 1/1.15 of the best at fewer workers or below has fallen
BEYOND_WORKERS = 0.15  # a speed-up 15 % beyond the share of workers: not the server's


class ConcurrencyVerdict(str, Enum):
    SERIAL = "serial"
    SCALES = "scales"
    SATURATES = "saturates"
    INCONCLUSIVE = "inconclusive"


class ConcurrencyMode(str, Enum):
    PARALLEL = "parallel"  # throughput grew with the workers
    QUEUES = "queues"  # requests wait for a slot; each is served as fast as alone
    SHARES = "shares"  # requests run together, each slower: a saturated resource


QUEUE_EXPLAINS = 0.5  # the queue wait is at least half of the latency growth: queueing
PARALLEL_EFFICIENCY = 0.5  # throughput grows at least half as fast as the workers: parallel


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
    test: Verdict | None  # req/s at the most workers against the fewest
    points: tuple[WorkerPoint, ...]
    baseline_workers: int | None
    knee_workers: int | None
    knee_high: int | None  # the knee lies in knee_workers … knee_high
    parallel_requests: int | None  # requests the server runs at once, about
    peak_speedup: float | None
    fell_at: int | None  # the first worker count whose throughput fell by FELL or more
    # below the best of fewer workers, and was shown lower (``changed``)
    beyond_workers_at: int | None  # the first count whose speed-up exceeds its share of workers
    queue_wait_s: float | None  # at the most workers
    queue_share: float | None  # queue wait / mean latency at the most workers
    queue_source: QueueSource | None
    one_pass: bool
    disturbed: tuple[str, ...]
    mode: ConcurrencyMode | None = None  # None: not decided, or no queue figure
    service_growth: float | None = None  # (latency − queue wait) at the most workers / baseline
    expected_queue_share: float | None = None  # 1 − P/W for P = slots or parallel_requests
    slots: int | None = None  # the engine's own fixed slot count (embedded llama.cpp: 1)
    # at the most workers, by the server's own /metrics (a launched llama-server): the most
    # requests it ran at once, and the most it kept waiting for a slot
    server_running_max: int | None = None
    server_deferred_max: int | None = None

    @property
    def trusted(self) -> bool:
        """False when other work may have made the pattern: a disturbed experiment the
        trials do not settle, or a speed-up beyond what the extra workers allow."""
        return not self.disturbed and self.beyond_workers_at is None


def _grows(low: Condition, high: Condition) -> bool:
    found = compare(low, high, "req_per_s")
    return found.changed and found.estimate > 1


def _flat(low: Condition, high: Condition) -> bool:
    """Shown not to grow: equivalent, or changed downwards."""
    found = compare(low, high, "req_per_s")
    return found.equivalent or (found.changed and found.estimate < 1)


def knee(points: list[Condition]) -> int:
    """The fewest workers after which no higher count raises throughput."""
    for i, point in enumerate(points):
        if not any(_grows(point, later) for later in points[i + 1 :]):
            return point.workers
    return points[-1].workers


def knee_high(points: list[Condition], at: int) -> int:
    """The fewest workers, from the knee on, after which every count is shown flat."""
    for i, point in enumerate(points):
        if point.workers >= at and all(_flat(point, later) for later in points[i + 1 :]):
            return point.workers
    return points[-1].workers


def _fell_at(points: tuple[WorkerPoint, ...]) -> int | None:
    """The first worker count whose throughput fell by FELL or more below the best before
    it, and was shown lower than that best (``changed``): a drop the noise could explain
    is no fall."""
    best = points[0]
    for point in points[1:]:
        if point.speedup * (1 + FELL) <= best.speedup and _fell(best.condition, point.condition):
            return point.workers
        best = max(best, point, key=lambda p: p.speedup)
    return None


def _fell(best: Condition, later: Condition) -> bool:
    found = compare(best, later, "req_per_s")
    return found.changed and found.estimate < 1


def _queue(base: Condition, most: Condition, capabilities: Capabilities):
    if capabilities.reports_queue_time and most.queue_mean_s is not None:
        return most.queue_mean_s, QueueSource.REPORTED
    if most.unaccounted_mean_s is not None and base.unaccounted_mean_s is not None:
        growth = max(0.0, most.unaccounted_mean_s - base.unaccounted_mean_s)
        return growth, QueueSource.UNACCOUNTED_GROWTH
    return None, None


def summary(
    frame: pl.DataFrame, capabilities: Capabilities, disturbed_ids: tuple[str, ...] = ()
) -> ConcurrencyFinding:
    found = [
        c
        for c in measured(conditions(suite_rows(frame, "concurrency"), disturbed_ids))
        if c.workers and c.req_per_s.mean
    ]
    # one condition per worker count: the one with the most ok requests
    by_workers: dict[int, Condition] = {}
    for c in sorted(found, key=lambda c: -c.n_ok):
        by_workers.setdefault(c.workers, c)
    ordered = [by_workers[w] for w in sorted(by_workers)]
    if len(ordered) < 2:
        return ConcurrencyFinding(
            None, None, (), None, None, None, None, None, None, None, None, None, None,
            one_pass(ordered), (),
        )  # fmt: skip
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
    unsettled_ids = unsettled(ordered)
    test = compare(base, most, "req_per_s", unsettled_ids)
    at_knee = next(p for p in points if p.workers == knee_workers)
    # never more at once than there were requests in flight
    parallel = min(knee_workers, max(1, round(at_knee.speedup * base.workers)))
    wait, source = _queue(base, most, capabilities)
    finding = ConcurrencyFinding(
        verdict=None,
        test=test,
        points=points,
        baseline_workers=base.workers,
        knee_workers=knee_workers,
        knee_high=knee_high(ordered, knee_workers),
        parallel_requests=parallel,
        peak_speedup=max(p.speedup for p in points),
        fell_at=_fell_at(points),
        beyond_workers_at=next(
            (p.workers for p in points if p.efficiency > 1 + BEYOND_WORKERS), None
        ),
        queue_wait_s=wait,
        queue_share=wait / most.e2e.mean if wait is not None and most.e2e.mean else None,
        queue_source=source,
        one_pass=one_pass(ordered),
        disturbed=unsettled_ids,
        service_growth=_service_growth(base, most, wait),
        expected_queue_share=max(0.0, 1 - (capabilities.slots or parallel) / most.workers),
        slots=capabilities.slots,
        server_running_max=_whole(most.server_running_max),
        server_deferred_max=_whole(most.server_deferred_max),
    )
    return rejudged(finding, test)


def _whole(value: float | None) -> int | None:
    return None if value is None else round(value)


def rejudged(finding: ConcurrencyFinding, test: Verdict) -> ConcurrencyFinding:
    """``finding`` decided by ``test`` (after the family correction)."""
    most = finding.points[-1].workers
    grew = test.outcome is Outcome.CHANGED and test.estimate > 1
    if grew and finding.knee_workers == most:
        verdict = ConcurrencyVerdict.SCALES
    elif grew:
        verdict = ConcurrencyVerdict.SATURATES
    elif test.conclusive:  # shown flat, or fallen: more workers do not add throughput
        verdict = ConcurrencyVerdict.SERIAL
    else:
        verdict = ConcurrencyVerdict.INCONCLUSIVE
    if finding.server_running_max == 1 and not grew and most > 1:
        # the server said itself that it never ran two at once: the extra requests
        # queued, whatever the noise in their throughput leaves undecided
        return replace(
            finding, verdict=ConcurrencyVerdict.SERIAL, test=test, mode=ConcurrencyMode.QUEUES
        )
    return replace(finding, verdict=verdict, test=test, mode=_mode(finding, verdict))


def _mode(finding: ConcurrencyFinding, verdict: ConcurrencyVerdict | None):
    if verdict in (None, ConcurrencyVerdict.INCONCLUSIVE):
        return None
    most = finding.points[-1]
    if verdict is ConcurrencyVerdict.SCALES and most.efficiency >= PARALLEL_EFFICIENCY:
        return ConcurrencyMode.PARALLEL
    growth = most.condition.e2e.mean - finding.points[0].condition.e2e.mean
    if finding.queue_wait_s is None or growth <= 0:
        return None
    queued = finding.queue_wait_s >= QUEUE_EXPLAINS * growth
    return ConcurrencyMode.QUEUES if queued else ConcurrencyMode.SHARES


def _service_growth(base: Condition, most: Condition, wait: float | None) -> float | None:
    """Latency less the queue wait at the most workers, over the baseline's latency."""
    if wait is None or not base.e2e.mean:
        return None
    own = base.queue_mean_s or 0.0
    return max(0.0, most.e2e.mean - wait) / max(base.e2e.mean - own, 1e-9)
