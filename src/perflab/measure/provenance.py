"""Where a number came from: host, software versions, model and config hashes."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field, fields
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import psutil

from perflab import __version__

PACKAGES = ("llama-cpp-python", "ollama", "polars", "snakemake", "altair", "psutil")
GIT_TIMEOUT_S = 10


def cpu_model() -> str:
    """/proc/cpuinfo's "model name" where there is one, else platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(args: list[str], cwd: Path) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=GIT_TIMEOUT_S
    ).stdout.strip()


def git_commit(path: str | Path | None = None) -> str | None:
    """HEAD of the git working tree at ``path``, with "-dirty" when ``git status
    --porcelain`` lists anything; None when git is absent or it is not a repository.

    By default: perflab's own source tree (the code that measured), else the current
    directory (the workflow being run).
    """
    candidates = [Path(path)] if path is not None else [Path(__file__).parent, Path.cwd()]
    for cwd in candidates:
        try:
            commit = _git(["rev-parse", "HEAD"], cwd)
            dirty = _git(["status", "--porcelain"], cwd)
        except (OSError, subprocess.SubprocessError):
            continue
        if commit:
            return f"{commit}-dirty" if dirty else commit
    return None


def package_version(name: str) -> str | None:
    """The installed distribution's version, None when it is not installed."""
    try:
        return version(name)
    except PackageNotFoundError:
        return None


@dataclass(frozen=True)
class HostInfo:
    """The machine and software a measurement came from (``metadata.json`` ``host``).

    Read back from a file, a name it lacks is None."""

    hostname: str | None = None
    os: str | None = None
    kernel: str | None = None
    platform: str | None = None
    machine: str | None = None
    python: str | None = None
    cpu_model: str | None = None
    logical_cores: int | None = None
    physical_cores: int | None = None
    ram_gb: float | None = None
    perflab_version: str | None = None
    git_commit: str | None = None
    packages: dict[str, str | None] = field(default_factory=dict)
    ollama_num_parallel: str | None = None

    @classmethod
    def of_this_machine(cls) -> HostInfo:
        return cls(
            hostname=socket.gethostname(),
            os=f"{platform.system()} {platform.release()}",
            kernel=platform.release(),
            platform=platform.platform(),
            machine=platform.machine(),
            python=platform.python_version(),
            cpu_model=cpu_model(),
            logical_cores=psutil.cpu_count(logical=True),
            physical_cores=psutil.cpu_count(logical=False),
            ram_gb=psutil.virtual_memory().total / 1e9,
            perflab_version=__version__,
            git_commit=git_commit(),
            packages={name: package_version(name) for name in PACKAGES},
            ollama_num_parallel=os.environ.get("OLLAMA_NUM_PARALLEL"),
        )

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> HostInfo:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known and v is not None})


@dataclass(frozen=True)
class EngineInfo:
    """What the engine said of itself at pre-flight (``metadata.json`` ``engine``).

    The names every engine may give are fields; the rest of what it reported (an
    engine's own facts, a launched server's) stays in ``reported`` as it gave it, and
    so does a field's name where the engine gave it as null: ``to_json`` writes back
    exactly what ``from_json`` read."""

    engine: str | None = None
    model: str | None = None
    engine_version: str | None = None
    host: str | None = None  # None: in-process
    model_digest: str | None = None
    model_path: str | None = None
    model_sha256: str | None = None
    model_size_gb: float | None = None  # the model file
    listed_size_gb: float | None = None  # as the server lists it
    n_threads: int | None = None  # what the embedded engine runs with
    load_s: float | None = None  # the embedded engine's model load
    model_details: dict | None = None
    server: dict | None = None  # the server perflab launched for the engine
    reported: dict = field(default_factory=dict)

    @property
    def model_id(self) -> str | None:
        """The model's digest where the engine names one, else its file's sha256."""
        return self.model_digest or self.model_sha256

    @property
    def model_gb(self) -> float | None:
        """The model file's size where known, else the size the server lists."""
        return self.model_size_gb or self.listed_size_gb

    @property
    def reports_threads(self) -> bool:
        """Whether the engine names its thread count at all (perflab can set it)."""
        return self.n_threads is not None or "n_threads" in self.reported

    @property
    def server_name(self) -> str | None:
        return (self.server or {}).get("server")

    def to_json(self) -> dict:
        named = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "reported"}
        return self.reported | {k: v for k, v in named.items() if v is not None}

    @classmethod
    def from_json(cls, data: dict) -> EngineInfo:
        named = {f.name for f in fields(cls)} - {"reported"}
        lifted = {k: v for k, v in data.items() if k in named and v is not None}
        rest = {k: v for k, v in data.items() if k not in lifted}
        return cls(**lifted, reported=rest)


def host_info() -> dict:
    """The machine and software a measurement came from, as ``metadata.json`` holds it."""
    return HostInfo.of_this_machine().to_json()


def process_age_s() -> float | None:
    """Seconds since this process started, to the kernel's clock tick (~10 ms); None off Linux.

    psutil's create_time() adds the boot time in whole seconds, too coarse for this."""
    try:
        after_name = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start_ticks = int(after_name[19])  # field 22 of proc_pid_stat(5): starttime
        return time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (model files are gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_identity(path: str | Path) -> dict:
    """What tells one state of a file from another without reading it."""
    stat = Path(path).stat()
    return {"path": str(Path(path).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def model_fingerprint(path: str | Path) -> dict:
    """A model file's sha256 with the identity it was computed for."""
    return file_identity(path) | {"sha256": file_sha256(path)}


def model_sha256(path: str | Path, known: dict | None = None) -> str:
    """sha256 of a model file, reused from ``known`` (a model_fingerprint, e.g. the
    pre-flight's) while the file is unchanged: hashing an 8B model takes seconds, once
    per run rather than once per experiment."""
    if (
        known
        and known.get("sha256")
        and {key: known.get(key) for key in ("path", "size", "mtime_ns")} == file_identity(path)
    ):
        return known["sha256"]
    return file_sha256(path)


def config_hash(config: dict) -> str:
    """First 12 hex digits of the sha256 of the config as canonical JSON (sorted keys)."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]
