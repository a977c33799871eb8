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
    most = f.points[-1]
    text = _verdict_text(f, f" ({setting})" if setting else "")
    text += f", while mean latency grew ×{most.latency_growth:.2f}."
    text += _server_said(f, most.workers)
    text += _fell_note(f) + _beyond_note(f) + _queue_note(f)
    if f.points[0].workers != 1:
        text += f" There is no 1-worker run; {f.points[0].workers} workers is the baseline."
    if f.disturbed:
        text += disturbed_note(f.disturbed)
    return f"{text} ({_listing(f)})."


def _verdict_text(f: ConcurrencyFinding, hint: str) -> str:
    """The answer, the throughput test behind it and, when a server could have made the
    pattern, what it says of the server."""
    base, most = f.points[0], f.points[-1]
    growth = (
        f"{workers_text(most.workers)} against {workers_text(base.workers)}: {statistics(f.test)}"
    )
    # what the pattern says of the server, unless no server could have made it
    plausible = f.beyond_workers_at is None
    if f.verdict is ConcurrencyVerdict.INCONCLUSIVE:
        return f"Inconclusive: {reason_text(f.test)}; throughput {growth}"
    if f.verdict is ConcurrencyVerdict.SERIAL:
        text = (
            f"{'No' if f.trusted else 'Inconclusive'}: throughput did not grow from "
            f"{base.workers} to {most.workers} workers ({growth})"
        )
        return text + _serial_how(f, hint) if plausible else text
    if f.verdict is ConcurrencyVerdict.SCALES:
        text = (
            f"{'Yes' if f.trusted else 'Inconclusive'}: throughput grew from {base.workers} to "
            f"{most.workers} workers ({growth}) and was still growing"
        )
        if plausible and f.mode is ConcurrencyMode.SHARES:
            return text + _serial_how(f, hint)
        if plausible:
            return text + ": the server runs requests in parallel"
        return text
    return _knee_text(f, growth, hint, plausible)


def _knee_text(f: ConcurrencyFinding, growth: str, hint: str, plausible: bool) -> str:
    """Throughput grew up to a knee, then stayed flat or fell."""
    base = f.points[0]
    at_knee = next(p for p in f.points if p.workers == f.knee_workers)
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
    return text


def _fell_note(f: ConcurrencyFinding) -> str:
    if f.fell_at is None:
        return ""
    fell = next(p for p in f.points if p.workers == f.fell_at)
    return (
        f" Throughput fell to ×{fell.speedup:.2f} at {workers_text(fell.workers)}: more "
        "requests than the server runs at once contend for it, or the machine was busy."
    )


def _beyond_note(f: ConcurrencyFinding) -> str:
    """A speed-up more than the workers can give: the baseline was slowed by other work."""
    if f.beyond_workers_at is None:
        return ""
    base = f.points[0]
    beyond = next(p for p in f.points if p.workers == f.beyond_workers_at)
    return (
        f" At {workers_text(beyond.workers)} throughput was ×{beyond.speedup:.2f} that of "
        f"{workers_text(base.workers)}, more than {beyond.workers / base.workers:g}× the "
        "workers can give: other work slowed the baseline, so the pattern is not the server's."
    )


def _queue_note(f: ConcurrencyFinding) -> str:
    """How long requests waited for the server at the most workers, beside what its
    slots would leave to the queue."""
    if f.queue_wait_s is None:
        return ""
    base, most = f.points[0], f.points[-1]
    source = (
        "the engine's queue time"
        if f.queue_source == QueueSource.REPORTED
        else f"growth of time the server's timings do not cover, over {workers_text(base.workers)}"
    )
    return (
        f" At {most.workers} workers requests waited {f.queue_wait_s:.3f} s for the server "
        f"({f.queue_share:.0%} of {most.condition.e2e.mean:.3f} s mean latency; {source}; "
        f"{_at_once(f)} would leave 1 − {f.slots or f.parallel_requests}/{most.workers} "
        f"= {f.expected_queue_share:.0%} to the queue)."
    )


def _listing(f: ConcurrencyFinding) -> str:
    return "; ".join(
        f"{workers_text(p.workers)}: {metric_num(p.condition.req_per_s.mean, 'req_per_s')} "
        f"(×{p.speedup:.2f}), {spread_text(p.condition.e2e)} mean latency"
        for p in f.points
    )


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
