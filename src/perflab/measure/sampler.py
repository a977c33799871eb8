"""Resource sampling with psutil in a background thread.

Each sample is a flat dict: epoch time ``t``, system CPU (total and per core),
memory, swap, disk and network rates, the server's processes' CPU and RSS, the
client's CPU and RSS, and the sampler's own CPU cost. CPU of a process is in
percent of one core (100 = one core busy, like ``top``); system CPU is in
percent of all cores (0-100). See docs/resources.md for every field.

With the embedded engine (llama.cpp in perflab's own process) the server *is*
the client process: both fields then describe the same process and the sample
says so with ``client_in_server``.

``interference_cpu_pct`` is the CPU of everything else on the machine: system
busy CPU (in percent of one core) minus the server's and the client's. It
needs no privileges: processes that cannot be read are in the system total.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

GB = 1e9
MB = 1e6
DEFAULT_PIDS_REFRESH_S = 2.0  # how often a server_pids callable is asked again
MAX_ERRORS_KEPT = 20


# --- measurement ---------------------------------------------------------------------------


class _ProcessGroup:
    """CPU and RSS summed over a changing set of processes; vanished ones are dropped."""

    def __init__(self):
        self._procs: dict[int, psutil.Process] = {}

    def measure(self, pids: list[int]) -> tuple[float | None, float | None]:
        for gone in set(self._procs) - set(pids):
            del self._procs[gone]
        if not pids:
            return None, None
        cpu = rss = 0.0
        seen = 0
        for pid in pids:
            proc = self._procs.get(pid)
            try:
                if proc is None:
                    proc = psutil.Process(pid)
                    proc.cpu_percent(None)  # the first call only primes the counter
                    self._procs[pid] = proc
                with proc.oneshot():
                    if proc.status() == psutil.STATUS_ZOMBIE:  # exited, not yet reaped
                        raise psutil.ZombieProcess(pid)
                    cpu += proc.cpu_percent(None)
                    rss += proc.memory_info().rss
                seen += 1
            except psutil.Error:  # gone (or not ours to read): skip it from now on
                self._procs.pop(pid, None)
        if not seen:
            return None, None
        return cpu, rss / GB


def _busy_and_total(times) -> tuple[float, float]:
    """Busy and total CPU seconds from a psutil cpu_times tuple (guest time is in user)."""
    fields = times._asdict()
    total = sum(fields.values()) - fields.get("guest", 0.0) - fields.get("guest_nice", 0.0)
    idle = fields.get("idle", 0.0) + fields.get("iowait", 0.0)
    return total - idle, total


def _cpu_percent(previous, current) -> float:
    busy0, total0 = _busy_and_total(previous)
    busy1, total1 = _busy_and_total(current)
    if total1 <= total0:
        return 0.0
    return min(100.0, max(0.0, 100.0 * (busy1 - busy0) / (total1 - total0)))


def _rate(current, previous, field: str, elapsed: float) -> float | None:
    if current is None or previous is None:
        return None
    return max(0.0, getattr(current, field) - getattr(previous, field)) / MB / elapsed


def _safe(call):
    try:
        return call()
    except (psutil.Error, OSError, RuntimeError):
        return None


def _nvml_handles() -> list:
    """NVML device handles when an NVIDIA GPU and pynvml are present, else []."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    except Exception:  # noqa: BLE001 - no GPU, no driver or no pynvml: GPU fields stay absent
        return []


def _nvml_shutdown(handles: list) -> None:
    if not handles:
        return
    try:
        import pynvml

        pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001
        pass


def _gpu_sample(handles: list) -> dict:
    if not handles:
        return {}
    try:
        import pynvml

        utilization = [pynvml.nvmlDeviceGetUtilizationRates(h).gpu for h in handles]
        memory = [pynvml.nvmlDeviceGetMemoryInfo(h).used for h in handles]
    except Exception:  # noqa: BLE001 - a GPU reading failed: leave the fields out this time
        return {}
    return {
        "gpu_util_percent": sum(utilization) / len(handles),
        "gpu_mem_used_gb": sum(memory) / GB,
    }


class _Counters:
    """System counters at one instant, for rates and CPU percentages over an interval."""

    def __init__(self):
        self.at = time.perf_counter()
        self.cpu = _safe(psutil.cpu_times)
        self.per_core = _safe(lambda: psutil.cpu_times(percpu=True))
        self.disk = _safe(psutil.disk_io_counters)
        self.net = _safe(psutil.net_io_counters)


