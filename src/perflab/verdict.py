"""The bottleneck verdict: documented rules over resource samples and the
concurrency sweep, each reporting the numbers it looked at.

Inputs are plain dicts: the ``summarize_samples`` summary of the sustained-load
experiment, the cores the server can use, the model file's size and the
concurrency sweep's points ``{workers, req_per_s, e2e_mean_s, ttft_mean_s,
queue_s_mean}``. Every rule is evaluated and listed in ``checks``; a rule whose
data is missing is listed with ``missing`` set and does not trigger.

Priority when several rules trigger: memory > cpu > io > client > queueing.
A machine that swaps, or whose cores are saturated, explains rising latency
(queueing) and a slow client, not the reverse; disk reads come before the
client because a starved server also idles its client.

The thresholds are the module constants below; docs/resources.md lists them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# cpu: the server uses ≥ 80 % of the cores it can use, or the whole system is ≥ 85 % busy
CPU_SATURATION = 0.80
SYSTEM_CPU_SATURATION = 85.0
# memory: available memory below 10 % of total or below 1 GB, swap in use or growing,
# or a model that does not fit
LOW_AVAILABLE_FRACTION = 0.10
LOW_AVAILABLE_GB = 1.0
SWAP_GB = 0.1  # swap used, when its growth during the run is unknown
SWAP_GROWTH_GB = 0.1  # swap grew by this much during the run
MODEL_FIT_FRACTION = 0.90  # model file larger than 90 % of RAM: it cannot stay resident
RESIDENT_FRACTION = 0.50  # server RSS under half the model while too little memory is free
# queueing: latency rises with workers while throughput stays flat
QUEUE_LATENCY_GROWTH = 1.5  # e2e at the most workers ≥ 1.5 × e2e at the fewest (1)
QUEUE_FLAT_THROUGHPUT = 1.2  # while req/s grows ≤ 1.2 ×
# client: the load generator is busy while the server is not
CLIENT_CPU_HIGH = 80.0  # client ≥ 80 % of one core
SERVER_CPU_LOW = 0.50  # server below 50 % of the cores it can use
# io: sustained disk reads while the CPU is not busy
DISK_READ_HIGH_MB_S = 50.0  # median (else mean) disk read rate
IO_CPU_LOW = 50.0  # system CPU below 50 %

PRIORITY = ("memory", "cpu", "io", "client", "queueing")
VERDICTS = (*PRIORITY, "undetermined")
# The learning log offers CPU | Memory | Disk I/O | Network; the other verdicts are notes.
LOG_OPTION = {"cpu": "CPU", "memory": "Memory", "io": "Disk I/O"}
NOTES = {
    "queueing": "queueing: the server serializes requests (latency grows with concurrent "
    "requests while throughput stays flat)",
    "client": "the benchmark client itself is the limit, not the server",
    "undetermined": "undetermined from these measurements",
}


@dataclass
class Check:
    name: str
    triggered: bool
    evidence: str
    numbers: dict = field(default_factory=dict)
    missing: str | None = None  # why the rule could not be evaluated


@dataclass
class Verdict:
    verdict: str
    evidence: list[str]
    checks: list[Check]
    secondary: list[str]

    @property
    def log_option(self) -> str | None:
        """The learning log's option (CPU, Memory, Disk I/O) or None for the others."""
        return LOG_OPTION.get(self.verdict)

    @property
    def note(self) -> str | None:
        return NOTES.get(self.verdict)

    def to_dict(self) -> dict:
        return asdict(self) | {"log_option": self.log_option, "note": self.note}


def _pct(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}%"


def _skipped(name: str, why: str, numbers: dict | None = None) -> Check:
    return Check(name, False, f"{name}: not evaluated, {why}", numbers or {}, why)


def cpu_check(resources: dict, usable_cores: int | None) -> Check:
    server = resources.get("server_cpu_percent_mean")
    system = resources.get("cpu_percent_mean")
    numbers = {
        "server_cpu_percent_mean": server,
        "cpu_percent_mean": system,
        "usable_cores": usable_cores,
    }
    if server is None and system is None:
        return _skipped("cpu", "no CPU samples", numbers)
    capacity = 100.0 * usable_cores if usable_cores else None
    share = server / capacity if server is not None and capacity else None
    numbers["server_share"] = share
    triggered = (share is not None and share >= CPU_SATURATION) or (
        system is not None and system >= SYSTEM_CPU_SATURATION
    )
    parts = []
    if server is not None:
        parts.append(
            f"the server averaged {server:.0f}% of one core"
            + (
                f", {share:.0%} of the {capacity:.0f}% its {usable_cores} usable core(s) allow"
                if share is not None
                else ""
            )
        )
    else:
        parts.append("the server's processes were not sampled")
    parts.append(f"system CPU averaged {_pct(system)} of all cores")
    return Check("cpu", triggered, "; ".join(parts), numbers)


