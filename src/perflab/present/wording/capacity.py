"""The capacity section in words: each offered rate, the capacity and what limited it."""

from __future__ import annotations

from perflab.analyse.findings.capacity import (
    CapacityFinding,
    ProbeCapacity,
    RatePoint,
    SloTargets,
)
from perflab.engines.base import Capabilities
from perflab.present.wording.numbers import num, spread_text

LIMITS = {
    "ttft": "time to first token",
    "tpot": "time per output token",
    "e2e": "end-to-end latency",
    "errors": "failed requests",
    "dropped": "requests the client dropped at its in-flight bound",
    "client": "the client itself, which could not keep the schedule there (the server was not judged)",
}


def slo_text(slo: SloTargets) -> str:
    """'95% of requests with TTFT ≤ 2 s', the bounds counted from when each request was due."""
    bounds = [
        f"{name} ≤ {value:g} s"
        for name, value in (("TTFT", slo.ttft_s), ("TPOT", slo.tpot_s), ("latency", slo.e2e_s))
        if value is not None
    ]
    within = " and ".join(bounds) if bounds else "no latency bound (only success)"
    return f"{slo.percentile:g}% of requests with {within}"


def rate_line(point: RatePoint) -> str:
    trials = f"{point.trials} trial{'s' if point.trials != 1 else ''}"
    line = (
        f"served {spread_text(point.served_rate, 2, ' req/s')}, latency from the scheduled send "
        f"P50 {num(point.e2e_p50_s.mean, 3, ' s')} / P95 {num(point.e2e_p95_s.mean, 3, ' s')} "
        f"/ P99 {num(point.e2e_p99_s.mean, 3, ' s')}, TTFT P95 {num(point.ttft_p95_s.mean, 3, ' s')}, "
        f"{num(100 * point.met_fraction.mean if point.met_fraction.mean is not None else None, 0, '%')}"
        f" met the targets, goodput {spread_text(point.goodput, 2, ' req/s')} ({trials})"
    )
    if point.ttft_p50_by_turn:
        turns = " / ".join(num(value, 3) for value in point.ttft_p50_by_turn)
        line += f"; TTFT P50 by turn (s): {turns}"
    if not point.valid:
        line += (
            "; invalid: the client could not keep the schedule, so this is not the server's latency"
        )
    return line


def capacity(f: CapacityFinding) -> str:
    target = f" ({f.target})" if f.target else ""
    served = (
        f" The most it served at any rate: {num(f.max_served_rate, 2, ' req/s')}."
        if f.max_served_rate is not None
        else ""
    )
    onset = (
        f" Requests started to wait for one another (median latency 1.5 × the lightest load's) "
        f"at {f.queueing_onset_rate:g} req/s offered."
        if f.queueing_onset_rate is not None
        else " Median latency stayed within 1.5 × the lightest load's at every rate measured."
    )
    if f.capacity.mean is None and f.unjudged_trials:
        return (
            f"Capacity{target} not measured: {unjudged_text(f)}"
            " Rerun on a quieter machine, or allow more send lag (suites.rate.max_send_lag_s)."
            + served
            + probe_text(f.probe)
        )
    if f.capacity.mean is None:
        return f"No open-loop rate was measured{target}."
    answer = spread_text(f.capacity, 2, " req/s")
    if f.at_least:
        head = (
            f"Capacity{target} under {slo_text(f.slo)}: at least {answer}: every rate measured "
            "held, so offer higher rates to find the limit."
        )
    elif f.capacity.mean == 0:
        head = (
            f"Capacity{target} under {slo_text(f.slo)}: below the lowest rate measured; "
            f"limited by {LIMITS.get(f.limited_by, f.limited_by)}."
        )
    else:
        head = (
            f"Capacity{target} under {slo_text(f.slo)}: {answer}; the next rate did not hold, "
            f"limited by {LIMITS.get(f.limited_by, f.limited_by)}."
        )
    stopped = ""
    if f.skipped_rates:
        rates = ", ".join(f"{rate:g}" for rate in f.skipped_rates)
        stopped = f" The sweep stopped early: {rates} req/s not measured ({f.stopped_because})."
    unjudged = f" {unjudged_text(f)}" if f.unjudged_trials else ""
    return (
        head
        + below_zero(f)
        + unjudged
        + served
        + probe_text(f.probe)
        + onset
        + stopped
        + versus_text(f)
    )


