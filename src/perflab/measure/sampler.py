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
busy CPU (in percent of one core) minus the server's and the client's, all
three read at the same instant at each end of the sample's interval. It
needs no privileges: processes that cannot be read are in the system total.
Summaries: ``perflab.measure.samples``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from perflab.measure.gpu import Gpus, close_gpus, gpu_sample, open_gpus

GB = 1e9
MB = 1e6
DEFAULT_PIDS_REFRESH_S = 0.0  # a server_pids callable is asked again at every sample
MAX_ERRORS_KEPT = 20


# --- measurement ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _GroupReading:
    """CPU seconds used since the previous reading, and RSS now, over a group's processes.

    ``cpu_s`` is None when no process could be read, or when one is new to the group
    and was already running when the interval began (``new``): its CPU within the
    interval is unknown until the next one, and a partial sum would read as a dip."""

    cpu_s: float | None
    rss_gb: float | None
    new: tuple[int, ...] = ()


def process_clock() -> float:
    """Now, on the clock a process's ``create_time`` is on: on Linux the boot time
    (whole seconds in /proc/stat) plus the precise time since boot, so the two compare
    to the kernel's tick; elsewhere the wall clock."""
    since_boot = getattr(time, "CLOCK_BOOTTIME", None)
    if since_boot is None:
        return time.time()
    return psutil.boot_time() + time.clock_gettime(since_boot)


def _cpu_and_rss(proc: psutil.Process) -> tuple[float, float]:
    with proc.oneshot():
        if proc.status() == psutil.STATUS_ZOMBIE:  # exited, not yet reaped
            raise psutil.ZombieProcess(proc.pid)
        times = proc.cpu_times()
        return times.user + times.system, proc.memory_info().rss


class _ProcessGroup:
    """CPU and RSS summed over a changing set of processes; vanished ones are dropped.

    Each process's CPU time is read at every sample and differenced. A process seen for
    the first time is read then and counted from the next interval on (primed one
    interval ahead), unless it was born inside this interval: then all of its CPU time
    falls in it and counts at once."""

    def __init__(self):
        self._seen: dict[int, tuple[psutil.Process, float]] = {}

    def read(self, pids: list[int], interval_began: float) -> _GroupReading:
        for gone in set(self._seen) - set(pids):
            del self._seen[gone]
        cpu = rss = 0.0
        read, new = 0, []
        for pid in pids:
            try:
                known = self._seen.get(pid)
                proc = known[0] if known else psutil.Process(pid)
                used, memory = _cpu_and_rss(proc)
                if known:
                    cpu += max(0.0, used - known[1])
                elif proc.create_time() >= interval_began:
                    cpu += used
                else:
                    new.append(pid)
                self._seen[pid] = (proc, used)
                rss += memory
                read += 1
            except psutil.Error:  # gone (or not ours to read): skip it from now on
                self._seen.pop(pid, None)
        if not read:
            return _GroupReading(None, None)
        return _GroupReading(None if new else cpu, rss / GB, tuple(new))


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


class _Counters:
    """The system's counters and the server's and client's CPU times at one instant:
    the system and process figures of an interval cover the same seconds.
    ``interval_began`` (``process_clock``) tells a process born inside the interval."""

    def __init__(
        self,
        server: _ProcessGroup,
        client: _ProcessGroup,
        pids: list[int],
        client_pid: int,
        interval_began: float | None = None,
    ):
        self.at = time.perf_counter()
        self.clock = process_clock()
        self.cpu = _safe(psutil.cpu_times)
        self.per_core = _safe(lambda: psutil.cpu_times(percpu=True))
        began = self.clock if interval_began is None else interval_began
        self.server = server.read(pids, began)
        self.client = client.read([client_pid], began)
        self.disk = _safe(psutil.disk_io_counters)
        self.net = _safe(psutil.net_io_counters)
        self.pids = pids


