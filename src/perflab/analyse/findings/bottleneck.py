"""The bottleneck: documented rules over the resources finding and the
concurrency finding, each reporting the figures it looked at.

Every rule is evaluated and listed in ``checks``; a rule whose data is missing
says why and does not trigger. Priority when several trigger: memory > cpu >
io > network > client > queueing. A machine that swaps, or whose cores are
saturated, explains rising latency (queueing) and a slow client, not the
reverse; disk reads come before the client because a starved server also
idles its client. docs/resources.md lists the thresholds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from perflab.analyse.findings.concurrency import ConcurrencyFinding, ConcurrencyMode
from perflab.analyse.findings.resources import ResourcesFinding
from perflab.engines.base import Capabilities

# cpu: the server uses ≥ 80 % of the cores it can use, or the whole system is ≥ 85 % busy
CPU_SATURATION = 0.80
SYSTEM_CPU_SATURATION = 85.0
# memory: available below 10 % of RAM or 1 GB, swap growing, or a model that cannot stay in RAM
LOW_AVAILABLE_FRACTION = 0.10
LOW_AVAILABLE_GB = 1.0
SWAP_GB = 0.1  # swap used, when its growth during the run is unknown
SWAP_GROWTH_GB = 0.1
MODEL_FIT_FRACTION = 0.90  # model file larger than 90 % of RAM
RESIDENT_FRACTION = 0.50  # server RSS under half the model while too little memory is free
# queueing: at the most workers, waiting for the server is ≥ 30 % of mean latency and at
# least 10 points beyond the 1 − P/W share that P slots leave W closed-loop workers by
# construction (a queue the slot count explains restates the configuration), and the
# requests wait rather than run together each slower (concurrency mode ``shares``)
QUEUE_SHARE = 0.30
QUEUE_BEYOND_SLOTS = 0.10
# client: the load generator is busy while the server is not
CLIENT_CPU_HIGH = 80.0
SERVER_CPU_LOW = 0.50
# io: sustained disk reads while the CPU is not busy
DISK_READ_HIGH_MB_S = 50.0
IO_CPU_LOW = 50.0


class Bottleneck(str, Enum):
    CPU = "cpu"
    MEMORY = "memory"
    IO = "io"
    NETWORK = "network"
    CLIENT = "client"
    QUEUEING = "queueing"
    UNDETERMINED = "undetermined"


PRIORITY = (
    Bottleneck.MEMORY,
    Bottleneck.CPU,
    Bottleneck.IO,
    Bottleneck.NETWORK,
    Bottleneck.CLIENT,
    Bottleneck.QUEUEING,
)


class Missing(str, Enum):
    NO_CPU_SAMPLES = "no_cpu_samples"
    NO_MEMORY_SAMPLES = "no_memory_samples"
    NO_DISK_SAMPLES = "no_disk_samples"
    NO_CLIENT_SAMPLES = "no_client_samples"
    ONE_PROCESS = "one_process"  # client and server share one process
    NO_QUEUE_FIGURE = "no_queue_figure"  # fewer than 2 worker counts, or no timings
    NO_NETWORK_RULE = "no_network_rule"


@dataclass(frozen=True)
class Figure:
    name: str
    value: float | bool | None


@dataclass(frozen=True)
class Check:
    rule: Bottleneck
    triggered: bool
    missing: Missing | None  # why the rule could not be evaluated
    figures: tuple[Figure, ...]
    reasons: tuple[str, ...] = ()  # which conditions of the rule held (memory)

    def get(self, name: str):
        return next((f.value for f in self.figures if f.name == name), None)


@dataclass(frozen=True)
class BottleneckFinding:
    primary: Bottleneck
    secondary: tuple[Bottleneck, ...]
    checks: tuple[Check, ...]  # every rule, in priority order
    usable_cores: int | None
    disturbed: tuple[str, ...] = ()  # disturbed experiments the primary's evidence rests on

    @property
    def evaluated(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.missing is None)

    @property
    def triggered(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.triggered)


def _figures(**values) -> tuple[Figure, ...]:
    return tuple(Figure(name, value) for name, value in values.items())


def _skipped(rule: Bottleneck, why: Missing, **values) -> Check:
    return Check(rule, False, why, _figures(**values))


def _own_system_cpu(r: ResourcesFinding, logical_cores: int | None) -> float | None:
    """System CPU (% of all cores) less what other processes used, when that is known."""
    if r.cpu_percent_mean is None or r.interference_cpu_pct_mean is None or not logical_cores:
        return r.cpu_percent_mean
    return max(0.0, r.cpu_percent_mean - r.interference_cpu_pct_mean / logical_cores)


def saturated_threads(server_cpu_percent: float | None) -> int | None:
    """k when the server's CPU is within ``CPU_SATURATION`` of k whole cores (k ≥ 1): what k
    busy engine threads show, whatever the machine's core count."""
    if server_cpu_percent is None:
        return None
    whole = math.ceil(server_cpu_percent / 100.0 - 1e-9)
    return whole if whole >= 1 and server_cpu_percent >= CPU_SATURATION * 100.0 * whole else None


