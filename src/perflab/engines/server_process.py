"""Which processes are the server: the listener on a port and its children, for
any engine; no privileges needed (another user's server is found by its command,
where the engine names one).

The sampler measures the processes found here (``perflab.measure.sampler``).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlparse

import psutil

OLLAMA_DEFAULT_PORT = 11434
LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback", ""}
# Processes that forward a published port to a container: the real server is elsewhere.
PORT_PROXIES = {"docker-proxy", "rootlessport", "com.docker.backend", "vpnkit", "slirp4netns"}


def _listeners(port: int) -> tuple[list[int], bool]:
    """PIDs listening on a TCP port, and whether a listener was seen whose owner is hidden.

    psutil.net_connections() needs privileges on macOS and, on Linux, names no PID
    for other users' sockets; each process's own table is the fallback.
    """
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.Error, PermissionError, OSError):
        pids = _listeners_per_process(port)
        return pids, not pids
    listening = [
        c
        for c in connections
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
    ]
    pids = sorted({c.pid for c in listening if c.pid})
    hidden = any(not c.pid for c in listening)
    if hidden and not pids:
        pids = _listeners_per_process(port)
    return pids, hidden and not pids


def _listeners_per_process(port: int) -> list[int]:
    found = set()
    for proc in psutil.process_iter():
        try:
            table = getattr(proc, "net_connections", None) or proc.connections
            if any(
                c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
                for c in table(kind="tcp")
            ):
                found.add(proc.pid)
        except (psutil.Error, PermissionError, OSError):
            continue
    return sorted(found)


def find_listening_pids(port: int) -> list[int]:
    """The PIDs with a TCP socket listening on ``port`` ([] when none can be identified)."""
    return _listeners(port)[0]


def process_tree(pid: int) -> list[int]:
    """``pid`` and its children, recursively ([] when ``pid`` does not exist)."""
    try:
        parent = psutil.Process(pid)
        children = parent.children(recursive=True)
    except psutil.Error:
        return []
    return [pid, *(child.pid for child in children)]


def _local_addresses() -> set[str]:
    addresses = set()
    try:
        for entries in psutil.net_if_addrs().values():
            for entry in entries:
                if entry.family in (socket.AF_INET, socket.AF_INET6):
                    addresses.add(entry.address.split("%", 1)[0])
    except (psutil.Error, OSError):
        pass
    return addresses


def is_local_host(hostname: str | None) -> bool:
    """Whether a host name or address is this machine (no DNS lookups)."""
    if hostname is None:
        return True
    name = hostname.strip("[]").lower()
    if name in LOCAL_NAMES or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return name in {socket.gethostname().lower(), socket.gethostname().split(".")[0].lower()}
    return address.is_loopback or address.is_unspecified or str(address) in _local_addresses()


def _servers_by_command(command: tuple[str, ...]) -> list[int]:
    """PIDs of processes whose name starts with ``command[0]`` and whose command line
    holds the rest (``("ollama", "serve")``: every ``ollama serve``)."""
    name, *words = command
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        own = (proc.info.get("name") or "").lower()
        cmdline = proc.info.get("cmdline") or []
        if own.startswith(name) and all(word in cmdline for word in words):
            found.append(proc.pid)
    return found


SCHEME_PORTS = {"http": 80, "https": 443}


def find_server_pids(
    host_url: str, default_port: int | None = None, command: tuple[str, ...] | None = None
) -> list[int]:
    """The server listening at ``host_url`` and its children, if it is on this machine.

    Remote hosts give []. A URL without a port means ``default_port``, else the
    scheme's. When the listener on the port cannot be identified (another user's
    process without privileges) or is a container port proxy, a single process
    running ``command`` on this machine is taken instead (with several, or without a
    command, none)."""
    parsed = urlparse(host_url if "://" in host_url else f"http://{host_url}")
    if not is_local_host(parsed.hostname):
        return []
    try:
        port = parsed.port or default_port or SCHEME_PORTS.get(parsed.scheme)
    except ValueError:
        return []
    if port is None:
        return []
    listeners, hidden = _listeners(port)
    if listeners and all(_process_name(pid) in PORT_PROXIES for pid in listeners):
        listeners, hidden = [], True
    if not listeners and hidden and command:
        by_name = _servers_by_command(command)
        listeners = by_name if len(by_name) == 1 else []
    pids: set[int] = set()
    for pid in listeners:
        pids.update(process_tree(pid))
    return sorted(pids)


class ServerProcesses:
    """The server's processes, asked for at every sample: the listener is looked up
    once (the socket table costs tens of milliseconds) and again only when it is gone;
    its children, which come and go (Ollama's runners), are read every time."""

    def __init__(
        self,
        host_url: str,
        default_port: int | None = None,
        command: tuple[str, ...] | None = None,
    ):
        self.host_url, self.default_port, self.command = host_url, default_port, command
        self._roots: list[int] = []

    def __call__(self) -> list[int]:
        trees = [process_tree(pid) for pid in self._roots]
        if not self._roots or not all(trees):
            found = find_server_pids(self.host_url, self.default_port, self.command)
            self._roots = _roots(found)
            return found
        return sorted({pid for tree in trees for pid in tree})


def _roots(pids: list[int]) -> list[int]:
    """The processes among ``pids`` whose parent is not among them."""
    inside = set(pids)
    roots = []
    for pid in pids:
        try:
            parent = psutil.Process(pid).ppid()
        except psutil.Error:
            continue
        if parent not in inside:
            roots.append(pid)
    return roots


def find_ollama_pids(host_url: str) -> list[int]:
    """The Ollama server at ``host_url`` and its runner children, if it is local (a
    single ``ollama serve`` when its listener cannot be seen)."""
    return find_server_pids(host_url, OLLAMA_DEFAULT_PORT, ("ollama", "serve"))


def _process_name(pid: int) -> str | None:
    try:
        return psutil.Process(pid).name()
    except psutil.Error:
        return None
