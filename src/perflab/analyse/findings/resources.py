"""The resources suite: what the sustained-load experiment used.

Figures come from the experiment's summary row and the resource summary in
its ``metadata.json``; a figure the samples could not give (a sub-second run,
a remote server) is None, never zero.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import polars as pl

from perflab.analyse.findings.frame import suite_rows
from perflab.measure.gpu import GpuRecord
from perflab.measure.metadata import ExperimentMetadata
from perflab.measure.resource_summary import ResourceSummary


@dataclass(frozen=True)
class ExperimentResources:
    """What one experiment's ``metadata.json`` says it used: the sampler's summary and
    the GPU record (None: the experiment predates GPU records)."""

    used: ResourceSummary = ResourceSummary()
    gpu: GpuRecord | None = None

    @classmethod
    def from_metadata(cls, metadata: ExperimentMetadata) -> ExperimentResources:
        return cls(used=metadata.used, gpu=metadata.gpu)


NO_RESOURCES = ExperimentResources()


@dataclass(frozen=True)
class ResourcesFinding:
    experiment_id: str
    prompt_name: str | None
    workers: int | None
    duration_s: float | None
    n_requests: int | None
    n_errors: int | None
    req_per_s: float | None
    output_tps: float | None
    n_samples: int
    interval_s: float | None
    cpu_percent_mean: float | None  # system, % of all cores
    server_cpu_percent_mean: float | None  # % of one core
    client_cpu_percent_mean: float | None
    client_in_server: bool | None
    mem_used_gb_mean: float | None
    mem_available_gb_min: float | None
    mem_total_gb: float | None
    swap_used_gb_max: float | None
    swap_growth_gb: float | None
    server_rss_gb_max: float | None
    disk_read_mb_s_median: float | None
    disk_read_mb_s_mean: float | None
    interference_cpu_pct_mean: float | None = None  # other processes, % of one core
    output_tokens_mean: float | None = None  # per ok request
    gpu_present: bool | None = None  # None: the experiment predates GPU records
    gpu_reason: str | None = None  # why there is no GPU figure
    gpu_devices: int | None = None
    gpu_util_percent_mean: float | None = None
    gpu_mem_used_gb_max: float | None = None
    gpu_power_w_mean: float | None = None  # summed over GPUs, samples in the measured window
    gpu_n_power_samples: int | None = None
    gpu_window_s: float | None = None  # the measured window the energy covers
    gpu_energy_j: float | None = None  # mean power × measured window
    gpu_output_tokens: int | None = None  # of the window's successful requests
    gpu_j_per_output_token: float | None = None


def summary(
    frame: pl.DataFrame, resources_by_id: dict[str, ExperimentResources]
) -> ResourcesFinding | None:
    """``resources_by_id``: what each experiment used (its GPU record flattened here to
    ``gpu_*`` fields)."""
    rows = suite_rows(frame, "resources").sort("experiment_id").to_dicts()
    if not rows:
        return None
    row = rows[0]
    given = resources_by_id.get(row["experiment_id"], NO_RESOURCES)
    figures = _request_figures(row) | _sampled_figures(given.used) | _gpu_figures(given.gpu)
    return ResourcesFinding(**figures)


def _request_figures(row: dict) -> dict:
    """The summary row's figures: the requests and the suite's own duration."""
    names = ("experiment_id", "prompt_name", "workers", "duration_s", "n_requests", "n_errors")
    more = ("req_per_s", "output_tps", "output_tokens_mean")
    return {name: row.get(name) for name in names + more}


def _sampled_figures(used: ResourceSummary) -> dict:
    """The sampler's figures, from the summary itself (the row only copies its interference)."""
    return {
        "n_samples": used.n_samples or 0,
        "interval_s": used.interval_s,
        "cpu_percent_mean": used.cpu_percent_mean,
        "server_cpu_percent_mean": used.server_cpu_percent_mean,
        "client_cpu_percent_mean": used.client_cpu_percent_mean,
        "client_in_server": used.client_in_server,
        "mem_used_gb_mean": used.mem_used_gb_mean,
        "mem_available_gb_min": used.mem_available_gb_min,
        "mem_total_gb": used.mem_total_gb,
        "swap_used_gb_max": used.swap_used_gb_max,
        "swap_growth_gb": used.swap_growth_gb,
        "server_rss_gb_max": used.server_rss_gb_max,
        "disk_read_mb_s_median": used.disk_read_mb_s_median,
        "disk_read_mb_s_mean": used.disk_read_mb_s_mean,
        "interference_cpu_pct_mean": used.interference_cpu_pct_mean,
        "gpu_util_percent_mean": used.gpu_util_percent_mean,
        "gpu_mem_used_gb_max": used.gpu_mem_used_gb_max,
    }


def _gpu_figures(gpu: GpuRecord | None) -> dict:
    """The experiment's GPU record, its names prefixed as the finding's fields are."""
    if gpu is None:
        return {}
    known = {f.name for f in fields(ResourcesFinding)}
    return {f"gpu_{key}": value for key, value in gpu.to_json().items() if f"gpu_{key}" in known}
