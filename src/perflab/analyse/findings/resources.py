"""The resources suite: what the sustained-load experiment used.

Figures come from the experiment's summary row and the resource summary in
its ``metadata.json``; a figure the samples could not give (a sub-second run,
a remote server) is None, never zero.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import polars as pl

from perflab.analyse.findings.frame import suite_rows


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


def summary(frame: pl.DataFrame, resources_by_id: dict[str, dict]) -> ResourcesFinding | None:
    """``resources_by_id``: each experiment's ``metadata.json`` ``resources``, with its
    ``gpu`` record under ``gpu`` (flattened here to ``gpu_*`` fields)."""
    rows = suite_rows(frame, "resources").sort("experiment_id").to_dicts()
    if not rows:
        return None
    row = rows[0]
    values = row | {"n_samples": 0} | (resources_by_id.get(row["experiment_id"]) or {})
    values |= {f"gpu_{key}": value for key, value in (values.get("gpu") or {}).items()}
    values["duration_s"] = row.get("duration_s")
    if values.get("n_samples") is None:
        values["n_samples"] = 0
    return ResourcesFinding(**{f.name: values.get(f.name) for f in fields(ResourcesFinding)})
