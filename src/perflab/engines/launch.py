"""Servers that perflab starts itself (``engine.launch``): llama.cpp's
``llama-server`` or ``ollama serve``, one per experiment job, stopped when the
job ends however it ends.

The server runs under ``server_guard.py``, which holds a pipe from this process:
if perflab exits or is killed, the pipe closes and the guard stops the server's
whole process group, so no server outlives the job that started it. The
server's output goes to a log file whose last lines are in every error.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from perflab.engines.base import PreflightError
from perflab.engines.cpu_kernels import llama_server_flags

GUARD = Path(__file__).with_name("server_guard.py")
LOG_TAIL_LINES = 15
HEALTH_POLL_S = 0.1
STOP_TIMEOUT_S = 30.0
# Keys of engine.launch that each server takes (config/README.md).
LLAMA_SERVER_KEYS = {
    "parallel",
    "threads",
    "ctx_size",
    "cont_batching",
    "cache_reuse",
    "flash_attn",
    "cache_type_k",
    "cache_type_v",
    "metrics",
}
OLLAMA_KEYS = {"parallel", "ctx_size", "flash_attn", "cache_type_k"}


@dataclass(frozen=True)
class ServerKind:
    """A server perflab can start, by the name ``engine.launch.server`` gives it.

    ``clients``: the engines (``engine.name``) whose API it speaks. ``keys``: the keys
    of engine.launch it takes. ``default_binary``: what it runs when
    ``engine.launch.binary`` is unset (None: the one perflab builds).
    ``serves_model_file``: it serves the GGUF it is given, as the embedded engine loads it.
    """

    clients: tuple[str, ...]
    keys: frozenset[str]
    default_binary: str | None
    serves_model_file: bool


SERVERS = {
    "llama-server": ServerKind(("openai",), frozenset(LLAMA_SERVER_KEYS), None, True),
    "ollama": ServerKind(("ollama", "openai"), frozenset(OLLAMA_KEYS), "ollama", False),
}
# The engine whose keys name the model file a launched server serves.
MODEL_FILE_ENGINE = "llamacpp"


def launched_server(engine: dict) -> ServerKind | None:
    """The server the engine block launches (``engine.launch.server``), if any."""
    launch = engine.get("launch") or {}
    return SERVERS.get(launch.get("server") or "")


def as_served(engine: dict) -> dict:
    """The engine block as the embedded engine would read it: a launched server that
    serves a model file serves the one the embedded engine would load for the same keys."""
    server = launched_server(engine)
    if server is not None and server.serves_model_file:
        return engine | {"name": MODEL_FILE_ENGINE}
    return engine


class ServerStartError(PreflightError):
    """The server could not be started or never became healthy; the message has its log."""


@dataclass(frozen=True)
class LaunchSettings:
    """engine.launch, with its defaults (config/README.md has each key)."""

    server: str
    binary: str | None = None
    parallel: int = 1
    threads: int | None = None
    ctx_size: int | None = None
    cont_batching: bool = True
    cache_reuse: int = 0
    flash_attn: str = "auto"
    cache_type_k: str = "f16"
    cache_type_v: str = "f16"
    metrics: bool = True
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    startup_timeout_s: float = 120.0

    @classmethod
    def from_config(cls, launch: dict) -> LaunchSettings:
        fields = dict(launch)
        fields["args"] = tuple(fields.get("args") or ())
        fields["env"] = tuple(sorted((k, str(v)) for k, v in (fields.get("env") or {}).items()))
        flash = fields.get("flash_attn", "auto")
        fields["flash_attn"] = {True: "on", False: "off"}.get(flash, flash)
        return cls(**fields)


@dataclass(frozen=True)
class ServerCommand:
    """What to run, where it listens, and how to tell it is ready."""

    name: str
    argv: tuple[str, ...]
    env: dict = field(default_factory=dict)
    url: str = ""  # the server's root, http://HOST:PORT
    health_path: str = "/health"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def listen_address(host: str | None, default_port: int | None) -> tuple[str, int]:
    """Host and port to listen on: those of ``engine.host``, else loopback and a free port."""
    if host:
        parts = urlsplit(host if "://" in host else f"http://{host}")
        return parts.hostname or "127.0.0.1", parts.port or default_port or free_port()
    return "127.0.0.1", free_port()


def resolve_binary(settings: LaunchSettings, built: str | None) -> str:
    """The executable: ``binary`` (a path or a name on PATH), else the one perflab built
    (llama-server) or ``ollama`` on PATH."""
    wanted = settings.binary or built or SERVERS[settings.server].default_binary
    if wanted is None:
        raise PreflightError(
            "engine.launch.server is llama-server but no binary was given: run through the "
            "workflow (it builds llama-server into cache/), or set engine.launch.binary to a "
            "llama-server on PATH or its path."
        )
    found = shutil.which(wanted)
    if found is None:
        raise PreflightError(
            f"engine.launch: cannot run {wanted!r}: no such executable"
            f"{' on PATH' if os.sep not in wanted else ''}. Install {settings.server}, or set "
            "engine.launch.binary to its path."
        )
    return found


def llama_server_command(
    binary: str, settings: LaunchSettings, model_path: str, alias: str, host: str, port: int
) -> ServerCommand:
    ctx = settings.ctx_size
    argv = [binary, "--model", str(model_path), "--alias", alias, "--host", host]
    argv += ["--port", str(port), "--parallel", str(settings.parallel)]
    if ctx is not None:
        argv += ["--ctx-size", str(ctx)]
    if settings.threads is not None:
        argv += ["--threads", str(settings.threads), "--threads-batch", str(settings.threads)]
    argv += ["--cont-batching" if settings.cont_batching else "--no-cont-batching"]
    argv += ["--cache-reuse", str(settings.cache_reuse), "--flash-attn", settings.flash_attn]
    argv += ["--cache-type-k", settings.cache_type_k, "--cache-type-v", settings.cache_type_v]
    if settings.metrics:
        argv += ["--metrics", "--slots"]
    argv += ["--no-webui", *llama_server_flags(), *settings.args]
    return ServerCommand(
        name="llama-server",
        argv=tuple(argv),
        env=dict(settings.env),
        url=f"http://{host}:{port}",
        health_path="/health",
    )


def ollama_command(binary: str, settings: LaunchSettings, host: str, port: int) -> ServerCommand:
    env = {"OLLAMA_HOST": f"{host}:{port}", "OLLAMA_NUM_PARALLEL": str(settings.parallel)}
    if settings.ctx_size is not None:
        env["OLLAMA_CONTEXT_LENGTH"] = str(settings.ctx_size)
    if settings.flash_attn != "auto":
        env["OLLAMA_FLASH_ATTENTION"] = "1" if settings.flash_attn == "on" else "0"
    if settings.cache_type_k != "f16":
        env["OLLAMA_KV_CACHE_TYPE"] = settings.cache_type_k
    return ServerCommand(
        name="ollama",
        argv=(binary, "serve", *settings.args),
        env=env | dict(settings.env),
        url=f"http://{host}:{port}",
        health_path="/",
    )


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a server's log, indented, or a note that it wrote none."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        text = ""
    tail = [line for line in text.splitlines() if line.strip()][-lines:]
    if not tail:
        return f"(its log {path} is empty)"
    return f"last lines of its log {path}:\n" + "\n".join(f"    {line}" for line in tail)


class ManagedServer:
    """A server process under a guard: ``start()`` waits until it is healthy,
    ``failure()`` says whether it has exited since, ``stop()`` ends it."""

    def __init__(self, command: ServerCommand, log_path: Path, startup_timeout_s: float):
        self.command = command
        self.log_path = Path(log_path)
        self.startup_timeout_s = startup_timeout_s
        self.guard: subprocess.Popen | None = None
        self.pid: int | None = None
        self.ready_after_s: float | None = None
        self._stopping = False

    @property
    def url(self) -> str:
        return self.command.url

    def start(self) -> ManagedServer:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with open(self.log_path, "ab") as log:
            log.write(f"$ {' '.join(self.command.argv)}\n".encode())
            log.flush()
            self.guard = subprocess.Popen(
                [sys.executable, str(GUARD), *self.command.argv],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=os.environ | self.command.env,
                start_new_session=True,  # a Ctrl-C reaches perflab, which then stops it
            )
        try:
            self._read_pid()
            self._wait_healthy(started)
        except BaseException:
            self.stop()
            raise
        self.ready_after_s = time.perf_counter() - started
        return self

    def _read_pid(self) -> None:
        line = self.guard.stdout.readline().strip()
        self.guard.stdout.close()
        if not line:
            self.guard.wait()
            raise ServerStartError(f"{self.command.name} did not start; {log_tail(self.log_path)}")
        self.pid = int(line)

    def _wait_healthy(self, started: float) -> None:
        import httpx

        url = self.command.url + self.command.health_path
        last = "no answer yet"
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while time.perf_counter() - started < self.startup_timeout_s:
                code = self.guard.poll()
                if code is not None:
                    raise ServerStartError(
                        f"{self.command.name} exited with status {code} before it was "
                        f"ready; {log_tail(self.log_path)}"
                    )
                try:
                    response = client.get(url)
                    if response.status_code == 200:
                        return
                    last = f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    last = type(exc).__name__
                time.sleep(HEALTH_POLL_S)
        raise ServerStartError(
            f"{self.command.name} was not healthy at {url} within "
            f"{self.startup_timeout_s:g} s (last: {last}); it was stopped. Raise "
            f"engine.launch.startup_timeout_s if it needs longer; {log_tail(self.log_path)}"
        )

    def failure(self) -> str | None:
        """Why the server is gone, when it exited without being asked to; else None."""
        if self.guard is None or self._stopping:
            return None
        code = self.guard.poll()
        if code is None and self._server_alive():
            return None
        if code is None:  # the guard reaps it within its poll interval, then exits
            try:
                code = self.guard.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                code = "unknown"
        return (
            f"{self.command.name} (pid {self.pid}) exited with status {code} while "
            f"measuring; {log_tail(self.log_path)}"
        )

    def _server_alive(self) -> bool:
        import psutil

        try:
            return psutil.Process(self.pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def pids(self) -> list[int]:
        """The server and its children (the guard is perflab's, not the server's)."""
        from perflab.engines.server_process import process_tree

        return process_tree(self.pid) if self.pid else []

    def stop(self) -> int | None:
        """Close the guard's pipe (it stops the server's group) and wait for it."""
        guard = self.guard
        if guard is None:
            return None
        self._stopping = True
        try:
            if guard.stdin and not guard.stdin.closed:
                guard.stdin.close()
        except OSError:
            pass
        try:
            return guard.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            for pgid in (self.pid, guard.pid):
                if pgid:
                    with contextlib.suppress(OSError):
                        os.killpg(pgid, 9)
            return guard.wait()

    def info(self) -> dict:
        return {
            "server": self.command.name,
            "command": list(self.command.argv),
            "env": dict(self.command.env),
            "url": self.command.url,
            "pid": self.pid,
            "ready_after_s": self.ready_after_s,
            "log": str(self.log_path),
        }


def unused_keys(launch: dict) -> list[str]:
    """Keys of engine.launch the chosen server does not take."""
    taken = SERVERS[launch["server"]].keys
    tunables = frozenset().union(*(server.keys for server in SERVERS.values()))
    return sorted(key for key in launch if key in tunables and key not in taken)
