"""The bottleneck verdict: documented rules over resource samples and the
concurrency sweep, each reporting the numbers it looked at.

Priority when several rules trigger: memory > cpu > io > client > queueing
(a machine that swaps or saturates its cores explains queueing, not the reverse).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

CPU_SATURATION = 0.80  # server CPU ≥ 80 % of the cores it can use
SYSTEM_CPU_SATURATION = 85.0  # or system CPU ≥ 85 %
LOW_AVAILABLE_FRACTION = 0.10  # available memory below 10 % of total
LOW_AVAILABLE_GB = 1.0
SWAP_GB = 0.1
QUEUE_LATENCY_GROWTH = 1.5  # e2e at max workers ≥ 1.5 × e2e at 1 worker
QUEUE_FLAT_THROUGHPUT = 1.2  # while req/s grows ≤ 1.2 ×
CLIENT_CPU_HIGH = 80.0  # client ≥ 80 % of one core
SERVER_CPU_LOW = 50.0
DISK_READ_HIGH_MB_S = 50.0
PRIORITY = ("memory", "cpu", "io", "client", "queueing")


@dataclass
class Check:
    name: str
    triggered: bool
    evidence: str
    numbers: dict = field(default_factory=dict)


@dataclass
class Verdict:
    verdict: str
    evidence: list[str]
    checks: list[Check]
    secondary: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def cpu_check(resources: dict, usable_cores: int) -> Check | None:
    server = resources.get("server_cpu_percent_mean")
    system = resources.get("cpu_percent_mean")
    if server is None and system is None:
        return None
    capacity = 100.0 * usable_cores
    share = None if server is None else server / capacity
    triggered = (share is not None and share >= CPU_SATURATION) or (
        system is not None and system >= SYSTEM_CPU_SATURATION
    )
    text = (
        f"server process CPU averaged {server or 0:.0f}% of one core against {capacity:.0f}% "
        f"available on {usable_cores} usable core(s) ({(share or 0):.0%}); system CPU "
        f"averaged {system or 0:.0f}% of all cores"
    )
    return Check(
        "cpu",
        triggered,
        text,
        {
            "server_cpu_percent_mean": server,
            "cpu_percent_mean": system,
            "usable_cores": usable_cores,
        },
    )


def memory_check(resources: dict, model_size_gb: float | None) -> Check | None:
    available = resources.get("mem_available_gb_min")
    total = resources.get("mem_total_gb")
    swap = resources.get("swap_used_gb_max")
    if available is None:
        return None
    low = available < LOW_AVAILABLE_GB or (total and available < LOW_AVAILABLE_FRACTION * total)
    swapping = swap is not None and swap > SWAP_GB
    too_big = model_size_gb is not None and total is not None and model_size_gb > 0.9 * total
    text = (
        f"available memory never fell below {available:.1f} GB"
        + (f" of {total:.1f} GB" if total else "")
        + f", swap used at most {swap or 0:.2f} GB"
        + (f", model file {model_size_gb:.2f} GB" if model_size_gb is not None else "")
    )
    return Check(
        "memory",
        bool(low or swapping or too_big),
        text,
        {
            "mem_available_gb_min": available,
            "swap_used_gb_max": swap,
            "model_size_gb": model_size_gb,
        },
    )


def queueing_check(concurrency: list[dict]) -> Check | None:
    points = sorted((p for p in concurrency if p.get("req_per_s")), key=lambda p: p["workers"])
    if len(points) < 2 or points[0]["workers"] != 1:
        return None
    one, most = points[0], points[-1]
    latency_growth = most["e2e_mean_s"] / one["e2e_mean_s"]
    throughput_growth = most["req_per_s"] / one["req_per_s"]
    triggered = (
        latency_growth >= QUEUE_LATENCY_GROWTH and throughput_growth <= QUEUE_FLAT_THROUGHPUT
    )
    text = (
        f"from 1 to {most['workers']} workers, mean latency grew ×{latency_growth:.2f} "
        f"({one['e2e_mean_s']:.3f}s → {most['e2e_mean_s']:.3f}s) while throughput grew "
        f"×{throughput_growth:.2f} ({one['req_per_s']:.2f} → {most['req_per_s']:.2f} req/s)"
    )
    if most.get("queue_s_mean") is not None:
        text += f"; requests waited {most['queue_s_mean']:.3f}s on average in the queue"
    return Check(
        "queueing",
        triggered,
        text,
        {"latency_growth": latency_growth, "throughput_growth": throughput_growth},
    )


def client_check(resources: dict, embedded: bool) -> Check | None:
    client = resources.get("client_cpu_percent_mean")
    server = resources.get("server_cpu_percent_mean")
    if client is None or embedded:
        return None  # embedded: client and server are one process, the split is meaningless
    triggered = client >= CLIENT_CPU_HIGH and (server is None or server < SERVER_CPU_LOW)
    text = f"the client process used {client:.0f}% of one core"
    return Check("client", triggered, text, {"client_cpu_percent_mean": client})


def io_check(resources: dict) -> Check | None:
    disk = resources.get("disk_read_mb_s_mean")
    if disk is None:
        return None
    system = resources.get("cpu_percent_mean") or 0.0
    triggered = disk >= DISK_READ_HIGH_MB_S and system < SYSTEM_CPU_SATURATION
    return Check(
        "io", triggered, f"disk reads averaged {disk:.1f} MB/s", {"disk_read_mb_s_mean": disk}
    )


def decide(
    resources: dict,
    usable_cores: int,
    concurrency: list[dict],
    model_size_gb: float | None = None,
    embedded: bool = False,
) -> Verdict:
    checks = [
        check
        for check in (
            cpu_check(resources, usable_cores),
            memory_check(resources, model_size_gb),
            queueing_check(concurrency),
            client_check(resources, embedded),
            io_check(resources),
        )
        if check is not None
    ]
    triggered = [c.name for c in checks if c.triggered]
    ranked = [name for name in PRIORITY if name in triggered]
    if not checks:
        return Verdict(
            "undetermined",
            ["no resource samples and no concurrency sweep: nothing to decide from"],
            [],
            [],
        )
    if not ranked:
        evidence = [c.evidence for c in checks]
        evidence.append("no rule triggered: no resource is saturated at this load")
        return Verdict("undetermined", evidence, checks, [])
    by_name = {c.name: c for c in checks}
    evidence = [by_name[name].evidence for name in ranked]
    evidence += [c.evidence for c in checks if not c.triggered]
    return Verdict(ranked[0], evidence, checks, ranked[1:])


OPTIMIZATIONS = {
    "cpu": [
        "use a smaller quantization (e.g. Q4_K_M) so each token reads fewer bytes",
        "set the thread count to the physical cores and keep other work off them",
        "offload layers to a GPU if one is available",
    ],
    "memory": [
        "use a smaller quantization or a smaller model so it fits in RAM",
        "shorten the context length (num_ctx) to shrink the KV cache",
        "close other memory-hungry processes; avoid swap",
    ],
    "queueing": [
        "raise OLLAMA_NUM_PARALLEL so the server batches concurrent requests",
        "limit concurrent clients to what the server can serve, or add replicas",
    ],
    "client": ["run the load generator on another core or machine, or lower its sampling rate"],
    "io": ["keep the model loaded (keep_alive) and on a fast local disk"],
    "undetermined": ["increase the load (more workers, longer prompts) until a resource saturates"],
}


def suggest_optimizations(verdict: str) -> list[str]:
    return OPTIMIZATIONS.get(verdict, OPTIMIZATIONS["undetermined"])
