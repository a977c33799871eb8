"""The answer to the log's concurrency question: does the server run requests in
parallel, and where does its throughput stop growing."""

from __future__ import annotations

from perflab.analyse.findings.concurrency import (
    ConcurrencyFinding,
    ConcurrencyMode,
    ConcurrencyVerdict,
    QueueSource,
)
from perflab.present.wording.numbers import (
    disturbed_note,
    metric_num,
    spread_text,
    workers_text,
)
from perflab.present.wording.verdicts import reason_text, statistics


def _at_once(f: ConcurrencyFinding) -> str:
    """How many requests the server runs at once: its own slot count, else the inferred."""
    if f.slots is not None:
        return f"its {f.slots} slot{'s' if f.slots != 1 else ''}"
    return f"{f.parallel_requests} at once"


def _server_said(f: ConcurrencyFinding, workers: int) -> str:
    """What the server's own metrics said at the most workers, when it reported them."""
    if f.server_running_max is None:
        return ""
    waiting = f.server_deferred_max or 0
    return (
        f" By its own /metrics, at {workers_text(workers)} the server ran at most "
        f"{f.server_running_max} request{'s' if f.server_running_max != 1 else ''} at once "
        f"and kept at most {waiting} waiting for a slot."
    )


def concurrency(f: ConcurrencyFinding, setting: str | None) -> str:
    if f.verdict is None:
        return (
            "The concurrency suite needs at least two worker counts with successful requests: "
            "no comparison."
        )
    base, most = f.points[0], f.points[-1]
    at_knee = next(p for p in f.points if p.workers == f.knee_workers)
    hint = f" ({setting})" if setting else ""
    # what the pattern says of the server, unless no server could have made it
    plausible = f.beyond_workers_at is None
    growth = (
        f"{workers_text(most.workers)} against {workers_text(base.workers)}: {statistics(f.test)}"
    )
    if f.verdict is ConcurrencyVerdict.INCONCLUSIVE:
        text = f"Inconclusive: {reason_text(f.test)}; throughput {growth}"
    elif f.verdict is ConcurrencyVerdict.SERIAL:
        text = (
            f"{'No' if f.trusted else 'Inconclusive'}: throughput did not grow from "
            f"{base.workers} to {most.workers} workers ({growth})"
        )
        if plausible:
            text += _serial_how(f, hint)
    elif f.verdict is ConcurrencyVerdict.SCALES:
        text = (
            f"{'Yes' if f.trusted else 'Inconclusive'}: throughput grew from {base.workers} to "
            f"{most.workers} workers ({growth}) and was still growing"
        )
        if plausible and f.mode is ConcurrencyMode.SHARES:
            text += _serial_how(f, hint)
        elif plausible:
            text += ": the server runs requests in parallel"
    else:
        rise = "doubled" if round(at_knee.speedup, 1) == 2.0 else f"grew ×{at_knee.speedup:.2f}"
        answer = f"Up to {f.knee_workers} workers" if f.trusted else "Inconclusive"
        after = "fell" if f.fell_at is not None and f.fell_at > f.knee_workers else "stayed flat"
        knee_range = (
            f" (the knee lies between {f.knee_workers} and {f.knee_high} workers)"
            if f.knee_high != f.knee_workers
            else ""
        )
        text = (
            f"{answer}: throughput {rise} from {base.workers} to "
            f"{f.knee_workers} workers, then {after}{knee_range}; {growth}"
        )
        if plausible:
            text += f": the server runs about {f.parallel_requests} requests at once{hint}"
            if f.mode is ConcurrencyMode.SHARES:
                text += ", and beyond that they run together, each slower"
            elif f.mode is ConcurrencyMode.QUEUES:
                text += ", and the rest queue"
    text += f", while mean latency grew ×{most.latency_growth:.2f}."
    text += _server_said(f, most.workers)
    if f.fell_at is not None:
        fell = next(p for p in f.points if p.workers == f.fell_at)
        text += (
            f" Throughput fell to ×{fell.speedup:.2f} at {workers_text(fell.workers)}: more "
            "requests than the server runs at once contend for it, or the machine was busy."
        )
    if f.beyond_workers_at is not None:
        beyond = next(p for p in f.points if p.workers == f.beyond_workers_at)
        text += (
            f" At {workers_text(beyond.workers)} throughput was ×{beyond.speedup:.2f} that of "
            f"{workers_text(base.workers)}, more than {beyond.workers / base.workers:g}× the "
            "workers can give: other work slowed the baseline, so the pattern is not the server's."
        )
    if f.queue_wait_s is not None:
        source = (
            "the engine's queue time"
            if f.queue_source == QueueSource.REPORTED
            else f"growth of time the server's timings do not cover, over {workers_text(base.workers)}"
        )
        text += (
            f" At {most.workers} workers requests waited {f.queue_wait_s:.3f} s for the server "
            f"({f.queue_share:.0%} of {most.condition.e2e.mean:.3f} s mean latency; {source}; "
            f"{_at_once(f)} would leave 1 − {f.slots or f.parallel_requests}/{most.workers} "
            f"= {f.expected_queue_share:.0%} to the queue)."
        )
    if base.workers != 1:
        text += f" There is no 1-worker run; {base.workers} workers is the baseline."
    if f.disturbed:
        text += disturbed_note(f.disturbed)
    listing = "; ".join(
        f"{workers_text(p.workers)}: {metric_num(p.condition.req_per_s.mean, 'req_per_s')} "
        f"(×{p.speedup:.2f}), {spread_text(p.condition.e2e)} mean latency"
        for p in f.points
    )
    return f"{text} ({listing})."


def _serial_how(f: ConcurrencyFinding, hint: str) -> str:
    """How a server that gained no throughput served the extra requests: as it said
    itself when it reports it (a launched llama-server's /metrics), else as inferred."""
    running = f.server_running_max
    if running is not None and running > 1:
        return (
            f": the server ran up to {running} requests at once (its own metrics){hint}, but "
            "together they went no faster than one at a time: one saturated resource (its "
            "threads or memory bandwidth) serves them all"
        )
    if running == 1:
        return (
            f": the server ran one request at a time (its own metrics){hint}, so extra "
            "requests only queue"
        )
    if f.mode is ConcurrencyMode.QUEUES:
        return (
            f": the server serializes requests, running one at a time{hint}, "
            "so extra requests only queue"
        )
    if f.mode is ConcurrencyMode.SHARES:
        return (
            f": the server runs the requests together{hint}, but each is slower (its own "
            f"service time grew ×{f.service_growth:.2f}, the queue explains little): one "
            "saturated resource serves them all"
        )
    return ": the server gains nothing from more requests at once"
