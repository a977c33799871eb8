"""What the sampler saw over one experiment, as ``metadata.json`` ``resources`` holds it
(docs/resources.md lists every field)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

# present only when the summary was given a disturbance threshold
THRESHOLD_FIELDS = (
    "interference_threshold_pct",
    "interference_above_s",
    "interference_above_share",
)


@dataclass(frozen=True)
class ResourceSummary:
    """Means, extremes and the sampler's overhead; None where no sample carried a value.

    Without samples only the interference figures (and the threshold's) exist: the
    fields from ``duration_s`` on are left out of the columns, as they are of the file."""

    n_samples: int = 0
    interference_cpu_pct_mean: float | None = None  # other processes, % of one core
    interference_cpu_pct_max: float | None = None
    n_interference_samples: int = 0
    interference_threshold_pct: float | None = None
    interference_above_s: float | None = None
    interference_above_share: float | None = None  # of the sampled time
    duration_s: float | None = None  # first to last sample
    interval_s: float | None = None
    cpu_percent_mean: float | None = None  # system, % of all cores
    cpu_percent_max: float | None = None
    server_cpu_percent_mean: float | None = None  # % of one core
    server_cpu_percent_max: float | None = None
    server_rss_gb_max: float | None = None
    server_pids: tuple[int, ...] = ()
    n_server_samples: int | None = None
    mem_used_gb_mean: float | None = None
    mem_used_gb_max: float | None = None
    mem_available_gb_min: float | None = None
    mem_total_gb: float | None = None
    swap_used_gb_max: float | None = None
    swap_growth_gb: float | None = None
    client_cpu_percent_mean: float | None = None
    client_cpu_percent_max: float | None = None
    client_rss_gb_max: float | None = None
    client_in_server: bool | None = None
    disk_read_mb_s_mean: float | None = None
    disk_read_mb_s_median: float | None = None
    disk_read_mb_s_max: float | None = None
    disk_write_mb_s_mean: float | None = None
    net_sent_mb_s_mean: float | None = None
    net_recv_mb_s_mean: float | None = None
    gpu_util_percent_mean: float | None = None
    gpu_mem_used_gb_max: float | None = None
    sampler_cpu_s: float | None = None
    sampler_overhead_percent: float | None = None

    def as_columns(self) -> dict:
        """The figures by name, as ``metadata.json`` ``resources`` holds them."""
        columns = asdict(self)
        columns["server_pids"] = list(self.server_pids)
        if self.interference_threshold_pct is None:
            columns = {k: v for k, v in columns.items() if k not in THRESHOLD_FIELDS}
        if not self.n_samples:
            columns = {k: v for k, v in columns.items() if k not in SAMPLED_FIELDS}
        return columns

    @classmethod
    def from_columns(cls, columns: dict) -> ResourceSummary:
        """Read back ``as_columns``; a file's unknown names are ignored, missing ones unset."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in columns.items() if k in known}
        if "server_pids" in values:
            values["server_pids"] = tuple(values["server_pids"])
        return cls(**values)


_NAMES = tuple(f.name for f in fields(ResourceSummary))
SAMPLED_FIELDS = _NAMES[_NAMES.index("duration_s") :]  # present only when there were samples
