"""Resource sampling with psutil in a background thread.

Each sample is a flat dict: epoch time ``t``, system CPU (total and per core),
memory, swap, disk and network rates, the server's processes' CPU and RSS, the
client's (this process's) CPU and RSS, and the sampler's own CPU cost. CPU of
a process is in percent of one core (100 = one core busy), like ``top``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import psutil

GB = 1e9
MB = 1e6
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", ""}


def find_listening_pids(port: int) -> list[int]:
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, PermissionError):
        return []
    return sorted(
        {
            c.pid
            for c in connections
            if c.pid and c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
        }
    )


def process_tree(pid: int) -> list[int]:
    try:
        parent = psutil.Process(pid)
        return [pid, *(child.pid for child in parent.children(recursive=True))]
    except psutil.Error:
        return []


def find_ollama_pids(host_url: str) -> list[int]:
    """The Ollama server listening at host_url and its runner children, if local."""
    parsed = urlparse(host_url if "://" in host_url else f"http://{host_url}")
    if parsed.hostname not in LOCAL_HOSTS:
        return []
    pids = []
    for pid in find_listening_pids(parsed.port or 11434):
        pids.extend(process_tree(pid))
    return sorted(set(pids))


class _ProcessGroup:
    """CPU and RSS summed over a changing set of processes."""

    def __init__(self):
        self._procs: dict[int, psutil.Process] = {}

    def measure(self, pids: list[int]) -> tuple[float | None, float | None]:
        if not pids:
            return None, None
        cpu = rss = 0.0
        for pid in pids:
            proc = self._procs.get(pid)
            try:
                if proc is None:
                    proc = self._procs[pid] = psutil.Process(pid)
                    proc.cpu_percent(None)  # first call primes the counter
                with proc.oneshot():
                    cpu += proc.cpu_percent(None)
                    rss += proc.memory_info().rss
            except psutil.Error:
                self._procs.pop(pid, None)
        return cpu, rss / GB


def _nvml_handles() -> list:
    """NVML device handles when an NVIDIA GPU and pynvml are present, else []."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    except Exception:  # noqa: BLE001 - no GPU, no driver or no pynvml: GPU fields stay absent
        return []


def _gpu_sample(handles: list) -> dict:
    if not handles:
        return {}
    import pynvml

    utilization = [pynvml.nvmlDeviceGetUtilizationRates(h).gpu for h in handles]
    memory = [pynvml.nvmlDeviceGetMemoryInfo(h).used for h in handles]
    return {
        "gpu_util_percent": sum(utilization) / len(handles),
        "gpu_mem_used_gb": sum(memory) / GB,
    }


class ResourceSampler:
    def __init__(
        self,
        interval_s: float = 0.5,
        server_pids: Callable[[], list[int]] | list[int] | None = None,
        client_pid: int | None = None,
    ):
        self.interval_s = interval_s
        self._server_pids = server_pids
        self.client_pid = client_pid or os.getpid()
        self.samples: list[dict] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _pids(self) -> list[int]:
        source = self._server_pids
        if source is None:
            return []
        return list(source() if callable(source) else source)

    def start(self) -> ResourceSampler:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="perflab-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[dict]:
        self._stop.set()
        if self._thread:
            self._thread.join()
        return self.samples

    def __enter__(self) -> ResourceSampler:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _loop(self) -> None:
        server, client = _ProcessGroup(), _ProcessGroup()
        self._gpus = _nvml_handles()
        psutil.cpu_percent(None)
        psutil.cpu_percent(None, percpu=True)
        server.measure(self._pids())
        client.measure([self.client_pid])
        last_io = (time.perf_counter(), psutil.disk_io_counters(), psutil.net_io_counters())
        next_at = time.perf_counter() + self.interval_s
        while not self._stop.wait(max(0.0, next_at - time.perf_counter())):
            next_at += self.interval_s  # absolute deadlines: no drift
            sample, last_io = self._sample(server, client, last_io)
            self.samples.append(sample)

    def _sample(self, server: _ProcessGroup, client: _ProcessGroup, last_io):
        now = time.perf_counter()
        disk, net = psutil.disk_io_counters(), psutil.net_io_counters()
        elapsed = max(now - last_io[0], 1e-9)
        memory, swap = psutil.virtual_memory(), psutil.swap_memory()
        pids = self._pids()
        server_cpu, server_rss = server.measure(pids)
        client_cpu, client_rss = client.measure([self.client_pid])
        sample = {
            "t": time.time(),
            "cpu_percent": psutil.cpu_percent(None),
            "cpu_per_core": psutil.cpu_percent(None, percpu=True),
            "mem_used_gb": (memory.total - memory.available) / GB,
            "mem_available_gb": memory.available / GB,
            "mem_total_gb": memory.total / GB,
            "mem_percent": memory.percent,
            "swap_used_gb": swap.used / GB,
            "disk_read_mb_s": _rate(disk, last_io[1], "read_bytes", elapsed),
            "disk_write_mb_s": _rate(disk, last_io[1], "write_bytes", elapsed),
            "net_sent_mb_s": _rate(net, last_io[2], "bytes_sent", elapsed),
            "net_recv_mb_s": _rate(net, last_io[2], "bytes_recv", elapsed),
            "server_pids": pids,
            "server_cpu_percent": server_cpu,
            "server_rss_gb": server_rss,
            "client_cpu_percent": client_cpu,
            "client_rss_gb": client_rss,
            "sampler_cpu_s": time.thread_time(),
        } | _gpu_sample(self._gpus)
        return sample, (now, disk, net)


def _rate(current, previous, field: str, elapsed: float) -> float | None:
    if current is None or previous is None:
        return None
    return (getattr(current, field) - getattr(previous, field)) / MB / elapsed


def write_samples(path: str | Path, samples: list[dict]) -> None:
    from perflab.records import write_lines_atomic

    write_lines_atomic(Path(path), samples)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize_samples(samples: list[dict]) -> dict:
    def values(key: str) -> list[float]:
        return [s[key] for s in samples if s.get(key) is not None]

    summary: dict = {"n_samples": len(samples)}
    if not samples:
        return summary
    duration = samples[-1]["t"] - samples[0]["t"]
    summary |= {
        "duration_s": duration,
        "interval_s": duration / (len(samples) - 1) if len(samples) > 1 else None,
        "cpu_percent_mean": _mean(values("cpu_percent")),
        "cpu_percent_max": max(values("cpu_percent"), default=None),
        "server_cpu_percent_mean": _mean(values("server_cpu_percent")),
        "server_cpu_percent_max": max(values("server_cpu_percent"), default=None),
        "mem_used_gb_mean": _mean(values("mem_used_gb")),
        "mem_available_gb_min": min(values("mem_available_gb"), default=None),
        "mem_total_gb": samples[-1].get("mem_total_gb"),
        "swap_used_gb_max": max(values("swap_used_gb"), default=None),
        "server_rss_gb_max": max(values("server_rss_gb"), default=None),
        "client_cpu_percent_mean": _mean(values("client_cpu_percent")),
        "disk_read_mb_s_mean": _mean(values("disk_read_mb_s")),
        "gpu_util_percent_mean": _mean(values("gpu_util_percent")),
        "gpu_mem_used_gb_max": max(values("gpu_mem_used_gb"), default=None),
        "sampler_overhead_percent": (
            100 * samples[-1]["sampler_cpu_s"] / duration if duration > 0 else None
        ),
    }
    return summary