def memory_check(resources: dict, model_size_gb: float | None) -> Check:
    available = resources.get("mem_available_gb_min")
    total = resources.get("mem_total_gb")
    swap = resources.get("swap_used_gb_max")
    growth = resources.get("swap_growth_gb")
    rss = resources.get("server_rss_gb_max")
    numbers = {
        "mem_available_gb_min": available,
        "mem_total_gb": total,
        "swap_used_gb_max": swap,
        "swap_growth_gb": growth,
        "server_rss_gb_max": rss,
        "model_size_gb": model_size_gb,
    }
    if available is None and swap is None and (model_size_gb is None or total is None):
        return _skipped("memory", "no memory samples", numbers)
    reasons = []
    if available is not None and available < LOW_AVAILABLE_GB:
        reasons.append(f"available memory fell to {available:.2f} GB (< {LOW_AVAILABLE_GB:g} GB)")
    elif available is not None and total and available < LOW_AVAILABLE_FRACTION * total:
        reasons.append(
            f"available memory fell to {available:.2f} GB, {available / total:.0%} of "
            f"{total:.1f} GB (< {LOW_AVAILABLE_FRACTION:.0%})"
        )
    if growth is not None:
        if growth >= SWAP_GROWTH_GB:
            reasons.append(f"swap grew by {growth:.2f} GB during the run")
    elif swap is not None and swap > SWAP_GB:
        reasons.append(f"{swap:.2f} GB of swap in use")
    if model_size_gb is not None and total and model_size_gb > MODEL_FIT_FRACTION * total:
        reasons.append(
            f"the model file ({model_size_gb:.2f} GB) is over {MODEL_FIT_FRACTION:.0%} of "
            f"RAM ({total:.1f} GB)"
        )
    elif (
        model_size_gb is not None
        and rss is not None
        and available is not None
        and rss < RESIDENT_FRACTION * model_size_gb
        and available < model_size_gb
    ):
        reasons.append(
            f"the server's RSS peaked at {rss:.2f} GB for a {model_size_gb:.2f} GB model with "
            f"only {available:.2f} GB free: the model is not kept in memory"
        )
    if reasons:
        text = "memory pressure: " + "; ".join(reasons)
    else:
        text = (
            f"available memory never fell below {available:.1f} GB"
            if available is not None
            else "available memory was not sampled"
        )
        text += f" of {total:.1f} GB" if total and available is not None else ""
        if swap is not None:
            text += f", swap used at most {swap:.2f} GB"
            if growth is not None:
                text += f" (grew {growth:.2f} GB)"
        if model_size_gb is not None:
            text += f", model file {model_size_gb:.2f} GB"
    return Check("memory", bool(reasons), text, numbers)


def queueing_check(concurrency: list[dict]) -> Check:
    points = sorted(
        (p for p in concurrency if p.get("workers") and p.get("req_per_s") and p.get("e2e_mean_s")),
        key=lambda p: p["workers"],
    )
    if len(points) < 2 or points[0]["workers"] == points[-1]["workers"]:
        return _skipped(
            "queueing",
            "the concurrency sweep needs latency and throughput at two or more worker counts",
            {"points": len(points)},
        )
    low, most = points[0], points[-1]
    latency_growth = most["e2e_mean_s"] / low["e2e_mean_s"]
    throughput_growth = most["req_per_s"] / low["req_per_s"]
    ttft_growth = None
    if low.get("ttft_mean_s") and most.get("ttft_mean_s") is not None:
        ttft_growth = most["ttft_mean_s"] / low["ttft_mean_s"]
    triggered = (
        latency_growth >= QUEUE_LATENCY_GROWTH and throughput_growth <= QUEUE_FLAT_THROUGHPUT
    )
    text = (
        f"from {low['workers']} to {most['workers']} workers, mean latency grew "
        f"×{latency_growth:.2f} ({low['e2e_mean_s']:.3f}s → {most['e2e_mean_s']:.3f}s) while "
        f"throughput grew ×{throughput_growth:.2f} ({low['req_per_s']:.2f} → "
        f"{most['req_per_s']:.2f} req/s)"
    )
    if ttft_growth is not None:
        text += f"; time to first token grew ×{ttft_growth:.2f}"
    if most.get("queue_s_mean") is not None:
        text += f"; requests waited {most['queue_s_mean']:.3f}s on average in the queue"
    if triggered:
        text += ": the server serializes requests"
    return Check(
        "queueing",
        triggered,
        text,
        {
            "workers_low": low["workers"],
            "workers_high": most["workers"],
            "latency_growth": latency_growth,
            "throughput_growth": throughput_growth,
            "ttft_growth": ttft_growth,
            "queue_s_mean": most.get("queue_s_mean"),
        },
    )


def client_check(resources: dict, usable_cores: int | None, embedded: bool) -> Check:
    client = resources.get("client_cpu_percent_mean")
    server = resources.get("server_cpu_percent_mean")
    numbers = {"client_cpu_percent_mean": client, "server_cpu_percent_mean": server}
    if embedded or resources.get("client_in_server"):
        # one process: its CPU is the server's work, the split means nothing
        return _skipped("client", "client and server share one process (embedded engine)", numbers)
    if client is None:
        return _skipped("client", "no client CPU samples", numbers)
    capacity = 100.0 * usable_cores if usable_cores else None
    server_low = server is None or capacity is None or server < SERVER_CPU_LOW * capacity
    triggered = client >= CLIENT_CPU_HIGH and server_low
    text = f"the client process used {client:.0f}% of one core" + (
        f" while the server used {server:.0f}%" if server is not None else ""
    )
    return Check("client", triggered, text, numbers)