def cpu_check(
    r: ResourcesFinding | None,
    usable_cores: int | None,
    logical_cores: int | None = None,
    concurrency: ConcurrencyFinding | None = None,
) -> Check:
    server = r.server_cpu_percent_mean if r else None
    system = r.cpu_percent_mean if r else None
    if server is None and system is None:
        return _skipped(Bottleneck.CPU, Missing.NO_CPU_SAMPLES)
    own = _own_system_cpu(r, logical_cores)
    capacity = 100.0 * usable_cores if usable_cores else None
    share = server / capacity if server is not None and capacity else None
    # requests that run together, each slower, while the server keeps k cores busy: its
    # k threads are saturated, on a machine with more cores too
    threads = saturated_threads(server)
    sharing = concurrency is not None and concurrency.mode is ConcurrencyMode.SHARES
    # other work on the machine is interference, not the engine's bottleneck
    triggered = (
        (share is not None and share >= CPU_SATURATION)
        or (own is not None and own >= SYSTEM_CPU_SATURATION)
        or (sharing and threads is not None)
    )
    figures = _figures(
        server_cpu_percent_mean=server,
        cpu_percent_mean=system,
        own_cpu_percent_mean=own,
        usable_cores=usable_cores,
        server_share=share,
        saturated_threads=threads if sharing else None,
    )
    return Check(Bottleneck.CPU, triggered, None, figures)


def memory_check(r: ResourcesFinding | None, model_size_gb: float | None) -> Check:
    available = r.mem_available_gb_min if r else None
    total = r.mem_total_gb if r else None
    swap = r.swap_used_gb_max if r else None
    growth = r.swap_growth_gb if r else None
    rss = r.server_rss_gb_max if r else None
    figures = _figures(
        mem_available_gb_min=available,
        mem_total_gb=total,
        swap_used_gb_max=swap,
        swap_growth_gb=growth,
        server_rss_gb_max=rss,
        model_size_gb=model_size_gb,
    )
    if available is None and swap is None and (model_size_gb is None or total is None):
        return Check(Bottleneck.MEMORY, False, Missing.NO_MEMORY_SAMPLES, figures)
    reasons = []
    if available is not None and available < LOW_AVAILABLE_GB:
        reasons.append("low_available_gb")
    elif available is not None and total and available < LOW_AVAILABLE_FRACTION * total:
        reasons.append("low_available_fraction")
    if growth is not None:
        if growth >= SWAP_GROWTH_GB:
            reasons.append("swap_growth")
    elif swap is not None and swap > SWAP_GB:
        reasons.append("swap_used")
    if model_size_gb is not None and total and model_size_gb > MODEL_FIT_FRACTION * total:
        reasons.append("model_too_large")
    elif (
        model_size_gb is not None
        and rss is not None
        and available is not None
        and rss < RESIDENT_FRACTION * model_size_gb
        and available < model_size_gb
    ):
        reasons.append("model_not_resident")
    return Check(Bottleneck.MEMORY, bool(reasons), None, figures, tuple(reasons))