class ResourceSampler:
    """Samples the system, the server's processes and the client on absolute deadlines.

    ``server_pids`` is a list of PIDs or a callable returning one; a callable is asked
    again every ``pids_refresh_s`` seconds (0: every sample), so processes that appear
    later (Ollama's runners) are picked up. ``client_pid`` defaults to this process.
    ``server_remote`` says the server runs on another machine: its CPU is then no part
    of this machine's, and interference can be measured without its PIDs.

    ``extra``, when given, is called at every sample for more fields of it (the
    server's own metrics, ``perflab.measure.server_metrics``).

    Use as a context manager, or ``start()`` / ``stop()``; samples accumulate in
    ``.samples``. Readings that fail are recorded in ``.errors`` and sampling goes on.
    """

    def __init__(
        self,
        interval_s: float = 0.5,
        server_pids: Callable[[], list[int]] | list[int] | None = None,
        client_pid: int | None = None,
        pids_refresh_s: float = DEFAULT_PIDS_REFRESH_S,
        server_remote: bool = False,
        extra: Callable[[], dict] | None = None,
    ):
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.interval_s = interval_s
        self._server_pids = server_pids
        self.client_pid = client_pid or os.getpid()
        self.pids_refresh_s = pids_refresh_s
        self.server_remote = server_remote
        self.extra = extra
        self.samples: list[dict] = []
        self.errors: list[str] = []
        self.missed_deadlines = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pids_cache: list[int] = []
        self._pids_at: float | None = None

    # lifecycle

    def start(self) -> ResourceSampler:
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="perflab-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[dict]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.samples

    def __enter__(self) -> ResourceSampler:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # the thread

    def _pids(self) -> list[int]:
        source = self._server_pids
        if source is None:
            return []
        if not callable(source):
            return list(source)
        now = time.monotonic()
        if self._pids_at is None or now - self._pids_at >= self.pids_refresh_s:
            try:
                self._pids_cache = sorted(set(source()))
            except Exception as exc:  # noqa: BLE001 - keep the last known set
                self._note_error(exc)
            self._pids_at = now
        return list(self._pids_cache)

    def _note_error(self, exc: BaseException) -> None:
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def _loop(self) -> None:
        server, client = _ProcessGroup(), _ProcessGroup()
        gpus = _nvml_handles()
        try:
            server.measure(self._pids())
            client.measure([self.client_pid])
            last = _Counters()
            next_at = last.at + self.interval_s
            while not self._stop.wait(max(0.0, next_at - time.perf_counter())):
                try:
                    current = _Counters()
                    self.samples.append(self._sample(server, client, gpus, last, current))
                    last = current
                except Exception as exc:  # noqa: BLE001 - one bad reading must not end sampling
                    self._note_error(exc)
                # Absolute deadlines: the schedule is start + k * interval, so the time a
                # sample takes never accumulates. Deadlines already missed are skipped.
                next_at += self.interval_s
                now = time.perf_counter()
                if next_at <= now:
                    missed = int((now - next_at) // self.interval_s) + 1
                    self.missed_deadlines += missed
                    next_at += missed * self.interval_s
        finally:
            _nvml_shutdown(gpus)

    def _sample(self, server, client, gpus, last: _Counters, now: _Counters) -> dict:
        elapsed = max(now.at - last.at, 1e-9)
        memory = psutil.virtual_memory()
        swap = _safe(psutil.swap_memory)
        pids = self._pids()
        server_cpu, server_rss = server.measure(pids)
        client_cpu, client_rss = client.measure([self.client_pid])
        per_core = None
        if last.per_core and now.per_core and len(last.per_core) == len(now.per_core):
            per_core = [_cpu_percent(a, b) for a, b in zip(last.per_core, now.per_core)]
        cpu_percent = _cpu_percent(last.cpu, now.cpu) if last.cpu and now.cpu else None
        client_in_server = self.client_pid in pids
        ours = self._our_cpu(server_cpu, client_cpu, client_in_server)
        sample = {
            "t": time.time(),
            "interval_s": elapsed,
            "cpu_percent": cpu_percent,
            "cpu_per_core": per_core,
            "mem_used_gb": (memory.total - memory.available) / GB,
            "mem_available_gb": memory.available / GB,
            "mem_total_gb": memory.total / GB,
            "mem_percent": memory.percent,
            "swap_used_gb": swap.used / GB if swap else None,
            "disk_read_mb_s": _rate(now.disk, last.disk, "read_bytes", elapsed),
            "disk_write_mb_s": _rate(now.disk, last.disk, "write_bytes", elapsed),
            "net_sent_mb_s": _rate(now.net, last.net, "bytes_sent", elapsed),
            "net_recv_mb_s": _rate(now.net, last.net, "bytes_recv", elapsed),
            "server_pids": pids,
            "server_cpu_percent": server_cpu,
            "server_rss_gb": server_rss,
            "client_cpu_percent": client_cpu,
            "client_rss_gb": client_rss,
            "client_in_server": client_in_server,
            "interference_cpu_pct": _interference(cpu_percent, len(now.per_core or ()), ours),
            "sampler_cpu_s": time.thread_time(),
        }
        return sample | _gpu_sample(gpus) | (self.extra() if self.extra else {})

    def _our_cpu(
        self, server_cpu: float | None, client_cpu: float | None, client_in_server: bool
    ) -> float | None:
        """CPU of the server and the client (the sampler is a thread of the client), percent
        of one core; None when the server is on this machine but its processes are unknown."""
        if client_cpu is None or (server_cpu is None and not self.server_remote):
            return None
        if client_in_server:
            return server_cpu
        return (server_cpu or 0.0) + client_cpu


def _interference(cpu_percent: float | None, n_cores: int, ours: float | None) -> float | None:
    """Busy CPU of every other process, percent of one core: system busy − ours, ≥ 0."""
    if cpu_percent is None or ours is None:
        return None
    cores = n_cores or psutil.cpu_count() or 1
    return max(0.0, cpu_percent * cores - ours)


# --- files and summaries ---------------------------------------------------------------------


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


def summarize_interference(samples: list[dict], window: tuple[float, float] | None) -> dict:
    """Mean and peak of ``interference_cpu_pct`` over the measured window (all samples
    without one); None when no sample there could measure it."""
    chosen = in_window(samples, window) if window else samples
    values = [
        s["interference_cpu_pct"] for s in chosen if s.get("interference_cpu_pct") is not None
    ]
    return {
        "interference_cpu_pct_mean": _mean(values),
        "interference_cpu_pct_max": max(values, default=None),
        "n_interference_samples": len(values),
    }


def summarize_samples(samples: list[dict], window: tuple[float, float] | None = None) -> dict:
    """Means, extremes and the sampler's overhead over a list of samples.

    Only samples that carry a value count for that value (a remote server has no
    server_* values at all). Interference is summarized over ``window`` (the
    measured part of the experiment, epoch seconds) when given. An empty list
    gives ``{"n_samples": 0}`` and null interference.
    """
    summary: dict = {"n_samples": len(samples)} | summarize_interference(samples, window)
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
    summary |= {
        "duration_s": duration,
        "interval_s": duration / (len(samples) - 1) if len(samples) > 1 else None,
        "cpu_percent_mean": _mean(values("cpu_percent")),
        "cpu_percent_max": max(values("cpu_percent"), default=None),
        "server_cpu_percent_mean": _mean(values("server_cpu_percent")),
        "server_cpu_percent_max": max(values("server_cpu_percent"), default=None),
        "server_rss_gb_max": max(values("server_rss_gb"), default=None),
        "server_pids": server_pids,
        "n_server_samples": len(values("server_cpu_percent")),
        "mem_used_gb_mean": _mean(values("mem_used_gb")),
        "mem_used_gb_max": max(values("mem_used_gb"), default=None),
        "mem_available_gb_min": min(values("mem_available_gb"), default=None),
        "mem_total_gb": last.get("mem_total_gb"),
        "swap_used_gb_max": max(swaps, default=None),
        "swap_growth_gb": (max(swaps) - swaps[0]) if swaps else None,
        "client_cpu_percent_mean": _mean(values("client_cpu_percent")),
        "client_cpu_percent_max": max(values("client_cpu_percent"), default=None),
        "client_rss_gb_max": max(values("client_rss_gb"), default=None),
        "client_in_server": any(s.get("client_in_server") for s in samples),
        "disk_read_mb_s_mean": _mean(disk_reads),
        "disk_read_mb_s_median": statistics.median(disk_reads) if disk_reads else None,
        "disk_read_mb_s_max": max(disk_reads, default=None),
        "disk_write_mb_s_mean": _mean(values("disk_write_mb_s")),
        "net_sent_mb_s_mean": _mean(values("net_sent_mb_s")),
        "net_recv_mb_s_mean": _mean(values("net_recv_mb_s")),
        "gpu_util_percent_mean": _mean(values("gpu_util_percent")),
        "gpu_mem_used_gb_max": max(values("gpu_mem_used_gb"), default=None),
        "sampler_cpu_s": sampler_cpu[-1] if sampler_cpu else None,
        "sampler_overhead_percent": overhead,
    }
    return summary