class ResourceSampler:
    """Samples the system, the server's processes and the client on absolute deadlines.

    ``server_pids`` is a list of PIDs or a callable returning one; a callable is asked
    again every ``pids_refresh_s`` seconds (by default 0: at every sample, before the
    counters are read), so processes that appear later (Ollama's runners) are picked
    up at once. ``client_pid`` defaults to this process.
    ``server_remote`` says the server runs on another machine: its CPU is then no part
    of this machine's, and interference can be measured without its PIDs.

    ``extra``, when given, is called at every sample for more fields of it (the
    server's own metrics, ``perflab.measure.server_metrics``).

    Use as a context manager, or ``start()`` / ``stop()``; samples accumulate in
    ``.samples``, and ``.gpus`` holds the GPUs NVML found, or why there are none.
    Readings that fail are recorded in ``.errors`` and sampling goes on.
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
        self.gpus: Gpus | None = None  # set when sampling starts: the GPUs, or why none
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
        gpus = self.gpus = open_gpus()
        try:
            last = _Counters(server, client, self._pids(), self.client_pid)  # primes all
            next_at = last.at + self.interval_s
            while not self._stop.wait(max(0.0, next_at - time.perf_counter())):
                try:
                    # the PIDs are looked up first, so the counters are read back to back
                    pids = self._pids()
                    current = _Counters(server, client, pids, self.client_pid, last.clock)
                    self.samples.append(self._sample(gpus, last, current))
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
            close_gpus(gpus)

    def _sample(self, gpus, last: _Counters, now: _Counters) -> dict:
        elapsed = max(now.at - last.at, 1e-9)
        memory = psutil.virtual_memory()
        swap = _safe(psutil.swap_memory)
        server_cpu = _percent_of_core(now.server, elapsed)
        client_cpu = _percent_of_core(now.client, elapsed)
        per_core = None
        if last.per_core and now.per_core and len(last.per_core) == len(now.per_core):
            per_core = [_cpu_percent(a, b) for a, b in zip(last.per_core, now.per_core)]
        cpu_percent = _cpu_percent(last.cpu, now.cpu) if last.cpu and now.cpu else None
        client_in_server = self.client_pid in now.pids
        ours = self._our_cpu(server_cpu, client_cpu, client_in_server, now.server.new)
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
            "server_pids": now.pids,
            "server_pids_new": list(now.server.new),
            "server_cpu_percent": server_cpu,
            "server_rss_gb": now.server.rss_gb,
            "client_cpu_percent": client_cpu,
            "client_rss_gb": now.client.rss_gb,
            "client_in_server": client_in_server,
            "interference_cpu_pct": _interference(cpu_percent, len(now.per_core or ()), ours),
            "sampler_cpu_s": time.thread_time(),
        }
        return sample | gpu_sample(gpus) | (self.extra() if self.extra else {})

    def _our_cpu(
        self,
        server_cpu: float | None,
        client_cpu: float | None,
        client_in_server: bool,
        server_new: tuple[int, ...],
    ) -> float | None:
        """CPU of the server and the client (the sampler is a thread of the client), percent
        of one core; None when the server is on this machine but its processes are unknown
        (or one of them is new and its CPU in this interval is not known yet)."""
        if client_cpu is None:
            return None
        if server_cpu is None and (server_new or not self.server_remote):
            return None
        if client_in_server:
            return server_cpu
        return (server_cpu or 0.0) + client_cpu


def _percent_of_core(reading: _GroupReading, elapsed: float) -> float | None:
    return None if reading.cpu_s is None else 100.0 * reading.cpu_s / elapsed


def _interference(cpu_percent: float | None, n_cores: int, ours: float | None) -> float | None:
    """Busy CPU of every other process, percent of one core: system busy − ours. Not
    clipped: a sample a little below 0 is noise that the summary's mean averages out."""
    if cpu_percent is None or ours is None:
        return None
    cores = n_cores or psutil.cpu_count() or 1
    return cpu_percent * cores - ours