def unjudged_text(f: CapacityFinding) -> str:
    """'Trials 1 and 3 are not counted: …' for the trials the client cut short."""
    trials = [str(trial) for trial, _ in f.unjudged_trials]
    names = " and ".join([", ".join(trials[:-1]), trials[-1]] if len(trials) > 1 else trials)
    rates = " and ".join(f"{rate:g}" for rate in sorted({rate for _, rate in f.unjudged_trials}))
    plural = len(trials) != 1
    return (
        f"{'Trials' if plural else 'Trial'} {names} {'are' if plural else 'is'} not counted: "
        f"the client could not keep the schedule at {rates} req/s before the server missed "
        "a target, so the server's limit was not reached."
    )


def below_zero(f: CapacityFinding) -> str:
    """A capacity's CI that reaches below zero, which no capacity can."""
    c = f.capacity
    if c.mean is None or c.ci95 is None or c.mean - c.ci95 >= 0:
        return ""
    return (
        f" (Its CI reaches below 0, which a rate cannot: read it as 0–{c.mean + c.ci95:.2f} req/s.)"
    )


def probe_text(p: ProbeCapacity | None) -> str:
    """The probe's two rates and, where the server timed its requests, its own capacity."""
    if p is None:
        return ""
    measured = (
        f" The sweep's probe served {num(p.synchronous_rate, 2, ' req/s')} one request at a "
        f"time and {num(p.saturated_rate, 2, ' req/s')} with {p.saturating_workers} open."
    )
    if p.server_busy_s is None:
        return measured + " The server reports no timings of its own to set beside it."
    busy = f"by the server's own timings each saturated request kept a slot busy {p.server_busy_s:.3g} s"
    if p.server_rate is None:
        return measured + f" {busy[0].upper()}{busy[1:]}; how many slots it runs is not known here."
    slots = f"{p.slots} slot{'s' if p.slots != 1 else ''}"
    return (
        measured + f" {busy[0].upper()}{busy[1:]} (prefill + decode), so its {slots} serve at most "
        f"{p.slots} / {p.server_busy_s:.3g} s = {num(p.server_rate, 2, ' req/s')}: the server's own "
        f"capacity, {num(p.saturated_rate / p.server_rate * 100, 0, '%')} of it measured "
        "by the client (the rest is time a slot stood idle between one request and the next)."
    )


def comparison_lines(findings: tuple[CapacityFinding, ...]) -> list[str]:
    """Each target's capacity against the baseline's, for the comparison of targets."""
    by_target = {f.target: f for f in findings}
    lines = []
    for f in findings:
        base = by_target.get(f.baseline)
        if f.versus_baseline is None or base is None:
            continue
        lines.append(
            f"**Capacity** under {slo_text(f.slo)}: {f.target} "
            f"{spread_text(f.capacity, 2, ' req/s')}{' or more' if f.at_least else ''}, "
            f"{base.target} {spread_text(base.capacity, 2, ' req/s')}"
            f"{' or more' if base.at_least else ''}.{versus_text(f)}"
        )
    return lines


def versus_text(f: CapacityFinding) -> str:
    """' Against q8_0: ×1.20 (95% CI 1.05–1.37, 3 trials), changed.'"""
    v = f.versus_baseline
    if v is None:
        return ""
    if v.estimate is None:
        return f" Against {f.baseline}: no ratio ({v.reason.value.replace('_', ' ')})."
    interval = (
        f" (95% CI {v.low:.2f}–{v.high:.2f}, {v.n_trials} trials)"
        if v.low is not None and v.high is not None
        else f" ({v.n_trials} trial{'s' if v.n_trials != 1 else ''})"
    )
    outcome = v.outcome.value
    if not v.conclusive:
        outcome += f": {v.reason.value.replace('_', ' ')}"
    return f" Against {f.baseline}: ×{v.estimate:.2f}{interval}, {outcome}."


def open_loop_note(capabilities: Capabilities) -> str | None:
    """What open-loop load means for an engine that runs in the client's own process."""
    if not capabilities.in_process or capabilities.parallel_setting is not None:
        return None
    return (
        f"{capabilities.label} runs inside perflab's own process and serves one request at a "
        "time: open-loop requests still leave on schedule, but wait for the model's lock in "
        "turn (their queue time is queue_s), so it serves at most 1 / the time of one request, "
        "and any rate above that only lengthens the queue. The client's threads share the CPU "
        "with the model, so a high send lag here is the model's load on the client, not the "
        "network."
    )
