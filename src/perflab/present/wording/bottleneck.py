"""The bottleneck's rules and their evidence in words."""

from __future__ import annotations

from perflab.analyse.findings.bottleneck import Bottleneck, BottleneckFinding, Check, Missing
from perflab.present.wording.numbers import LISTED, disturbed_count, pct

MISSING = {
    Missing.NO_CPU_SAMPLES: "no CPU samples",
    Missing.NO_MEMORY_SAMPLES: "no memory samples",
    Missing.NO_DISK_SAMPLES: "no disk samples",
    Missing.NO_CLIENT_SAMPLES: "no client CPU samples",
    Missing.ONE_PROCESS: "client and server share one process",
    Missing.NO_QUEUE_FIGURE: "no queue figure (fewer than 2 worker counts, or no engine timings)",
    Missing.NO_NETWORK_RULE: "no rule: perflab does not measure network saturation",
}

MEMORY_REASONS = {
    "low_available_gb": "available memory fell to {mem_available_gb_min:.2f} GB",
    "low_available_fraction": "available memory fell to {mem_available_gb_min:.2f} GB of {mem_total_gb:.1f} GB",
    "swap_growth": "swap grew by {swap_growth_gb:.2f} GB during the run",
    "swap_used": "{swap_used_gb_max:.2f} GB of swap in use",
    "model_too_large": "the model file ({model_size_gb:.2f} GB) is nearly all of RAM ({mem_total_gb:.1f} GB)",
    "model_not_resident": "the server's RSS peaked at {server_rss_gb_max:.2f} GB for a {model_size_gb:.2f} GB model: it is not kept in memory",
}


def check_text(check: Check) -> str:
    name = check.rule.value
    if check.missing is not None:
        return f"{name}: not evaluated, {MISSING[check.missing]}"
    g = check.get
    if check.rule == Bottleneck.CPU:
        server = g("server_cpu_percent_mean")
        text = "the server's processes were not sampled"
        if server is not None:
            text = f"the server averaged {server:.0f}% of one core"
            if g("server_share") is not None:
                text += f", {g('server_share'):.0%} of its {g('usable_cores')} usable core(s)"
        text += f"; system CPU averaged {pct(g('cpu_percent_mean'))} of all cores"
        if g("own_cpu_percent_mean") != g("cpu_percent_mean"):
            text += f" ({pct(g('own_cpu_percent_mean'))} without other processes)"
        return f"cpu: {text}"
    if check.rule == Bottleneck.MEMORY:
        if check.reasons:
            values = {f.name: f.value for f in check.figures}
            return "memory pressure: " + "; ".join(
                MEMORY_REASONS[r].format(**values) for r in check.reasons
            )
        available, total = g("mem_available_gb_min"), g("mem_total_gb")
        text = "memory: available memory " + (
            f"never fell below {available:.1f} GB" if available is not None else "was not sampled"
        )
        text += f" of {total:.1f} GB" if total and available is not None else ""
        if g("swap_used_gb_max") is not None:
            text += f", swap used at most {g('swap_used_gb_max'):.2f} GB"
        return text
    if check.rule == Bottleneck.IO:
        kind = "median" if g("median") else "mean"
        return (
            f"io: disk reads ran at {g('disk_read_mb_s'):.1f} MB/s ({kind}) with system CPU at "
            f"{pct(g('cpu_percent_mean'))}"
        )
    if check.rule == Bottleneck.CLIENT:
        server = g("server_cpu_percent_mean")
        return (
            f"client: the client process used {g('client_cpu_percent_mean'):.0f}% of one core"
            + (f" while the server used {server:.0f}%" if server is not None else "")
        )
    text = (
        f"queueing: at {g('workers')} workers requests waited {g('queue_wait_s'):.3f} s for the "
        f"server, {g('queue_share'):.0%} of mean latency"
    )
    if g("expected_queue_share") is None or g("slots") is None:
        return text
    slots = f"{g('slots')} slot{'s' if g('slots') != 1 else ''}"
    return text + (
        f"; {slots} and {g('workers')} workers leave 1 − {g('slots')}/{g('workers')} = "
        f"{g('expected_queue_share'):.0%} to the queue by construction"
    )


NOTES = {
    Bottleneck.QUEUEING: "queueing: requests wait for the server (latency grows with concurrent requests while throughput does not)",
    Bottleneck.CLIENT: "the benchmark client itself is the limit, not the server",
    Bottleneck.UNDETERMINED: "undetermined from these measurements",
}

LOG_OPTIONS = {
    Bottleneck.CPU: "CPU",
    Bottleneck.MEMORY: "Memory",
    Bottleneck.IO: "Disk I/O",
    Bottleneck.NETWORK: "Network",
}


def bottleneck_evidence(f: BottleneckFinding) -> str:
    triggered = [check_text(c) for c in f.triggered]
    quiet = [check_text(c) for c in f.evaluated if not c.triggered]
    skipped = [check_text(c) for c in f.checks if c.missing is not None]
    parts = triggered + quiet
    if not triggered:
        parts.append("no rule triggered: no resource is saturated at this load")
    return "; ".join(parts + skipped) + "."


def disturbed_caveat(f: BottleneckFinding) -> str:
    if not f.disturbed:
        return ""
    return (
        f"measured while other work used the CPU ({disturbed_count(f.disturbed)}, {LISTED}): "
        "re-measure to confirm"
    )


def bottleneck_sentence(f: BottleneckFinding) -> str:
    caveat = f" Caveat: {disturbed_caveat(f)}." if f.disturbed else ""
    if f.primary == Bottleneck.UNDETERMINED:
        return f"The data cannot decide a bottleneck. Evidence: {bottleneck_evidence(f)}{caveat}"
    also = f" (also: {', '.join(b.value for b in f.secondary)})" if f.secondary else ""
    return (
        f"Primary bottleneck: {f.primary.value}{also}. Evidence: {bottleneck_evidence(f)}{caveat}"
    )
