"""A sweep to the limit, first its probe (as GuideLLM does): the server's throughput with
one request at a time (synchronous) and with as many as the sweep may keep open
(saturated), then the offered rates between none and ``sweep_high`` times the saturated
throughput. One probe job per target writes them; each sweep point's job reads its rate
from that file when it runs, so the workflow's jobs are known before the probe runs and
every point reruns and repeats as any experiment does.

A point stops the sweep early (it is measured no more, its job records why) when the
point below it was skipped, was invalid (the client could not keep that schedule, so it
cannot keep a faster one), or had a median latency above ``diverge_factor`` times the
synchronous probe's: the queue is already growing without bound.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from perflab.core.records import STATUS_OK
from perflab.measure.open_loop import quantile
from perflab.measure.runner import LoadPlan, run_load
from perflab.measure.spec import SETTINGS_KEYS

PROBE_KEYS = ("prompt", "probe_requests", "max_in_flight", "sweep_points", "sweep_high")


class ProbeFailed(RuntimeError):
    """No request of a probe succeeded; the message says which and why."""


@dataclass(frozen=True)
class ProbeResult:
    synchronous_rate: float  # ok requests/s, one request at a time
    synchronous_p50_s: float  # their median latency: the sweep's latency at no load
    saturated_rate: float  # ok requests/s with saturating_workers requests always open
    saturating_workers: int
    rates: tuple[float, ...]  # the sweep's offered rates, lowest first
    n_requests: int
    n_errors: int
    probe_s: float  # wall time of both probes: the sweep's planning cost
    # by the server's own clock, the saturated run's mean busy time per request (prefill +
    # decode); None when the server does not report both for every request
    saturated_server_s: float | None = None

    @classmethod
    def read(cls, path: str | Path) -> ProbeResult:
        data = json.loads(Path(path).read_text())
        return cls(**(data | {"rates": tuple(data["rates"])}))

    def as_dict(self) -> dict:
        return asdict(self) | {"rates": list(self.rates)}


def sweep_rates(saturated_rate: float, points: int, high: float) -> tuple[float, ...]:
    """``points`` rates evenly up to ``high`` x the saturated rate, to 4 significant digits."""
    top = saturated_rate * high
    return tuple(float(f"{top * k / points:.4g}") for k in range(1, points + 1))


def probe_spec(config: dict, target: str | None) -> dict:
    """What the probe job needs: the target's settings and the rate suite's probe keys."""
    from perflab.config.targets import target_config

    single = target_config(config, target)
    rate = config["suites"]["rate"]
    probe = {key: rate[key] for key in PROBE_KEYS}
    probe["prompt_text"] = config["prompts"][rate["prompt"]]
    probe["prompt_cache"] = config["prompt_cache"]
    return {key: single[key] for key in SETTINGS_KEYS} | {"probe": probe}


def _served(records, wall_s: float, label: str) -> tuple[float, list]:
    ok = [r for r in records if r.status == STATUS_OK and not r.is_warmup]
    if not ok:
        last = records[-1] if records else None
        why = f"{last.error_class}: {last.error}" if last else "nothing was sent"
        raise ProbeFailed(f"the {label} probe had no successful request ({why})")
    return len(ok) / wall_s, ok


def server_busy_s(records) -> float | None:
    """Mean prefill + decode per request by the server's own timings; None without them."""
    busy = [r.prefill_s + r.decode_s for r in records if None not in (r.prefill_s, r.decode_s)]
    return sum(busy) / len(busy) if busy and len(busy) == len(records) else None


def run_probe(engine, options, probe: dict, warmup_requests: int) -> ProbeResult:
    """The synchronous probe, then the saturating one, on one engine."""
    started = time.perf_counter()
    requests = probe["probe_requests"]
    workers = min(probe["max_in_flight"], requests)
    runs = []
    for label, plan in (
        ("synchronous", LoadPlan(workers=1, requests=requests, warmup_requests=warmup_requests)),
        ("saturating", LoadPlan(workers=workers, requests=requests)),
    ):
        result = run_load(
            engine,
            probe["prompt_text"],
            options,
            plan,
            experiment_id=f"probe-{label}",
            prompt_cache=probe["prompt_cache"],
        )
        runs.append((result, *_served(result.records, result.measured_wall_s, label)))
    (_, sync_rate, sync_ok), (_, saturated_rate, saturated_ok) = runs
    measured = [r for result, *_ in runs for r in result.records if not r.is_warmup]
    return ProbeResult(
        synchronous_rate=sync_rate,
        synchronous_p50_s=quantile([r.e2e_s for r in sync_ok], 0.5),
        saturated_rate=saturated_rate,
        saturating_workers=workers,
        rates=sweep_rates(saturated_rate, probe["sweep_points"], probe["sweep_high"]),
        n_requests=len(measured),
        n_errors=sum(r.status != STATUS_OK for r in measured),
        probe_s=time.perf_counter() - started,
        saturated_server_s=server_busy_s(saturated_ok),
    )


def skip_reason(previous_summary: dict | None, probe: ProbeResult, diverge_factor: float):
    """Why a sweep point is not measured, from the point below it; None: measure it."""
    if previous_summary is None:
        return None
    if previous_summary.get("skipped"):
        return f"the point below was not measured either ({previous_summary['skipped']})"
    if previous_summary.get("schedule_valid") is False:
        return "the client could not keep the schedule of the point below"
    median = previous_summary.get("e2e_sched_p50_s")
    limit = diverge_factor * probe.synchronous_p50_s
    if median is not None and median > limit:
        return (
            f"latency diverged at the point below: median {median:.3g} s from the scheduled "
            f"send, above {diverge_factor:g} x the synchronous {probe.synchronous_p50_s:.3g} s"
        )
    return None