def io_check(resources: dict) -> Check:
    median = resources.get("disk_read_mb_s_median")
    disk = median if median is not None else resources.get("disk_read_mb_s_mean")
    system = resources.get("cpu_percent_mean")
    numbers = {"disk_read_mb_s": disk, "cpu_percent_mean": system}
    if disk is None:
        return _skipped("io", "no disk samples", numbers)
    triggered = disk >= DISK_READ_HIGH_MB_S and (system is None or system < IO_CPU_LOW)
    kind = "median" if median is not None else "mean"
    text = f"disk reads ran at {disk:.1f} MB/s ({kind}) with system CPU at {_pct(system)}"
    return Check("io", triggered, text, numbers)


def decide(
    resources: dict,
    usable_cores: int | None,
    concurrency: list[dict],
    model_size_gb: float | None = None,
    embedded: bool = False,
    client_cpu_percent: float | None = None,
) -> Verdict:
    """Apply every rule; the triggered rule first in PRIORITY is the verdict.

    ``usable_cores``: the cores the server can use (llama.cpp's thread count when
    known, else the host's logical cores). ``client_cpu_percent``, when given,
    replaces the summary's ``client_cpu_percent_mean``.
    """
    resources = dict(resources or {})
    if client_cpu_percent is not None:
        resources["client_cpu_percent_mean"] = client_cpu_percent
    checks = [
        memory_check(resources, model_size_gb),
        cpu_check(resources, usable_cores),
        io_check(resources),
        client_check(resources, usable_cores, embedded),
        queueing_check(concurrency or []),
    ]
    evaluated = [c for c in checks if c.missing is None]
    missing = [f"{c.name}: {c.missing}" for c in checks if c.missing is not None]
    ranked = [c for c in checks if c.triggered]  # checks are already in PRIORITY order
    if not evaluated:
        return Verdict(
            "undetermined",
            ["no resource samples and no concurrency sweep: nothing to decide from", *missing],
            checks,
            [],
        )
    if not ranked:
        evidence = [c.evidence for c in evaluated]
        evidence.append("no rule triggered: no resource is saturated at this load")
        if missing:
            evidence.append("not evaluated for missing data: " + "; ".join(missing))
        return Verdict("undetermined", evidence, checks, [])
    evidence = [c.evidence for c in ranked]
    evidence += [c.evidence for c in evaluated if not c.triggered]
    return Verdict(ranked[0].name, evidence, checks, [c.name for c in ranked[1:]])


OPTIMIZATIONS = {
    "cpu": [
        "use a smaller quantization (e.g. Q4_K_M) so each token needs less compute and memory bandwidth",
        "set the thread count to the physical cores and keep other work off them (oversubscribed threads contend)",
        "offload layers to a GPU if one is available (n_gpu_layers / num_gpu)",
        "use a smaller model",
    ],
    "memory": [
        "use a smaller quantization or a smaller model so it fits in RAM",
        "shorten the context (n_ctx / num_ctx) to shrink the KV cache",
        "lower OLLAMA_NUM_PARALLEL: each parallel slot keeps its own KV cache",
        "close other memory-hungry processes; avoid swap",
    ],
    "queueing": [
        "raise OLLAMA_NUM_PARALLEL so the server serves concurrent requests in one batch",
        "cap concurrent clients at what the server serves in parallel, or add replicas",
        "shorten prompts and outputs (num_predict) so each request holds the server for less time",
    ],
    "client": [
        "run the load generator on another core or machine",
        "lower the sampling rate (sampler.interval_s) and the client's own per-token work",
    ],
    "io": [
        "keep the model loaded between requests (keep_alive) so it is not read again",
        "put the model on a fast local disk, and leave enough free RAM for the page cache",
    ],
    "undetermined": [
        "increase the load (more workers, longer prompts or outputs) until a resource saturates",
        "run the resources suite long enough for several samples, with the server on this host",
    ],
}


def suggest_optimizations(verdict: Verdict | dict | str) -> list[str]:
    """Short, concrete things to try for a verdict (a Verdict, its dict or its name).

    For a Verdict with secondary findings, the first suggestion for each is added.
    """
    if isinstance(verdict, Verdict):
        name, secondary = verdict.verdict, verdict.secondary
    elif isinstance(verdict, dict):
        name, secondary = verdict.get("verdict", "undetermined"), verdict.get("secondary") or []
    else:
        name, secondary = verdict, []
    suggestions = list(OPTIMIZATIONS.get(name, OPTIMIZATIONS["undetermined"]))
    for other in secondary:
        extra = OPTIMIZATIONS.get(other, [None])[0]
        if extra and extra not in suggestions:
            suggestions.append(extra)
    return suggestions
