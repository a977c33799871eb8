"""The sampler's samples as files and summaries, and when other work disturbed an
experiment (see docs/resources.md for every field)."""

from __future__ import annotations

import statistics
from dataclasses import replace
from pathlib import Path

from perflab.measure.resource_summary import ResourceSummary

# Other processes may take this share of the cores the engine uses (beyond the cores it
# leaves free) before an experiment counts as disturbed: on 2 cores that the engine
# uses both of, a quarter of one core.
DISTURBED_SHARE = 0.125


def disturbance_threshold_pct(logical_cores: int | None, engine_cores: int | None) -> float:
    """The interference (percent of one core) above which an experiment is disturbed:
    every core the engine leaves free, plus ``DISTURBED_SHARE`` of the cores it uses.
    An engine whose cores are unknown counts as using them all."""
    cores = max(1, logical_cores or 1)
    used = min(cores, engine_cores) if engine_cores and engine_cores > 0 else cores
    return 100.0 * (cores - used) + DISTURBED_SHARE * 100.0 * used


def write_samples(path: str | Path, samples: list[dict]) -> None:
    """Samples as JSON lines, written to a temp file and renamed into place."""
    from perflab.core.records import write_lines_atomic

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_lines_atomic(Path(path), samples)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def in_window(samples: list[dict], window: tuple[float, float]) -> list[dict]:
    """The samples whose interval's midpoint lies in ``window`` (epoch start, end); when
    the window is shorter than that allows, those whose interval overlaps it."""
    start, end = window

    def span(sample: dict) -> tuple[float, float]:
        return sample["t"] - (sample.get("interval_s") or 0.0), sample["t"]

    inside = [s for s in samples if start <= (span(s)[0] + span(s)[1]) / 2 <= end]
    return inside or [s for s in samples if span(s)[0] < end and span(s)[1] > start]


def summarize_interference(
    samples: list[dict],
    window: tuple[float, float] | None,
    threshold_pct: float | None = None,
) -> ResourceSummary:
    """Mean and peak of ``interference_cpu_pct`` over the measured window (all samples
    without one); None when no sample there could measure it.

    Each sample's figure is a difference of two noisy counts and may be a little below
    0; the mean is clipped at 0, not each sample (clipping each would let noise only
    add). With ``threshold_pct``: the seconds, and the share of the sampled time, that
    the figure spent above it."""
    chosen = in_window(samples, window) if window else samples
    measured = [s for s in chosen if s.get("interference_cpu_pct") is not None]
    values = [s["interference_cpu_pct"] for s in measured]
    mean = _mean(values)
    summary = ResourceSummary(
        n_samples=len(samples),
        interference_cpu_pct_mean=None if mean is None else max(0.0, mean),
        interference_cpu_pct_max=max(0.0, max(values)) if values else None,
        n_interference_samples=len(values),
    )
    if threshold_pct is None:
        return summary
    seconds = [s.get("interval_s") or 0.0 for s in measured]
    above = sum(t for t, v in zip(seconds, values) if v > threshold_pct)
    return replace(
        summary,
        interference_threshold_pct=threshold_pct,
        interference_above_s=above if values else None,
        interference_above_share=above / sum(seconds) if sum(seconds) > 0 else None,
    )


def summarize_samples(
    samples: list[dict],
    window: tuple[float, float] | None = None,
    threshold_pct: float | None = None,
) -> ResourceSummary:
    """Means, extremes and the sampler's overhead over a list of samples.

    Only samples that carry a value count for that value (a remote server has no
    server_* values at all). Interference is summarized over ``window`` (the
    measured part of the experiment, epoch seconds) when given, and its time above
    ``threshold_pct`` when given. An empty list gives ``n_samples`` 0 and null
    interference.
    """
    summary = summarize_interference(samples, window, threshold_pct)
    if not samples:
        return summary

    def values(key: str) -> list[float]:
        return [s[key] for s in samples if s.get(key) is not None]

    first, last = samples[0], samples[-1]
    duration = last["t"] - first["t"]
    swaps = values("swap_used_gb")
    disk_reads = values("disk_read_mb_s")
    sampler_cpu = values("sampler_cpu_s")
    overhead = None
    if duration > 0 and len(sampler_cpu) > 1:
        overhead = 100 * (sampler_cpu[-1] - sampler_cpu[0]) / duration
    server_pids = sorted({pid for s in samples for pid in s.get("server_pids") or []})
    return replace(
        summary,
        duration_s=duration,
        interval_s=duration / (len(samples) - 1) if len(samples) > 1 else None,
        cpu_percent_mean=_mean(values("cpu_percent")),
        cpu_percent_max=max(values("cpu_percent"), default=None),
        server_cpu_percent_mean=_mean(values("server_cpu_percent")),
        server_cpu_percent_max=max(values("server_cpu_percent"), default=None),
        server_rss_gb_max=max(values("server_rss_gb"), default=None),
        server_pids=tuple(server_pids),
        n_server_samples=len(values("server_cpu_percent")),
        mem_used_gb_mean=_mean(values("mem_used_gb")),
        mem_used_gb_max=max(values("mem_used_gb"), default=None),
        mem_available_gb_min=min(values("mem_available_gb"), default=None),
        mem_total_gb=last.get("mem_total_gb"),
        swap_used_gb_max=max(swaps, default=None),
        swap_growth_gb=(max(swaps) - swaps[0]) if swaps else None,
        client_cpu_percent_mean=_mean(values("client_cpu_percent")),
        client_cpu_percent_max=max(values("client_cpu_percent"), default=None),
        client_rss_gb_max=max(values("client_rss_gb"), default=None),
        client_in_server=any(s.get("client_in_server") for s in samples),
        disk_read_mb_s_mean=_mean(disk_reads),
        disk_read_mb_s_median=statistics.median(disk_reads) if disk_reads else None,
        disk_read_mb_s_max=max(disk_reads, default=None),
        disk_write_mb_s_mean=_mean(values("disk_write_mb_s")),
        net_sent_mb_s_mean=_mean(values("net_sent_mb_s")),
        net_recv_mb_s_mean=_mean(values("net_recv_mb_s")),
        gpu_util_percent_mean=_mean(values("gpu_util_percent")),
        gpu_mem_used_gb_max=max(values("gpu_mem_used_gb"), default=None),
        sampler_cpu_s=sampler_cpu[-1] if sampler_cpu else None,
        sampler_overhead_percent=overhead,
    )