def io_check(r: ResourcesFinding | None) -> Check:
    median = r.disk_read_mb_s_median if r else None
    disk = median if median is not None else (r.disk_read_mb_s_mean if r else None)
    system = r.cpu_percent_mean if r else None
    if disk is None:
        return _skipped(Bottleneck.IO, Missing.NO_DISK_SAMPLES)
    triggered = disk >= DISK_READ_HIGH_MB_S and (system is None or system < IO_CPU_LOW)
    figures = _figures(disk_read_mb_s=disk, median=median is not None, cpu_percent_mean=system)
    return Check(Bottleneck.IO, triggered, None, figures)


def client_check(
    r: ResourcesFinding | None, usable_cores: int | None, capabilities: Capabilities
) -> Check:
    client = r.client_cpu_percent_mean if r else None
    server = r.server_cpu_percent_mean if r else None
    figures = dict(client_cpu_percent_mean=client, server_cpu_percent_mean=server)
    if capabilities.in_process or (r and r.client_in_server):
        return _skipped(Bottleneck.CLIENT, Missing.ONE_PROCESS, **figures)
    if client is None:
        return _skipped(Bottleneck.CLIENT, Missing.NO_CLIENT_SAMPLES, **figures)
    capacity = 100.0 * usable_cores if usable_cores else None
    server_low = server is None or capacity is None or server < SERVER_CPU_LOW * capacity
    triggered = client >= CLIENT_CPU_HIGH and server_low
    return Check(Bottleneck.CLIENT, triggered, None, _figures(**figures))


def queueing_check(concurrency: ConcurrencyFinding) -> Check:
    figures = dict(
        queue_wait_s=concurrency.queue_wait_s,
        queue_share=concurrency.queue_share,
        workers=concurrency.points[-1].workers if concurrency.points else None,
        knee_workers=concurrency.knee_workers,
        expected_queue_share=concurrency.expected_queue_share,
        slots=concurrency.slots or concurrency.parallel_requests,
        service_growth=concurrency.service_growth,
    )
    if concurrency.queue_share is None:
        return _skipped(Bottleneck.QUEUEING, Missing.NO_QUEUE_FIGURE, **figures)
    share, expected = concurrency.queue_share, concurrency.expected_queue_share or 0.0
    beyond = share >= QUEUE_SHARE and share - expected >= QUEUE_BEYOND_SLOTS
    # requests that run together, each slower, are limited by what serves them, not a queue
    triggered = beyond and concurrency.mode is not ConcurrencyMode.SHARES
    return Check(Bottleneck.QUEUEING, triggered, None, _figures(**figures))


def summary(
    resources: ResourcesFinding | None,
    concurrency: ConcurrencyFinding,
    capabilities: Capabilities,
    usable_cores: int | None,
    model_size_gb: float | None = None,
    logical_cores: int | None = None,
    disturbed: tuple[str, ...] = (),
) -> BottleneckFinding:
    """Apply every rule; the triggered rule first in ``PRIORITY`` is the primary.

    ``disturbed``: every disturbed experiment of the run; the finding keeps those
    its primary rests on (the resources run, or the concurrency suite for queueing)."""
    checks = (
        memory_check(resources, model_size_gb),
        cpu_check(resources, usable_cores, logical_cores, concurrency),
        io_check(resources),
        _skipped(Bottleneck.NETWORK, Missing.NO_NETWORK_RULE),
        client_check(resources, usable_cores, capabilities),
        queueing_check(concurrency),
    )
    ranked = [c.rule for c in checks if c.triggered]
    primary = ranked[0] if ranked else Bottleneck.UNDETERMINED
    sampled = (
        (resources.experiment_id,) if resources and resources.experiment_id in disturbed else ()
    )
    rests_on = {
        Bottleneck.QUEUEING: concurrency.disturbed,
        Bottleneck.UNDETERMINED: (*sampled, *concurrency.disturbed),
    }.get(primary, sampled)
    return BottleneckFinding(primary, tuple(ranked[1:]), checks, usable_cores, tuple(rests_on))
